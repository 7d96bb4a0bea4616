"""Latency/throughput harness with MLPerf-LoadGen-like validity rules.

Scenarios (one query = one call of ``infer``, which processes ``batch_size`` samples):

* ``single-stream`` -- queries issued back to back, one at a time; the metrics are latency percentiles.
* ``offline`` -- the same loop, usually with a large batch; the metric is throughput (samples/s).

A run is *valid* only when it lasted at least ``min_duration_s`` **and** completed at least ``min_queries``
queries (both, as LoadGen requires); it stops as soon as both hold, or at ``max_duration_s``. An invalid run
(too short, too few queries, the runner raised) reports ``p50_s`` etc. as None -- its numbers go to
``provisional`` only, never to the headline fields. ``max_queries`` (e.g. a fixed-size data set) stops the run
early, possibly below the minimums.

Timing: the loop stores one ``clock()`` reading per completed query into a pre-allocated ``array('q')``; the
latency of query *i* is ``t[i] - t[i-1]`` (completion to completion, which for back-to-back issue is issue to
completion plus ~0.1 us of loop overhead). Nothing else is allocated per iteration.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import socket
import sys
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aeforge.errors import ConfigError

Scenario = Literal["single-stream", "offline"]
SCENARIOS: tuple[str, ...] = ("single-stream", "offline")


@dataclass(frozen=True)
class ScenarioSettings:
    """Minimums that make a run valid, plus warm-up and the hard stop."""

    min_queries: int
    min_duration_s: float
    max_duration_s: float
    warmup_count: int
    warmup_s: float
    max_queries: int | None = None


#: defaults per scenario (LoadGen uses 1024 queries for single-stream; its 600 s minimum is for submissions)
SCENARIO_DEFAULTS: dict[str, ScenarioSettings] = {
    "single-stream": ScenarioSettings(min_queries=1024, min_duration_s=10.0, max_duration_s=120.0,
                                      warmup_count=16, warmup_s=1.0),
    "offline": ScenarioSettings(min_queries=64, min_duration_s=10.0, max_duration_s=120.0,
                                warmup_count=4, warmup_s=1.0),
}

#: environment variables that set thread counts, recorded in the metadata
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "ORT_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "CUDA_VISIBLE_DEVICES")

_MAX_INITIAL_CAPACITY = 1 << 22  # 32 MiB of int64; grows by doubling past that


@dataclass
class LatencyResult:
    """Latency/throughput of one run; headline numbers are None unless ``valid``."""

    scenario: str
    batch_size: int
    valid: bool
    invalid_reasons: list[str]
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    max_s: float | None
    mean_s: float | None
    throughput_per_s: float | None
    n_queries: int
    n_inferences: int
    duration_s: float
    window_start_epoch_s: float | None
    window_end_epoch_s: float | None
    provisional: dict[str, float] | None = None
    latency_summary: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    latencies_s: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self, *, include_latencies: bool = False) -> dict[str, Any]:
        """JSON-friendly dict (per-query latencies only when asked)."""
        out = asdict(self)
        out.pop("latencies_s")
        if include_latencies and self.latencies_s is not None:
            out["latencies_s"] = self.latencies_s.tolist()
        return out


def summarize_latencies(latencies_s: np.ndarray, duration_s: float, batch_size: int) -> dict[str, float]:
    """Percentiles (numpy ``linear`` method), mean, min, max, std and throughput of per-query latencies."""
    lat = np.asarray(latencies_s, dtype=np.float64)
    if lat.size == 0:
        return {}
    p50, p90, p95, p99 = np.percentile(lat, [50, 90, 95, 99])
    return {
        "p50_s": float(p50), "p90_s": float(p90), "p95_s": float(p95), "p99_s": float(p99),
        "max_s": float(lat.max()), "min_s": float(lat.min()), "mean_s": float(lat.mean()), "std_s": float(lat.std()),
        "throughput_per_s": batch_size * lat.size / duration_s if duration_s > 0 else math.inf,
    }


def _resolve_settings(scenario: str, **overrides: float | int | None) -> ScenarioSettings:
    if scenario not in SCENARIO_DEFAULTS:
        raise ConfigError(f"--scenario: unknown scenario {scenario!r}; choose {' or '.join(SCENARIOS)}")
    base = asdict(SCENARIO_DEFAULTS[scenario])
    base |= {k: v for k, v in overrides.items() if v is not None}
    settings = ScenarioSettings(**base)
    if (settings.min_queries < 1 or settings.warmup_count < 0 or settings.warmup_s < 0
            or (settings.max_queries is not None and settings.max_queries < 1)):
        raise ConfigError(f"latency settings: min_queries >= 1, warm-ups >= 0 required, got {settings}")
    if not 0 <= settings.min_duration_s <= settings.max_duration_s:
        raise ConfigError(f"latency settings: need 0 <= min_duration_s <= max_duration_s, got {settings}")
    return settings


def _exception_text(exc: BaseException, where: str) -> str:
    return f"runner raised {type(exc).__name__} {where}: {exc}"


def measure_latency(
    infer: Callable[[], Any],
    *,
    batch_size: int = 1,
    scenario: Scenario | str = "single-stream",
    warmup_s: float | None = None,
    warmup_count: int | None = None,
    min_duration_s: float | None = None,
    min_queries: int | None = None,
    max_duration_s: float | None = None,
    max_queries: int | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    wall_clock: Callable[[], float] = time.time,
    keep_latencies: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> LatencyResult:
    """Run ``infer`` (one query of ``batch_size`` samples) until the scenario's minimums hold; never raises for
    runner failures (they make the result invalid). ``clock`` returns integer nanoseconds.

    Settings left as None take :data:`SCENARIO_DEFAULTS`. Warm-up runs until both ``warmup_count`` calls and
    ``warmup_s`` seconds are done (or ``max_duration_s``) and is not timed. ``metadata`` defaults to
    :func:`run_metadata`.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    settings = _resolve_settings(scenario, warmup_s=warmup_s, warmup_count=warmup_count,
                                 min_duration_s=min_duration_s, min_queries=min_queries,
                                 max_duration_s=max_duration_s, max_queries=max_queries)
    reasons: list[str] = []
    max_ns = int(settings.max_duration_s * 1e9)

    # --- warm-up (untimed) ---
    warm_start = clock()
    warm_end_ns = warm_start + int(settings.warmup_s * 1e9)
    n_warm = 0
    now = warm_start
    try:
        while n_warm < settings.warmup_count or now < warm_end_ns:
            if now - warm_start >= max_ns:
                break
            infer()
            n_warm += 1
            now = clock()
    except Exception as exc:
        reasons.append(_exception_text(exc, f"during warm-up call {n_warm + 1}"))
    per_query_ns = (now - warm_start) / n_warm if n_warm else 0.0

    # --- timed loop ---
    capacity = settings.min_queries + 1
    if per_query_ns > 0:
        estimate = int(settings.max_duration_s * 1e9 / per_query_ns * 1.1) + 1
        capacity = max(capacity, min(estimate, _MAX_INITIAL_CAPACITY))
    if settings.max_queries is not None:
        capacity = settings.max_queries
    stamps = array("q", bytes(8 * capacity))
    n = 0
    epoch_start = wall_clock()
    start = clock()
    if not reasons:
        n, reasons = _timed_loop(infer, stamps, start, settings, clock)
    end = stamps[n - 1] if n else start
    epoch_end = epoch_start + (end - start) * 1e-9

    duration_s = (end - start) * 1e-9
    stamps_np = np.frombuffer(stamps, dtype=np.int64, count=n)
    latencies_ns = np.diff(stamps_np, prepend=np.int64(start)) if n else np.empty(0, dtype=np.int64)
    latencies_s = latencies_ns.astype(np.float64) * 1e-9
    summary = summarize_latencies(latencies_s, duration_s, batch_size)

    runner_failed = bool(reasons)  # then the minimums are moot
    if not runner_failed and n < settings.min_queries:
        reasons.append(f"only {n} queries completed, fewer than the minimum {settings.min_queries}")
    if not runner_failed and duration_s < settings.min_duration_s:
        reasons.append(f"ran {duration_s:.3f} s, shorter than the minimum {settings.min_duration_s:g} s")
    valid = not reasons
    headline = {k: summary.get(k) if valid else None
                for k in ("p50_s", "p90_s", "p99_s", "max_s", "mean_s", "throughput_per_s")}
    return LatencyResult(
        scenario=scenario, batch_size=batch_size, valid=valid, invalid_reasons=reasons,
        n_queries=n, n_inferences=n * batch_size, duration_s=duration_s,
        window_start_epoch_s=epoch_start, window_end_epoch_s=epoch_end,
        provisional=None if valid else summary, latency_summary=summary if valid else {},
        settings={**asdict(settings), "warmup_queries_run": n_warm},
        metadata=run_metadata() if metadata is None else dict(metadata),
        latencies_s=latencies_s if keep_latencies else None, **headline,
    )


