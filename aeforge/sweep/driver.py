"""The sweep loop: Optuna ask-and-tell over an executor, every step written to the journal first.

Optuna's samplers choose the configurations (``grid``: :class:`optuna.samplers.GridSampler`, ``random``,
``tpe`` -- multi-objective TPE --, ``nsga2``); aeforge only asks, runs and tells. The Optuna study lives in
memory and is rebuilt from the journal on ``--resume`` with ``study.add_trial`` (finished trials with their
values, trials that were in flight as running ones), so Optuna trial numbers always equal aeforge trial ids
and a finished trial is never run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError
from aeforge.sweep.space import CostSpec, SweepSpec
from aeforge.sweep.store import REPORT_NAME, SUMMARY_NAME, SweepStore, TrialRecord, now_utc, trial_name
from aeforge.sweep.trial import TrialTask

Log = Callable[[str], None]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ToolUnavailableError("aeforge sweep needs Optuna: pip install 'aeforge[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(spec: SweepSpec) -> Any:
    """The Optuna sampler the sweep file names."""
    optuna = _optuna()
    seed = spec.sampler.seed
    if spec.sampler.name == "grid":

        class AskTellGridSampler(optuna.samplers.GridSampler):
            """GridSampler whose ``after_trial`` does not call ``study.stop()`` (only valid inside
            ``study.optimize``; the driver stops after ``n_trials`` itself)."""

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                return None

        return AskTellGridSampler(spec.grid(), seed=seed)
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, spec.sampler.n_trials // 4)))
    if spec.sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ConfigError(f"unknown sampler {spec.sampler.name!r}")


def rebuild_study(spec: SweepSpec, trials: dict[int, TrialRecord]) -> Any:
    """A fresh study holding the journal's trials: done/failed as finished, the rest as running."""
    optuna = _optuna()
    from optuna.trial import TrialState, create_trial

    directions = ["maximize" if d == "max" else "minimize" for d in spec.directions]
    study = optuna.create_study(directions=directions, sampler=make_sampler(spec))
    distributions = spec.distributions()
    for expected, (trial_id, record) in enumerate(trials.items()):
        if trial_id != expected:
            raise ArtifactError(f"journal: trial ids are not contiguous (found {trial_id}, expected {expected})")
        if record.status == "done":
            state, values = TrialState.COMPLETE, record.values
        elif record.status == "failed":
            state, values = TrialState.FAIL, None
        else:
            state, values = TrialState.RUNNING, None
        study.add_trial(create_trial(state=state, values=values, params=record.params, distributions=distributions,
                                     system_attrs=record.system_attrs))
    return study


