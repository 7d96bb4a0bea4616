"""``aeforge bench``: latency, throughput and energy per inference of a run's hardware model on one runner.

Runners (all fed the same realistic events, :func:`aeforge.stages.verification_inputs`):

* ``torch`` -- the Brevitas QAT module in eager PyTorch (float32, fake quantization);
* ``ort`` -- onnxruntime (CPU) on the QDQ export (``RUN/onnx/model_qdq.onnx`` when it fits the batch, else a
  temporary export) under the exact session options (bit-exact against Brevitas);
* ``trt`` -- TensorRT (INT8) on that export; ToolUnavailableError without TensorRT or a CUDA GPU;
* ``hls-csim`` -- the hls4ml C-simulation of ``aeforge hls`` (a subprocess per query: slow, measured as is).

The feed is validated once (``infer(feed)``), then timed with ``check_inputs=False`` so the harness adds
almost nothing (``benchmarks/bench_overhead.py``). :func:`~aeforge.benchmarks.latency.measure_latency` runs the
scenario, then :func:`~aeforge.benchmarks.energy.energy_for_bench` the energy step.

**Validity.** ``valid`` is the latency run's validity, and, when energy was *attempted* (a named meter, an
``external:FILE`` trace, or ``auto`` finding a meter), the energy result's validity too. Energy that was not
asked for (``--meter none``) or that ``auto`` could not find a meter for does not invalidate the run:
``energy_j_per_inference`` is then None and ``energy_status`` / ``energy.invalid_reasons`` say why. Energy is
never reported as a number unless it was measured and valid. Model-based estimates (ASIC energy from
``aeforge rtl``, FPGA latency from HLS synthesis) go to ``estimates`` under names starting ``estimated_``.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import CARD_NAME, load_run, sha256_file, write_json_atomic
from aeforge.benchmarks.energy import EnergyResult, energy_for_bench
from aeforge.benchmarks.latency import SCENARIOS, LatencyResult, measure_latency, run_metadata
from aeforge.benchmarks.meters import ExternalTraceMeter, UnavailableMeter, meter_from_spec, parse_power_trace
from aeforge.errors import AeforgeError, ArtifactError, ConfigError, DataError, ToolUnavailableError

RUNNERS: tuple[str, ...] = ("torch", "ort", "trt", "hls-csim")
BENCH_DIR = "bench"
#: the edge QDQ export that ``aeforge export onnx RUN`` writes (used when present)
QDQ_EXPORT = Path("onnx") / "model_qdq.onnx"
#: at most this many power-trace samples are stored in a bench result (evenly strided beyond)
MAX_TRACE_POINTS = 10_000
HEADLINE_KEYS = ("valid", "p50_s", "p99_s", "throughput_per_s", "energy_j_per_inference")


def bench_stage(
    run_dir: str | Path,
    runner: str = "ort",
    scenario: str = "single-stream",
    batch_size: int = 1,
    meter: str = "auto",
    threads: int | None = None,
    min_duration_s: float | None = None,
    min_queries: int | None = None,
    max_duration_s: float | None = None,
    save: bool = True,
    *,
    max_queries: int | None = None,
    warmup_s: float | None = None,
    warmup_count: int | None = None,
    energy_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Benchmark the run's hardware model on ``runner``; the result dict (saved to ``RUN/bench/`` when ``save``).

    Latency settings left as None take the scenario's defaults (:data:`~aeforge.benchmarks.latency.
    SCENARIO_DEFAULTS`). ``meter``: ``auto``, ``none``, ``rapl``, ``nvml``, ``jetson``, ``rpi5`` or
    ``external:FILE[@OFFSET_S]``. ``energy_options`` go to :func:`~aeforge.benchmarks.energy.measure_energy`
    for live meters (``idle_s``, ``min_window_s``, ``repeats``, ``idle_power_w``...). The headline keys are
    :data:`HEADLINE_KEYS`; see the module docstring for ``valid``.
    """
    run_dir = Path(run_dir)
    if runner not in RUNNERS:
        raise ConfigError(f"--runner: unknown runner {runner!r}; choose {', '.join(RUNNERS)}")
    if scenario not in SCENARIOS:
        raise ConfigError(f"--scenario: unknown scenario {scenario!r}; choose {' or '.join(SCENARIOS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"--batch: must be a positive integer, got {batch_size!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"--threads: must be a positive integer, got {threads!r}")
    load_run(run_dir, verify=False)  # ArtifactError naming the directory when it is not a run
    power_meter = _meter(meter, runner)
    metadata = run_metadata()
    metadata["threads_requested"] = threads

    from aeforge.stages import hardware_model, verification_inputs

    model = hardware_model(run_dir)
    inputs_nchw = verification_inputs(model, batch_size)
    with tempfile.TemporaryDirectory(prefix="aeforge_bench_") as scratch:
        with _Backend(run_dir, runner, model, inputs_nchw, threads, batch_size, Path(scratch)) as backend:
            latency = measure_latency(
                backend.query, batch_size=batch_size, scenario=scenario, warmup_s=warmup_s,
                warmup_count=warmup_count, min_duration_s=min_duration_s, min_queries=min_queries,
                max_duration_s=max_duration_s, max_queries=max_queries, keep_latencies=True, metadata=metadata,
            )
            energy, status = _energy(backend.query, meter, power_meter, latency, batch_size, dict(energy_options or {}))
        model_info = backend.describe()

    energy_counts = status not in ("not requested", "unavailable")
    valid = latency.valid and (energy.valid or not energy_counts)
    reasons = [f"latency: {r}" for r in latency.invalid_reasons]
    if energy_counts and not energy.valid:
        reasons += [f"energy: {r}" for r in energy.invalid_reasons]
    result: dict[str, Any] = {
        "valid": valid,
        "p50_s": latency.p50_s,
        "p99_s": latency.p99_s,
        "throughput_per_s": latency.throughput_per_s,
        "energy_j_per_inference": energy.energy_j_per_inference if energy.valid else None,
        "energy_status": status,
        "invalid_reasons": reasons,
        "runner": runner,
        "scenario": scenario,
        "batch_size": batch_size,
        "threads": threads,
        "meter": meter,
        "run": str(run_dir.resolve()),
        "model": model_info,
        "latency": _latency_dict(latency),
        "energy": energy.to_dict(),
        "metadata": metadata,
        "estimates": collect_estimates(run_dir),
    }
    trace = _power_trace(power_meter, latency, energy)
    if trace is not None:
        result["power_trace"] = trace
    if save:
        result["saved_to"] = str(save_result(run_dir, result))
    return result


def _latency_dict(latency: LatencyResult) -> dict[str, Any]:
    """``latency.to_dict(include_latencies=True)`` with per-query latencies rounded to the clock's 1 ns."""
    out = latency.to_dict(include_latencies=False)
    if latency.latencies_s is not None:
        out["latencies_s"] = np.round(latency.latencies_s, 9).tolist()
    return out


# --------------------------------------------------------------------------- runners


class _Backend:
    """The runner of one benchmark, with its validated feed and a zero-overhead ``query`` callable."""

    def __init__(self, run_dir: Path, runner: str, model: Any, inputs_nchw: np.ndarray, threads: int | None,
                 batch_size: int, scratch: Path) -> None:
        self.run_dir = run_dir
        self.kind = runner
        self.model = model
        self.inputs_nchw = inputs_nchw
        self.threads = threads
        self.batch_size = batch_size
        self.scratch = scratch
        self.runner: Any = None
        self.query: Callable[[], Any] = _not_ready
        self.info: dict[str, Any] = {"family": model.family, "input_shape": list(model.input_shape),
                                     "input_type": model.input_type.ap_type()}

    def __enter__(self) -> _Backend:
        if self.kind == "hls-csim":
            self._enter_csim()
            return self
        if self.kind == "trt":
            from aeforge.edge.runners.trt_runner import import_tensorrt

            try:
                import_tensorrt()  # before any export work
            except ToolUnavailableError as exc:
                raise ToolUnavailableError(f"--runner trt: {exc}") from None
        if self.kind == "torch":
            from aeforge.edge.runners import TorchRunner

            self.runner = TorchRunner(self.model.module, self.model.input_shape, threads=self.threads)
            self.info["module"] = "Brevitas QAT encoder, eager float32"
        else:
            onnx_path = self._onnx_path()
            if self.kind == "ort":
                from aeforge.edge.runners import OrtRunner

                self.runner = OrtRunner(onnx_path, threads=self.threads, provider="cpu", exact=True)
                self.info["session"] = "onnxruntime CPU, exact session options (no graph optimizations)"
            else:
                from aeforge.edge.runners import TrtRunner

                b = self.batch_size
                self.runner = TrtRunner(onnx_path, precision="int8", batch_profile=(b, b, b))
                self.info["precision"] = "int8"
        self.runner.activate()
        try:
            self._prepare_feed()
        except BaseException:
            self.runner.deactivate()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            self.runner.deactivate()

    def _onnx_path(self) -> Path:
        """``RUN/onnx/model_qdq.onnx`` when its batch fits, else a temporary dynamic-batch QDQ export."""
        stored = self.run_dir / QDQ_EXPORT
        sidecar = stored.with_suffix(".json")
        if stored.is_file() and sidecar.is_file():
            try:
                first_dim = json.loads(sidecar.read_text(encoding="utf-8"))["input_shape"][0]
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                first_dim = None
            if first_dim == self.batch_size or isinstance(first_dim, str):
                self.info |= {"onnx": str(stored), "onnx_sha256": sha256_file(stored)}
                return stored
        from aeforge.edge.onnx_export import export_edge_onnx

        exported = export_edge_onnx(self.model.module, self.model.input_shape, self.scratch / "model_qdq.onnx",
                                    fmt="qdq")
        self.info |= {"onnx": "temporary QDQ export (aeforge export onnx RUN keeps one)",
                      "onnx_sha256": exported.sha256}
        return exported.path

    def _prepare_feed(self) -> None:
        meta = self.runner.input_metadata()
        if len(meta) != 1:
            raise ArtifactError(f"{self.runner.name}: the bench feeds single-input models; this one takes "
                                f"{', '.join(meta)}")
        (name, (dtype, _)), = meta.items()
        feed = {name: np.ascontiguousarray(self.inputs_nchw.astype(dtype))}
        self.runner.infer(feed, check_inputs=True)  # DataError naming the input when the feed does not fit
        self.query = functools.partial(self.runner.infer, feed, False)
        self.info |= {"input_name": name, "input_dtype": str(dtype)}

    def _enter_csim(self) -> None:
        from aeforge.stages import hls_project_dir
        from aeforge.verification import nchw_to_nhwc, predict_hls_csim

        project = hls_project_dir(self.run_dir)
        if project is None:
            raise ArtifactError(f"{self.run_dir}: no HLS project for --runner hls-csim; "
                                f"run 'aeforge hls {self.run_dir}' first")
        if not project.is_dir():
            raise ArtifactError(f"{project}: the HLS project named in {self.run_dir / 'hls' / CARD_NAME} is gone; "
                                f"run 'aeforge hls {self.run_dir} --force'")
        nhwc = nchw_to_nhwc(self.inputs_nchw)
        predict_hls_csim(project, nhwc, self.model.input_type)  # fails here, not inside the timed loop
        self.query = functools.partial(predict_hls_csim, project, nhwc, self.model.input_type)
        self.info |= {"hls_project": str(project), "note": "one C-simulation subprocess per query"}

    def describe(self) -> dict[str, Any]:
        return dict(self.info)


def _not_ready() -> None:
    raise AeforgeError("bench: the runner is not active")


# --------------------------------------------------------------------------- energy


def _meter(spec: str, runner: str) -> Any:
    """The meter of ``--meter``; a named live meter that cannot be used here raises ToolUnavailableError."""
    if not isinstance(spec, str):
        raise ConfigError(f"--meter: expected a string such as auto, none or external:FILE, got {spec!r}")
    meter = meter_from_spec(spec, runner=runner)
    named_live = spec.strip() not in ("auto", "none", "") and not isinstance(meter, ExternalTraceMeter)
    if named_live:
        reason = meter.unavailable_reason()
        if reason is not None:
            meter.close()
            raise ToolUnavailableError(f"--meter {spec}: {reason}")
    return meter


def _energy(query: Callable[[], Any], spec: str, meter: Any, latency: LatencyResult, batch_size: int,
            options: dict[str, Any]) -> tuple[EnergyResult, str]:
    """Energy result and its status: measured, invalid, not requested or unavailable."""
    try:
        if isinstance(meter, UnavailableMeter):
            if spec.strip() in ("none", ""):
                return EnergyResult.unavailable("no meter requested (--meter none)", batch_size=batch_size), (
                    "not requested")
            return EnergyResult.unavailable(meter.reason, batch_size=batch_size), "unavailable"
        if not latency.valid and not isinstance(meter, ExternalTraceMeter):
            result = EnergyResult.unavailable("not measured: the latency run is invalid", meter, batch_size)
            return result, "invalid"
        result = energy_for_bench(query, meter, latency, batch_size=batch_size, **options)
        return result, "measured" if result.valid else "invalid"
    finally:
        meter.close()


def _power_trace(meter: Any, latency: LatencyResult, energy: EnergyResult) -> dict[str, Any] | None:
    """The recorded trace around the measured window (total power), for the report's plot."""
    if not isinstance(meter, ExternalTraceMeter) or not meter.path.is_file():
        return None
    try:
        trace = parse_power_trace(meter.path, offset_s=meter.offset_s)
    except DataError:
        return None  # the energy result already says why
    times = trace.times_s
    power = trace.total_power_w
    align = energy.meter.get("align", "epoch")
    if align == "span" or latency.window_start_epoch_s is None:
        window = [float(times[0]), float(times[-1])]
    else:
        window = [float(latency.window_start_epoch_s), float(latency.window_end_epoch_s or times[-1])]
        pad_s = max(0.5 * (window[1] - window[0]), 1.0)
        keep = (times >= window[0] - pad_s) & (times <= window[1] + pad_s)
        if keep.sum() >= 2:
            times, power = times[keep], power[keep]
    n_recorded = int(times.size)
    if times.size > MAX_TRACE_POINTS:
        stride = int(np.ceil(times.size / MAX_TRACE_POINTS))
        times, power = times[::stride], power[::stride]
    return {"times_s": times.tolist(), "power_w": power.tolist(), "window": window, "align": align,
            "source": str(meter.path), "offset_s": meter.offset_s, "rails": list(trace.power_w),
            "n_samples": n_recorded, "n_stored": int(times.size)}


# --------------------------------------------------------------------------- estimates and saving


def _card_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    metrics = data.get("metrics") if isinstance(data, dict) else None
    return metrics if isinstance(metrics, dict) else {}


def collect_estimates(run_dir: str | Path) -> dict[str, Any]:
    """Model-based figures of the run (never measurements): ASIC energy per inference from ``RUN/rtl/card.json``
    and the FPGA latency from HLS synthesis in ``RUN/hls/card.json``; {} when neither stage ran."""
    from aeforge.stages import HLS_DIR, RTL_DIR

    run_dir = Path(run_dir)
    out: dict[str, Any] = {}
    rtl = _card_metrics(run_dir / RTL_DIR / CARD_NAME)
    energy = rtl.get("energy_estimate") if isinstance(rtl.get("energy_estimate"), dict) else {}
    for key, label in (("programmable_mac", "asic_mac_model"), ("netlist", "asic_netlist")):
        entry = energy.get(key)
        if isinstance(entry, dict) and entry.get("energy_j_per_inference") is not None:
            out[f"estimated_energy_j_per_inference_{label}"] = entry["energy_j_per_inference"]
            out[f"estimate_{label}"] = {k: entry.get(k) for k in ("node_nm", "clock_mhz", "vdd_v", "method",
                                                                   "limits") if k in entry}
    hls = _card_metrics(run_dir / HLS_DIR / CARD_NAME)
    synthesis = hls.get("synthesis") if isinstance(hls.get("synthesis"), dict) else {}
    cycles = synthesis.get("latency_cycles_max")
    period_ns = synthesis.get("clock_period_ns_estimated") or synthesis.get("clock_period_ns_target")
    if cycles is not None and period_ns:
        out["estimated_latency_s_fpga_hls"] = cycles * period_ns * 1e-9
        out["estimate_fpga_hls"] = {"latency_cycles_max": cycles, "clock_period_ns": period_ns,
                                    "tool": synthesis.get("tool")}
    if out:
        out["note"] = "estimates from models and synthesis reports, not measurements"
    return out


def save_result(run_dir: str | Path, result: Mapping[str, Any]) -> Path:
    """Write ``result`` atomically to ``RUN/bench/<UTC timestamp>_<runner>_b<batch>.json``; its path."""
    bench_dir = Path(run_dir) / BENCH_DIR
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stem = f"{stamp}_{result['runner']}_b{result['batch_size']}"
    path = bench_dir / f"{stem}.json"
    n = 2
    while path.exists():
        path = bench_dir / f"{stem}-{n}.json"
        n += 1
    write_json_atomic(path, dict(result) | {"saved_to": str(path)})
    return path


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The keys ``aeforge bench --json`` prints first."""
    return {k: result.get(k) for k in HEADLINE_KEYS}
