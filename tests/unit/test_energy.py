"""Energy per inference: integration maths with known answers, and measure_energy on fake meters and clocks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from aeforge.benchmarks.energy import (
    compute_from_trace,
    integrate_counter,
    integrate_samples,
    max_sample_gap_s,
    measure_energy,
)
from aeforge.benchmarks.meters import CounterMeter, ExternalTraceMeter, SamplingMeter, UnavailableMeter
from aeforge.errors import ConfigError, DataError

# --------------------------------------------------------------------------- integration maths


def test_integrate_samples_constant_power() -> None:
    t = np.arange(0.0, 10.01, 0.1)
    assert integrate_samples(t, np.full_like(t, 2.5), 1.234, 7.891) == pytest.approx(2.5 * (7.891 - 1.234))


def test_integrate_samples_linear_ramp_clipped_with_interpolation() -> None:
    t = np.arange(0.0, 11.0)  # P(t) = t watts, samples at whole seconds
    assert integrate_samples(t, t, 2.5, 6.5) == pytest.approx((6.5**2 - 2.5**2) / 2)
    assert integrate_samples(t, t, 0.0, 10.0) == pytest.approx(50.0)
    assert integrate_samples(t, t, 3.0, 3.0) == 0.0


def test_integrate_samples_step_inside_the_window() -> None:
    # 1 W until t=5, then 3 W: the step is two samples with the same timestamp
    t = [0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]
    p = [1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3]
    assert integrate_samples(t, p, 2.5, 7.5) == pytest.approx(2.5 * 1 + 2.5 * 3)
    # a window edge on the step takes the level inside the window
    assert integrate_samples(t, p, 5.0, 6.0) == pytest.approx(3.0)
    assert integrate_samples(t, p, 4.0, 5.0) == pytest.approx(1.0)


def test_integrate_samples_window_not_covered() -> None:
    t = np.arange(0.0, 5.0)
    with pytest.raises(ValueError, match="not the whole window"):
        integrate_samples(t, t, -0.1, 2.0)
    with pytest.raises(ValueError, match="not the whole window"):
        integrate_samples(t, t, 1.0, 4.5)
    with pytest.raises(ValueError, match="backwards"):
        integrate_samples([0, 2, 1], [1, 1, 1], 0.0, 1.0)
    with pytest.raises(ValueError, match="no power samples"):
        integrate_samples([], [], 0.0, 1.0)


def test_max_sample_gap() -> None:
    t = [0.0, 0.1, 0.2, 1.2, 1.3]
    assert max_sample_gap_s(t, 0.05, 0.15) == pytest.approx(0.1)
    assert max_sample_gap_s(t, 0.05, 1.25) == pytest.approx(1.0)


def test_integrate_counter_plain_and_wrap() -> None:
    assert integrate_counter([10.0, 12.0, 15.5], max_range=100.0) == pytest.approx(5.5)
    # 90 -> 98 -> (wrap at 100) 3 -> 7: 8 + 5 + 4
    assert integrate_counter([90.0, 98.0, 3.0, 7.0], max_range=100.0) == pytest.approx(17.0)


def test_integrate_counter_backwards_twice_or_without_range() -> None:
    with pytest.raises(ValueError, match="twice"):
        integrate_counter([90.0, 5.0, 95.0, 4.0], max_range=100.0)
    with pytest.raises(ValueError, match="range is unknown"):
        integrate_counter([5.0, 4.0], max_range=None)
    with pytest.raises(ValueError, match="at least 2"):
        integrate_counter([5.0], max_range=None)


# --------------------------------------------------------------------------- fake world: clock, workload, meters


class World:
    """A fake time line: idle at ``idle_w``, ``busy_w`` while ``infer`` runs; energy accumulates exactly."""

    def __init__(self, idle_w: float = 2.0, busy_w: float = 10.0, call_s: float = 1e-3) -> None:
        self.now_s = 1000.0
        self.energy_j = 0.0
        self.power_w = idle_w
        self.idle_w, self.busy_w, self.call_s = idle_w, busy_w, call_s
        self.changes: list[tuple[float, float, float]] = [(self.now_s, idle_w, idle_w)]  # (t, before, after)

    def clock(self) -> float:
        return self.now_s

    def _advance(self, dt: float, power_w: float) -> None:
        if power_w != self.power_w:
            self.changes.append((self.now_s, self.power_w, power_w))
            self.power_w = power_w
        self.now_s += dt
        self.energy_j += power_w * dt

    def sleep(self, dt: float) -> None:
        self._advance(dt, self.idle_w)

    def infer(self) -> None:
        self._advance(self.call_s, self.busy_w)


class FakeCounter(CounterMeter):
    name = "fake-counter"

    def __init__(self, world: World, max_range_j: float | None = 1e6, fail_after: int | None = None) -> None:
        self.world, self.max_range_j, self.fail_after, self.reads = world, max_range_j, fail_after, 0

    def unavailable_reason(self) -> str | None:
        return None

    @property
    def rails(self) -> list[str]:
        return ["package-0"]

    def read_energy_j(self) -> dict[str, float]:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise OSError("No such device")
        value = self.world.energy_j
        return {"package-0": value % self.max_range_j if self.max_range_j else value}

    def energy_range_j(self) -> dict[str, float | None]:
        return {"package-0": self.max_range_j}


class FakeSampler(SamplingMeter):
    name = "fake-sampler"

    def __init__(self, power_w: callable, fail_after: int | None = None) -> None:
        self.power_w, self.fail_after, self.reads = power_w, fail_after, 0

    def unavailable_reason(self) -> str | None:
        return None

    @property
    def rails(self) -> list[str]:
        return ["VDD_IN"]

    def sample_power_w(self) -> dict[str, float]:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise OSError("i2c read failed")
        return {"VDD_IN": self.power_w()}


def _measure(world: World, meter, **kwargs):
    defaults = {"batch_size": 4, "idle_s": 1.0, "min_window_s": 1.0, "repeats": 5, "interval_s": 0.1,
                "background": False, "clock": world.clock, "sleep": world.sleep, "wall_clock": lambda: 1.7e9}
    return measure_energy(world.infer, meter, **(defaults | kwargs))


# --------------------------------------------------------------------------- measure_energy


def test_counter_meter_exact_energy_per_inference() -> None:
    world = World()
    result = _measure(world, FakeCounter(world))
    assert result.valid, result.invalid_reasons
    # (10 W - 2 W) x 1 ms per call / 4 samples per call = 2 mJ per inference
    assert result.energy_j_per_inference == pytest.approx(2e-3, rel=1e-6)
    assert result.idle_power_w == pytest.approx(2.0)
    assert result.energy_j_per_inference_iqr == pytest.approx(0.0, abs=1e-9)
    assert result.rails_counted == ["package-0"]
    assert len(result.repeats) == 5 and result.repeats[0]["n_inferences"] in (4000, 4004)  # float rounding
    # epoch = wall_clock - clock at the start (1.7e9 - 1000) + window start (1001 s, after 1 s idle)
    assert result.repeats[0]["window_start_epoch_s"] == pytest.approx(1.7e9 + 1.0, abs=1e-3)
    assert result.idle_window["power_w"] == pytest.approx(2.0)
    json.dumps(result.to_dict())


def test_counter_single_wrap_per_window_is_handled() -> None:
    world = World()
    # 10 W for 1 s = 10 J per window against a 15 J range: at most one wrap per window
    result = _measure(world, FakeCounter(world, max_range_j=15.0), idle_s=0.0, idle_power_w=2.0)
    assert result.valid, result.invalid_reasons
    assert result.energy_j_per_inference == pytest.approx(2e-3, rel=1e-6)


def test_counter_backwards_twice_is_invalid() -> None:
    world = World()
    result = _measure(world, FakeCounter(world, max_range_j=4.0), idle_s=0.0, idle_power_w=2.0)
    assert not result.valid
    assert result.energy_j_per_inference is None
    assert any("backwards twice" in r for r in result.invalid_reasons)


def test_counter_backwards_without_range_is_invalid() -> None:
    world = World()

    class Resetting(FakeCounter):
        def read_energy_j(self) -> dict[str, float]:  # a device reset: the counter restarts from 0 mid-run
            value = super().read_energy_j()["package-0"]
            return {"package-0": value if self.reads < 20 else value - 1000.0}

    result = _measure(world, Resetting(world, max_range_j=None), idle_s=0.0)
    assert not result.valid
    assert any("range is unknown" in r for r in result.invalid_reasons)


def test_meter_disappearing_mid_run_is_invalid() -> None:
    world = World()
    result = _measure(world, FakeCounter(world, fail_after=25))
    assert not result.valid
    assert result.energy_j_per_inference is None
    assert any("No such device" in r for r in result.invalid_reasons)
    assert len(result.repeats) < 5  # it stops early


def test_sampling_meter_energy_per_inference() -> None:
    world = World()
    result = _measure(world, FakeSampler(lambda: world.power_w), interval_s=0.01)
    assert result.valid, result.invalid_reasons
    # the edges of each 1 s window smear the idle->busy step over one 10 ms sample interval
    assert result.energy_j_per_inference == pytest.approx(2e-3, rel=0.02)
    assert result.idle_power_w == pytest.approx(2.0, rel=0.02)


def test_sampling_meter_disappearing_is_invalid() -> None:
    world = World()
    result = _measure(world, FakeSampler(lambda: world.power_w, fail_after=40), interval_s=0.01)
    assert not result.valid
    assert any("i2c read failed" in r for r in result.invalid_reasons)


def test_workload_not_above_idle_is_invalid() -> None:
    world = World(idle_w=5.0, busy_w=5.0)
    result = _measure(world, FakeCounter(world))
    assert not result.valid
    assert any("not above idle" in r for r in result.invalid_reasons)
    assert result.provisional is not None and result.provisional["energy_j_per_inference"] == pytest.approx(0.0)


def test_no_meter_and_unavailable_meter() -> None:
    world = World()
    result = _measure(world, None)
    assert result.energy_j_per_inference is None and result.invalid_reasons == ["no power meter given"]
    result = _measure(world, UnavailableMeter("no RAPL zones"))
    assert result.energy_j_per_inference is None and "no RAPL zones" in result.invalid_reasons[0]
    with pytest.raises(ConfigError):
        _measure(world, None, repeats=0)


def test_throwing_runner_is_invalid() -> None:
    world = World()
    calls = {"n": 0}

    def infer() -> None:
        calls["n"] += 1
        if calls["n"] == 1500:
            raise RuntimeError("TensorRT engine failed")
        world.infer()

    result = measure_energy(infer, FakeCounter(world), idle_s=0.5, min_window_s=1.0, background=False,
                            clock=world.clock, sleep=world.sleep)
    assert not result.valid
    assert any("TensorRT engine failed" in r for r in result.invalid_reasons)


def test_gross_energy_when_idle_not_measured() -> None:
    world = World()
    result = _measure(world, FakeCounter(world), idle_s=0.0)
    assert result.valid and not result.idle_subtracted
    assert result.energy_j_per_inference == pytest.approx(10.0 * 1e-3 / 4)
    assert any("not subtracted" in note for note in result.notes)


def test_background_sampler_thread_real_clock() -> None:
    """Real thread and clock: constant 5 W, 1 W idle given; only robust assertions (no timing thresholds)."""
    def infer() -> None:
        time.sleep(0.001)

    result = measure_energy(infer, FakeSampler(lambda: 5.0), idle_s=0.0, idle_power_w=1.0, min_window_s=0.05,
                            repeats=3, interval_s=0.005)
    assert result.valid, result.invalid_reasons
    for rep in result.repeats:
        assert rep["energy_j_per_inference"] == pytest.approx(4.0 * rep["duration_s"] / rep["n_inferences"])


def test_background_sampler_thread_meter_failure() -> None:
    result = measure_energy(lambda: time.sleep(0.001), FakeSampler(lambda: 5.0, fail_after=3), idle_s=0.0,
                            idle_power_w=1.0, min_window_s=0.05, repeats=3, interval_s=0.005)
    assert not result.valid
    assert any("i2c read failed" in r for r in result.invalid_reasons)


# --------------------------------------------------------------------------- external traces


class RecordingTrace(ExternalTraceMeter):
    """Writes the world's power timeline as an epoch-stamped CSV when loaded (a logger running alongside)."""

    def __init__(self, path: Path, world: World, epoch0: float, extra_s: float = 5.0) -> None:
        super().__init__(path)
        self.world, self.epoch0, self.extra_s = world, epoch0, extra_s
        path.write_text("timestamp_s,power_w\n")

    def load(self):
        rows = [(self.world.changes[0][0] - self.extra_s, self.world.changes[0][1])]
        for t, before, after in self.world.changes:
            rows += [(t, before), (t, after)]
        rows.append((self.world.now_s + self.extra_s, self.world.power_w))
        self.path.write_text("timestamp_s,power_w\n" + "".join(f"{t + self.epoch0!r},{p}\n" for t, p in rows))
        return super().load()


