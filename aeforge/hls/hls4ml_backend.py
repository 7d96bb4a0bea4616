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
  rounding is the quantized activation after it,

and after conversion :func:`check_hls_precisions` reads back what hls4ml built and raises
:class:`~aeforge.errors.ArtifactError` if any layer differs (or holds weights off their grid).

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

import numpy as np

from aeforge.artifact import sha256_file
from aeforge.errors import ArtifactError, QuantizationError, ToolUnavailableError
from aeforge.fixedpoint import MAX_BITS, FixedPoint
from aeforge.hls.csim import MANIFEST_NAME, MANIFEST_SCHEMA, check_project_location, load_manifest, write_manifest

if TYPE_CHECKING:
    from qonnx.core.modelwrapper import ModelWrapper

BACKENDS = ("Vitis", "Vivado", "Catapult")
IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource")
DEFAULT_PROJECT_NAME = "encoder"
_WEIGHT_LAYERS = {"Conv1D": 1, "Conv2D": 2, "Dense": 0, "PointwiseConv1D": 1, "PointwiseConv2D": 2}
_PASS_THROUGH_LAYERS = ("Reshape", "Transpose", "ZeroPadding1D", "ZeroPadding2D")


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


# ------------------------------------------------------------------------------------ precisions
def accumulator_type(
    input_type: FixedPoint, weight_type: FixedPoint, bias_type: FixedPoint | None, fan_in: int
) -> FixedPoint:
    """The narrowest signed type that holds ``bias + sum(x_i * w_i)`` over ``fan_in`` terms exactly.

    Works on integer codes: products of the extreme codes, times the fan-in, plus the extreme bias
    codes aligned to the finer LSB. Every partial sum (in any order) stays inside that range,
    because each product range contains zero. No rounding or overflow ever happens in it, so the
    modes are the cheapest (``TRN``, ``WRAP``).
    """
    if fan_in < 1:
        raise QuantizationError(f"fan-in must be >= 1, got {fan_in}")
    product_frac = input_type.frac_bits + weight_type.frac_bits
    frac = max(product_frac, bias_type.frac_bits) if bias_type is not None else product_frac
    corners = [
        a * b for a in (input_type.min_code, input_type.max_code) for b in (weight_type.min_code, weight_type.max_code)
    ]
    shift = frac - product_frac
    low, high = fan_in * min(corners) << shift, fan_in * max(corners) << shift
    if bias_type is not None:
        bias_shift = frac - bias_type.frac_bits
        low += bias_type.min_code << bias_shift
        high += bias_type.max_code << bias_shift
    bits = max(high.bit_length(), (-low - 1).bit_length() if low < 0 else 0) + 1
    if bits > MAX_BITS:
        raise QuantizationError(
            f"an exact accumulator for {input_type.ap_type()} x {weight_type.ap_type()} over {fan_in} terms "
            f"needs {bits} bits (more than {MAX_BITS})"
        )
    return FixedPoint(bits, bits - frac, signed=True, rounding="TRN", overflow="WRAP")


def covers(container: FixedPoint, value: FixedPoint) -> bool:
    """Does every value of ``value`` fit in ``container`` exactly (same or finer grid, wider range)?"""
    return (
        container.frac_bits >= value.frac_bits
        and container.min_value <= value.min_value
        and container.max_value >= value.max_value
    )


@dataclass(frozen=True)
class _GraphTypes:
    """Types the QONNX graph prescribes, by ONNX node name."""

    results: dict[str, FixedPoint]  # Quant, Relu, shape ops, graph input
    accumulators: dict[str, FixedPoint]  # Conv, MatMul and the bias Add
    weights: dict[str, FixedPoint]
    biases: dict[str, FixedPoint]
    absorbed: dict[str, FixedPoint]  # Conv/MatMul -> the Quant applied directly to its (biased) sum


