"""ECON-T encoder: Brevitas vs QONNX execution vs hls4ml C-simulation, bit for bit.

Weights are spread over the whole quantizer range (so rounding and saturation are exercised) and
the inputs are normalised synthetic HGCAL events plus harsher random images up to the input
type's saturation. Each configuration is exported and compiled once (module-scoped caches).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("qonnx")
pytest.importorskip("hls4ml")

from aeforge.config import ModelConfig, QuantConfig
from aeforge.data.hgcal.readouts import normalize_econt
from aeforge.data.hgcal.synthetic import generate_readouts
from aeforge.errors import ArtifactError, QuantizationError
from aeforge.hls.csim import run_csim
from aeforge.hls.hls4ml_backend import HlsProject, backend_status, build_hls_project, recompile_project
from aeforge.quantize.export import export_qonnx
from aeforge.quantize.models.econt import build_autoencoder
from aeforge.verification import (
    compare,
    nchw_to_nhwc,
    predict_brevitas,
    predict_hls_csim,
    predict_qonnx,
    to_input_grid,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found: hls4ml C-simulation needs it"),
]

N_EVENTS = 1500
N_RANDOM = 500
DEFAULT_BITS = 9
# Every latent width in both I/O styles; the default types in every backend x I/O combination.
CONFIGS = [
    (DEFAULT_BITS, "Vitis", "io_parallel"),
    (DEFAULT_BITS, "Vitis", "io_stream"),
    (DEFAULT_BITS, "Catapult", "io_parallel"),
    (DEFAULT_BITS, "Catapult", "io_stream"),
    (3, "Vitis", "io_parallel"),
    (3, "Catapult", "io_stream"),
    (5, "Catapult", "io_parallel"),
    (5, "Vitis", "io_stream"),
    (7, "Vitis", "io_parallel"),
    (7, "Catapult", "io_stream"),
]


def _trained_like(model: torch.nn.Module, seed: int) -> None:
    """Spread weights over the whole quantizer range so that saturation and rounding are exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.8)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Channels-first ``(N, 1, 8, 8)`` encoder inputs: normalised synthetic events, then random stress images."""
    model = build_autoencoder(ModelConfig(), QuantConfig())
    normalized, _ = normalize_econt(generate_readouts(N_EVENTS, seed=11), QuantConfig().input)
    events = model.to_images(torch.as_tensor(normalized)).numpy()
    rng = np.random.default_rng(5)
    stress = rng.exponential(1.5, size=(N_RANDOM, 1, 8, 8)) * (rng.random((N_RANDOM, 1, 8, 8)) < 0.5)
    return np.concatenate([events, stress])


@pytest.fixture(scope="module")
def exported() -> Callable[[int], tuple]:
    """latent bits -> (encoder, QONNX model), exported once each."""
    cache: dict[int, tuple] = {}

    def get(bits: int) -> tuple:
        if bits not in cache:
            model = build_autoencoder(ModelConfig(), QuantConfig(latent_bits=bits)).eval()
            _trained_like(model, seed=bits)
            encoder = model.encoder
            cache[bits] = (encoder, export_qonnx(encoder, encoder.input_shape, encoder.input_type))
        return cache[bits]

    return get


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, exported: Callable[[int], tuple]) -> Callable[..., HlsProject]:
    """(latent bits, backend, io_type) -> compiled hls4ml project, built once each."""
    root = tmp_path_factory.mktemp("hls")
    cache: dict[tuple, HlsProject] = {}

    def get(bits: int, backend: str, io_type: str) -> HlsProject:
        key = (bits, backend, io_type)
        if key not in cache:
            available, reason = backend_status(backend)
            if not available:
                pytest.skip(f"hls4ml {backend}: {reason}")
            encoder, qonnx_model = exported(bits)
            cache[key] = build_hls_project(
                qonnx_model, root / f"{backend}_{io_type}_{bits}", encoder.input_type, encoder.output_type,
                backend=backend, io_type=io_type,
            )
        return cache[key]

    return get


@pytest.fixture(scope="module")
def references(exported: Callable[[int], tuple], images: np.ndarray) -> Callable[[int], tuple]:
    """latent bits -> (Brevitas float64 predictions, QONNX-exec predictions), computed once each."""
    cache: dict[int, tuple] = {}

    def get(bits: int) -> tuple:
        if bits not in cache:
            encoder, qonnx_model = exported(bits)
            grid = to_input_grid(images, encoder.input_type)
            cache[bits] = (
                predict_brevitas(encoder, grid, encoder.input_type),
                predict_qonnx(qonnx_model, nchw_to_nhwc(grid), encoder.input_type),
            )
        return cache[bits]

    return get


def test_inputs_are_realistic_and_the_reference_is_not_trivial(
    images: np.ndarray, references: Callable[[int], tuple]
) -> None:
    events = images[:N_EVENTS].reshape(N_EVENTS, -1)
    sums = events.sum(axis=1)
    assert np.all((sums == 0) | ((sums > 0.9) & (sums < 2.1)))  # normalised events sum to ~[1, 2)
    brevitas, _ = references(DEFAULT_BITS)
    latent = QuantConfig().latent
    assert np.count_nonzero(brevitas) > 0.2 * brevitas.size
    assert np.any(brevitas == latent.max_value)  # saturation is exercised
    assert len(np.unique(brevitas)) > 100  # and many codes in between


@pytest.mark.parametrize(("bits", "backend", "io_type"), CONFIGS)
def test_brevitas_qonnx_and_csim_are_bit_exact(
    bits: int, backend: str, io_type: str, images: np.ndarray, exported: Callable, projects: Callable,
    references: Callable,
) -> None:
    encoder, _ = exported(bits)
    project = projects(bits, backend, io_type)
    brevitas, qonnx_out = references(bits)
    grid = to_input_grid(images, encoder.input_type)
    csim = predict_hls_csim(project.path, nchw_to_nhwc(grid), encoder.input_type)
    for target, predictions in (("qonnx", qonnx_out), ("hls_csim", csim)):
        fidelity = compare(brevitas, predictions, encoder.output_type, target)
        assert fidelity.n == len(images)
        assert fidelity.exact == fidelity.n and fidelity.max_lsb == 0, str(fidelity)
        assert fidelity.bit_exact and fidelity.first_mismatch is None


@pytest.mark.parametrize(("backend", "io_type"), [("Vitis", "io_parallel"), ("Catapult", "io_stream")])
def test_every_precision_comes_from_the_contract(backend: str, io_type: str, projects: Callable) -> None:
    project = projects(DEFAULT_BITS, backend, io_type)
    quant = QuantConfig()
    table = project.precisions
    layers = list(table)
    assert table[layers[0]]["result_t"].startswith(quant.input.hls4ml_type().removesuffix(">"))
    assert table[layers[-1]]["result_t"].startswith(quant.latent.hls4ml_type().removesuffix(">"))
    for layer, types in table.items():
        for name, precision in types.items():
            if name != "table_t":  # ReLU has no lookup table; the entry is unused
                assert not precision.startswith("fixed<16,6"), f"{layer}.{name} fell back to the default"
    conv = next(types for layer, types in table.items() if layer.startswith("Conv2D"))
    dense = next(types for layer, types in table.items() if layer.startswith("Dense"))
    assert conv["accum_t"].startswith("fixed<20,9,")  # 11-bit x 6-bit over 3x3 taps + bias, exactly
    assert dense["accum_t"].startswith("fixed<26,13,")  # 12-bit x 6-bit over 128 inputs + bias
    assert conv["weight_t"].startswith(quant.weight.hls4ml_type().removesuffix(">"))
    assert dense["bias_t"].startswith(quant.bias.hls4ml_type().removesuffix(">"))


def test_inputs_off_the_grid_are_refused(projects: Callable, images: np.ndarray) -> None:
    project = projects(DEFAULT_BITS, "Vitis", "io_parallel")
    off_grid = nchw_to_nhwc(images[:4]) + 1e-3
    with pytest.raises(QuantizationError, match="not on the ap_fixed<11,4,AP_RND_CONV,AP_SAT> grid"):
        run_csim(project.path, off_grid)


def test_moved_project_is_refused_and_the_caller_survives(
    projects: Callable, images: np.ndarray, tmp_path: Path, references: Callable
) -> None:
    project = projects(DEFAULT_BITS, "Vitis", "io_parallel")
    quant = QuantConfig()
    sample = nchw_to_nhwc(to_input_grid(images[:50], quant.input))

    copied = tmp_path / "copied"
    shutil.copytree(project.path, copied)
    with pytest.raises(ArtifactError, match=r"compiled at .* moved or copied.*recompile_project"):
        run_csim(copied, sample)

    # A copy recompiled in place works; moving it again leaves a library whose weights are gone.
    recompile_project(copied)
    np.testing.assert_array_equal(run_csim(copied, sample).outputs, references(DEFAULT_BITS)[0][:50])
    moved = tmp_path / "moved"
    copied.rename(moved)
    with pytest.raises(ArtifactError, match=r"moved or copied"):
        run_csim(moved, sample)
    # The trap the guard avoids: the raw library exits the whole process when its weights are gone.
    library = moved / project.library
    trap = (
        f"import ctypes, numpy as np; lib = ctypes.cdll.LoadLibrary({str(library)!r}); "
        "x = np.zeros(64); y = np.zeros(16); "
        f"lib.{project.project_name}_double(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p)); "
        "print('survived')"
    )
    done = subprocess.run([sys.executable, "-c", trap], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "survived" not in done.stdout and "does not exist" in done.stderr

    # A C-level exit in the simulation is reported as an error, not the end of this process.
    recompile_project(moved)
    next((moved / "firmware" / "weights").glob("w*.txt")).unlink()
    with pytest.raises(ArtifactError, match=r"C-simulation failed \(exit status 1\).*does not exist"):
        run_csim(moved, sample)


def test_a_project_is_not_silently_overwritten(projects: Callable, exported: Callable) -> None:
    project = projects(DEFAULT_BITS, "Vitis", "io_parallel")
    encoder, qonnx_model = exported(DEFAULT_BITS)
    with pytest.raises(ArtifactError, match="already exists"):
        build_hls_project(qonnx_model, project.path, encoder.input_type, encoder.output_type)
    with pytest.raises(QuantizationError, match="differs from the QONNX model"):
        build_hls_project(qonnx_model, project.path.parent / "other", encoder.output_type, encoder.output_type)
    assert not (project.path.parent / "other").exists()
