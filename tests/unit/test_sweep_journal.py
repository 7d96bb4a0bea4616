"""The sweep journal: replay into trial states, torn lines, and rebuilding the Optuna study on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aeforge.errors import ArtifactError
from aeforge.sweep.driver import rebuild_study
from aeforge.sweep.space import parse_sweep
from aeforge.sweep.store import Journal, SweepStore, replay

SPEC = parse_sweep("space:\n  quant.weight.bits: [4, 6]\n  quant.latent.bits: [3, 9]\nobjectives: [emd, lut]\n")


def events() -> list[dict]:
    return [
        {"event": "sweep", "identity": "abc", "cost": {}},
        {"event": "ask", "trial": 0, "params": {"quant.weight.bits": 4, "quant.latent.bits": 3}},
        {"event": "start", "trial": 0, "attempt": 1},
        {"event": "ask", "trial": 1, "params": {"quant.weight.bits": 6, "quant.latent.bits": 3}},
        {"event": "start", "trial": 1, "attempt": 1},
        {"event": "done", "trial": 0, "attempt": 1, "values": [1.5, 300.0], "result": {"metrics": {"emd": 1.5}}},
        {"event": "lost", "trial": 1, "attempt": 1, "reason": "killed"},
        {"event": "start", "trial": 1, "attempt": 2},
        {"event": "ask", "trial": 2, "params": {"quant.weight.bits": 4, "quant.latent.bits": 9}},
        {"event": "start", "trial": 2, "attempt": 1},
        {"event": "failed", "trial": 2, "attempt": 1, "error": "train: boom"},
        {"event": "ask", "trial": 3, "params": {"quant.weight.bits": 6, "quant.latent.bits": 9}},
    ]


def test_replay_folds_events_into_states() -> None:
    state = replay(events())
    assert state.header == {"event": "sweep", "identity": "abc", "cost": {}}
    t0, t1, t2, t3 = (state.trials[i] for i in range(4))
    assert (t0.status, t0.values, t0.attempts) == ("done", [1.5, 300.0], 1)
    assert (t1.status, t1.attempts, t1.lost) == ("running", 2, [{"attempt": 1, "reason": "killed"}])
    assert (t2.status, t2.error) == ("failed", "train: boom")
    assert (t3.status, t3.attempts) == ("asked", 0)
    assert [t.trial_id for t in state.unfinished()] == [1, 3]  # only these are run again on resume


def test_interrupted_attempts_are_not_lost_workers() -> None:
    state = replay([*events(), {"event": "interrupted", "trial": 1, "attempt": 2}])
    assert state.trials[1].status == "asked" and state.trials[1].interrupted == 1 and len(state.trials[1].lost) == 1


def test_journal_round_trip_and_torn_last_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    for event in events():
        journal.append(event)
    with open(journal.path, "a", encoding="utf-8") as stream:
        stream.write('{"event": "done", "trial": 1, "val')  # the sweep died mid-write
    state = journal.state()
    assert state.torn_line and state.trials[1].status == "running"
    lines = journal.path.read_text().splitlines()
    assert all("time_utc" in json.loads(line) for line in lines[:-1])
    # a corrupt line that is not the last one is an error, not silently skipped
    journal.path.write_text("\n".join([lines[0], "garbage", *lines[1:-1]]) + "\n")
    with pytest.raises(ArtifactError, match=r"journal.jsonl:2: corrupt journal line"):
        journal.state()


def test_rebuilt_study_keeps_numbers_and_never_repeats_finished_grid_points() -> None:
    # a real grid study: ask two trials, finish one, leave one running; record what the journal would hold
    import optuna
    from optuna.trial import TrialState

    from aeforge.sweep.driver import make_sampler

    study = optuna.create_study(directions=["minimize"] * 2, sampler=make_sampler(SPEC))
    asked = [study.ask(SPEC.distributions()) for _ in range(2)]
    study.tell(asked[0], [1.0, 2.0])
    journal = [{"event": "sweep", "identity": SPEC.identity()}]
    for trial in asked:
        frozen = study.get_trials(deepcopy=False)[trial.number]
        journal.append({"event": "ask", "trial": trial.number, "params": trial.params,
                        "system_attrs": dict(frozen.system_attrs)})
    journal.append({"event": "done", "trial": 0, "values": [1.0, 2.0], "result": {}})
    journal.append({"event": "start", "trial": 1, "attempt": 1})

    rebuilt = rebuild_study(SPEC, replay(journal).trials)
    states = [t.state for t in rebuilt.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING]
    assert [t.params for t in rebuilt.get_trials()] == [t.params for t in asked]
    rebuilt.tell(1, [3.0, 4.0])  # the retried trial is told under its own number
    fresh = [rebuilt.ask(SPEC.distributions()) for _ in range(2)]
    assert [t.number for t in fresh] == [2, 3]
    seen = [tuple(sorted(t.params.items())) for t in [*asked, *fresh]]
    assert len(set(seen)) == 4  # the whole 2x2 grid, each point once


def test_store_refuses_to_clobber(tmp_path: Path) -> None:
    from aeforge.errors import ConfigError

    SweepStore(tmp_path / "new").check(resume=False, force=False)  # nothing there: fine
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not an aeforge sweep"):
        SweepStore(other).check(resume=False, force=True)
    with pytest.raises(ArtifactError, match="no sweep to resume"):
        SweepStore(other).check(resume=True, force=False)
    store = SweepStore(tmp_path / "sweep")
    store.create("space: {}\n", {"identity": "x"}, force=False)
    with pytest.raises(ArtifactError, match="pass --resume to continue it or --force"):
        store.check(resume=False, force=False)
    store.check(resume=True, force=False)
    store.check(resume=False, force=True)
    with pytest.raises(ConfigError, match="not both"):
        store.check(resume=True, force=True)
