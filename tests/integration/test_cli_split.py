"""The split-computing verbs through the CLI: train, export split, export triton, serve tail, split run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("onnxruntime")
pytest.importorskip("tritonclient.grpc")

from aeforge.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """\
name: cli-tiny
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 3, encoder_channels: 8}
data: {source: fake, image_size: 32, max_samples: 64, fake_size: 64, fake_classes: 4}
train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 1}
"""


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_split")
    config = root / "tiny.yaml"
    config.write_text(CONFIG)
    run = root / "run"
    assert main(["train", str(config), "--out", str(run), "--set", "train.seed=2", "--quiet"]) == 0
    assert json.loads((run / "card.json").read_text())["kind"] == "split"
    assert main(["export", "split", str(run)]) == 0
    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read() if process.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


def test_train_refuses_an_existing_run_before_training(split_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = split_run.parent / "tiny.yaml"
    assert main(["train", str(config), "--out", str(split_run), "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_train_names_a_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(CONFIG.replace("split_after: layer1", "split_after: layer9"))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "split_after" in err and "layer9" in err
    assert not (tmp_path / "run").exists()


def _security(mode: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(serve tail options, split run options) for ``plain``, ``tls`` (with a token file) or ``curve``."""
    if mode == "tls":
        from tests.integration.test_split_secure import make_pki

        pki = make_pki(tmp_path / "pki")
        (tmp_path / "token").write_text("cli-token-0123456789abcdef\n")
        return (["--tls-cert", pki["server_cert"], "--tls-key", pki["server_key"], "--token-file",
                 str(tmp_path / "token")], ["--tls-ca", pki["ca"], "--token-file", str(tmp_path / "token")])
    if mode == "curve":
        from aeforge.edge.split.security import write_curve_keypair

        public, secret = write_curve_keypair(tmp_path / "keys", "server")
        return ["--curve-secret-key", str(secret)], ["--curve-server-key", str(public)]
    return [], []


@pytest.mark.parametrize(("transport", "security"), [("grpc", "plain"), ("tcp", "plain"), ("zmq", "plain"),
                                                     ("tcp", "tls"), ("zmq", "curve")])
def test_serve_tail_and_split_run_agree_with_the_full_model(split_run: Path, tmp_path: Path, transport: str,
                                                             security: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    from aeforge.edge.onnx_export import exact_session_options

    meta = json.loads((split_run / "split" / "split.json").read_text())
    images = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    port = _free_port()
    serve_options, run_options = _security(security, tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "aeforge", "serve", "tail", str(split_run), "--port", str(port),
         "--transport", transport, *serve_options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        if transport == "zmq":  # ZeroMQ connects lazily; wait for the server's banner instead of a TCP probe
            assert server.stdout is not None
            banner = server.stdout.readline()
            assert "serving" in banner and ("curve" in banner) == (security == "curve")
        else:
            _wait_listening(port, server)
        code = main(["split", "run", str(split_run), "--port", str(port), "--transport", transport,
                     "--input", str(tmp_path / "images.npy"), "--output", str(tmp_path / "logits.npy"),
                     "--compression", "zlib", *run_options])
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    full = ort.InferenceSession(str(split_run / "split" / "full.onnx"), exact_session_options(),
                                providers=["CPUExecutionProvider"])
    reference = full.run(None, {meta["input"]["name"]: images})[0]
    logits = np.load(tmp_path / "logits.npy")
    assert logits.shape == reference.shape
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    assert printed["predictions"] == reference.argmax(axis=1).tolist()
    assert printed["batch"] == 3 and printed["request_bytes"] > 0 and printed["total_s"] > 0


def test_split_run_refuses_wrong_image_shape(split_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 16, 16), dtype=np.float32))
    code = main(["split", "run", str(split_run), "--port", str(_free_port()), "--transport", "tcp",
                 "--input", str(tmp_path / "bad.npy")])
    assert code == 1
    assert "(3, 16, 16)" in capsys.readouterr().err


def test_serve_needs_an_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "tail", str(tmp_path)]) == 1
    assert "aeforge export split" in capsys.readouterr().err


def test_export_triton_writes_a_parseable_repository(split_run: Path, tmp_path: Path) -> None:
    assert main(["export", "triton", str(split_run), "--out", str(tmp_path / "repo"), "--max-batch", "16"]) == 0
    model_dir = tmp_path / "repo" / "aeforge_tail"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (split_run / "split" / "tail.onnx").read_bytes()
    assert "max_batch_size: 16" in (model_dir / "config.pbtxt").read_text()


def test_serve_tail_security_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused by name before anything is bound (a toy export; no training needed)."""
    from tests.integration.test_split_serve import make_split_artifact

    artifact = make_split_artifact(tmp_path / "split")
    (tmp_path / "token").write_text("short\n")
    cases = [
        (["--host", "0.0.0.0", "--token-env", "AEFORGE_CLI_TEST_TOKEN"], "--insecure"),
        (["--token-file", str(tmp_path / "token")], "too short"),
        (["--transport", "zmq", "--tls-cert", "c.pem"], "secured with CURVE"),
        (["--transport", "tcp", "--curve-secret-key", "k"], "CURVE secures the zmq transport only"),
        (["--tls-cert", "missing.pem", "--tls-key", "missing.pem"], "cannot load"),
    ]
    os.environ["AEFORGE_CLI_TEST_TOKEN"] = "cli-test-token-0123456789"
    try:
        for extra, needle in cases:
            assert main(["serve", "tail", str(artifact), "--port", "0", *extra]) == 1
            assert needle in capsys.readouterr().err, (extra, needle)
    finally:
        del os.environ["AEFORGE_CLI_TEST_TOKEN"]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    assert main(["split", "run", str(artifact), "--input", str(tmp_path / "x.npy"), "--host", "10.9.8.7"]) == 1
    assert "--insecure" in capsys.readouterr().err
