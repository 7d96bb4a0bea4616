"""Edge ONNX export: ONNX Runtime reproduces Brevitas exactly; TensorRT rules hold for INT8-sized types."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx_graphsurgeon")

from aeforge.config import ModelConfig, QuantConfig  # noqa: E402
from aeforge.edge import onnx_export  # noqa: E402
from aeforge.edge.onnx_export import (  # noqa: E402
    EdgeExport,
    exact_session_options,
    export_edge_onnx,
    trt_quant_config,
)
from aeforge.edge.trt_rules import check_trt  # noqa: E402
from aeforge.errors import ArtifactError, ConfigError  # noqa: E402
from aeforge.quantize.models.econt import EcontEncoder  # noqa: E402
from aeforge.quantize.models.sequential import build_sequential  # noqa: E402
from aeforge.stages import HardwareModel, verification_inputs  # noqa: E402

N_EVENTS = 1000
TOLERANCE = 1e-6


def _encoder(quant: QuantConfig) -> EcontEncoder:
    torch.manual_seed(0)
    module = EcontEncoder(ModelConfig(), quant)
    with torch.no_grad():  # trained-like magnitudes: a few LSBs of the weight type, some negative biases
        module.conv.weight.mul_(2.0)
        module.conv.bias.uniform_(-0.3, 0.3)
        module.dense.weight.mul_(3.0)
        module.dense.bias.uniform_(-0.2, 0.2)
    return module.eval()


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    """1000 realistic ECON-T events on the default input grid, channels-first."""
    quant = QuantConfig()
    model = HardwareModel(_encoder(quant), (1, 8, 8), quant.input, quant.latent, "econt")
    return verification_inputs(model, N_EVENTS).astype(np.float32)


def _brevitas(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _ort(path: Path, x: np.ndarray, name: str = "input") -> np.ndarray:
    session = ort.InferenceSession(str(path), exact_session_options(threads=1), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x})[0]


@pytest.fixture(scope="module")
def default_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[EcontEncoder, EdgeExport]:
    module = _encoder(QuantConfig())
    return module, export_edge_onnx(module, (1, 8, 8), tmp_path_factory.mktemp("edge") / "econt.onnx")


def test_default_econt_is_exact_and_wide_types_are_named(
    default_export: tuple[EcontEncoder, EdgeExport], inputs: np.ndarray
) -> None:
    module, result = default_export
    reference = _brevitas(module, inputs)
    assert np.mean(reference > 0) > 0.2  # a meaningful comparison, not all zeros
    assert np.abs(_ort(result.path, inputs) - reference).max() <= TOLERANCE

    assert (result.format, result.opset, result.input_name, result.output_name) == ("qdq", 17, "input", "output")
    assert result.input_shape == ("batch", 1, 8, 8) and result.output_shape == ("batch", 16)
    assert result.input_dtype == result.output_dtype == "float32"
    table = result.quantization
    assert {k: table[k]["encoding"] for k in ("input_quant", "conv_act", "latent_act")} == dict.fromkeys(
        ("input_quant", "conv_act", "latent_act"), "float-round"
    )
    assert (table["input_quant"]["bits"], table["input_quant"]["scale"]) == (11, 2.0**-7)
    assert table["conv.weight"]["encoding"] == "int8-dq" and table["conv.weight"]["axis"] == 0
    assert table["dense.bias"]["encoding"] == "folded"

    found = {(v.node, v.rule) for v in result.trt_violations}
    for quantizer, bits in (("input_quant", 11), ("conv_act", 12), ("latent_act", 9)):
        assert (f"{quantizer}/Round", "float-quant") in found
        message = next(v.message for v in result.trt_violations if v.node == f"{quantizer}/Round")
        assert f"{bits}-bit" in message
    assert {v.rule for v in result.trt_violations} == {"float-quant", "activation-not-quantized"}
    assert check_trt(result.path) == list(result.trt_violations)


@pytest.mark.parametrize("bits", [8, 4])
def test_int8_sized_variants_are_trt_clean_and_exact(bits: int, inputs: np.ndarray, tmp_path: Path) -> None:
    quant = trt_quant_config(bits)
    module = _encoder(quant)
    x = quant.input.quantize(inputs.astype(np.float64)).astype(np.float32)
    result = export_edge_onnx(module, (1, 8, 8), tmp_path / f"econt{bits}.onnx")
    reference = _brevitas(module, x)
    assert np.mean(reference > 0) > 0.05
    assert np.abs(_ort(result.path, x) - reference).max() <= TOLERANCE
    assert result.trt_violations == () and check_trt(result.path) == []
    assert {entry["encoding"] for entry in result.quantization.values()} == {"int8-qdq", "int8-dq", "folded"}

    model = onnx.load(result.path)
    initializers = {init.name: init for init in model.graph.initializer}
    assert not {inp.name for inp in model.graph.input} & set(initializers)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert initializers[node.input[2]].data_type == onnx.TensorProto.INT8
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:  # weights: int8, per channel
            assert initializers[node.input[0]].data_type == onnx.TensorProto.INT8
            assert {a.name: a.i for a in node.attribute}["axis"] == 0
        assert node.op_type != "Clip" or initializers[node.input[1]].data_type == onnx.TensorProto.FLOAT
    onnx.checker.check_model(model, full_check=True)


def test_fixed_batch_matches_dynamic(
    default_export: tuple[EcontEncoder, EdgeExport], inputs: np.ndarray, tmp_path: Path
) -> None:
    module, dynamic = default_export
    fixed = export_edge_onnx(module, (1, 8, 8), tmp_path / "fixed.onnx", batch=8)
    assert fixed.input_shape == (8, 1, 8, 8) and fixed.output_shape == (8, 16)
    batch = inputs[:8]
    np.testing.assert_array_equal(_ort(fixed.path, batch), _ort(dynamic.path, batch))
    assert _ort(dynamic.path, inputs[:3]).shape == (3, 16)
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        _ort(fixed.path, inputs[:3])


@pytest.mark.parametrize("opset", [13, 19])
def test_opset_bounds_export_and_run(opset: int, inputs: np.ndarray, tmp_path: Path) -> None:
    module = _encoder(trt_quant_config(8))
    x = trt_quant_config(8).input.quantize(inputs[:200].astype(np.float64)).astype(np.float32)
    result = export_edge_onnx(module, (1, 8, 8), tmp_path / "m.onnx", opset=opset, batch=None)
    model = onnx.load(result.path)
    assert [(e.domain, e.version) for e in model.opset_import] == [("", opset)]
    assert np.abs(_ort(result.path, x) - _brevitas(module, x)).max() <= TOLERANCE
    assert result.trt_violations == ()


@pytest.mark.parametrize("opset", [12, 20, "17"])
def test_opset_out_of_range_is_refused(opset: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opset"):
        export_edge_onnx(_encoder(QuantConfig()), (1, 8, 8), tmp_path / "m.onnx", opset=opset)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("fmt", "lsbs"), [("fp32", 0), ("fp16", 4)])
def test_float_formats_run(
    fmt: str, lsbs: int, default_export: tuple[EcontEncoder, EdgeExport], inputs: np.ndarray, tmp_path: Path
) -> None:
    module, _ = default_export
    result = export_edge_onnx(module, (1, 8, 8), tmp_path / f"{fmt}.onnx", fmt=fmt)
    assert result.format == fmt and result.input_dtype == result.output_dtype == "float32"
    error = np.abs(_ort(result.path, inputs) - _brevitas(module, inputs)).max()
    assert error <= max(TOLERANCE, lsbs * QuantConfig().latent.lsb)
    model = onnx.load(result.path)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    floats = {init.data_type for init in model.graph.initializer} & {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert floats == {onnx.TensorProto.FLOAT16 if fmt == "fp16" else onnx.TensorProto.FLOAT}
    assert result.trt_violations == ()  # plain float: TensorRT runs it as is


def test_unsigned_8bit_and_floor_rounding_stay_exact_but_are_flagged(tmp_path: Path) -> None:
    t = "AP_RND_CONV,AP_SAT"
    spec = {
        "input": {"shape": [6, 6, 2], "type": f"ap_fixed<8,3,{t}>"},
        "layers": [
            {"kind": "conv2d", "filters": 4, "kernel_size": 3, "weight": f"ap_fixed<8,1,{t}>",
             "bias": f"ap_fixed<8,2,{t}>", "padding": "same", "name": "conv"},
            {"kind": "relu", "type": f"ap_ufixed<8,3,{t}>", "name": "relu"},
            {"kind": "flatten"},
            {"kind": "dense", "units": 5, "weight": f"ap_fixed<8,1,{t}>", "bias": f"ap_fixed<8,2,{t}>"},
            {"kind": "quant", "type": "ap_fixed<8,4,AP_TRN,AP_SAT>", "name": "out"},
        ],
    }
    torch.manual_seed(1)
    module = build_sequential(spec).eval()
    x = np.random.default_rng(0).uniform(-4, 4, size=(N_EVENTS, 2, 6, 6)).astype(np.float32)
    result = export_edge_onnx(module, module.input_shape, tmp_path / "seq.onnx")
    assert np.abs(_ort(result.path, x) - _brevitas(module, x)).max() <= TOLERANCE
    assert result.quantization["layers.1"]["encoding"] == "uint8-qdq"
    assert result.quantization["layers.4"]["encoding"] == "float-round"
    found = {(v.node, v.rule) for v in result.trt_violations}
    assert ("layers.1/QuantizeLinear", "q-dtype-int8") in found
    assert ("layers.4/Floor", "float-quant") in found


def test_check_trt_of_the_default_econt_export_has_notes_only(
    default_export: tuple[EcontEncoder, EdgeExport], capsys: pytest.CaptureFixture[str]
) -> None:
    """TensorRT runs the published 9-12-bit types exactly in FP32: notes, exit 0; ``--int8-only`` makes them errors."""
    from aeforge.cli import main

    _, result = default_export
    assert all(v.severity == "note" for v in result.trt_violations) and len(result.trt_violations) == 5
    assert main(["check", "trt", str(result.path)]) == 0
    text = capsys.readouterr().out
    assert "0 error(s), 5 note(s)" in text and "note: input_quant/Round (Round) [float-quant]" in text
    assert main(["check", "trt", str(result.path), "--int8-only", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["errors"]) == 5 and report["notes"] == [] and not report["clean"]


def test_result_record(default_export: tuple[EcontEncoder, EdgeExport]) -> None:
    import hashlib

    _, result = default_export
    record = json.loads(json.dumps(result.as_dict()))
    assert record["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest() == result.sha256
    assert record["input_shape"] == ["batch", 1, 8, 8]
    assert {v["rule"] for v in record["trt_violations"]} >= {"float-quant"}
    assert result.dynamic_batch


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _encoder(trt_quant_config(8))
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ConfigError, match="format"):
        export_edge_onnx(module, (1, 8, 8), target, fmt="int4")
    with pytest.raises(ConfigError, match="batch"):
        export_edge_onnx(module, (1, 8, 8), target, batch=0)
    assert not target.exists()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(onnx_export.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export_edge_onnx(module, (1, 8, 8), target)
    assert not target.exists() and list(target.parent.iterdir()) == []

    monkeypatch.undo()
    target.write_bytes(b"previous")

    def broken_check(model: object) -> list:
        raise ArtifactError("boom")

    monkeypatch.setattr(onnx_export, "check_trt", broken_check)
    with pytest.raises(ArtifactError, match="boom"):
        export_edge_onnx(module, (1, 8, 8), target)
    assert target.read_bytes() == b"previous"


def test_session_options_and_variant_validation() -> None:
    options = exact_session_options(threads=2)
    assert options.intra_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with pytest.raises(ConfigError):
        exact_session_options(threads=0)
    with pytest.raises(ConfigError, match="bits"):
        trt_quant_config(9)
    quant = trt_quant_config(8)
    assert (quant.input.bits, quant.conv_activation.bits, quant.conv_activation.signed) == (8, 7, False)


def test_edge_package_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, aeforge.edge as e; assert 'torch' not in sys.modules and 'onnx' not in sys.modules; e.check_trt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_brevitas_qcdq_export_is_what_the_checker_refuses(tmp_path: Path) -> None:
    """Why the QDQ format is lowered here: Brevitas' QCDQ export emits uint8 and integer Clips."""
    import warnings

    from brevitas.export import export_onnx_qcdq

    module = _encoder(trt_quant_config(4))
    path = tmp_path / "brevitas_qcdq.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx_qcdq(module, torch.zeros(1, 1, 8, 8), export_path=str(path), dynamo=False, opset_version=13)
    except Exception as error:  # the TorchScript exporter may be gone in a later torch
        pytest.skip(f"Brevitas QCDQ (TorchScript) export unavailable: {error}")
    rules = {(v.node.split("/")[1], v.rule) for v in check_trt(path)}
    assert {("conv_act", "q-dtype-int8"), ("conv_act", "int-clip"), ("conv", "int-clip")} <= rules
    with pytest.raises(RuntimeError, match="Bit width 11 is not supported"):
        export_onnx_qcdq(_encoder(QuantConfig()), torch.zeros(1, 1, 8, 8), export_path=str(tmp_path / "wide.onnx"),
                         dynamo=False)


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_global_average_pool_exports_at_every_opset(opset: int, tmp_path: Path) -> None:
    """torch emits opset-18 reductions (axes as an input); below 18 they are rewritten to the attribute form."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    out = tmp_path / "gap.onnx"
    export_edge_onnx(model, (3, 8, 8), out, fmt="fp32", opset=opset)
    proto = onnx.load(out)
    reductions = [node for node in proto.graph.node if node.op_type == "ReduceMean"]
    assert reductions and all((len(node.input) == 1) == (opset < 18) for node in reductions)
    used = {name for node in proto.graph.node for name in node.input}
    assert all(init.name in used for init in proto.graph.initializer)
    images = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: images})[0], expected, atol=1e-5)