def graph_types(model: ModelWrapper, input_type: FixedPoint) -> _GraphTypes:
    """Every activation, weight, bias and accumulator type of a hardware-ready QONNX graph."""
    from aeforge.quantize.export import describe_node, quant_node_type, tensor_type

    results: dict[str, FixedPoint] = {}
    accumulators: dict[str, FixedPoint] = {}
    weights: dict[str, FixedPoint] = {}
    biases: dict[str, FixedPoint] = {}
    absorbed: dict[str, FixedPoint] = {}
    for graph_input in model.graph.input:
        results[graph_input.name] = input_type
    for node in model.graph.node:
        if node.op_type == "Quant":
            results[node.name] = quant_node_type(model, node)
        elif node.op_type == "Relu":
            consumers = model.find_consumers(node.output[0]) or []
            if len(consumers) == 1 and consumers[0].op_type == "Quant":
                results[node.name] = quant_node_type(model, consumers[0])
        elif node.op_type in ("Conv", "MatMul"):
            what = describe_node(node)
            data_type = tensor_type(model, node.input[0])
            if data_type is None:
                if node.input[0] not in results or model.find_producer(node.input[0]) is not None:
                    raise QuantizationError(f"{what}: input activation is not quantized")
                data_type = results[node.input[0]]
            weight_type = tensor_type(model, node.input[1])
            weight = model.get_initializer(model.find_producer(node.input[1]).input[0]) if weight_type else None
            if weight_type is None or weight is None:
                raise QuantizationError(f"{what}: weight is not a quantized constant")
            bias_type, bias_node = None, None
            if node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
                bias_type = tensor_type(model, node.input[2])
            elif node.op_type == "MatMul":
                consumers = model.find_consumers(node.output[0]) or []
                if len(consumers) == 1 and consumers[0].op_type == "Add":
                    bias_node = consumers[0]
                    other = [name for name in bias_node.input if name != node.output[0]]
                    bias_type = tensor_type(model, other[0]) if other else None
            if node.op_type == "Conv":
                fan_in = int(np.prod(weight.shape)) // int(weight.shape[0])
            else:
                fan_in = int(weight.shape[0])
            accumulator = accumulator_type(data_type, weight_type, bias_type, fan_in)
            accumulators[node.name] = accumulator
            weights[node.name] = weight_type
            if bias_type is not None:
                biases[node.name] = bias_type
            if bias_node is not None:
                accumulators[bias_node.name] = accumulator
            sum_consumers = model.find_consumers((bias_node or node).output[0]) or []
            if len(sum_consumers) == 1 and sum_consumers[0].op_type == "Quant":
                absorbed[node.name] = quant_node_type(model, sum_consumers[0])
        elif node.op_type in ("Reshape", "Flatten", "Transpose", "Pad", "Identity"):
            source = tensor_type(model, node.input[0])
            if source is None and node.input[0] in results:
                source = results[node.input[0]]
            if source is not None:
                results[node.name] = source
    return _GraphTypes(results, accumulators, weights, biases, absorbed)


def hls_config(
    model: ModelWrapper, input_type: FixedPoint, backend: str, reuse_factor: int = 1, strategy: str = "Latency"
) -> dict[str, Any]:
    """``config_from_onnx_model(granularity="name")`` with every layer's precision set from the contract."""
    import hls4ml

    types = graph_types(model, input_type)
    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config_from_onnx_model(
            model, granularity="name", backend=backend, default_precision="fixed<16,6>",
            default_reuse_factor=reuse_factor,
        )
    config["Model"]["Strategy"] = strategy
    config["Model"]["ReuseFactor"] = reuse_factor
    for name, layer in config.get("LayerName", {}).items():
        precision = layer.setdefault("Precision", {})
        if name in types.accumulators:
            # The result stays "auto": an explicit result type would stop hls4ml from fusing the bias
            # Add into the Dense layer. hls4ml then infers a (wider) exact type; it is checked after.
            precision["accum"] = types.accumulators[name].hls4ml_type()
        elif name in types.results:
            precision["result"] = types.results[name].hls4ml_type()
        if name in types.weights:
            precision["weight"] = types.weights[name].hls4ml_type()
        if name in types.biases:
            precision["bias"] = types.biases[name].hls4ml_type()
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = reuse_factor
        if "Strategy" in layer:
            layer["Strategy"] = strategy
    return config


def _parse_precision(precision: Any, where: str) -> FixedPoint:
    try:
        return FixedPoint.parse(str(precision))
    except QuantizationError as error:
        raise ArtifactError(f"hls4ml layer {where}: unexpected precision {precision}: {error}") from None