def test_measure_energy_with_a_trace_meter(tmp_path: Path) -> None:
    world = World()
    epoch0 = 1.7e9 - world.now_s  # wall_clock - clock at the start
    meter = RecordingTrace(tmp_path / "trace.csv", world, epoch0)
    # the step-shaped trace has samples only where the power changes: lift the gap limit
    result = _measure(world, meter, wall_clock=lambda: world.now_s + epoch0, max_gap_s=100.0)
    assert result.valid, result.invalid_reasons
    assert result.energy_j_per_inference == pytest.approx(2e-3, rel=1e-6)
    assert result.idle_power_w == pytest.approx(2.0)


def test_measure_energy_trace_not_covering_the_run(tmp_path: Path) -> None:
    world = World()
    meter = RecordingTrace(tmp_path / "trace.csv", world, epoch0=0.0)  # logger clock off by 1.7e9 s
    result = _measure(world, meter, wall_clock=lambda: 1.7e9)
    assert not result.valid
    assert all("not the whole window" in r for r in result.invalid_reasons)


def _trace(tmp_path: Path, t0: float, t1: float, power_w: float, step_s: float = 0.5) -> Path:
    times = np.arange(t0, t1 + step_s / 2, step_s)
    path = tmp_path / "recorded.csv"
    path.write_text("timestamp_s,power_w\n" + "".join(f"{float(t)!r},{power_w}\n" for t in times))
    return path


