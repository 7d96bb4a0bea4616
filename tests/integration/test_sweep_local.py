"""``aeforge sweep`` end to end on the local process pool: trials, front, report, failures, resume, lost workers.

Training is scaled down in the sweep file (2+1 epochs on 3000 synthetic events, a small encoder), so a trial
takes seconds plus its hardware cost; Yosys is used for LUT/FF when it is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aeforge.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = """\
name: tiny
base: econt.yaml
set:
  train.float_epochs: 2
  train.qat_epochs: 1
  data.synthetic.n_events: 3000
  model.filters: 2
  model.latent_dim: 4
space:
  quant.weight.bits: [5, 6]
  quant.latent.bits: [3, 9]
sampler: {name: grid, seed: 0}
objectives: [emd, lut, energy_j, bytes]
cost: {synth: auto, energy: mac, verify_n: 200}
quality: {max_events: 500}
resources: {num_cpus: 1, max_retries: 1}
"""

NO_RTL = TINY.replace("synth: auto", "synth: none, rtl: false")
"""For the tests of scheduling (failures, lost workers, retries): trials cost by the tool-free estimate, no RTL
generated or simulated (the RTL, Yosys and verification of a trial are the end-to-end test's)."""


def write_sweep(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    root = tmp_path_factory.mktemp("sweep")
    spec = write_sweep(root / "tiny.yaml", TINY)
    out = root / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--workers", "2", "--quiet"])
    return spec, out, code


def test_local_sweep_end_to_end(tiny_sweep: tuple[Path, Path, int]) -> None:
    _spec, out, code = tiny_sweep
    assert code == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["counts"]["done"] == 4 and summary["counts"]["failed"] == 0
    assert summary["executor"]["kind"] == "local" and summary["executor"]["workers"] == 2
    assert summary["objectives"] == ["emd", "lut", "energy_j", "bytes"]
    params = sorted((t["params"]["quant.weight.bits"], t["params"]["quant.latent.bits"]) for t in summary["trials"])
    assert params == [(5, 3), (5, 9), (6, 3), (6, 9)]  # the whole grid, each point once
    yosys = shutil.which("yosys") is not None
    assert summary["sources"]["lut"] == ("yosys xc7" if yosys else "ESTIMATE (tool-free, no synthesis)")
    for trial in summary["trials"]:
        metrics = trial["metrics"]
        assert metrics["bit_exact"] is True
        assert metrics["bytes"] == trial["params"]["quant.latent.bits"] * 4 / 8
        assert metrics["emd"] > 0 and metrics["lut"] > 0 and metrics["energy_j"] > 0
        assert trial["values"] == [metrics[o] for o in summary["objectives"]]
        assert trial["pid"] != os.getpid()  # each trial ran in its own process
        run = out / "trials" / f"{trial['trial']:04d}"
        card = json.loads((run / "card.json").read_text())
        assert card["kind"] == "train"
        assert card["metrics"]["sweep_trial"]["params"] == trial["params"]
        assert card["metrics"]["sweep_trial"]["metrics"]["lut"] == metrics["lut"]
        assert {"trial.json", "model_qat.pt", "history.json"} <= set(card["files"])
        assert (run / "qonnx" / "card.json").is_file() and (run / "rtl" / "card.json").is_file()
        assert card["config"]["quant"]["latent"].startswith(f"ap_ufixed<{trial['params']['quant.latent.bits']},1,")
    # the front: non-dominated among the finished trials, recomputed here by brute force
    done = {t["trial"]: t["values"] for t in summary["trials"]}
    expected = [i for i, p in done.items()
                if not any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in done.values())]
    assert summary["front"] == expected and expected
    report = (out / "report.html").read_text()
    assert "Pareto front" in report and 'src="pareto.png"' in report
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    for trial_id in summary["front"]:
        assert f'trials/{trial_id:04d}/card.json' in report
    assert not list((out / "running").iterdir())


def test_resume_reruns_only_the_interrupted_trial(tiny_sweep: tuple[Path, Path, int], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec, out, code = tiny_sweep
    assert code == 0
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    events = journal(crashed)
    victim = 2
    # the sweep "died" while trial 2 was running: its done event never made it to the journal
    kept = [e for e in events if not (e["event"] == "done" and e["trial"] == victim)]
    (crashed / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    (crashed / "sweep.json").unlink()
    before = {i: (crashed / "trials" / f"{i:04d}" / "card.json").read_bytes() for i in range(4) if i != victim}

    assert main(["sweep", str(spec), "--out", str(crashed), "--resume"]) == 0
    output = capsys.readouterr().out
    assert "resuming: 3 finished trials kept, 1 to rerun" in output
    new_events = journal(crashed)[len(kept):]
    assert [e["event"] for e in new_events] == ["resume", "interrupted", "start", "done"]
    assert {e.get("trial") for e in new_events if "trial" in e} == {victim}
    assert new_events[2]["attempt"] == 2
    for i, card in before.items():  # finished trials were not rerun
        assert (crashed / "trials" / f"{i:04d}" / "card.json").read_bytes() == card
    summary = json.loads((crashed / "sweep.json").read_text())
    assert summary["counts"]["done"] == 4 and summary["counts"]["asked"] == 4
    original = json.loads((out / "sweep.json").read_text())
    # same configuration, same seeds: the rerun trial reproduces its metrics
    assert summary["trials"][victim]["params"] == original["trials"][victim]["params"]
    assert summary["trials"][victim]["metrics"]["emd"] == pytest.approx(original["trials"][victim]["metrics"]["emd"])

    # nothing left to do: a second resume runs no trial
    assert main(["sweep", str(spec), "--out", str(crashed), "--resume", "--quiet"]) == 0
    assert [e["event"] for e in journal(crashed)[len(kept) + len(new_events):]] == ["resume"]


def test_resume_refuses_a_changed_space_and_existing_dirs(tiny_sweep: tuple[Path, Path, int], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec, out, _code = tiny_sweep
    changed = write_sweep(tmp_path / "changed.yaml", TINY.replace("[5, 6]", "[4, 6]"))
    size = (out / "journal.jsonl").stat().st_size
    assert main(["sweep", str(changed), "--out", str(out), "--resume"]) == 1
    assert "describes other trials than the sweep" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--out", str(out)]) == 1
    assert "pass --resume to continue it or --force" in capsys.readouterr().err
    assert (out / "journal.jsonl").stat().st_size == size  # nothing written


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = NO_RTL.replace("  quant.weight.bits: [5, 6]\n  quant.latent.bits: [3, 9]\n",
                          f"  data.source: [synthetic, {tmp_path / 'missing.csv'}]\n")
    spec = write_sweep(tmp_path / "fail.yaml", text)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "FAILED: train: data.source:" in printed
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["counts"] == {**summary["counts"], "done": 1, "failed": 1, "unfinished": 0}
    failed = next(t for t in summary["trials"] if t["status"] == "failed")
    assert "missing.csv: file not found" in failed["error"] and failed["attempts"] == 1  # errors are not retried
    run = out / "trials" / f"{failed['trial']:04d}"
    card = json.loads((run / "card.json").read_text())
    assert card["kind"] == "sweep-trial" and card["metrics"]["sweep_trial"]["status"] == "failed"
    assert "file not found" in (run / "error.txt").read_text()
    assert summary["sources"]["lut"].startswith("ESTIMATE")
    done = next(t for t in summary["trials"] if t["status"] == "done")
    assert done["metrics"]["lut_source"] == "ESTIMATE (tool-free, no RTL generated)" and done["metrics"]["lut"] > 0
    assert done["metrics"]["bit_exact"] is True and not (out / "trials" / f"{done['trial']:04d}" / "rtl").exists()
    assert summary["front"] == [t["trial"] for t in summary["trials"] if t["status"] == "done"]
    assert "Failed trials (1)" in (out / "report.html").read_text()


def kill_first_trial_process(out: Path, killed: list[int], stop: threading.Event) -> None:
    """Wait for a trial's running file, SIGKILL the process named in it (once)."""
    running = out / "running"
    while not stop.is_set():
        for path in sorted(running.glob("*.json")) if running.is_dir() else []:
            try:
                info = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if info["pid"] != os.getpid():
                time.sleep(1.0)  # let it get into the trial
                os.kill(info["pid"], signal.SIGKILL)
                killed.append(info["pid"])
                return
        time.sleep(0.05)


def run_with_one_kill(argv: list[str], out: Path) -> tuple[int, list[int]]:
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_first_trial_process, args=(out, killed, stop), daemon=True)
    killer.start()
    try:
        code = main(argv)
    finally:
        stop.set()
        killer.join(timeout=5)
    return code, killed


def test_local_lost_worker_is_retried(tmp_path: Path) -> None:
    text = NO_RTL.replace("  quant.latent.bits: [3, 9]\n", "").replace("[5, 6]", "[6]")
    spec = write_sweep(tmp_path / "one.yaml", text)
    out = tmp_path / "out"
    code, killed = run_with_one_kill(["sweep", str(spec), "--out", str(out), "--quiet"], out)
    assert code == 0 and len(killed) == 1
    events = journal(out)
    lost = [e for e in events if e["event"] == "lost"]
    assert len(lost) == 1 and lost[0]["attempt"] == 1 and "SIGKILL" in lost[0]["reason"]
    starts = [e for e in events if e["event"] == "start"]
    assert [e["attempt"] for e in starts] == [1, 2] and starts[0]["pid"] == killed[0]
    summary = json.loads((out / "sweep.json").read_text())
    trial = summary["trials"][0]
    assert trial["status"] == "done" and trial["attempts"] == 2 and trial["pid"] != killed[0]
    assert summary["counts"]["lost_workers"] == 1


def test_trial_over_its_timeout_is_killed_and_recorded(tmp_path: Path) -> None:
    text = TINY.replace("  quant.latent.bits: [3, 9]\n", "").replace("[5, 6]", "[6]").replace(
        "max_retries: 1}", "max_retries: 1, timeout_s: 2}")
    spec = write_sweep(tmp_path / "slow.yaml", text)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 1  # no trial finished
    summary = json.loads((out / "sweep.json").read_text())
    trial = summary["trials"][0]
    assert trial["status"] == "failed" and trial["attempts"] == 1  # a timeout is not retried
    assert trial["error"] == "timeout: timed out after 2 s"
    run = out / "trials" / "0000"
    assert json.loads((run / "card.json").read_text())["metrics"]["sweep_trial"]["status"] == "failed"
    assert (run / "error.txt").read_text().startswith("timeout: timed out after 2 s")
    assert not list((out / "running").iterdir())
