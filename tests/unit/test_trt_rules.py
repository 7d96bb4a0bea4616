"""The TensorRT explicit-quantization checker names the node and the rule for each hand-made fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aeforge.cli import main
from aeforge.edge.trt_rules import (
    NOTE_RULES,
    RULES,
    TrtViolation,
    check_trt,
    format_violations,
    polygraphy_lint,
    split_severities,
)
from aeforge.errors import ArtifactError

pytest.importorskip("onnx_graphsurgeon")


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _model(
    *,
    act_zp: np.ndarray | str | None = "int8",
    weight_axis: int = 0,
    int_clip: bool = False,
    opset: int = 17,
    extra_nodes: tuple = (),
    initializer_input: bool = False,
    input_dims: tuple = ("batch", 4),
    op: str = "Gemm",
) -> onnx.ModelProto:
    """``x -> Q -> [Clip(int)] -> DQ -> Gemm(DQ(int8 weight)) -> y``; each argument breaks one rule."""
    inits = [
        _init("s", np.array(0.125, np.float32)),
        _init("w_int8", np.arange(-6, 6, dtype=np.int8).reshape(3, 4)),
        _init("w_scale", np.full(3 if weight_axis == 0 else 4, 0.25, np.float32)),
        _init("w_zp", np.zeros(3 if weight_axis == 0 else 4, np.int8)),
        _init("b", np.zeros(3, np.float32)),
    ]
    q_inputs = ["x", "s"]
    if isinstance(act_zp, str):
        act_zp = np.array(0, np.int8)
    if act_zp is not None:
        inits.append(_init("zp", act_zp))
        q_inputs.append("zp")
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["xq"], name="act_q")]
    dq_source = "xq"
    if int_clip:
        inits += [_init("lo", np.array(-8, np.int8)), _init("hi", np.array(7, np.int8))]
        nodes.append(helper.make_node("Clip", ["xq", "lo", "hi"], ["xq_clipped"], name="act_int_clip"))
        dq_source = "xq_clipped"
    nodes.append(helper.make_node("DequantizeLinear", [dq_source, *q_inputs[1:]], ["xd"], name="act_dq"))
    nodes.append(helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zp"], ["w"], name="weight_dq",
                                  axis=weight_axis))
    if op == "Gemm":
        nodes.append(helper.make_node("Gemm", ["xd", "w", "b"], ["y"], name="dense", transB=1))
    nodes += list(extra_nodes)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims))]
    if initializer_input:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [3]))
    output_name = extra_nodes[-1].output[0] if extra_nodes else "y"
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                                                                  None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _rules(violations: list[TrtViolation]) -> set[tuple[str, str]]:
    return {(v.node, v.rule) for v in violations}


def test_clean_graph_has_no_violations(tmp_path: Path) -> None:
    model = _model()
    assert check_trt(model) == []
    path = tmp_path / "clean.onnx"
    onnx.save(model, path)
    assert check_trt(path) == [] and check_trt(str(path)) == []
    assert "no violations" in format_violations([], "clean.onnx")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"act_zp": np.array(0, np.uint8)}, {("act_q", "q-dtype-int8"), ("act_dq", "q-dtype-int8")}),
        ({"act_zp": None}, {("act_q", "q-dtype-int8")}),
        ({"act_zp": np.array(3, np.int8)}, {("act_q", "zero-point-nonzero"), ("act_dq", "zero-point-nonzero")}),
        ({"weight_axis": 1}, {("weight_dq", "weight-axis")}),
        ({"int_clip": True}, {("act_int_clip", "int-clip")}),
        ({"initializer_input": True}, {("b", "initializer-input")}),
        ({"opset": 11}, {("<model>", "opset")}),
        ({"opset": 21}, {("<model>", "opset")}),
        ({"input_dims": ("batch", "features")}, {("x", "dynamic-shape")}),
        ({"extra_nodes": (helper.make_node("Det", ["y"], ["d"], name="determinant"),)},
         {("determinant", "unsupported-op")}),
        ({"extra_nodes": (helper.make_node("Quant", ["y", "s", "s", "s"], ["d"], name="qonnx_quant",
                                           domain="qonnx.custom_op.general"),)},
         {("qonnx_quant", "unsupported-op")}),
        ({"extra_nodes": (helper.make_node("Round", ["y"], ["d"], name="fake_round"),)},
         {("fake_round", "float-quant")}),
        ({"extra_nodes": (helper.make_node("Cast", ["y"], ["d"], name="to_double", to=TensorProto.DOUBLE),
                          helper.make_node("Cast", ["d"], ["f"], name="to_float", to=TensorProto.FLOAT))},
         {("to_double", "float64")}),
    ],
)
def test_each_fault_is_named(kwargs: dict, expected: set[tuple[str, str]]) -> None:
    violations = check_trt(_model(**kwargs))
    assert _rules(violations) == expected, violations
    for violation in violations:
        assert violation.rule in RULES and violation.message
        assert violation.node in format_violations(violations) and violation.rule in format_violations(violations)


def test_weight_axis_of_conv_transpose_is_one() -> None:
    inits = [
        _init("w_int8", np.ones((2, 3, 3, 3), np.int8)),
        _init("ws", np.full(2, 0.5, np.float32)), _init("wz", np.zeros(2, np.int8)),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_int8", "ws", "wz"], ["w"], name="deconv_w_dq", axis=0),
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    violations = check_trt(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert ("deconv_w_dq", "weight-axis") in _rules(violations)
    assert "axis 1" in next(v.message for v in violations if v.rule == "weight-axis")
    assert ("deconv", "activation-not-quantized") in _rules(violations)


def test_runtime_scale_is_flagged() -> None:
    model = _model()
    model.graph.node[0].input[1] = "x"  # the scale is now the (runtime) graph input
    assert ("act_q", "qdq-constant") in _rules(check_trt(model))


def test_unreadable_files_raise_artifact_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot an onnx model at all\x13" * 7)
    with pytest.raises(ArtifactError, match=r"garbage\.onnx"):
        check_trt(garbage)
    with pytest.raises(ArtifactError, match=r"missing\.onnx"):
        check_trt(tmp_path / "missing.onnx")


def test_polygraphy_lint(tmp_path: Path) -> None:
    pytest.importorskip("polygraphy")
    pytest.importorskip("onnxruntime")
    good = tmp_path / "good.onnx"
    onnx.save(_model(input_dims=(2, 4)), good)
    assert polygraphy_lint(good) == []
    bad = _model(input_dims=(2, 4))
    bad.graph.initializer[1].CopyFrom(_init("w_int8", np.ones((3, 5), np.int8)))  # 5 inputs for 4 features
    broken = tmp_path / "broken.onnx"
    onnx.save(bad, broken)
    lines = polygraphy_lint(broken)
    assert lines and any("dense" in line or "weight_dq" in line for line in lines), lines
    with pytest.raises(ArtifactError, match=r"nothing\.onnx"):
        polygraphy_lint(tmp_path / "nothing.onnx")


# ------------------------------------------------------------------------------------ severities
_ROUND = (helper.make_node("Round", ["y"], ["d"], name="fake_round"),)


def test_severities_split_errors_from_notes() -> None:
    assert {"float-quant", "activation-not-quantized"} == NOTE_RULES and set(RULES) > NOTE_RULES
    findings = check_trt(_model(act_zp=np.array(0, np.uint8), extra_nodes=_ROUND))
    errors, notes = split_severities(findings)
    assert {v.rule for v in errors} == {"q-dtype-int8"} and {v.rule for v in notes} == {"float-quant"}
    assert all(v.severity == "error" for v in errors) and notes[0].severity == "note"
    assert split_severities(findings, int8_only=True) == (findings, [])
    assert TrtViolation(**notes[0].as_dict()) == notes[0]  # round-trips through the JSON record
    assert TrtViolation("n", "Round", "float-quant", "m", severity="error").is_error
    report = format_violations(notes, "m.onnx")
    assert "0 error(s), 1 note(s)" in report and "  note: fake_round (Round) [float-quant]" in report
    assert "computes the Brevitas numbers" in report
    assert "1 error(s), 0 note(s)" in format_violations(notes, "m.onnx", int8_only=True)


@pytest.mark.parametrize(
    ("kwargs", "args", "code", "errors", "notes"),
    [
        ({}, [], 0, 0, 0),
        ({"extra_nodes": _ROUND}, [], 0, 0, 1),  # runs in FP32, exactly: a note
        ({"extra_nodes": _ROUND}, ["--int8-only"], 1, 1, 0),
        ({"act_zp": np.array(0, np.uint8)}, [], 1, 2, 0),  # uint8 Q/DQ: TensorRT refuses it
        ({"extra_nodes": (helper.make_node("Det", ["y"], ["d"], name="determinant"),)}, [], 1, 1, 0),
    ],
)
def test_check_trt_exit_code_follows_errors_only(
    kwargs: dict, args: list[str], code: int, errors: int, notes: int, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    path = tmp_path / "m.onnx"
    onnx.save(_model(**kwargs), path)
    assert main(["check", "trt", str(path), *args]) == code
    text = capsys.readouterr().out
    assert ("no violations" in text) == (errors + notes == 0)
    assert main(["check", "trt", str(path), "--json", *args]) == code
    report = json.loads(capsys.readouterr().out)
    assert (len(report["errors"]), len(report["notes"]), report["clean"]) == (errors, notes, code == 0)
    assert report["int8_only"] == ("--int8-only" in args)