def test_compute_from_trace_epoch_window(tmp_path: Path) -> None:
    path = _trace(tmp_path, 1.7e9, 1.7e9 + 100, 3.0)
    result = compute_from_trace(path, 1.7e9 + 10, 1.7e9 + 20, n_inferences=100)
    assert result.valid and not result.idle_subtracted
    assert result.energy_j_per_inference == pytest.approx(0.3)
    result = compute_from_trace(path, 1.7e9 + 10, 1.7e9 + 20, n_inferences=100, idle_power_w=1.0)
    assert result.energy_j_per_inference == pytest.approx(0.2)
    result = compute_from_trace(path, 1.7e9 + 10, 1.7e9 + 20, 100, idle_window_s=(1.7e9 + 50, 1.7e9 + 60))
    assert result.idle_power_w == pytest.approx(3.0) and not result.valid  # same power: nothing above idle


def test_compute_from_trace_offset_and_uncovered_window(tmp_path: Path) -> None:
    path = _trace(tmp_path, 0.0, 100.0, 3.0)  # a logger counting from its own start
    result = compute_from_trace(path, 1.7e9 + 10, 1.7e9 + 20, n_inferences=100, align="epoch")
    assert not result.valid and result.energy_j_per_inference is None
    assert "not the whole window" in result.invalid_reasons[0]
    result = compute_from_trace(path, 1.7e9 + 10, 1.7e9 + 20, n_inferences=100, offset_s=1.7e9)
    assert result.valid and result.energy_j_per_inference == pytest.approx(0.3)