def check_hls_precisions(
    hls_model: Any, qonnx_model: ModelWrapper, input_type: FixedPoint, output_type: FixedPoint
) -> dict[str, dict[str, str]]:
    """Read back the types hls4ml built; raise if any is not what the fixed-point contract needs.

    Returns ``{layer: {type name: hls4ml precision}}`` for reports.
    """
    types = graph_types(qonnx_model, input_type)
    table: dict[str, dict[str, str]] = {}
    variable_types: dict[str, FixedPoint] = {}
    for layer in hls_model.get_layers():
        name, kind = layer.name, layer.class_name
        table[name] = {key: str(t.precision) for key, t in layer.types.items()}
        where = f"'{name}' ({kind})"
        result = _parse_precision(layer.get_output_variable().type.precision, where)
        inputs = [variable_types[i] for i in layer.inputs if i in variable_types]
        if kind == "Input":
            expected = input_type
        elif kind in _WEIGHT_LAYERS:
            expected = _check_weight_layer(layer, inputs, where, types)
        elif kind == "Activation":
            activation = str(layer.get_attr("activation")).lower()
            onnx_name = name.removesuffix("_act")
            if activation not in ("relu", "linear") or onnx_name not in types.results:
                raise ArtifactError(f"hls4ml layer {where}: activation {activation!r} has no QONNX counterpart")
            expected = types.results[onnx_name]
        elif kind in _PASS_THROUGH_LAYERS:
            if len(inputs) != 1:
                raise ArtifactError(f"hls4ml layer {where}: input type unknown")
            expected = inputs[0]
        else:
            raise ArtifactError(f"hls4ml layer {where}: layer type {kind} is not part of the exact hardware path")
        if result != expected:
            raise ArtifactError(
                f"hls4ml layer {where}: result type {result.ap_type()} differs from the contract's "
                f"{expected.ap_type()}"
            )
        variable_types[layer.outputs[0]] = result
    outputs = hls_model.get_output_variables()
    if len(outputs) != 1:
        raise ArtifactError(f"the hls4ml model has {len(outputs)} outputs; expected 1")
    final = _parse_precision(outputs[0].type.precision, "output")
    if final != output_type:
        raise ArtifactError(
            f"hls4ml output type {final.ap_type()} differs from the output type {output_type.ap_type()}"
        )
    return table


def _check_weight_layer(layer: Any, inputs: list[FixedPoint], where: str, types: _GraphTypes) -> FixedPoint:
    if len(inputs) != 1:
        raise ArtifactError(f"hls4ml layer {where}: input type unknown")
    weight_type = _parse_precision(layer.types["weight_t"].precision, where)
    bias_type = _parse_precision(layer.types["bias_t"].precision, where) if "bias_t" in layer.types else None
    for key, value_type in (("weight", weight_type), ("bias", bias_type)):
        data = layer.weights[key].data if key in layer.weights else None
        if data is None:
            continue
        if value_type is None or not np.all(value_type.is_representable(np.asarray(data, dtype=np.float64))):
            raise ArtifactError(f"hls4ml layer {where}: {key} values are not on the {key}_t grid")
    spatial = _WEIGHT_LAYERS[layer.class_name]
    if spatial == 0:
        fan_in = int(layer.get_attr("n_in"))
    else:
        kernel = [int(layer.get_attr("filt_width"))] + ([int(layer.get_attr("filt_height"))] if spatial == 2 else [])
        fan_in = int(layer.get_attr("n_chan")) * int(np.prod(kernel))
    has_bias = bias_type is not None and np.any(np.asarray(layer.weights["bias"].data) != 0)
    needed = accumulator_type(inputs[0], weight_type, bias_type if has_bias else None, fan_in)
    # hls4ml folds a Quant applied directly to the sum into result_t: casting the exact accumulator
    # to the quantizer's type (same rounding and saturation) is that quantizer, bit for bit.
    absorbed = [t for node, t in types.absorbed.items() if layer.name.endswith(f"_{node}")]
    for key in ("accum_t", "result_t"):
        held = _parse_precision(layer.types[key].precision, where)
        if key == "result_t" and absorbed and held == absorbed[0]:
            continue
        if not covers(held, needed):
            raise ArtifactError(
                f"hls4ml layer {where}: {key} {held.ap_type()} cannot hold the exact sum ({needed.ap_type()})"
            )
    return _parse_precision(layer.get_output_variable().type.precision, where)


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
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            hls_model = hls4ml.converters.convert_from_onnx_model(
                model, output_dir=str(out_dir), project_name=project_name, backend=backend, io_type=io_type,
                hls_config=config, **options,
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
    done = subprocess.run(["bash", "build_lib.sh"], cwd=path, capture_output=True, text=True, check=False)
    library = path / manifest["library"]
    if done.returncode != 0 or not library.is_file():
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise ArtifactError(f"{path}: recompiling the C-simulation library failed: {tail}")
    manifest["compiled_at"] = str(path)
    manifest["library_sha256"] = sha256_file(library)
    write_manifest(path, manifest)
    return HlsProject.from_manifest(path, manifest)
