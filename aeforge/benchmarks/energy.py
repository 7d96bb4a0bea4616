"""Energy per inference from a power meter (see :mod:`aeforge.benchmarks.meters`).

Protocol (in the spirit of the MLPerf power rules): measure the idle power first (``idle_s``), then run the
workload ``repeats`` times, each for at least ``min_window_s``; the energy of each window is integrated from
the meter, the idle energy of the same duration subtracted, and the rest divided by the inferences (samples:
queries x batch) of that window. The result is the median over the repeats with its min/max and IQR.

* counter meters (RAPL, NVML energy): a reading is taken at each window edge and every ``interval_s`` in
  between; the energy is the sum of the positive steps, one backwards step per window being a wrap-around at
  the domain's range. A second backwards step, or one on a counter without a known range, invalidates it.
* sampling meters (Jetson, Raspberry Pi 5, NVML power): a background thread samples every ``interval_s``; the
  energy is the trapezoid integral clipped exactly to the window (linear interpolation at the edges). Samples
  must bracket the window and have no gap longer than ``max_gap_s``.
* trace meters (``external:FILE``): windows are recorded in host epoch seconds and integrated from the file
  after the run (:func:`compute_from_trace` does the same for a finished run).

Nothing is ever made up: without a usable meter, or when any check fails, ``energy_j_per_inference`` is None
and ``invalid_reasons`` says why (the numbers that could be computed go to ``provisional``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aeforge.benchmarks.meters.base import CounterMeter, PowerMeter, SamplingMeter
from aeforge.benchmarks.meters.external import ExternalTraceMeter, PowerTrace, parse_power_trace
from aeforge.errors import ConfigError

#: timestamps above this (2001-09-09) are taken as Unix epoch seconds by ``align="auto"``
EPOCH_THRESHOLD_S = 1e9

# --------------------------------------------------------------------------- pure integration


def integrate_counter(readings: Sequence[float], max_range: float | None) -> float:
    """Energy (same unit as ``readings``) between the first and last cumulative counter reading.

    One backwards step is a wrap-around at ``max_range`` (the counter restarts at 0); a second backwards step,
    or any backwards step when ``max_range`` is None, raises ValueError.
    """
    if len(readings) < 2:
        raise ValueError(f"need at least 2 counter readings, got {len(readings)}")
    total = 0.0
    wrapped = False
    for prev, cur in itertools.pairwise(readings):
        step = cur - prev
        if step < 0:
            if max_range is None:
                raise ValueError(f"counter went backwards ({prev:g} -> {cur:g}) and its wrap range is unknown")
            if wrapped:
                raise ValueError(f"counter went backwards twice in one window ({prev:g} -> {cur:g})")
            wrapped = True
            step += max_range
        total += step
    return total


def integrate_samples(times_s: Sequence[float] | np.ndarray, power_w: Sequence[float] | np.ndarray,
                      t0: float, t1: float) -> float:
    """Trapezoid energy (J) of timestamped power samples over exactly ``[t0, t1]``.

    Power at the window edges is linearly interpolated between the neighbouring samples; samples must bracket
    the window (first <= t0, last >= t1) and timestamps must not decrease, else ValueError.
    """
    t = np.asarray(times_s, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"times and powers must be 1-D of the same length, got {t.shape} and {p.shape}")
    if t1 < t0:
        raise ValueError(f"window end {t1} before its start {t0}")
    if t.size == 0:
        raise ValueError("no power samples")
    if np.any(np.diff(t) < 0):
        raise ValueError("sample timestamps go backwards")
    if not np.all(np.isfinite(p)):
        raise ValueError("non-finite power sample")
    if t[0] > t0 or t[-1] < t1:
        raise ValueError(f"samples cover [{t[0]:.6f}, {t[-1]:.6f}] s, not the whole window [{t0:.6f}, {t1:.6f}] s")
    if t1 == t0:
        return 0.0
    inside = (t > t0) & (t < t1)
    edge_t = np.concatenate(([t0], t[inside], [t1]))
    edge_p = np.concatenate(([_value_at(t, p, t0, "after")], p[inside], [_value_at(t, p, t1, "before")]))
    return float(np.sum((edge_p[1:] + edge_p[:-1]) * np.diff(edge_t)) * 0.5)


def _value_at(t: np.ndarray, p: np.ndarray, x: float, side: Literal["before", "after"]) -> float:
    """Linear interpolation at ``x``; on a step (duplicate timestamps at ``x``) the level on ``side`` of it."""
    if side == "after":  # the window starts at x: the last sample stamped x, else interpolate
        i = int(np.searchsorted(t, x, side="right")) - 1
        if t[i] == x or i + 1 == t.size:
            return float(p[i])
        j = i + 1
    else:  # the window ends at x: the first sample stamped x, else interpolate
        j = int(np.searchsorted(t, x, side="left"))
        if t[j] == x or j == 0:
            return float(p[j])
        i = j - 1
    return float(p[i] + (p[j] - p[i]) * (x - t[i]) / (t[j] - t[i]))


def max_sample_gap_s(times_s: Sequence[float] | np.ndarray, t0: float, t1: float) -> float:
    """Longest interval between consecutive samples that overlaps ``[t0, t1]`` (inf with < 2 samples)."""
    t = np.asarray(times_s, dtype=np.float64)
    if t.size < 2:
        return math.inf
    lo = max(int(np.searchsorted(t, t0, side="right")) - 1, 0)
    hi = min(int(np.searchsorted(t, t1, side="left")), t.size - 1)
    if hi <= lo:
        return float(t1 - t0) if t[0] <= t0 and t[-1] >= t1 else math.inf
    return float(np.max(np.diff(t[lo:hi + 1])))


# --------------------------------------------------------------------------- results


@dataclass
class EnergyResult:
    """Energy per inference (J per sample) with its spread over repeats; None unless ``valid``."""

    valid: bool
    invalid_reasons: list[str]
    energy_j_per_inference: float | None
    energy_j_per_inference_min: float | None = None
    energy_j_per_inference_max: float | None = None
    energy_j_per_inference_iqr: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    idle_subtracted: bool = True
    batch_size: int = 1
    meter: dict[str, Any] = field(default_factory=dict)
    rails_counted: list[str] = field(default_factory=list)
    idle_window: dict[str, Any] | None = None
    repeats: list[dict[str, Any]] = field(default_factory=list)
    provisional: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def unavailable(cls, reason: str, meter: PowerMeter | None = None, batch_size: int = 1) -> EnergyResult:
        """Result when no energy could be measured at all."""
        return cls(valid=False, invalid_reasons=[reason], energy_j_per_inference=None, batch_size=batch_size,
                   meter=meter.describe() if meter is not None else {})


@dataclass
class _Window:
    label: str
    start_s: float
    end_s: float
    epoch_offset_s: float
    n_inferences: int = 0
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "window_start_epoch_s": self.start_s + self.epoch_offset_s,
                "window_end_epoch_s": self.end_s + self.epoch_offset_s, "duration_s": self.duration_s,
                "n_inferences": self.n_inferences}


def _summarize(windows: list[_Window], energies_j: list[dict[str, float] | None], errors: list[str | None],
               idle_power_w: float | None, idle_subtracted: bool, reasons: list[str]) -> tuple[list, dict]:
    """Per-repeat records and the median/spread over the valid ones (appends reasons)."""
    records = []
    per_inference = []
    powers = []
    for window, rails_j, error in zip(windows, energies_j, errors, strict=True):
        record = window.as_dict()
        if error is not None:
            record["error"] = error
            reasons.append(f"{window.label}: {error}")
        elif rails_j is not None:
            energy_j = float(sum(rails_j.values()))
            net_j = energy_j - (idle_power_w or 0.0) * window.duration_s if idle_subtracted else energy_j
            record |= {"energy_j": energy_j, "energy_j_by_rail": rails_j, "net_energy_j": net_j,
                       "avg_power_w": energy_j / window.duration_s if window.duration_s > 0 else math.nan}
            if window.n_inferences <= 0:
                reasons.append(f"{window.label}: no inference completed in the window")
            else:
                record["energy_j_per_inference"] = net_j / window.n_inferences
                per_inference.append(net_j / window.n_inferences)
                powers.append(record["avg_power_w"])
                if net_j <= 1e-6 * abs(energy_j):  # float rounding of equal figures is not "above idle"
                    reasons.append(f"{window.label}: workload energy {energy_j:.6g} J is not above idle "
                                   f"({(idle_power_w or 0.0) * window.duration_s:.6g} J); meter too coarse?")
        records.append(record)
    stats: dict[str, float] = {}
    if per_inference:
        q25, q50, q75 = np.percentile(per_inference, [25, 50, 75])
        stats = {"energy_j_per_inference": float(q50), "energy_j_per_inference_min": float(min(per_inference)),
                 "energy_j_per_inference_max": float(max(per_inference)),
                 "energy_j_per_inference_iqr": float(q75 - q25), "avg_power_w": float(np.median(powers))}
    return records, stats


_HEADLINE = ("energy_j_per_inference", "energy_j_per_inference_min", "energy_j_per_inference_max",
             "energy_j_per_inference_iqr", "avg_power_w")


def _invalidate(result: EnergyResult, reason: str) -> None:
    """Mark ``result`` invalid: its headline numbers move to ``provisional``."""
    moved = {k: getattr(result, k) for k in _HEADLINE if getattr(result, k) is not None}
    result.valid = False
    result.invalid_reasons.append(reason)
    if moved:
        result.provisional = {**(result.provisional or {}), **moved}
    for key in _HEADLINE:
        setattr(result, key, None)


def _finish(valid_stats: dict[str, float], records: list, reasons: list[str], *, idle_power_w: float | None,
            idle_subtracted: bool, batch_size: int, meter_info: dict[str, Any], rails: list[str],
            idle_window: dict[str, Any] | None, notes: list[str]) -> EnergyResult:
    valid = not reasons and bool(valid_stats)
    if not valid and not reasons:
        reasons.append("no energy window could be measured")
    headline = {k: (v if valid else None) for k, v in valid_stats.items()}
    headline.setdefault("energy_j_per_inference", None)
    return EnergyResult(valid=valid, invalid_reasons=reasons, idle_power_w=idle_power_w,
                        idle_subtracted=idle_subtracted, batch_size=batch_size, meter=meter_info,
                        rails_counted=rails, idle_window=idle_window, repeats=records,
                        provisional=None if valid else (dict(valid_stats) or None), notes=notes, **headline)


# --------------------------------------------------------------------------- live recording


class _Recorder:
    """Timestamped meter readings (counter values or power samples), polled in a thread or inline."""

    def __init__(self, meter: CounterMeter | SamplingMeter, clock: Callable[[], float], interval_s: float,
                 background: bool, sleep: Callable[[float], None]) -> None:
        self.meter = meter
        self.counter = meter.kind == "counter"
        self.clock = clock
        self.interval_s = interval_s
        self.background = background
        self.sleep = sleep
        self.times_s: list[float] = []
        self.values: list[dict[str, float]] = []
        self.error: tuple[float, str] | None = None
        self.next_due_s = -math.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> float | None:
        """Take one reading now; its timestamp, or None once the meter has failed."""
        with self._lock:
            if self.error is not None:
                return None
            before = self.clock()
            try:
                value = self.meter.read_energy_j() if self.counter else self.meter.sample_power_w()  # type: ignore[union-attr]
            except Exception as exc:
                message = f"meter {self.meter.name} failed at t={before:.3f} s: {type(exc).__name__}: {exc}"
                self.error = (before, message)
                return None
            # a slow sensor read (vcgencmd: tens of ms) is stamped at its midpoint
            stamp = before if self.counter else 0.5 * (before + self.clock())
            if self.times_s and stamp < self.times_s[-1]:
                stamp = self.times_s[-1]
            self.times_s.append(stamp)
            self.values.append(value)
            self.next_due_s = stamp + self.interval_s
            return stamp

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.poll() is None:
                return

    def start(self) -> None:
        self.poll()
        if self.background and self.error is None:
            self._thread = threading.Thread(target=self._run, name="aeforge-power-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 10 * self.interval_s))

    def mark(self) -> float:
        """A window edge: for counters a reading exactly there; for samplers just the time."""
        if self.counter:
            stamp = self.poll()
            return stamp if stamp is not None else self.clock()
        return self.clock()

    def maybe_poll(self, now_s: float) -> None:
        """Inline mode: poll when the interval has elapsed."""
        if not self.background and now_s >= self.next_due_s:
            self.poll()

    def idle(self, duration_s: float) -> None:
        """Wait ``duration_s`` while (inline) polling."""
        end = self.clock() + duration_s
        if self.background:
            self.sleep(duration_s)
            return
        while (now := self.clock()) < end and self.error is None:
            self.sleep(min(self.interval_s, end - now))
            self.maybe_poll(self.clock())

    def wait_for_sample_after(self, t_s: float) -> None:
        """Make sure some reading is later than ``t_s`` (sampling meters need one to bracket a window)."""
        deadline = time.monotonic() + max(1.0, 10 * self.interval_s)
        while self.error is None:
            with self._lock:
                if self.times_s and self.times_s[-1] > t_s:
                    return
            if self.background:
                if time.monotonic() > deadline or self._thread is None or not self._thread.is_alive():
                    return
                time.sleep(self.interval_s / 4)
            else:
                self.sleep(self.interval_s)
                self.poll()

    def error_before(self, t_s: float) -> str | None:
        """The failure message when the meter failed before ``t_s``."""
        if self.error is not None and self.error[0] <= t_s:
            return self.error[1]
        return None

    def energy(self, t0: float, t1: float, max_gap_s: float) -> dict[str, float]:
        """Energy per rail over ``[t0, t1]`` (raises ValueError with the reason)."""
        with self._lock:
            times = np.asarray(self.times_s)
            values = list(self.values)
        if not values:
            raise ValueError("no meter reading")
        rails = list(values[0])
        if self.counter:
            sel = [i for i, t in enumerate(times) if t0 <= t <= t1]
            ranges = self.meter.energy_range_j()  # type: ignore[union-attr]
            out = {}
            for rail in rails:
                try:
                    out[rail] = integrate_counter([values[i][rail] for i in sel], ranges.get(rail))
                except ValueError as exc:
                    raise ValueError(f"rail {rail}: {exc}") from exc
            return out
        gap = max_sample_gap_s(times, t0, t1)
        if gap > max_gap_s:
            raise ValueError(f"power samples {gap:.3f} s apart inside the window (limit {max_gap_s:.3f} s)")
        return {rail: integrate_samples(times, [v[rail] for v in values], t0, t1) for rail in rails}


def _trace_energy(trace: PowerTrace, t0: float, t1: float, max_gap_s: float | None) -> dict[str, float]:
    gap_limit = max_gap_s if max_gap_s is not None else max((t1 - t0) / 4, 1e-9)
    gap = max_sample_gap_s(trace.times_s, t0, t1)
    if trace.times_s[0] <= t0 and trace.times_s[-1] >= t1 and gap > gap_limit:
        raise ValueError(f"trace samples {gap:.3f} s apart inside the window (limit {gap_limit:.3f} s)")
    try:
        return {rail: integrate_samples(trace.times_s, p, t0, t1) for rail, p in trace.power_w.items()}
    except ValueError as exc:
        raise ValueError(f"trace {trace.source}: {exc} (epoch seconds; check the clock offset)") from exc


def measure_energy(
    infer: Callable[[], Any],
    meter: PowerMeter | None,
    *,
    batch_size: int = 1,
    idle_s: float = 5.0,
    min_window_s: float = 10.0,
    repeats: int = 5,
    idle_power_w: float | None = None,
    interval_s: float | None = None,
    max_gap_s: float | None = None,
    background: bool = True,
    clock: Callable[[], float] = time.perf_counter,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> EnergyResult:
    """Energy per inference (J per sample) of ``infer`` (one call = ``batch_size`` samples) on ``meter``.

    ``idle_power_w`` given: no idle phase, that figure is subtracted; ``idle_s=0`` and no ``idle_power_w``:
    nothing subtracted (gross energy, ``idle_subtracted=False``). ``interval_s``: meter polling period
    (default: the meter's own, 0.1 s for counters). ``background=False`` polls inline between calls instead of
    from a thread (deterministic with a fake ``clock``/``sleep``; used by the tests). ``clock`` is in seconds.
    """
    if batch_size < 1 or repeats < 1 or min_window_s <= 0 or idle_s < 0:
        raise ConfigError(f"energy settings: need batch_size >= 1, repeats >= 1, min_window_s > 0, idle_s >= 0; "
                          f"got {batch_size}, {repeats}, {min_window_s}, {idle_s}")
    if meter is None:
        return EnergyResult.unavailable("no power meter given", batch_size=batch_size)
    reason = meter.unavailable_reason()
    if reason is not None:
        return EnergyResult.unavailable(f"meter {meter.name} unavailable: {reason}", meter, batch_size)
    if meter.kind not in ("counter", "sampling", "trace"):
        return EnergyResult.unavailable(f"meter {meter.name} cannot measure energy", meter, batch_size)

    is_trace = isinstance(meter, ExternalTraceMeter) or meter.kind == "trace"
    if interval_s is not None:
        period_s = interval_s
    else:
        period_s = getattr(meter, "default_interval_s", 0.05) if meter.kind == "sampling" else 0.1
    gap_limit_s = max_gap_s if max_gap_s is not None else max(1.0, 20 * period_s)
    recorder = None if is_trace else _Recorder(meter, clock, period_s, background, sleep)  # type: ignore[arg-type]
    epoch_offset_s = wall_clock() - clock()
    measure_idle = idle_power_w is None and idle_s > 0
    idle_subtracted = idle_power_w is not None or measure_idle
    reasons: list[str] = []
    notes: list[str] = []
    windows: list[_Window] = []
    idle: _Window | None = None

    def edge() -> float:
        return recorder.mark() if recorder is not None else clock()

    try:
        if recorder is not None:
            recorder.start()
        if measure_idle:
            t0 = edge()
            if recorder is not None:
                recorder.idle(idle_s)
            else:
                sleep(idle_s)
            idle = _Window("idle", t0, edge(), epoch_offset_s)
        for k in range(repeats):
            if recorder is not None and recorder.error is not None:
                break
            window = _Window(f"repeat {k + 1}", edge(), math.nan, epoch_offset_s)
            deadline = window.start_s + min_window_s
            n = 0
            try:
                while True:
                    infer()
                    n += 1
                    now = clock()
                    if now >= deadline:
                        break
                    if recorder is not None and not background:
                        recorder.maybe_poll(now)
            except Exception as exc:
                window.end_s = clock()
                window.n_inferences = n * batch_size
                window.error = f"runner raised {type(exc).__name__} after {n} calls: {exc}"
                windows.append(window)
                break
            window.end_s = edge()
            window.n_inferences = n * batch_size
            windows.append(window)
        if recorder is not None and meter.kind == "sampling" and windows:
            recorder.wait_for_sample_after(windows[-1].end_s)
    finally:
        if recorder is not None:
            recorder.stop()

    trace = meter.load() if isinstance(meter, ExternalTraceMeter) else None  # DataError names file:line

    def window_energy(w: _Window) -> tuple[dict[str, float] | None, str | None]:
        if w.error is not None:
            return None, w.error
        if recorder is not None:
            failure = recorder.error_before(w.end_s + (period_s if meter.kind == "sampling" else 0.0))
            if failure is not None:
                return None, failure
        try:
            if recorder is not None:
                return recorder.energy(w.start_s, w.end_s, gap_limit_s), None
            assert trace is not None
            return _trace_energy(trace, w.start_s + epoch_offset_s, w.end_s + epoch_offset_s, max_gap_s), None
        except ValueError as exc:
            return None, str(exc)

    idle_info = None
    if idle is not None:
        idle_rails, idle_error = window_energy(idle)
        idle_info = idle.as_dict()
        if idle_error is not None:
            reasons.append(f"idle: {idle_error}")
            idle_info["error"] = idle_error
        elif idle_rails is not None and idle.duration_s > 0:
            idle_power_w = sum(idle_rails.values()) / idle.duration_s
            idle_info |= {"energy_j": sum(idle_rails.values()), "energy_j_by_rail": idle_rails,
                          "power_w": idle_power_w}
    results = [window_energy(w) for w in windows]
    records, stats = _summarize(windows, [r for r, _ in results], [e for _, e in results], idle_power_w,
                                idle_subtracted, reasons)
    if len(windows) < repeats and not reasons:
        reasons.append(f"only {len(windows)} of {repeats} repeats ran")
    if stats and stats["energy_j_per_inference"] > 0 and len(records) > 1:
        spread = stats["energy_j_per_inference_iqr"] / stats["energy_j_per_inference"]
        if spread > 0.2:
            notes.append(f"repeats spread widely (IQR {spread:.0%} of the median): lengthen min_window_s")
    if not idle_subtracted:
        notes.append("idle power not subtracted: energy_j_per_inference includes the idle draw")
    elif stats and idle_power_w and 0 < stats["avg_power_w"] - idle_power_w < 0.05 * stats["avg_power_w"]:
        notes.append("the workload draws < 5% above idle: energy_j_per_inference is sensitive to idle drift")
    return _finish(stats, records, reasons, idle_power_w=idle_power_w, idle_subtracted=idle_subtracted,
                   batch_size=batch_size, meter_info=meter.describe(), rails=meter.rails, idle_window=idle_info,
                   notes=notes)


# --------------------------------------------------------------------------- recorded traces


def compute_from_trace(
    trace_file: str | Path,
    window_start_s: float | None = None,
    window_end_s: float | None = None,
    n_inferences: int = 1,
    idle_power_w: float | None = None,
    *,
    align: Literal["auto", "epoch", "span"] = "auto",
    offset_s: float = 0.0,
    idle_window_s: tuple[float, float] | None = None,
    max_gap_s: float | None = None,
) -> EnergyResult:
    """Energy per inference of a finished run from a recorded power trace (``--meter external:FILE``).

    ``align="auto"`` (default): ``"epoch"`` when the shifted trace timestamps look like Unix epoch seconds
    (after 2001-09-09, i.e. > 1e9), else ``"span"`` (a logger counting from its own start cannot be aligned).
    ``align="epoch"``: ``window_start_s``/``window_end_s`` are host Unix epoch seconds (``aeforge
    bench`` records them as ``window_start_epoch_s``/``window_end_epoch_s``) and the trace, shifted by
    ``offset_s``, must cover that window; without a window the trace's own span is the run.
    ``align="span"``: the trace was recorded separately, around the same workload in steady state, so only its
    mean power is used: energy = (mean trace power - idle) x run duration (``window_end_s - window_start_s``,
    or the trace span). ``n_inferences`` counts samples (queries x batch). The idle power is ``idle_power_w``, or
    measured from ``idle_window_s`` (epoch seconds) in the trace; with neither, nothing is subtracted.
    """
    if n_inferences <= 0:
        raise ConfigError(f"compute_from_trace: n_inferences must be > 0, got {n_inferences}")
    if align not in ("auto", "epoch", "span"):
        raise ConfigError(f"compute_from_trace: align must be 'auto', 'epoch' or 'span', not {align!r}")
    if (window_start_s is None) != (window_end_s is None):
        raise ConfigError("compute_from_trace: give both window_start_s and window_end_s, or neither")
    trace = parse_power_trace(trace_file, offset_s=offset_s)
    span0, span1 = trace.span_s
    if align == "auto":
        align = "epoch" if span0 > EPOCH_THRESHOLD_S else "span"
    meter_info = {"name": "external", "kind": "trace", "path": str(trace_file), "offset_s": offset_s,
                  "align": align, "trace_span_epoch_s": [span0, span1], "columns": trace.columns}
    rails = list(trace.power_w)
    reasons: list[str] = []
    idle_info = None
    if idle_power_w is None and idle_window_s is not None:
        i0, i1 = idle_window_s
        idle_info = {"label": "idle", "window_start_epoch_s": i0, "window_end_epoch_s": i1, "duration_s": i1 - i0}
        try:
            idle_j = sum(_trace_energy(trace, i0, i1, max_gap_s).values())
            idle_power_w = idle_j / (i1 - i0) if i1 > i0 else math.nan
            idle_info |= {"energy_j": idle_j, "power_w": idle_power_w}
        except ValueError as exc:
            reasons.append(f"idle: {exc}")
            idle_info["error"] = str(exc)
    idle_subtracted = idle_power_w is not None

    t0, t1 = (span0, span1) if window_start_s is None or align == "span" else (window_start_s, window_end_s)
    assert t0 is not None and t1 is not None
    duration_s = (window_end_s - window_start_s) if window_start_s is not None else span1 - span0
    window = _Window("run", t0, t0 + duration_s if align == "span" else t1, 0.0, n_inferences)
    rails_j: dict[str, float] | None = None
    error = None
    try:
        rails_j = _trace_energy(trace, t0, t1, max_gap_s)
        if align == "span" and t1 > t0:  # scale the trace's mean power to the run's duration
            rails_j = {r: e / (t1 - t0) * duration_s for r, e in rails_j.items()}
    except ValueError as exc:
        error = str(exc)
    records, stats = _summarize([window], [rails_j], [error], idle_power_w, idle_subtracted, reasons)
    notes = [] if idle_subtracted else ["idle power not subtracted: energy_j_per_inference includes the idle draw"]
    if align == "span":
        notes.append("align=span: the trace's mean power times the run duration (steady state assumed)")
    return _finish(stats, records, reasons, idle_power_w=idle_power_w, idle_subtracted=idle_subtracted,
                   batch_size=1, meter_info=meter_info, rails=rails, idle_window=idle_info, notes=notes)


def energy_for_bench(
    infer: Callable[[], Any],
    meter: PowerMeter | None,
    latency: Any,
    *,
    batch_size: int = 1,
    idle_power_w: float | None = None,
    **measure_kwargs: Any,
) -> EnergyResult:
    """The energy step of ``aeforge bench`` after :func:`~aeforge.benchmarks.latency.measure_latency`.

    A trace meter (``--meter external:FILE[@OFFSET]``) is integrated over the latency run's own window
    (``latency.window_start_epoch_s``..``window_end_epoch_s``, ``latency.n_inferences``) with
    :func:`compute_from_trace` (``align="auto"``); a live meter runs :func:`measure_energy` (idle phase and
    repeats) with ``measure_kwargs``.
    """
    if isinstance(meter, ExternalTraceMeter):
        reason = meter.unavailable_reason()
        if reason is not None:
            return EnergyResult.unavailable(f"meter external unavailable: {reason}", meter, batch_size)
        if latency.window_start_epoch_s is None or latency.n_inferences <= 0:
            return EnergyResult.unavailable("the latency run completed no inference", meter, batch_size)
        result = compute_from_trace(meter.path, latency.window_start_epoch_s, latency.window_end_epoch_s,
                                    latency.n_inferences, idle_power_w, offset_s=meter.offset_s)
        result.batch_size = batch_size
        if not latency.valid:
            _invalidate(result, "the latency run it is taken from is invalid")
        return result
    return measure_energy(infer, meter, batch_size=batch_size, idle_power_w=idle_power_w, **measure_kwargs)
