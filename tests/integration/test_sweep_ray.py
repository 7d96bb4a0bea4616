"""``aeforge sweep --ray ADDRESS`` against a real local Ray cluster that this module starts and stops.

The head runs as ``ray start --head --block`` in its own session; teardown stops exactly that process
group (never ``ray stop``, which would stop every Ray cluster on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aeforge.cli import main
from tests.conftest import ci_skip
from tests.integration.test_sweep_local import NO_RTL, TINY, journal, run_with_one_kill, write_sweep

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAY_CLI = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
FAST = TINY.replace("synth: auto", "synth: none")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A 2-CPU single-node Ray cluster; yields its address."""
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'aeforge[sweep]')")
    if not Path(RAY_CLI).is_file():
        ci_skip(f"the `ray` command line is not installed beside {sys.executable}")
    temp_dir = tempfile.mkdtemp(prefix="aeray", dir="/tmp")  # short: Ray's unix sockets live under it
    port = _free_port()
    log = open(Path(temp_dir) / "head.log", "w+b")  # noqa: SIM115 -- closed in the teardown
    head = subprocess.Popen(
        [RAY_CLI, "start", "--head", "--block", "--num-cpus", "2", "--port", str(port), "--disable-usage-stats",
         "--include-dashboard=false", "--temp-dir", temp_dir],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # Ray >= 2.52 turns token auth on when ~/.ray/auth_token exists, and ray.init(address=...) sends the
        # token only with RAY_AUTH_MODE=token set before Ray is imported: keep this loopback test cluster open.
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if head.poll() is not None:
                log.seek(0)
                ci_skip(f"`ray start --head` exited with {head.returncode}: {log.read().decode()[-2000:]}")
            try:
                ray.init(address=address, log_to_driver=False)
                break
            except Exception as error:  # not up yet
                if time.monotonic() > deadline:
                    log.seek(0)
                    ci_skip(f"Ray head at {address} did not come up in 90 s: {error}; "
                                f"log: {log.read().decode()[-2000:]}")
                time.sleep(0.5)
        assert ray.cluster_resources().get("CPU") == 2.0
        ray.shutdown()
        yield address
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)  # --block: stops the processes this head started
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                head.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(head.pid, signal.SIGKILL)  # anything of this session left behind
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_a_ray_cluster(ray_cluster: str, tmp_path: Path) -> None:
    spec = write_sweep(tmp_path / "ray.yaml", FAST.replace("quant.latent.bits: [3, 9]", "quant.latent.bits: [3]"))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--ray", ray_cluster, "--quiet"]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["executor"]["kind"] == "ray" and summary["executor"]["address"] == ray_cluster
    assert summary["executor"]["cluster_cpus"] == 2.0 and summary["executor"]["workers"] == 2
    assert summary["counts"]["done"] == 2 and summary["counts"]["lost_workers"] == 0
    pids = {t["pid"] for t in summary["trials"]}
    assert os.getpid() not in pids  # trials ran in Ray workers
    for trial in summary["trials"]:
        assert trial["metrics"]["bit_exact"] is True
        assert (out / "trials" / f"{trial['trial']:04d}" / "rtl" / "card.json").is_file()
    assert summary["front"] and (out / "report.html").is_file()
    assert all(e["executor"] == "ray" for e in journal(out) if e["event"] == "start")


def test_killed_ray_worker_is_retried(ray_cluster: str, tmp_path: Path) -> None:
    text = NO_RTL.replace("  quant.latent.bits: [3, 9]\n", "").replace("[5, 6]", "[6]")
    spec = write_sweep(tmp_path / "one.yaml", text)
    out = tmp_path / "out"
    code, killed = run_with_one_kill(["sweep", str(spec), "--out", str(out), "--ray", ray_cluster, "--quiet"], out)
    assert code == 0 and len(killed) == 1
    events = journal(out)
    lost = [e for e in events if e["event"] == "lost"]
    assert len(lost) == 1 and lost[0]["trial"] == 0 and lost[0]["attempt"] == 1
    assert "WorkerCrashedError" in lost[0]["reason"] or "died" in lost[0]["reason"].lower(), lost[0]["reason"]
    assert [e["attempt"] for e in events if e["event"] == "start"] == [1, 2]
    summary = json.loads((out / "sweep.json").read_text())
    trial = summary["trials"][0]
    assert trial["status"] == "done" and trial["attempts"] == 2 and trial["pid"] != killed[0]
    assert trial["lost"] == [{"attempt": 1, "reason": lost[0]["reason"]}]
    assert summary["counts"]["lost_workers"] == 1
    assert "Lost workers (retried)" in (out / "report.html").read_text()


def test_unreachable_ray_address_fails_fast_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="Ray not installed (pip install 'aeforge[sweep]')")
    spec = write_sweep(tmp_path / "ray.yaml", FAST)
    out = tmp_path / "out"
    start = time.monotonic()
    assert main(["sweep", str(spec), "--out", str(out), "--ray", f"127.0.0.1:{_free_port()}"]) == 1
    assert time.monotonic() - start < 30
    assert "no Ray cluster answers there" in capsys.readouterr().err
    assert not out.exists()
