"""Sweep journal and executor, engine cache under concurrent writers, subprocess hygiene, reports."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aeforge.edge.engine_cache import BuildFlags, DeviceIdentity, EngineCache
from aeforge.proc import descendants, kill_tree, run_tool
from aeforge.sweep import executor as executor_module
from aeforge.sweep.executor import LocalExecutor
from aeforge.sweep.space import ResourceSpec
from aeforge.sweep.store import Journal
from aeforge.sweep.trial import TrialTask

ORIN = DeviceIdentity("10.3.0", "Orin", "8.7")
ONNX = "ab" * 32


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    if state.is_file():  # a zombie (killed, not yet reaped by its parent) counts as dead
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- sweep journal


def test_resume_after_a_torn_line_does_not_poison_the_next_resume(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"event": "sweep", "name": "s"})
    journal.append({"event": "ask", "trial": 0, "params": {"a": 1}})
    with open(journal.path, "a", encoding="utf-8") as stream:
        stream.write('{"event": "start", "trial": 0, "att')  # died mid-write
    events, torn = journal.read()
    assert torn and len(events) == 2
    journal.append({"event": "start", "trial": 0, "attempt": 1})  # the first resume
    journal.append({"event": "done", "trial": 0, "values": [1.0]})
    events, torn = journal.read()  # the second resume: no corrupt line in the middle
    assert not torn and [e["event"] for e in events] == ["sweep", "ask", "start", "done"]
    assert journal.state().trials[0].status == "done"


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.path.write_text('{"event": "sweep"}\n{"event": "ask", "trial": 3, "params": {}}')
    assert journal.repair()
    journal.append({"event": "start", "trial": 3, "attempt": 1})
    assert [e["event"] for e in journal.read()[0]] == ["sweep", "ask", "start"]
    only_torn = Journal(tmp_path / "torn.jsonl")
    only_torn.path.write_text('{"event": "sw')
    assert only_torn.repair() and only_torn.path.read_text() == ""


# --------------------------------------------------------------------------- sweep executor


def _task(tmp_path: Path, trial_id: int = 1) -> TrialTask:
    return TrialTask(sweep_dir=str(tmp_path), trial_id=trial_id, attempt=1, params={}, config={}, cost={},
                     max_events=1)


def _child_that_spawns_a_tool(task: TrialTask, connection: Any) -> None:
    """A trial that starts a long 'tool' in a session of its own, then hangs."""
    tool = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    Path(task.sweep_dir, "tool.pid").write_text(str(tool.pid))
    time.sleep(120)


def _child_that_reports(task: TrialTask, connection: Any) -> None:
    connection.send({"trial": task.trial_id, "status": "done", "metrics": {"emd": 1.0}})
    connection.close()


def _drain(executor: LocalExecutor, timeout_s: float = 60.0) -> list[Any]:
    deadline, outcomes = time.monotonic() + timeout_s, []
    while executor.in_flight() and time.monotonic() < deadline:
        outcomes += executor.poll(0.2)
    return outcomes


def test_timed_out_trial_is_killed_with_its_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_child_main", _child_that_spawns_a_tool)
    executor = LocalExecutor(workers=1, resources=ResourceSpec(timeout_s=3.0))
    pid = executor.submit(_task(tmp_path))
    assert pid is not None
    try:
        outcomes = _drain(executor)
        tool_pid = int((tmp_path / "tool.pid").read_text())
    finally:
        executor.shutdown()
    assert [o.kind for o in outcomes] == ["timeout"] and "timed out after 3 s" in outcomes[0].reason
    assert _wait_dead(tool_pid), "the trial's tool outlived the timed-out trial"


def test_trial_result_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_child_main", _child_that_reports)
    executor = LocalExecutor(workers=1)
    executor.submit(_task(tmp_path, 7))
    outcomes = _drain(executor)
    assert [(o.kind, o.result["trial"]) for o in outcomes] == [("result", 7)]


# --------------------------------------------------------------------------- subprocesses


def test_run_tool_kills_the_whole_group_on_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; " \
             f"time.sleep(120)']); open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool([sys.executable, "-c", script], timeout_s=2.0)
    assert time.monotonic() - start < 15
    assert _wait_dead(int(pid_file.read_text()))


def test_run_tool_returns_output_and_status() -> None:
    done = run_tool([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], timeout_s=30)
    assert done.returncode == 3 and done.stdout.strip() == "out"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="descendants are found through /proc (Linux)")
def test_kill_tree_reaches_descendants_in_other_sessions() -> None:
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
            "start_new_session=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not descendants(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        children = descendants(parent.pid)
        assert children
        kill_tree(parent.pid)
        parent.wait(timeout=10)
        assert all(_wait_dead(child) for child in children)
    finally:
        parent.kill()


# --------------------------------------------------------------------------- engine cache


def _writer(root: str, worker: int, rounds: int, queue: Any) -> None:
    cache = EngineCache(root)
    flags = BuildFlags()
    try:
        for index in range(rounds):
            cache.store(ORIN, ONNX, flags, f"engine of worker {worker} round {index}".encode() * 100)
            loaded = cache.load(ORIN, ONNX, flags)
            assert loaded is None or loaded.startswith(b"engine of worker ")
        queue.put(None)
    except BaseException as error:
        queue.put(f"{type(error).__name__}: {error}")


def test_concurrent_engine_cache_writers_and_readers(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    queue = context.Queue()
    writers = [context.Process(target=_writer, args=(str(tmp_path), worker, 25, queue)) for worker in range(3)]
    for process in writers:
        process.start()
    cache, flags, misses, reads = EngineCache(tmp_path), BuildFlags(), 0, 0
    while any(p.is_alive() for p in writers):
        loaded = cache.load(ORIN, ONNX, flags)  # never a half entry: old, none, or new
        misses, reads = misses + (loaded is None), reads + 1
    for process in writers:
        process.join(timeout=30)
    assert [queue.get(timeout=10) for _ in writers] == [None, None, None]
    assert cache.load(ORIN, ONNX, flags).startswith(b"engine of worker ")
    assert [p.name for p in (tmp_path / "engines").iterdir()] == [cache.entry_dir(cache.lookup(
        ORIN, ONNX, flags).key).name]  # no staging or retired folders left


def test_threads_storing_the_same_key(tmp_path: Path) -> None:
    cache, errors = EngineCache(tmp_path), []

    def store(worker: int) -> None:
        try:
            for index in range(20):
                cache.store(ORIN, ONNX, BuildFlags(), f"{worker}-{index}".encode())
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=store, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and cache.load(ORIN, ONNX, BuildFlags()) is not None


# --------------------------------------------------------------------------- reports


def _sweep_summary() -> dict[str, Any]:
    trial = {"trial": 0, "status": "done", "params": {"quant.weight.bits": 4}, "values": [1.5, 100.0],
             "metrics": {"emd": 1.5, "lut": 100, "bit_exact": True}, "duplicate_of": None, "wall_s": 3.0,
             "attempts": 1, "lost": [{"attempt": 1, "reason": "killed <SIGKILL>"}], "error": None}
    failed = {**trial, "trial": 1, "status": "failed", "values": None, "metrics": {}, "lost": [],
              "error": "worker: <b>boom</b>"}
    return {"name": "s<1>", "objectives": ["emd", "lut"], "trials": [trial, failed], "front": [0],
            "spec": {"space": {"quant.weight.bits": [4, 8]}, "base": None, "set": {},
                     "sampler": {"name": "grid", "seed": 0}},
            "counts": {"n_trials": 2, "done": 1, "failed": 1, "unfinished": 0, "lost_workers": 1, "duplicates": 0},
            "executor": {"kind": "local"}, "source": "sweep.yaml", "wall_s": 4.0,
            "sources": {"lut": "Yosys", "energy_j": "estimate"}}


def test_sweep_report_lists_front_failures_and_lost_workers_escaped(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'aeforge[train]')")
    from aeforge.sweep.report import write_report

    page = write_report(tmp_path, _sweep_summary()).read_text()
    for text in ("Pareto front (1 of 1 finished trials)", "Failed trials (1)", "Lost workers (retried)",
                 "&lt;b&gt;boom&lt;/b&gt;", "killed &lt;SIGKILL&gt;", "s&lt;1&gt;"):
        assert text in page, text
    assert "<b>boom" not in page and (tmp_path / "pareto.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.png", "report.html"]


def test_demo_report_verification_section_has_no_brevitas_row() -> None:
    from aeforge.benchmarks.report import _verification_section

    fidelity = {"n": 10, "exact": 10, "max_lsb": 0.0, "first_mismatch": None}
    section = _verification_section({"n": 10, "targets": {"qonnx": fidelity, "hls": fidelity},
                                     "skipped": {"rtl": "no <RTL> project"}, "bit_exact": True, "wall_time_s": 1.0})
    assert "<b>bit-exact</b>" in section and "qonnx" in section and "brevitas" not in section
    assert "no &lt;RTL&gt; project" in section
    assert "Not run: g++ missing." in _verification_section({"not_run": "g++ missing"})


def test_run_report_states_why_energy_was_not_measured_once(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'aeforge[train]')")
    from aeforge.benchmarks.run_report import write_run_report

    run = tmp_path / "run"
    (run / "bench").mkdir(parents=True)
    (run / "card.json").write_text(json.dumps({"kind": "train", "metrics": {}, "files": {}}))
    why = "no power meter here: RAPL needs /sys/class/powercap (x86 Linux) " * 3
    for batch in (1, 8, 64):
        result = {"runner": "ort", "batch_size": batch, "scenario": "offline", "valid": True, "p50_s": 1e-4,
                  "p99_s": 2e-4, "throughput_per_s": 1e4, "energy_j_per_inference": None,
                  "latency": {"latencies_s": []}, "energy": {"valid": False, "invalid_reasons": [why]}}
        (run / "bench" / f"2026_ort_b{batch}.json").write_text(json.dumps(result))
    page = write_run_report(run).read_text()
    assert page.count("RAPL needs") == 3  # the reason once (it repeats itself three times)
    assert page.count("not measured [1]") == 3 and "[1] energy not measured" in page
