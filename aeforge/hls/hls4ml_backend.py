"""hls4ml projects from hardware-ready QONNX graphs, with every precision set from the fixed-point contract.

:func:`build_hls_project` converts the channels-last QONNX graph of
:func:`aeforge.quantize.export.export_qonnx` with ``hls4ml.converters.convert_from_onnx_model``,
writes the project and compiles its C-simulation library. hls4ml's own precision inference and its
``fixed<16,6>`` default are not relied upon: the configuration names every layer's types,

* the input layer: exactly the input quantizer's type (so the input conversion is the identity),
* each ``Quant`` node and the ``Relu`` it follows: the quantizer's type (``AP_RND_CONV``/``AP_SAT``
  as Brevitas rounds and clamps),
* each ``Conv``/``MatMul`` (and its bias ``Add``): an accumulator wide enough to hold every sum
  exactly (:func:`accumulator_type`, from the input, weight and bias types and the fan-in); the
  layer result is left to hls4ml's inference (setting it would stop hls4ml fusing the bias ``Add``
  into the ``Dense`` layer), which gives a wider, also exact type -- checked below -- so the only
  rounding is the quantized activation after it; a layer without bias gets its weight type for the
  (zero) bias hls4ml declares anyway,
* pooling, upsampling, merges (residual ``Add``, the ``Sub``/``Mul`` of ``sq_error``) and the
  ``sq_error`` sum (a ``Dense`` with ones): the exact types of
  :func:`aeforge.quantize.export.activation_types`, and for the average pool an accumulator that
  holds the window sum and its exact quotient (see :mod:`aeforge.hls.precisions`),

and after conversion :func:`check_hls_precisions` reads back what hls4ml built and raises
:class:`~aeforge.errors.ArtifactError` if any layer differs (or holds weights off their grid).
hls4ml's ONNX handlers for channels-last pooling and ``Resize`` read the wrong axes; aeforge's own
(:mod:`aeforge.hls.onnx_handlers`) are swapped in while it converts.

The project directory gets an ``aeforge_hls.json`` manifest, written last; C-simulation
(:mod:`aeforge.hls.csim`) refuses a project without it, or one moved since it was compiled.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeforge.artifact import sha256_file
from aeforge.errors import ArtifactError, QuantizationError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint
from aeforge.hls.csim import MANIFEST_NAME, MANIFEST_SCHEMA, check_project_location, load_manifest, write_manifest
from aeforge.hls.precisions import (  # noqa: F401  (re-exported: precision inference lives in precisions.py)
    accumulator_type,
    check_hls_precisions,
    covers,
    graph_types,
)
from aeforge.proc import run_tool

if TYPE_CHECKING:
    from qonnx.core.modelwrapper import ModelWrapper

BACKENDS = ("Vitis", "Vivado", "Catapult")
IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource")
DEFAULT_PROJECT_NAME = "encoder"

COMPILE_TIMEOUT_S = 3600.0  # g++ of the C-simulation library


@dataclass(frozen=True)
class HlsProject:
    """A written and compiled hls4ml project (what the manifest records)."""

    path: Path
    project_name: str
    backend: str
    io_type: str
    strategy: str
    reuse_factor: int
    part: str | None
    clock_period_ns: float
    input_type: FixedPoint
    output_type: FixedPoint
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    library: str
    precisions: dict[str, dict[str, str]] = field(repr=False)
    build_seconds: float = 0.0

    @classmethod
    def from_manifest(cls, path: Path, manifest: dict[str, Any]) -> HlsProject:
        return cls(
            path=path,
            project_name=manifest["project_name"],
            backend=manifest["backend"],
            io_type=manifest["io_type"],
            strategy=manifest["strategy"],
            reuse_factor=int(manifest["reuse_factor"]),
            part=manifest.get("part"),
            clock_period_ns=float(manifest["clock_period_ns"]),
            input_type=FixedPoint.from_config(manifest["input_type"]),
            output_type=FixedPoint.from_config(manifest["output_type"]),
            input_shape=tuple(manifest["input_shape"]),
            output_shape=tuple(manifest["output_shape"]),
            library=manifest["library"],
            precisions=manifest["precisions"],
            build_seconds=float(manifest.get("build_seconds", 0.0)),
        )


# ------------------------------------------------------------------------------------ availability
def backend_status(backend: str) -> tuple[bool, str]:
    """Can this machine write and compile (for C-simulation) a project for ``backend``? And why not."""
    if backend not in BACKENDS:
        return False, f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}"
    try:
        import hls4ml
    except ImportError as error:
        return False, f"hls4ml is not installed ({error})"
    if shutil.which("g++") is None:
        return False, "g++ not found (hls4ml C-simulation compiles the project with g++)"
    if backend == "Catapult":
        templates = Path(hls4ml.__file__).parent / "templates" / "catapult" / "ac_types" / "include" / "ac_fixed.h"
        mgc_home = os.environ.get("MGC_HOME")
        if not templates.is_file() and not (mgc_home and (Path(mgc_home) / "shared/include/ac_fixed.h").is_file()):
            return False, "the Algorithmic C datatypes (ac_fixed.h) are neither in hls4ml's templates nor in $MGC_HOME"
    return True, f"hls4ml {hls4ml.__version__} with g++ (C-simulation only; synthesis needs the vendor tool)"


def is_available(backend: str) -> bool:
    return backend_status(backend)[0]

# ------------------------------------------------------------------------------------ configuration
def hls_config(
    model: ModelWrapper, input_type: FixedPoint, backend: str, reuse_factor: int = 1, strategy: str = "Latency"
) -> dict[str, Any]:
    """``config_from_onnx_model(granularity="name")`` with every layer's precision set from the contract."""
    import hls4ml

    from aeforge.hls.onnx_handlers import channels_last_handlers, hls4ml_view

    types = graph_types(model, input_type)
    with contextlib.redirect_stdout(io.StringIO()), channels_last_handlers():
        config = hls4ml.utils.config_from_onnx_model(
            hls4ml_view(model), granularity="name", backend=backend, default_precision="fixed<16,6>",
            default_reuse_factor=reuse_factor,
        )
    config["Model"]["Strategy"] = strategy
    config["Model"]["ReuseFactor"] = reuse_factor
    for name, layer in config.get("LayerName", {}).items():
        precision = layer.setdefault("Precision", {})
        if name in types.accumulators:
            # A Conv/Dense result stays "auto" unless the graph types it (the sq_error sum): an explicit
            # result type would stop hls4ml from fusing the bias Add into the Dense layer. hls4ml then
            # infers a (wider) exact type; it is checked after.
            precision["accum"] = types.accumulators[name].hls4ml_type()
        if name in types.results:
            precision["result"] = types.results[name].hls4ml_type()
        if name in types.weights:
            precision["weight"] = types.weights[name].hls4ml_type()
        if name in types.biases:
            precision["bias"] = types.biases[name].hls4ml_type()
        elif name in types.weights:  # no bias: hls4ml still declares one (zeros); no fixed<16,6> default
            precision["bias"] = types.weights[name].hls4ml_type()
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = reuse_factor
        if "Strategy" in layer:
            layer["Strategy"] = strategy
    return config

