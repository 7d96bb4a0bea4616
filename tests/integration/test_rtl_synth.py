"""Yosys synthesis of da4ml RTL projects (issue 4, item 3): real Yosys on a small MLP, < 1 minute."""

from __future__ import annotations

import pytest

from aeforge.hls.rtl import da4ml_available
from aeforge.hls.rtl.yosys import TARGETS, synthesize, why_yosys_unavailable
from tests.small_models import small_mlp

DA4ML_MISSING = da4ml_available()
YOSYS_MISSING = why_yosys_unavailable()
pytestmark = pytest.mark.skipif(
    DA4ML_MISSING is not None or YOSYS_MISSING is not None, reason=str(DA4ML_MISSING or YOSYS_MISSING)
)


def _mlp():
    return small_mlp()


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    from aeforge.hls.rtl import generate_rtl

    root = tmp_path_factory.mktemp("synth")
    model = _mlp()
    return {
        "comb": generate_rtl(model, root / "comb"),
        "pipe": generate_rtl(model, root / "pipe", pipeline_stages=2),
    }


@pytest.fixture(scope="module")
def xc7(projects, tmp_path_factory):
    """xc7 reports of both projects (synthesized once; the pipelined one keeps its work dir)."""
    work = tmp_path_factory.mktemp("work")
    return {
        "comb": synthesize(projects["comb"], "xc7", timeout_s=120),
        "pipe": synthesize(projects["pipe"], "xc7", timeout_s=120, work_dir=work),
        "work": work,
    }


@pytest.mark.parametrize("kind", ["comb", "pipe"])
def test_xc7(projects, xc7, kind) -> None:
    project = projects[kind]
    report = xc7[kind]
    assert report.target == "xc7" and report.top == project.integration_top == "aeforge_model_top"
    assert report.lut is not None and report.lut > 0
    assert report.dsp == 0 and report.bram == 0  # da4ml: adder trees, no multipliers
    assert report.carry is not None and report.carry >= 0
    if project.pipelined:
        assert project.latency_cycles >= 1
        assert report.ff > 0
    else:
        assert report.ff == 0
    assert report.logic_depth is not None and report.logic_depth > 0
    assert report.yosys_version.startswith("Yosys")
    assert "src/static/lookup_table.v" not in report.files
    assert (xc7["work"] / "run.ys").is_file() and (xc7["work"] / "yosys.log").is_file()
    data = report.as_dict()
    assert {"lut", "ff", "dsp", "carry", "bram", "cells", "logic_depth", "seconds"} <= set(data)


@pytest.mark.parametrize("kind", ["comb", "pipe"])
def test_generic(projects, kind) -> None:
    project = projects[kind]
    report = synthesize(project, "generic", timeout_s=120)
    assert report.lut is None and report.carry is None
    assert report.gates > 0 and any(cell.startswith("$_") for cell in report.cells)
    assert report.dsp == 0
    assert (report.ff > 0) == project.pipelined


def test_pipelining_shortens_the_logic_depth(xc7) -> None:
    comb, pipe = xc7["comb"], xc7["pipe"]
    assert pipe.logic_depth is not None and comb.logic_depth is not None
    assert pipe.logic_depth < comb.logic_depth


def test_all_targets_known() -> None:
    assert TARGETS == ("xc7", "ecp5", "ice40", "generic")


def test_cli_rtl_synth_json(tmp_path) -> None:
    """`aeforge rtl RUN --synth generic --json` on an imported MLP run prints the resource numbers."""
    import json

    from aeforge.hls.rtl.yosys import why_yosys_unavailable

    if why_yosys_unavailable():
        pytest.skip(why_yosys_unavailable())
    pytest.importorskip("h5py", reason="h5py is needed to write Keras HDF5 files")
    from aeforge.cli import main
    from tests.unit.qkeras_files import QKerasModel, qbits

    keras = (QKerasModel(input_shape=(8,), input_name="x")
             .qactivation("in_q", "quantized_bits(8,3,alpha=1)")
             .qdense("fc", 4, 8, kernel_quantizer=qbits(6, 1), bias_quantizer=qbits(6, 1))
             .qactivation("out_q", "quantized_relu(8,3)"))
    model_json, weights = keras.write(tmp_path)
    run = tmp_path / "run"
    assert main(["import", "qkeras", "--model", str(model_json), "--weights", str(weights), "--out", str(run)]) == 0
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["rtl", str(run), "--pipeline-stages", "1", "--synth", "xc7", "--json"]) == 0
    summary = json.loads(buffer.getvalue())
    assert summary["lut"] > 0 and summary["dsp"] == 0 and summary["ff"] > 0
    assert summary["latency_cycles"] >= 1 and summary["ii"] == 1