def _timed_loop(infer: Callable[[], Any], stamps: array, start: int, settings: ScenarioSettings,
                clock: Callable[[], int]) -> tuple[int, list[str]]:
    """The measured loop: returns queries completed and failure reasons (runner exceptions)."""
    min_deadline = start + int(settings.min_duration_s * 1e9)
    max_deadline = start + int(settings.max_duration_s * 1e9)
    min_queries = settings.min_queries
    i = begin = 0
    try:
        while True:
            capacity = len(stamps)
            for i in range(begin, capacity):
                infer()
                t = clock()
                stamps[i] = t
                if t >= min_deadline and (i >= min_queries - 1 or t >= max_deadline):
                    return i + 1, []
            if settings.max_queries is not None:  # the buffer was sized to it: stop, maybe too short
                return capacity, []
            begin = capacity
            stamps.extend(array("q", bytes(8 * capacity)))  # rare: the capacity estimate was low
    except Exception as exc:
        return i, [_exception_text(exc, f"at timed query {i + 1}")]


def batch_sweep(
    make_infer: Callable[[int], Callable[[], Any]],
    batches: list[int],
    *,
    scenario: Scenario | str = "offline",
    **kwargs: Any,
) -> list[LatencyResult]:
    """:func:`measure_latency` for each batch size; a ``make_infer`` that raises gives an invalid result."""
    kwargs.setdefault("metadata", run_metadata())
    results = []
    for batch in batches:
        try:
            infer = make_infer(batch)
        except Exception as exc:
            results.append(_failed_result(scenario, batch, f"building the runner for batch {batch} raised "
                                                            f"{type(exc).__name__}: {exc}"))
            continue
        results.append(measure_latency(infer, batch_size=batch, scenario=scenario, **kwargs))
    return results