# ------------------------------------------------------------------------------------ build
def _as_model_wrapper(qonnx_model: Any) -> ModelWrapper:
    from qonnx.core.modelwrapper import ModelWrapper

    if isinstance(qonnx_model, ModelWrapper):
        return qonnx_model
    if isinstance(qonnx_model, (str, os.PathLike)) and not Path(qonnx_model).is_file():
        raise ArtifactError(f"{qonnx_model}: QONNX model not found")
    try:
        return ModelWrapper(qonnx_model if not isinstance(qonnx_model, os.PathLike) else str(qonnx_model))
    except Exception as error:
        raise ArtifactError(f"cannot read QONNX model {qonnx_model!r}: {error}") from None


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ArtifactError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()):
            if not overwrite:
                raise ArtifactError(f"{out_dir}: already exists and is not empty (pass overwrite=True to replace it)")
            if not (out_dir / MANIFEST_NAME).is_file():
                raise ArtifactError(f"{out_dir}: refusing to replace a directory that is not an aeforge HLS project")
            shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def build_hls_project(
    qonnx_model: ModelWrapper | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    input_type: FixedPoint | None = None,
    output_type: FixedPoint | None = None,
    backend: str = "Vitis",
    io_type: str = "io_parallel",
    reuse_factor: int = 1,
    strategy: str = "Latency",
    part: str | None = None,
    clock_period_ns: float = 5.0,
    project_name: str = DEFAULT_PROJECT_NAME,
    overwrite: bool = False,
) -> HlsProject:
    """Convert a hardware-ready QONNX graph to an hls4ml project in ``out_dir``, write and compile it.

    ``input_type``/``output_type`` default to the types :func:`~aeforge.quantize.export.export_qonnx`
    recorded in the model and must agree with them. ``part`` ``None`` takes the backend's default
    part. The project must stay where it is built: its C-simulation library refers to it by
    absolute path (see :mod:`aeforge.hls.csim`). On failure ``out_dir`` is removed again.
    """
    from aeforge.quantize.export import META_INPUT_TYPE, qonnx_io_types

    if backend not in BACKENDS:
        raise ArtifactError(f"unknown HLS backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if io_type not in IO_TYPES:
        raise ArtifactError(f"unknown io_type {io_type!r}; expected one of {', '.join(IO_TYPES)}")
    if strategy not in STRATEGIES:
        raise ArtifactError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, int) or reuse_factor < 1:
        raise ArtifactError(f"reuse_factor must be a positive integer, got {reuse_factor!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", project_name):
        raise ArtifactError(f"project_name must be a C identifier, got {project_name!r}")
    available, reason = backend_status(backend)
    if not available:
        raise ToolUnavailableError(f"hls4ml {backend} backend: {reason}")

    model = _as_model_wrapper(qonnx_model)
    if model.get_metadata_prop(META_INPUT_TYPE) is not None:
        recorded_in, recorded_out = qonnx_io_types(model)
        for given, recorded, what in ((input_type, recorded_in, "input"), (output_type, recorded_out, "output")):
            if given is not None and given != recorded:
                raise QuantizationError(
                    f"{what}_type {given.ap_type()} differs from the QONNX model's {recorded.ap_type()}"
                )
        input_type, output_type = recorded_in, recorded_out
    if input_type is None or output_type is None:
        raise QuantizationError("input_type and output_type are needed for a QONNX model not made by aeforge")

    out_dir = Path(out_dir).resolve()
    _prepare_out_dir(out_dir, overwrite)
    start = time.perf_counter()
    try:
        project = _build(model, out_dir, input_type, output_type, backend, io_type, reuse_factor, strategy, part,
                         clock_period_ns, project_name, start)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return project