def test_compute_from_trace_own_span_and_span_alignment(tmp_path: Path) -> None:
    path = _trace(tmp_path, 0.0, 10.0, 4.0)
    assert compute_from_trace(path, n_inferences=10).energy_j_per_inference == pytest.approx(4.0)
    # recorded separately: mean power 4 W times the run's 5 s, over 10 inferences
    result = compute_from_trace(path, 1.7e9, 1.7e9 + 5.0, n_inferences=10, align="span")
    assert result.valid and result.energy_j_per_inference == pytest.approx(2.0)


def test_compute_from_trace_gap_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "gappy.csv"
    path.write_text("timestamp_s,power_w\n0,1\n1,1\n9,1\n10,1\n")
    result = compute_from_trace(path, 0.5, 9.5, n_inferences=1)
    assert not result.valid and "apart" in result.invalid_reasons[0]
    with pytest.raises(ConfigError):
        compute_from_trace(path, 0.5, None, n_inferences=1)
    with pytest.raises(ConfigError):
        compute_from_trace(path, n_inferences=0)
    path.write_text("timestamp_s,power_w\n0,1\n1,x\n")
    with pytest.raises(DataError, match=r"gappy\.csv:3"):
        compute_from_trace(path, n_inferences=1)


def test_auto_alignment_of_relative_traces(tmp_path: Path) -> None:
    relative = _trace(tmp_path, 0.0, 10.0, 4.0)  # small timestamps: a logger counting from its own start
    result = compute_from_trace(relative, 1.7e9, 1.7e9 + 5.0, n_inferences=10)
    assert result.valid and result.meter["align"] == "span"
    assert result.energy_j_per_inference == pytest.approx(2.0)
    epoch = _trace(tmp_path, 1.7e9, 1.7e9 + 10.0, 4.0)
    assert compute_from_trace(epoch, 1.7e9 + 1, 1.7e9 + 6, n_inferences=10).meter["align"] == "epoch"