def _failed_result(scenario: str, batch_size: int, reason: str) -> LatencyResult:
    return LatencyResult(scenario=scenario, batch_size=batch_size, valid=False, invalid_reasons=[reason],
                         p50_s=None, p90_s=None, p99_s=None, max_s=None, mean_s=None, throughput_per_s=None,
                         n_queries=0, n_inferences=0, duration_s=0.0, window_start_epoch_s=None,
                         window_end_epoch_s=None, provisional={})


# --------------------------------------------------------------------------- run metadata


def _cpu_model(cpuinfo_path: Path) -> str:
    try:
        text = cpuinfo_path.read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def _cpufreq_governors(sysfs_root: Path) -> dict[str, str]:
    governors = {}
    cpu_dir = sysfs_root / "devices" / "system" / "cpu"
    paths = sorted(cpu_dir.glob("cpu[0-9]*/cpufreq/scaling_governor"), key=lambda p: int(p.parts[-3][3:]))
    for path in paths:
        try:
            governors[path.parts[-3]] = path.read_text().strip()
        except OSError:
            continue
    return governors


#: distributions that provide a module, when the names differ or there are variants
_DISTRIBUTIONS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-silicon"),
                  "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs")}


def _module_version(name: str) -> str | None:
    """Version of an imported module, else of its installed distribution (never imports it: torch is slow)."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    for dist in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def run_metadata(
    *,
    sysfs_root: str | Path = "/sys",
    cpuinfo_path: str | Path = "/proc/cpuinfo",
    environ: Mapping[str, str] | None = None,
    modules: tuple[str, ...] = ("numpy", "onnxruntime", "torch", "tensorrt"),
) -> dict[str, Any]:
    """Host, CPU, affinity, thread settings, cpufreq governors and library versions of this run."""
    env = os.environ if environ is None else environ
    try:
        affinity: list[int] | None = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    governors = _cpufreq_governors(Path(sysfs_root))
    notes = []
    slow = sorted({g for g in governors.values() if g != "performance"})
    if slow:
        notes.append(f"cpufreq governor {'/'.join(slow)} (not 'performance'): latency may vary with frequency")
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(Path(cpuinfo_path)),
        "logical_cores": os.cpu_count(),
        "cpu_affinity": affinity,
        "threads_env": {k: env[k] for k in THREAD_ENV_VARS if k in env},
        "cpufreq_governors": governors,
        "python": platform.python_version(),
        "versions": {name: _module_version(name) for name in modules},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "notes": notes,
    }
