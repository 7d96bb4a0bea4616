"""The hardware verbs end to end: export qonnx, hls, verify, predict, import qkeras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aeforge.artifact import load_run
from aeforge.cli import main

pytest.importorskip("hls4ml", reason="hls4ml is needed (pip install 'aeforge[hls]')")

TINY = "name: tiny\ndata:\n  synthetic: {n_events: 3000, seed: 3}\ntrain:\n  float_epochs: 2\n  qat_epochs: 1\n"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hw")
    (root / "exp.yaml").write_text(TINY)
    run = root / "run"
    assert main(["train", str(root / "exp.yaml"), "--out", str(run), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def hls_run(trained_run: Path) -> Path:
    assert main(["export", "qonnx", str(trained_run)]) == 0
    assert main(["hls", str(trained_run), "--backend", "vitis", "--io", "parallel"]) == 0
    return trained_run


def test_export_writes_a_qonnx_artifact_with_a_card(hls_run: Path) -> None:
    card = load_run(hls_run / "qonnx")
    assert card.kind == "qonnx" and "model.onnx" in card.files
    assert card.data["input_type"] == "ap_fixed<11,4,AP_RND_CONV,AP_SAT>"
    assert load_run(hls_run).kind == "train"  # the trained run's own files are untouched


def test_hls_card_records_the_precisions(hls_run: Path) -> None:
    card = json.loads((hls_run / "hls" / "card.json").read_text())
    assert card["kind"] == "hls" and card["project"] == "hls/project" and (hls_run / card["project"]).is_dir()
    types = json.dumps(card["precisions"])
    assert "fixed<16,6" not in types  # never hls4ml's default where the model defines a type
    assert "ufixed<9,1,RND_CONV,SAT" in types


def test_verify_json_is_bit_exact_on_every_target(hls_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(hls_run), "--n", "2000", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results["targets"]) == {"qonnx", "hls", "ort"} and results["reference"] == "brevitas"
    for target in results["targets"].values():
        assert target["n"] == 2000 and target["exact"] == 2000 and target["max_lsb"] == 0


def test_predict_agrees_across_targets_and_layouts(hls_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    nhwc = rng.exponential(0.1, size=(64, 8, 8, 1)) * (rng.random((64, 8, 8, 1)) < 0.4)
    np.save(tmp_path / "nhwc.npy", nhwc)
    np.save(tmp_path / "nchw.npy", np.moveaxis(nhwc, -1, 1))
    outputs = {}
    for target in ("brevitas", "qonnx", "hls"):
        out = tmp_path / f"{target}.npy"
        assert main(["predict", str(hls_run), "--input", str(tmp_path / "nhwc.npy"), "--output", str(out),
                     "--target", target]) == 0
        outputs[target] = np.load(out)
    out = tmp_path / "nchw_out.npy"
    assert main(["predict", str(hls_run), "--input", str(tmp_path / "nchw.npy"), "--output", str(out),
                 "--layout", "nchw"]) == 0
    outputs["nchw"] = np.load(out)
    assert outputs["brevitas"].shape == (64, 16) and np.count_nonzero(outputs["brevitas"]) > 0
    for name, values in outputs.items():
        np.testing.assert_array_equal(values, outputs["brevitas"], err_msg=name)
    assert np.all(np.ldexp(outputs["hls"], 8) == np.round(np.ldexp(outputs["hls"], 8)))


def test_predict_accepts_calq_charges(hls_run: Path, tmp_path: Path) -> None:
    from aeforge.data.hgcal.geometry import to_8x8

    calq = np.random.default_rng(2).random((10, 48)) * 0.2
    np.save(tmp_path / "calq.npy", calq)
    np.save(tmp_path / "image.npy", to_8x8(calq))
    for name in ("calq", "image"):
        assert main(["predict", str(hls_run), "--input", str(tmp_path / f"{name}.npy"),
                     "--output", str(tmp_path / f"{name}_out.npy"), "--target", "hls"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "calq_out.npy"), np.load(tmp_path / "image_out.npy"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((4, 1, 8, 8)), "does not match the model"),
        (np.full((2, 8, 8, 1), np.nan), "NaN"),
        (b"not numpy", "not a numpy .npy array"),
    ],
)
def test_predict_bad_input_is_named(hls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    content: object, message: str) -> None:
    path = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    assert main(["predict", str(hls_run), "--input", str(path), "--output", str(tmp_path / "y.npy")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()


def test_hls_refuses_to_clobber_and_build_needs_the_vendor_tool(
    hls_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hls", str(hls_run)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    if __import__("shutil").which("vitis-run") is None:
        card = (hls_run / "hls" / "card.json").read_bytes()
        assert main(["hls", str(hls_run), "--force", "--build"]) == 1
        assert "vitis-run" in capsys.readouterr().err
        # the tool is checked before the old project is touched: it is still there, and still verifies
        assert (hls_run / "hls" / "card.json").read_bytes() == card and main(["verify", str(hls_run), "--n", "50"]) == 0


def test_verify_of_a_directory_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path)]) == 1
    assert "not an aeforge run" in capsys.readouterr().err


def test_import_qkeras_then_hls_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("h5py", reason="h5py is needed to write Keras HDF5 files")
    from tests.unit.test_qkeras_import import econt_model

    keras = econt_model()
    model_json, weights = keras.write(tmp_path)
    run = tmp_path / "imported"
    assert main(["import", "qkeras", "--model", str(model_json), "--weights", str(weights), "--out", str(run)]) == 0
    assert "ECON-T encoder" in capsys.readouterr().out
    assert load_run(run).kind == "import"
    assert main(["hls", str(run), "--backend", "catapult", "--io", "stream"]) == 0
    capsys.readouterr()
    assert main(["verify", str(run), "--n", "500", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["bit_exact"] and results["targets"]["hls"]["exact"] == 500
    # the imported model equals the independent numpy QKeras forward pass, through the HLS C-sim too
    x = np.random.default_rng(3).normal(0, 2, size=(50, 8, 8, 1))
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(run), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                 "--target", "hls"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), keras.forward(x))


def test_import_refuses_unknown_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("h5py", reason="h5py is needed to write Keras HDF5 files")
    from tests.unit.test_qkeras_import import econt_model

    model_json, weights = econt_model().write(tmp_path)
    data = json.loads(Path(model_json).read_text())
    data["config"]["layers"].insert(2, {"class_name": "BatchNormalization", "config": {"name": "bn"}})
    Path(model_json).write_text(json.dumps(data))
    assert main(["import", "qkeras", "--model", str(model_json), "--weights", str(weights),
                 "--out", str(tmp_path / "run")]) == 1
    assert "bn" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_hls_build_puts_the_synthesis_report_into_the_card(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No Vitis here: a stand-in vitis-run on PATH drops a recorded csynth.xml where Vitis HLS would."""
    import os
    import stat

    from tests.unit.test_vendor_reports import VITIS_CSYNTH

    recorded = tmp_path / "recorded_csynth.xml"
    recorded.write_text(VITIS_CSYNTH)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "vitis-run"
    tool.write_text("#!/bin/sh\nmkdir -p encoder_prj/solution1/syn/report\n"
                    f"cp {recorded} encoder_prj/solution1/syn/report/encoder_csynth.xml\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["hls", str(trained_run), "--force", "--build"]) == 0, capsys.readouterr().err
    card = json.loads((trained_run / "hls" / "card.json").read_text())
    synthesis = card["metrics"]["synthesis"]
    assert (synthesis["lut"], synthesis["ff"], synthesis["dsp"]) == (59895, 34199, 132)
    assert (synthesis["latency_cycles_max"], synthesis["ii_max"]) == (103, 92)
    assert '"lut": 59895' in capsys.readouterr().out


def test_hls_refuses_a_corrupted_qonnx(hls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(hls_run, run, ignore=shutil.ignore_patterns("hls"))
    (run / "qonnx" / "model.onnx").write_bytes(b"not an onnx model")
    assert main(["hls", str(run)]) == 1
    assert "model.onnx changed since the run was written" in capsys.readouterr().err
    assert not (run / "hls").exists()


def test_rtl_is_generated_simulated_and_verified(hls_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.hls.rtl import da4ml_available, why_verilator_unavailable

    reason = da4ml_available() or why_verilator_unavailable()
    if reason:
        pytest.skip(reason)
    capsys.readouterr()
    assert main(["rtl", str(hls_run), "--pipeline-stages", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # valid_in -> valid_out: the core's input register plus one register per stage, measured
    assert summary["latency_cycles_measured"] and summary["ii_measured"]
    assert summary["latency_cycles"] == summary["pipeline_stages"] + 1 <= 3 and summary["ii"] == 1
    card = json.loads((hls_run / "rtl" / "card.json").read_text())
    assert card["kind"] == "rtl" and card["metrics"]["latency_cycles"] == summary["latency_cycles"]
    assert "64 x ap_fixed<11,4" in summary["ports"]
    assert main(["verify", str(hls_run), "--n", "1000", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["targets"]["rtl"]["exact"] == 1000 and results["bit_exact"]
    x = np.random.default_rng(4).exponential(0.1, size=(32, 8, 8, 1))
    np.save(tmp_path / "x.npy", x)
    for target in ("brevitas", "rtl"):
        assert main(["predict", str(hls_run), "--input", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / f"{target}.npy"), "--target", target]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "rtl.npy"), np.load(tmp_path / "brevitas.npy"))
    assert main(["rtl", str(hls_run)]) == 1  # exists: needs --force