def _build(
    model: ModelWrapper, out_dir: Path, input_type: FixedPoint, output_type: FixedPoint, backend: str,
    io_type: str, reuse_factor: int, strategy: str, part: str | None, clock_period_ns: float, project_name: str,
    start: float,
) -> HlsProject:
    import hls4ml

    config = hls_config(model, input_type, backend, reuse_factor, strategy)
    options: dict[str, Any] = {"clock_period": clock_period_ns}
    if part is not None:
        options["part"] = part
    from aeforge.hls.onnx_handlers import channels_last_handlers, hls4ml_view

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), channels_last_handlers():
            hls_model = hls4ml.converters.convert_from_onnx_model(
                hls4ml_view(model), output_dir=str(out_dir), project_name=project_name, backend=backend,
                io_type=io_type, hls_config=config, **options,
            )
    except Exception as error:
        raise ArtifactError(f"hls4ml could not convert the QONNX model: {type(error).__name__}: {error}") from error
    precisions = check_hls_precisions(hls_model, model, input_type, output_type)
    try:
        with contextlib.redirect_stdout(log):
            hls_model.write()
            library = Path(hls_model.config.backend.compile(hls_model))
    except Exception as error:
        tail = " | ".join(log.getvalue().strip().splitlines()[-5:])
        raise ArtifactError(f"hls4ml could not write/compile the project in {out_dir}: {error} {tail}") from error
    input_vars, output_vars = hls_model.get_input_variables(), hls_model.get_output_variables()
    if len(input_vars) != 1 or len(output_vars) != 1:
        raise ArtifactError("the hardware path supports one input and one output")
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "project_name": project_name,
        "backend": backend,
        "io_type": io_type,
        "strategy": strategy,
        "reuse_factor": reuse_factor,
        "part": hls_model.config.get_config_value("Part"),
        "clock_period_ns": clock_period_ns,
        "input_type": input_type.as_dict(),
        "output_type": output_type.as_dict(),
        "input_shape": [int(s) for s in input_vars[0].shape],
        "output_shape": [int(s) for s in output_vars[0].shape],
        "layout": "channels_last",
        "compiled_at": str(out_dir),
        "library": str(library.resolve().relative_to(out_dir)),
        "library_sha256": sha256_file(library),
        "precisions": precisions,
        "hls4ml_version": metadata.version("hls4ml"),
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    write_manifest(out_dir, manifest)
    return HlsProject.from_manifest(out_dir, manifest)


def load_hls_project(project_dir: str | os.PathLike[str]) -> HlsProject:
    """Open a project built by :func:`build_hls_project` (checks it has not moved)."""
    path = Path(project_dir)
    return HlsProject.from_manifest(path.resolve(), check_project_location(path))


def recompile_project(project_dir: str | os.PathLike[str]) -> HlsProject:
    """Recompile a moved or copied project's C-simulation library where it is now, and update its manifest."""
    path = Path(project_dir).resolve()
    manifest = load_manifest(path)
    if shutil.which("g++") is None:
        raise ToolUnavailableError("g++ not found; it is needed to compile the C-simulation library")
    bridge = path / f"{manifest['project_name']}_bridge.cpp"
    if bridge.is_file():  # the Catapult bridge carries the weights directory as a string literal
        text = bridge.read_text()
        patched = re.sub(
            r'(static std::string s_weights_dir = )"[^"]*";',
            lambda m: m.group(1) + '"' + str(path / "firmware" / "weights") + '";',
            text,
        )
        if patched != text:
            bridge.write_text(patched)
    try:
        done = run_tool(["bash", "build_lib.sh"], cwd=path, timeout_s=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{path}: recompiling the C-simulation library took longer than "
                            f"{COMPILE_TIMEOUT_S:.0f} s (killed)") from None
    library = path / manifest["library"]
    if done.returncode != 0 or not library.is_file():
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise ArtifactError(f"{path}: recompiling the C-simulation library failed: {tail}")
    manifest["compiled_at"] = str(path)
    manifest["library_sha256"] = sha256_file(library)
    write_manifest(path, manifest)
    return HlsProject.from_manifest(path, manifest)