def test_energy_for_bench_with_an_external_trace(tmp_path: Path) -> None:
    from aeforge.benchmarks.energy import energy_for_bench
    from aeforge.benchmarks.latency import measure_latency
    from aeforge.benchmarks.meters import meter_from_spec

    now = {"ns": 0}

    def infer() -> None:
        now["ns"] += 1_000_000  # 1 ms a query

    latency = measure_latency(infer, batch_size=2, min_queries=100, min_duration_s=1.0, warmup_s=0.0,
                              clock=lambda: now["ns"], wall_clock=lambda: 1.7e9 + 10.0, metadata={})
    assert latency.valid and latency.window_start_epoch_s == 1.7e9 + 10.0
    path = _trace(tmp_path, 1.7e9, 1.7e9 + 20.0, 6.0, step_s=0.1)
    meter = meter_from_spec(f"external:{path}")
    result = energy_for_bench(infer, meter, latency, batch_size=2, idle_power_w=1.0)
    assert result.valid, result.invalid_reasons
    # (6 W - 1 W) x 1 s over 2000 samples
    assert result.energy_j_per_inference == pytest.approx(5.0 / 2000, rel=1e-3)
    out = {"valid": latency.valid and result.valid, "p50_s": latency.p50_s, "p99_s": latency.p99_s,
           "throughput_per_s": latency.throughput_per_s, "energy_j_per_inference": result.energy_j_per_inference}
    json.dumps(out)

    shifted = meter_from_spec(f"external:{path}@3600")  # the logger clock is an hour off: not covered
    bad = energy_for_bench(infer, shifted, latency, batch_size=2)
    assert not bad.valid and bad.energy_j_per_inference is None


def test_energy_for_bench_invalid_latency_run_moves_energy_to_provisional(tmp_path: Path) -> None:
    from aeforge.benchmarks.energy import energy_for_bench
    from aeforge.benchmarks.latency import measure_latency
    from aeforge.benchmarks.meters import ExternalTraceMeter

    now = {"ns": 0}

    def infer() -> None:
        now["ns"] += 1_000_000

    latency = measure_latency(infer, min_queries=10_000, min_duration_s=1.0, max_duration_s=2.0, warmup_s=0.0,
                              clock=lambda: now["ns"], wall_clock=lambda: 1.7e9 + 10.0, metadata={})
    assert not latency.valid
    result = energy_for_bench(infer, ExternalTraceMeter(_trace(tmp_path, 1.7e9, 1.7e9 + 20.0, 6.0, 0.1)), latency)
    assert not result.valid and result.energy_j_per_inference is None
    assert result.provisional["energy_j_per_inference"] == pytest.approx(6.0 * 2.0 / 2000)


def test_counter_meter_background_thread_real_clock() -> None:
    start = time.perf_counter()

    class Linear(CounterMeter):
        name = "linear"

        def unavailable_reason(self) -> str | None:
            return None

        @property
        def rails(self) -> list[str]:
            return ["package-0"]

        def read_energy_j(self) -> dict[str, float]:  # exactly 5 W since the start
            return {"package-0": 5.0 * (time.perf_counter() - start)}

    result = measure_energy(lambda: time.sleep(0.001), Linear(), idle_s=0.0, idle_power_w=1.0, min_window_s=0.05,
                            repeats=3, interval_s=0.01)
    assert result.valid, result.invalid_reasons
    for rep in result.repeats:
        assert rep["energy_j_per_inference"] == pytest.approx(4.0 * rep["duration_s"] / rep["n_inferences"],
                                                              rel=1e-3)
