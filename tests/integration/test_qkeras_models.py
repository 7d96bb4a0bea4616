"""QKeras models recorded with real QKeras (tests/fixtures/qkeras) through the CLI: import, hls4ml
C-simulation and da4ml RTL (Verilator) against QKeras's own ``model.predict``, bit for bit.

A target that is not exact FAILS (it is not skipped): the import's contract is that every hardware
target equals QKeras. Tests skip only when a tool is missing (hls4ml's C-sim needs g++, the RTL
path Verilator).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from aeforge.cli import main
from aeforge.hls.rtl import da4ml_available, why_verilator_unavailable
from tests.unit.test_qkeras_fixtures import FIXTURES, recorded

pytest.importorskip("h5py", reason="h5py is needed to read Keras HDF5 files")
pytest.importorskip("hls4ml", reason="hls4ml is needed for the HLS target")

MODELS = ("jet_tagger", "mnist_dense_po2", "mnist_cnn", "conv1d_avgpool", "bn_fold")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml C-simulation needs g++")
_SIM_MISSING = da4ml_available() or why_verilator_unavailable()
needs_sim = pytest.mark.skipif(_SIM_MISSING is not None, reason=str(_SIM_MISSING))


def _import(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    run = tmp_path / name
    args = ["import", "qkeras", "--model", str(FIXTURES / f"{name}.json"), "--weights", str(FIXTURES / f"{name}.h5"),
            "--out", str(run), *extra]
    assert main(args) == 0, capsys.readouterr().err
    return run


def _predict(run: Path, target: str, x: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> np.ndarray:
    x_path, y_path = tmp_path / "x.npy", tmp_path / f"y_{target}.npy"
    np.save(x_path, x)
    args = ["predict", str(run), "--input", str(x_path), "--output", str(y_path), "--target", target]
    if x.ndim > 2:
        args += ["--layout", "nhwc"]
    assert main(args) == 0, f"predict --target {target}: {capsys.readouterr().err}"
    return np.load(y_path)


def test_import_card_and_cli_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _import(tmp_path, "mnist_cnn", capsys)
    out = capsys.readouterr().out
    assert "hls4ml's default" in out and "host-side post-processing" in out and "dropout" in out
    card = json.loads((run / "card.json").read_text())
    qkeras = card.get("qkeras") or card.get("extra", {}).get("qkeras")
    assert qkeras["postprocess"]["op"] == "softmax" and qkeras["ignored_layers"] == ["dropout"]
    assert qkeras["input_type"]["defaulted"] is True
    given = _import(tmp_path / "given", "jet_tagger", capsys, "--input-type", "ap_fixed<12,4>")
    card = json.loads((given / "card.json").read_text())
    qkeras = card.get("qkeras") or card.get("extra", {}).get("qkeras")
    assert qkeras["input_type"] == {"type": "ap_fixed<12,4,AP_RND_CONV,AP_SAT>", "source": "given",
                                    "defaulted": False, "layer": None}
    bn = _import(tmp_path, "bn_fold", capsys)
    assert "folded 'bn_conv' into 'conv'" in capsys.readouterr().out
    card = json.loads((bn / "card.json").read_text())
    qkeras = card.get("qkeras") or card.get("extra", {}).get("qkeras")
    assert [f["batchnorm"] for f in qkeras["folded_batchnorm"]] == ["bn_conv", "bn_dense"]


@pytest.mark.parametrize("name", MODELS)
def test_brevitas_predict_equals_qkeras(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = _import(tmp_path, name, capsys)
    x, logits = recorded(name, "x"), recorded(name, "logits")
    got = _predict(run, "brevitas", x, tmp_path, capsys)
    np.testing.assert_array_equal(got, logits.reshape(len(x), -1).astype(np.float64))


def _target_equals_qkeras(tmp_path: Path, name: str, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """import -> hls|rtl -> verify (the target exact) -> predict on the target == QKeras's model.predict."""
    start = time.perf_counter()
    run = _import(tmp_path, name, capsys)
    assert main([target, str(run)]) == 0, f"aeforge {target} failed for {name}: {capsys.readouterr().err}"
    capsys.readouterr()
    code = main(["verify", str(run), "--n", "1000", "--json"])
    results = json.loads(capsys.readouterr().out)
    assert results["targets"][target]["exact"] == 1000, f"{name}: {target} not bit-exact: {results['targets'][target]}"
    assert code == 0, f"{name}: verify not bit-exact: {results['targets']}"
    x = recorded(name, "x")
    logits = recorded(name, "logits").reshape(len(x), -1).astype(np.float64)
    np.testing.assert_array_equal(_predict(run, target, x, tmp_path, capsys), logits,
                                  err_msg=f"{name}: --target {target} differs from QKeras's model.predict")
    print(f"{name}: import -> verified {target} in {time.perf_counter() - start:.1f} s")


@needs_gxx
@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_hls_equals_qkeras(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    _target_equals_qkeras(tmp_path, name, "hls", capsys)


RTL_MODELS = ("mnist_dense_po2", "mnist_cnn", "conv1d_avgpool")
"""RTL in CI for the models with po2 weights, 2-D and 1-D pooling, binary/ternary weights and wide outputs;
the dense-only jet tagger and BN-folding model go through RTL in benchmarks/byo_models.py (and the dense
RTL path is covered by tests/integration/test_rtl.py)."""


@needs_sim
@pytest.mark.slow
@pytest.mark.parametrize("name", RTL_MODELS)
def test_rtl_equals_qkeras(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    _target_equals_qkeras(tmp_path, name, "rtl", capsys)
