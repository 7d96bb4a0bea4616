"""The sweep driver with real Optuna samplers and an in-process executor (no training): ask/tell, duplicate
configurations, lost-worker retries, interruption and resume, sweep.json and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aeforge.sweep.driver import SweepRun
from aeforge.sweep.executor import Outcome
from aeforge.sweep.space import parse_sweep
from aeforge.sweep.trial import TrialTask

SWEEP = """\
space:
  quant.weight.bits: [4, 6, 8]
  quant.latent.bits: [3, 9]
sampler: {sampler}
objectives: [emd, lut]
cost: {{synth: none, energy: mac}}
resources: {{max_retries: 1}}
"""


def fake_metrics(params: dict[str, Any]) -> dict[str, Any]:
    weight, latent = params["quant.weight.bits"], params["quant.latent.bits"]
    return {"emd": 10.0 / (weight + latent), "lut": 100.0 * weight + latent, "energy_j": 1e-12 * weight,
            "bytes": latent * 2.0, "lut_source": "fake", "energy_source": "fake"}


class InlineExecutor:
    """Runs 'trials' in the test process: metrics from the parameters; scripted failures and lost workers."""

    kind = "inline"

    def __init__(self, lose: dict[int, int] | None = None, fail: set[int] | None = None,
                 interrupt_after: int | None = None) -> None:
        self.lose = dict(lose or {})  # trial id -> attempts to lose
        self.fail = fail or set()
        self.interrupt_after = interrupt_after
        self.pending: list[TrialTask] = []
        self.submitted: list[tuple[int, int]] = []
        self.capacity = 2

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.capacity}

    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, task: TrialTask) -> int | None:
        self.pending.append(task)
        self.submitted.append((task.trial_id, task.attempt))
        return None

    def poll(self, timeout_s: float) -> list[Outcome]:
        if self.interrupt_after is not None and len(self.submitted) > self.interrupt_after:
            raise KeyboardInterrupt
        outcomes = []
        for task in self.pending:
            if self.lose.get(task.trial_id, 0) >= task.attempt:
                outcomes.append(Outcome(task, "lost", reason="the trial process was killed (SIGKILL)"))
            elif task.trial_id in self.fail:
                outcomes.append(Outcome(task, "result", {"status": "failed", "error": "train: boom", "metrics": {}}))
            else:
                outcomes.append(Outcome(task, "result", {"status": "done", "metrics": fake_metrics(task.params),
                                                         "wall_s": 0.0, "dir": "x"}))
        self.pending = []
        return outcomes

    def shutdown(self) -> None:
        self.pending = []


def sweep(tmp_path: Path, sampler: str, executor: InlineExecutor, resume: bool = False) -> dict[str, Any]:
    spec = parse_sweep(SWEEP.format(sampler=sampler), source=str(tmp_path / "s.yaml"))
    return SweepRun(spec, tmp_path / "out", resume=resume, log=None, executor=executor).run()


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()]


def test_grid_sweep_tells_every_point_and_finds_the_front(tmp_path: Path) -> None:
    executor = InlineExecutor()
    summary = sweep(tmp_path, "grid", executor)
    assert summary["counts"]["done"] == 6 and len(executor.submitted) == 6
    points = {tuple(t["params"].values()) for t in summary["trials"]}
    assert len(points) == 6
    # emd falls and lut rises with the bits: the front is every latent-9 trial plus (4, 3)
    front = {(t["params"]["quant.weight.bits"], t["params"]["quant.latent.bits"])
             for t in summary["trials"] if t["trial"] in summary["front"]}
    assert front == {(4, 3), (4, 9), (6, 9), (8, 9)}
    on_disk = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert on_disk["front"] == summary["front"] and (tmp_path / "out" / "report.html").is_file()


def test_tpe_duplicates_are_reused_not_rerun(tmp_path: Path) -> None:
    executor = InlineExecutor()
    summary = sweep(tmp_path, "{name: tpe, n_trials: 10, seed: 1}", executor)
    counts = summary["counts"]
    assert counts["asked"] == 10 and counts["done"] == 10
    unique = {tuple(sorted(t["params"].items())) for t in summary["trials"]}
    assert len(executor.submitted) == len(unique) == 10 - counts["duplicates"]
    assert counts["duplicates"] >= 4  # 10 trials over 6 configurations
    for trial in summary["trials"]:
        if trial["duplicate_of"] is not None:
            twin = summary["trials"][trial["duplicate_of"]]
            assert twin["params"] == trial["params"] and twin["values"] == trial["values"]
            assert trial["trial"] not in summary["front"]


def test_random_sampler_over_a_range(tmp_path: Path) -> None:
    spec = parse_sweep(SWEEP.format(sampler="{name: random, n_trials: 5}").replace(
        "[4, 6, 8]", "{low: 4, high: 8}"), source="s.yaml")
    summary = SweepRun(spec, tmp_path / "out", log=None, executor=InlineExecutor()).run()
    assert summary["counts"]["asked"] == 5
    assert all(4 <= t["params"]["quant.weight.bits"] <= 8 for t in summary["trials"])


def test_lost_workers_are_retried_then_failed(tmp_path: Path) -> None:
    executor = InlineExecutor(lose={0: 1, 1: 2}, fail={2})  # max_retries 1: trial 0 recovers, trial 1 does not
    summary = sweep(tmp_path, "grid", executor)
    trials = summary["trials"]
    assert (trials[0]["status"], trials[0]["attempts"], len(trials[0]["lost"])) == ("done", 2, 1)
    assert (trials[1]["status"], trials[1]["attempts"]) == ("failed", 2)
    assert trials[1]["error"].startswith("worker lost 2 times")
    assert (trials[2]["status"], trials[2]["attempts"], trials[2]["error"]) == ("failed", 1, "train: boom")
    assert summary["counts"] == {**summary["counts"], "done": 4, "failed": 2, "lost_workers": 3}
    assert executor.submitted.count((0, 2)) == 1 and (2, 2) not in executor.submitted  # errors are not retried
    kinds = [e["event"] for e in events(tmp_path) if e.get("trial") == 1]
    assert kinds == ["ask", "start", "lost", "start", "lost", "failed"]


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path, "grid", InlineExecutor(interrupt_after=3))
    state = [e["event"] for e in events(tmp_path)]
    assert state.count("done") == 2 and state.count("start") == 4  # trials 2 and 3 were in flight
    executor = InlineExecutor()
    summary = sweep(tmp_path, "grid", executor, resume=True)
    assert executor.submitted == [(2, 2), (3, 2), (4, 1), (5, 1)]
    assert summary["counts"]["done"] == 6
    assert len({tuple(t["params"].values()) for t in summary["trials"]}) == 6  # no grid point twice
    resumed = [e for e in events(tmp_path) if e["event"] in ("resume", "interrupted")]
    assert [e["event"] for e in resumed] == ["resume", "interrupted", "interrupted"]
    assert summary["trials"][2]["lost"] == []  # an interrupted sweep is not a lost worker