def _json_safe(attrs: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for key, value in attrs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        safe[key] = value
    return safe


def _objective_values(spec: SweepSpec, metrics: dict[str, Any]) -> list[float] | str:
    values = []
    for name in spec.objectives:
        value = metrics.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"objective {name!r} is missing or not a finite number ({value!r})"
        values.append(float(value))
    return values


def _format_metrics(spec: SweepSpec, metrics: dict[str, Any]) -> str:
    parts = []
    for name in spec.objectives:
        value = metrics.get(name)
        parts.append(f"{name} {value:.4g}" if isinstance(value, (int, float)) else f"{name} n/a")
    return ", ".join(parts)


class SweepRun:
    """One invocation of ``aeforge sweep`` on a sweep directory (new or resumed)."""

    def __init__(self, spec: SweepSpec, out: str | Path, workers: int | None = None, ray_address: str | None = None,
                 resume: bool = False, force: bool = False, log: Log | None = print, executor: Any = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.spec = spec
        self.store = SweepStore(out)
        self.workers = workers
        self.ray_address = ray_address
        self.resume = resume
        self.force = force
        self.log = log or (lambda _text: None)
        self.records: dict[int, TrialRecord] = {}
        self.started = time.perf_counter()
        self._given_executor = executor  # an object with the LocalExecutor interface (tests, embedding)

    # ------------------------------------------------------------------ setup
    def _cost(self) -> CostSpec:
        from aeforge.hls.rtl.yosys import why_yosys_unavailable

        reason = why_yosys_unavailable()
        cost = self.spec.cost.resolved(yosys_available=reason is None)
        if reason is not None and (cost.synth != "none" or cost.energy == "netlist"):
            what = f"cost.synth: {cost.synth}" if cost.synth != "none" else "cost.energy: netlist"
            raise ToolUnavailableError(f"{self.spec.source}: {what} needs Yosys: {reason}")
        return cost

    def _executor(self) -> Any:
        from aeforge.sweep.executor import LocalExecutor, RayExecutor

        if self._given_executor is not None:
            return self._given_executor
        if self.ray_address:
            return RayExecutor(self.ray_address, self.workers, self.spec.resources)
        import os

        per_trial = max(1, int(self.spec.resources.num_cpus or 1))
        workers = self.workers or max(1, (os.cpu_count() or 1) // per_trial)
        return LocalExecutor(workers=workers, resources=self.spec.resources)

    def run(self) -> dict[str, Any]:
        """Run (or resume) the sweep to ``n_trials``; returns the summary also written to ``sweep.json``."""
        self.store.check(self.resume, self.force)
        _optuna()
        if self.resume:
            state = self.store.journal.state()
            header = state.header or {}
            if header.get("identity") != self.spec.identity():
                raise ConfigError(
                    f"{self.spec.source}: describes other trials than the sweep in {self.store.root} (base, set, "
                    "space, sampler, objectives, cost or quality changed); only n_trials and resources may change "
                    "on --resume. Start a new sweep with another --out, or --force to replace it")
            self.cost = CostSpec(**header["cost"])
            self.records = state.trials
            if state.torn_line:
                self.log("journal: ignored a torn last line (the sweep died while writing it)")
        else:
            self.cost = self._cost()
        executor = self._executor()
        try:
            header = {"identity": self.spec.identity(), "name": self.spec.name, "spec": self.spec.as_dict(),
                      "cost": dataclasses.asdict(self.cost), "created_utc": now_utc()}
            if self.resume:
                self.store.journal.append({"event": "resume", "executor": executor.describe(),
                                           "n_trials": self.spec.sampler.n_trials})
                for record in self.records.values():
                    if record.status == "running":
                        self.store.journal.append({"event": "interrupted", "trial": record.trial_id,
                                                   "attempt": record.attempts})
                        record.status = "asked"
                        record.interrupted += 1
            else:
                self.store.create(self.spec.text, {**header, "executor": executor.describe()}, self.force)
            self.executor_info = executor.describe()
            with _sigterm_as_interrupt():
                self._loop(executor)
        finally:
            executor.shutdown()
        return self.finish()

    # ------------------------------------------------------------------ loop
    def _loop(self, executor: Any) -> None:
        spec = self.spec
        study = rebuild_study(spec, self.records)
        distributions = spec.distributions()
        queue = [r for r in self.records.values() if not r.final]
        done_before = sum(r.final for r in self.records.values())
        if done_before:
            self.log(f"resuming: {done_before} finished trials kept, {len(queue)} to rerun")
        while True:
            while executor.in_flight() < executor.capacity:
                if queue:
                    record = queue.pop(0)
                elif len(self.records) < spec.sampler.n_trials:
                    record = self._ask(study, distributions)
                    if record.final:
                        continue
                else:
                    break
                self._submit(executor, record)
            if executor.in_flight() == 0:
                break
            for outcome in executor.poll(1.0):
                retry = self._finish_attempt(study, outcome)
                if retry is not None:
                    queue.insert(0, retry)
                self.write_summary()

    def _ask(self, study: Any, distributions: dict[str, Any]) -> TrialRecord:
        trial = study.ask(distributions)
        trial_id = len(self.records)
        if trial.number != trial_id:
            raise ArtifactError(f"optuna trial number {trial.number} != sweep trial id {trial_id}")
        frozen = study.get_trials(deepcopy=False)[trial.number]
        record = TrialRecord(trial_id, dict(trial.params), _json_safe(dict(frozen.system_attrs)))
        self.records[trial_id] = record
        self.store.journal.append({"event": "ask", "trial": trial_id, "params": record.params,
                                   "system_attrs": record.system_attrs})
        twin = next((r for r in self.records.values() if r.status == "done" and r.params == record.params
                     and r.duplicate_of is None), None)
        if twin is not None:  # the sampler proposed a finished configuration again: reuse its result
            record.status, record.values, record.result, record.duplicate_of = "done", twin.values, twin.result, \
                twin.trial_id
            self.store.journal.append({"event": "done", "trial": trial_id, "attempt": 0, "values": twin.values,
                                       "result": twin.result, "duplicate_of": twin.trial_id})
            study.tell(trial_id, twin.values)
            self.log(f"trial {trial_name(trial_id)}: same configuration as trial {trial_name(twin.trial_id)}; "
                     "result reused")
        return record

    def _submit(self, executor: Any, record: TrialRecord) -> None:
        record.attempts += 1
        record.status = "running"
        self.store.clear_trial(record.trial_id)
        task = TrialTask(sweep_dir=str(self.store.root), trial_id=record.trial_id, attempt=record.attempts,
                         params=record.params, config=self.spec.trial_config(record.params),
                         cost=dataclasses.asdict(self.cost), max_events=self.spec.max_events,
                         num_cpus=self.spec.resources.num_cpus, family=self.spec.family)
        pid = executor.submit(task)
        self.store.journal.append({"event": "start", "trial": record.trial_id, "attempt": record.attempts,
                                   "executor": executor.kind, **({"pid": pid} if pid else {})})
        params = ", ".join(f"{k}={v}" for k, v in record.params.items())
        again = f" (attempt {record.attempts})" if record.attempts > 1 else ""
        self.log(f"trial {trial_name(record.trial_id)} started{again}: {params}")

    def _finish_attempt(self, study: Any, outcome: Any) -> TrialRecord | None:
        """Journal and tell one outcome; returns the record when the trial is to be retried."""
        from optuna.trial import TrialState

        record = self.records[outcome.task.trial_id]
        name = trial_name(record.trial_id)
        if outcome.kind == "lost":
            record.lost.append({"attempt": record.attempts, "reason": outcome.reason})
            self.store.journal.append({"event": "lost", "trial": record.trial_id, "attempt": record.attempts,
                                       "reason": outcome.reason})
            self.store.running_file(record.trial_id).unlink(missing_ok=True)
            if len(record.lost) <= self.spec.resources.max_retries:
                record.status = "asked"
                self.log(f"trial {name}: worker lost ({outcome.reason}); retrying "
                         f"({len(record.lost)} of {self.spec.resources.max_retries} retries)")
                return record
            error = f"worker lost {len(record.lost)} times; last: {outcome.reason}"
            result = None
        elif outcome.kind == "timeout":
            error, result = f"timeout: {outcome.reason}", None
        else:
            result = dict(outcome.result or {})
            error = None if result.get("status") == "done" else result.get("error") or "failed without a message"
            if error is None:
                values = _objective_values(self.spec, result.get("metrics", {}))
                if isinstance(values, str):
                    error = values
                else:
                    record.status, record.values, record.result = "done", values, result
                    self.store.journal.append({"event": "done", "trial": record.trial_id,
                                               "attempt": record.attempts, "values": values, "result": result})
                    study.tell(record.trial_id, values)
                    self.log(f"trial {name} done in {result.get('wall_s', 0):.1f} s: "
                             f"{_format_metrics(self.spec, result['metrics'])}")
                    return None
        if result is None:  # killed by timeout or lost too often: the trial could not record its failure itself
            self.store.running_file(record.trial_id).unlink(missing_ok=True)
            self._record_failure(outcome.task, error)
        record.status, record.error, record.result = "failed", error, result
        self.store.journal.append({"event": "failed", "trial": record.trial_id, "attempt": record.attempts,
                                   "error": error, "result": result})
        study.tell(record.trial_id, state=TrialState.FAIL)
        self.log(f"trial {name} FAILED: {error}")
        return None

    def _record_failure(self, task: TrialTask, error: str) -> None:
        from aeforge.sweep.trial import record_result

        try:
            record_result(task, {"status": "failed", "error": error, "metrics": {}, "stage_s": {}})
        except Exception as failure:  # the journal has the error either way
            self.log(f"trial {trial_name(task.trial_id)}: could not write its failure record: {failure}")

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        from aeforge.sweep.pareto import pareto_front

        spec = self.spec
        done = [r for r in self.records.values() if r.status == "done" and r.duplicate_of is None]
        front_index = pareto_front([r.values for r in done], spec.directions) if done else []
        front = [done[i].trial_id for i in front_index]
        first = done[0].result.get("metrics", {}) if done else {}
        return {
            "schema": 1,
            "name": spec.name,
            "source": spec.source,
            "identity": spec.identity(),
            "spec": spec.as_dict(),
            "cost": dataclasses.asdict(self.cost),
            "sources": {"lut": first.get("lut_source"), "energy_j": first.get("energy_source")},
            "family": spec.family,
            "objectives": list(spec.objectives),
            "directions": list(spec.directions),
            "objective_descriptions": {name: spec.adapter.objectives[name].description for name in spec.objectives},
            "quality_note": spec.adapter.quality_note,
            "executor": getattr(self, "executor_info", None),
            "updated_utc": now_utc(),
            "wall_s": round(time.perf_counter() - self.started, 2),
            "counts": {
                "n_trials": spec.sampler.n_trials,
                "asked": len(self.records),
                "done": sum(r.status == "done" for r in self.records.values()),
                "failed": sum(r.status == "failed" for r in self.records.values()),
                "unfinished": sum(not r.final for r in self.records.values()),
                "lost_workers": sum(len(r.lost) for r in self.records.values()),
                "duplicates": sum(r.duplicate_of is not None for r in self.records.values()),
            },
            "front": front,
            "trials": [r.as_dict() for r in self.records.values()],
        }

    def write_summary(self) -> dict[str, Any]:
        from aeforge.artifact import write_json_atomic

        summary = self.summary()
        write_json_atomic(self.store.path(SUMMARY_NAME), summary)
        return summary

    def finish(self) -> dict[str, Any]:
        from aeforge.sweep.report import write_report

        summary = self.write_summary()
        write_report(self.store.root, summary)
        summary["report"] = str(self.store.path(REPORT_NAME))
        return summary


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (main thread only), so running trials are stopped on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep(spec: SweepSpec, out: str | Path, **options: Any) -> dict[str, Any]:
    """Run or resume a sweep (see :class:`SweepRun` for the options); returns the summary."""
    return SweepRun(spec, out, **options).run()
