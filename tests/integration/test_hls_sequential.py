"""An MLP and a conv model (the generic sequential family) through QONNX and hls4ml C-sim, bit for bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.sequential import QuantSpec, ReLUSpec, build_sequential
from tests.unit.test_sequential_model import conv_spec, mlp_spec

pytest.importorskip("hls4ml", reason="hls4ml is needed (pip install 'aeforge[hls]')")


def _with_output_quantizer(spec, relu: bool):
    """Hardware ports are typed: end the model in a quantizer (a quantized ReLU or a re-quantization)."""
    last = (ReLUSpec(name="out_relu", type=FixedPoint(10, 5, signed=False)) if relu
            else QuantSpec(name="out_q", type=FixedPoint(12, 6)))
    return dataclasses.replace(spec, layers=(*spec.layers, last))


def _spread(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 1.5)


@pytest.mark.parametrize(
    ("name", "make_spec", "relu", "backend", "io_type"),
    [
        ("mlp", mlp_spec, True, "Vitis", "io_parallel"),
        ("mlp-q", mlp_spec, False, "Catapult", "io_parallel"),
        ("conv", conv_spec, False, "Vitis", "io_stream"),
        ("conv-relu", conv_spec, True, "Catapult", "io_stream"),
    ],
)
def test_sequential_models_are_bit_exact(
    tmp_path: Path, name: str, make_spec, relu: bool, backend: str, io_type: str
) -> None:
    from aeforge.hls.hls4ml_backend import build_hls_project
    from aeforge.quantize.export import export_qonnx
    from aeforge.verification import verify_hls

    spec = _with_output_quantizer(make_spec(), relu)
    model = build_sequential(spec).eval()
    _spread(model, seed=len(name))
    qonnx_model = export_qonnx(model, model.input_shape, model.input_type, tmp_path / f"{name}.onnx")
    build_hls_project(qonnx_model, tmp_path / name, backend=backend, io_type=io_type)
    rng = np.random.default_rng(7)
    low, high = model.input_type.min_value, model.input_type.max_value
    inputs = model.input_type.quantize(rng.uniform(low, high, size=(1500, *model.input_shape)))
    results = verify_hls(model, qonnx_model, tmp_path / name, inputs, model.input_type, model.output_type)
    assert [r.target for r in results] == ["brevitas", "qonnx", "hls_csim"]
    for result in results:
        assert result.bit_exact, str(result)
    with torch.no_grad():
        reference = model.double()(torch.as_tensor(inputs)).numpy()
    assert np.count_nonzero(reference) > reference.size // 4  # a comparison of real numbers, not zeros
