"""Runners share one interface: lifecycle, metadata, feed validation, torch and onnxruntime backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from aeforge.edge.runners import (
    OrtRunner,
    Runner,
    TensorMeta,
    TorchRunner,
    check_feed,
    ort_predict,
    provider_unavailable_reason,
)
from aeforge.errors import AeforgeError, ArtifactError, ConfigError, DataError, ToolUnavailableError

pytest.importorskip("onnxruntime")


def _linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def _gemm_onnx(path: Path, layer: torch.nn.Linear, batch: int | str = "N") -> Path:
    """``relu(x @ W^T + b)`` as plain ONNX, the weights of ``layer``."""
    weight = layer.weight.detach().numpy().astype(np.float32)
    bias = layer.bias.detach().numpy().astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def onnx_path(tmp_path: Path) -> Path:
    return _gemm_onnx(tmp_path / "tiny.onnx", _linear())


def _x(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(n, 4)).astype(np.float32)


# ------------------------------------------------------------------------------------ interface
def test_ort_runner_metadata_infer_and_timing(onnx_path: Path) -> None:
    runner = OrtRunner(onnx_path, threads=1)
    assert not runner.is_active and runner.last_inference_time_s is None
    with runner as active:
        assert active is runner and runner.is_active
        assert runner.input_metadata() == {"x": TensorMeta(np.dtype(np.float32), (None, 4))}
        assert runner.output_names() == ["y"]
        outputs = runner.infer({"x": _x(5)})
        assert set(outputs) == {"y"} and outputs["y"].shape == (5, 3) and outputs["y"].dtype == np.float32
        assert runner.last_inference_time_s is not None and runner.last_inference_time_s > 0
        assert runner.infer({"x": _x(1)})["y"].shape == (1, 3)  # dynamic batch
    assert not runner.is_active and runner.session is None and runner.last_inference_time_s is None


def test_torch_and_ort_agree(onnx_path: Path) -> None:
    x = _x(16)
    with TorchRunner(torch.nn.Sequential(_linear(), torch.nn.ReLU()), (4,), input_name="x", output_names=("y",)) as t:
        assert t.input_metadata() == {"x": TensorMeta(np.dtype(np.float32), (None, 4))}
        reference = t.infer({"x": x})["y"]
        assert t.last_inference_time_s is not None
    with OrtRunner(onnx_path) as ort:
        np.testing.assert_allclose(ort.infer({"x": x})["y"], reference, atol=1e-6)


def test_runner_must_be_active(onnx_path: Path) -> None:
    runner = OrtRunner(onnx_path)
    with pytest.raises(AeforgeError, match="activate the runner"):
        runner.infer({"x": _x()})
    with pytest.raises(AeforgeError, match="activate the runner"):
        runner.input_metadata()
    runner.deactivate()  # harmless when inactive
    runner.activate()
    runner.activate()  # idempotent
    runner.deactivate()


def test_runner_names_are_unique_or_given(onnx_path: Path) -> None:
    assert OrtRunner(onnx_path).name != OrtRunner(onnx_path).name
    assert OrtRunner(onnx_path, name="pi-cpu").name == "pi-cpu"


# ------------------------------------------------------------------------------------ feed validation
@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({}, "missing input(s) 'x'; the model takes 'x'"),
        ({"x": _x(), "z": _x()}, "unknown input(s) 'z'"),
        ({"y": _x()}, "missing input(s) 'x'; unknown input(s) 'y'"),
        ({"x": _x().astype(np.float64)}, "input 'x': expected dtype float32, got float64"),
        ({"x": np.zeros((5, 5), np.float32)}, "input 'x': expected shape (N, 4), got (5, 5)"),
        ({"x": np.zeros((5, 4, 1), np.float32)}, "input 'x': expected shape (N, 4), got (5, 4, 1)"),
        ({"x": np.zeros(4, np.float32)}, "input 'x': expected shape (N, 4), got (4,)"),
        ({"x": [[0.0] * 4]}, "input 'x': expected a numpy array, got list"),
    ],
)
def test_bad_feeds_are_data_errors_naming_the_input(onnx_path: Path, feed: dict, message: str) -> None:
    with OrtRunner(onnx_path, name="ort") as runner, pytest.raises(DataError) as info:
        runner.infer(feed)
    assert str(info.value) == f"ort: {message}" or message in str(info.value)


def test_static_dimensions_are_enforced(tmp_path: Path) -> None:
    path = _gemm_onnx(tmp_path / "static.onnx", _linear(), batch=2)
    with OrtRunner(path) as runner:
        assert runner.input_metadata()["x"].shape == (2, 4)
        assert runner.infer({"x": _x(2)})["y"].shape == (2, 3)
        with pytest.raises(DataError, match=r"expected shape \(2, 4\), got \(3, 4\)"):
            runner.infer({"x": _x(3)})


def test_check_feed_accepts_minus_one_and_symbolic_dims() -> None:
    meta = {"a": TensorMeta(np.dtype(np.int8), (None, 2))}
    check_feed({"a": np.zeros((7, 2), np.int8)}, meta, "r")
    with pytest.raises(DataError, match="expected dtype int8, got uint8"):
        check_feed({"a": np.zeros((7, 2), np.uint8)}, meta, "r")


def test_unchecked_infer_skips_validation(onnx_path: Path) -> None:
    with OrtRunner(onnx_path) as runner:
        assert runner.infer({"x": _x()}, check_inputs=False)["y"].shape == (5, 3)


# ------------------------------------------------------------------------------------ onnxruntime specifics
def test_ort_runner_accepts_model_bytes(onnx_path: Path) -> None:
    with OrtRunner(onnx_path.read_bytes()) as runner:
        assert runner.infer({"x": _x()})["y"].shape == (5, 3)


def test_ort_runner_refusals(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"missing\.onnx: ONNX model not found"):
        OrtRunner(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ArtifactError, match=r"bad\.onnx: onnxruntime cannot load the model"):
        OrtRunner(tmp_path / "bad.onnx").activate()
    with pytest.raises(ConfigError, match="provider 'cuda'"):
        OrtRunner(tmp_path / "bad.onnx", provider="cuda")
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        OrtRunner(tmp_path / "bad.onnx", threads=0)


def test_exact_and_fast_sessions_agree_here(onnx_path: Path) -> None:
    with OrtRunner(onnx_path, exact=True) as exact, OrtRunner(onnx_path, exact=False) as fast:
        np.testing.assert_allclose(exact.infer({"x": _x()})["y"], fast.infer({"x": _x()})["y"], atol=1e-6)


def test_xnnpack_runs_or_says_why_not(onnx_path: Path) -> None:
    reason = provider_unavailable_reason("xnnpack")
    runner = OrtRunner(onnx_path, provider="xnnpack", threads=1)
    if reason is not None:
        assert "XnnpackExecutionProvider" in reason
        with pytest.raises(ToolUnavailableError, match="no XnnpackExecutionProvider"):
            runner.activate()
        assert not runner.is_active
        pytest.skip(reason)
    with runner:
        assert runner.infer({"x": _x()})["y"].shape == (5, 3)


def test_cpu_provider_is_always_available() -> None:
    assert provider_unavailable_reason("cpu") is None
    assert "unknown provider" in str(provider_unavailable_reason("tpu"))


# ------------------------------------------------------------------------------------ torch specifics
def test_torch_runner_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with TorchRunner(_linear(), (4,), threads=1) as runner:
        assert torch.get_num_threads() == 1
        runner.infer({"input": _x()})
    assert torch.get_num_threads() == before


def test_torch_runner_float64_is_a_copy() -> None:
    layer = _linear()
    with TorchRunner(layer, (4,), dtype="float64", batch=5) as runner:
        assert runner.input_metadata()["input"] == TensorMeta(np.dtype(np.float64), (5, 4))
        out = runner.infer({"input": _x().astype(np.float64)})["output"]
        assert out.dtype == np.float64
    assert layer.weight.dtype == torch.float32  # the caller's module is untouched


def test_torch_runner_refusals() -> None:
    with pytest.raises(ConfigError, match="dtype 'int8'"):
        TorchRunner(_linear(), (4,), dtype="int8")
    with TorchRunner(_linear(), (4,), output_names=("a", "b")) as runner, pytest.raises(ConfigError, match="1 outputs"):
        runner.infer({"input": _x()})


def test_base_runner_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Runner().activate()


def test_ort_predict_batches_and_flattens(onnx_path: Path) -> None:
    x = _x(10)
    with OrtRunner(onnx_path) as runner:
        expected = runner.infer({"x": x})["y"].astype(np.float64)
    got = ort_predict(onnx_path, x.astype(np.float64), batch_size=3)
    assert got.dtype == np.float64 and got.shape == (10, 3)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ArtifactError, match="no input vectors"):
        ort_predict(onnx_path, np.zeros((0, 4)))
