"""A user's Brevitas module -> :class:`~aeforge.quantize.models.spec.SequentialSpec` + state dict.

:func:`convert_module` traces the module with ``torch.fx`` (Brevitas layers are leaves), maps each
node to a layer spec, and reads every quantizer from the module in eval mode by running one batch
through it with hooks on the quantizer proxies (scale, bit width, signedness, zero point of the
``QuantTensor`` each returns). Weights and biases are stored as the values Brevitas quantized
them to, with a fixed-point container type that holds each exactly (per-channel power-of-two
scales included), so the rebuilt model's weight quantizers are the identity on them.

Accepted: ``QuantIdentity``, ``QuantReLU``, ``QuantLinear``, ``QuantConv1d``/``QuantConv2d``
(zero padding, stride; no groups or dilation), ``BatchNorm1d``/``2d`` right after a conv/linear
(folded into it: the folded weights are re-quantized by that layer's quantizer, as Brevitas'
``MergeBatchNorm`` does, so the reference becomes the folded module), ``MaxPool1d/2d``,
``AvgPool1d/2d`` (no padding), ``Flatten`` / ``torch.flatten`` (followed by a linear layer, whose
weight columns are permuted to the channels-last order hardware uses), nearest ``Upsample``,
``Dropout``/``Identity`` (dropped), and residual adds (``a + b``) of two tensors of one type.
Everything else is refused with the module path and what to change. The rebuilt model is checked
bit for bit against the (folded) module before anything is written.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from aeforge.errors import QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.quantize.models.spec import (
    INPUT_SOURCE,
    AddSpec,
    AvgPoolSpec,
    Conv1DSpec,
    Conv2DSpec,
    DenseSpec,
    FlattenSpec,
    InputSpec,
    MaxPoolSpec,
    QuantSpec,
    ReLUSpec,
    SequentialSpec,
    UpsampleSpec,
)

_DROPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class ImportError_(QuantizationError):
    """A module that cannot become exact hardware (the message names the module path)."""


@dataclass
class ConvertedModule:
    """What :func:`convert_module` returns: the spec, the state dict and what was done."""

    spec: SequentialSpec
    state: dict[str, torch.Tensor]
    reference: nn.Module  # the user's module after BatchNorm folding (the bit-exact reference)
    folded: list[str] = field(default_factory=list)  # "conv <- bn" pairs
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ tracing
class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        if type(module).__module__.startswith("brevitas."):
            return True
        return super().is_leaf_module(module, qualname)


def _trace(module: nn.Module) -> fx.GraphModule:
    try:
        graph = _LeafTracer().trace(module)
    except Exception as error:  # fx raises many kinds for data-dependent control flow
        raise ImportError_(
            f"{type(module).__name__}: torch.fx cannot trace the module ({type(error).__name__}: {error}); "
            "pass an nn.Sequential or a module whose forward has no data-dependent control flow"
        ) from None
    return fx.GraphModule(module, graph)


# ------------------------------------------------------------------------------------ quantizers
def _log2(value: float, what: str) -> int:
    if not value > 0:
        raise ImportError_(f"{what}: scale {value} is not positive")
    exponent = math.log2(value)
    if abs(exponent - round(exponent)) > 1e-9:
        raise ImportError_(
            f"{what}: scale {value:.6g} is not a power of two; use a Brevitas *FixedPoint quantizer (e.g. "
            "Int8WeightPerTensorFixedPoint, Int8ActPerTensorFixedPoint) or restrict_scaling_type="
            "RestrictValueType.POWER_OF_TWO"
        )
    return round(exponent)


def _quant_meta(quant_tensor: Any, what: str) -> tuple[np.ndarray, int, bool]:
    """(per-element log2 scales, bit width, signed) of a captured QuantTensor; zero point must be 0."""
    if quant_tensor is None or not hasattr(quant_tensor, "scale"):
        raise ImportError_(f"{what}: the quantizer returned no QuantTensor (is quantization disabled?)")
    zero_point = torch.as_tensor(quant_tensor.zero_point).detach().double()
    if torch.any(zero_point != 0):
        raise ImportError_(f"{what}: zero point {zero_point.flatten()[:4].tolist()} is not 0; hardware fixed point "
                           "is symmetric (use a quantizer with zero_point 0)")
    scales = torch.as_tensor(quant_tensor.scale).detach().double().flatten().numpy()
    exponents = np.array([_log2(float(s), what) for s in np.unique(scales)])
    bits = float(torch.as_tensor(quant_tensor.bit_width).detach().double().flatten()[0])
    if bits != round(bits) or not 1 <= bits <= 32:
        raise ImportError_(f"{what}: bit width {bits} is not an integer in 1..32")
    return exponents, round(bits), bool(quant_tensor.signed)


def _activation_type(quant_tensor: Any, proxy: Any, what: str) -> FixedPoint:
    exponents, bits, signed = _quant_meta(quant_tensor, what)
    if len(exponents) != 1:
        raise ImportError_(f"{what}: per-channel activation scales are not supported; use a per-tensor quantizer")
    rounding = str(getattr(proxy, "rounding_mode", "ROUND")).upper()
    modes = {"ROUND": "RND_CONV", "FLOOR": "TRN", "ROUND_TO_ZERO": "TRN_ZERO"}
    if rounding not in modes:
        raise ImportError_(f"{what}: rounding mode {rounding} has no fixed-point equivalent (use ROUND or FLOOR)")
    narrow = bool(getattr(proxy, "is_narrow_range", False))
    overflow = "SAT_SYM" if narrow and signed else "SAT"
    return FixedPoint(bits, bits + int(exponents[0]), signed=signed, rounding=modes[rounding], overflow=overflow)


def _container_type(values: torch.Tensor, quant_tensor: Any, what: str) -> FixedPoint:
    """A type holding every quantized value exactly (per-channel power-of-two grids included)."""
    exponents, bits, _signed = _quant_meta(quant_tensor, what)
    frac = -int(exponents.min())
    codes = torch.round(values.detach().double() * 2.0**frac)
    if not torch.equal(codes, values.detach().double() * 2.0**frac):
        raise ImportError_(f"{what}: quantized values are off their power-of-two grid")  # pragma: no cover
    largest = int(codes.abs().max().item()) if codes.numel() else 0
    width = max(bits + int(exponents.max() - exponents.min()), largest.bit_length() + 1, 2)
    return FixedPoint(width, width - frac, signed=True)


def _check_calibrated(proxy: Any, what: str) -> None:
    for name, sub in proxy.named_modules():
        counter = getattr(sub, "counter", None)
        steps = getattr(sub, "collect_stats_steps", None)
        if isinstance(counter, int) and isinstance(steps, int) and counter < steps:
            raise ImportError_(
                f"{what}: the activation quantizer is still collecting statistics ({counter} of {steps} training "
                f"steps in {name or 'its scaling'}), so its scale is not final; run at least {steps - counter} more "
                "training batches through the model (in train mode) before importing"
            )


# ------------------------------------------------------------------------------------ capture
class _Capture:
    """Hooks on every quantizer proxy: the QuantTensor each returns on one batch (shared proxies too)."""

    def __init__(self, module: nn.Module) -> None:
        self.outputs: dict[str, Any] = {}
        self.handles = []
        names: dict[int, list[str]] = {}
        proxies: dict[int, nn.Module] = {}
        for name, sub in module.named_modules(remove_duplicate=False):
            if type(sub).__name__.endswith("QuantProxyFromInjector"):
                names.setdefault(id(sub), []).append(name)
                proxies[id(sub)] = sub
        for key, proxy in proxies.items():
            self.handles.append(proxy.register_forward_hook(self._hook(names[key])))

    def _hook(self, names: list[str]) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            for name in names:
                self.outputs.setdefault(name, output)
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


# ------------------------------------------------------------------------------------ folding
def _fold_batchnorms(graph_module: fx.GraphModule, folded: list[str]) -> None:
    """Fold BatchNorm nodes into the conv/linear producing their input (in place)."""
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], _BATCHNORMS):
            continue
        producer = node.args[0]
        layer = modules.get(producer.target) if isinstance(producer, fx.Node) and producer.op == "call_module" else None
        if layer is None or not hasattr(layer, "weight_quant") or len(producer.users) != 1:
            raise ImportError_(
                f"{node.target}: BatchNorm is folded only directly after a QuantConv/QuantLinear whose output feeds "
                "nothing else; move it there or remove it"
            )
        bn = modules[node.target]
        if layer.bias is None:
            raise ImportError_(f"{producer.target}: folding {node.target} needs a bias; build the layer with "
                               "bias=True and a bias quantizer")
        with torch.no_grad():
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps) if bn.affine else \
                1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
            shift = (bn.bias.double() if bn.affine else 0.0) - bn.running_mean.double() * scale
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.copy_((layer.weight.double() * scale.reshape(shape)).to(layer.weight.dtype))
            layer.bias.copy_((layer.bias.double() * scale + shift).to(layer.bias.dtype))
        node.replace_all_uses_with(producer)
        graph_module.graph.erase_node(node)
        folded.append(f"{producer.target} <- {node.target}")
    graph_module.graph.lint()
    graph_module.recompile()


# ------------------------------------------------------------------------------------ walking
_CONVS = {"QuantConv1d": 1, "QuantConv2d": 2}


class _Walker:
    """Maps the traced nodes, in order, to layer specs (see the module docstring)."""

    def __init__(self, graph_module: fx.GraphModule, captured: dict[str, Any], input_spec: InputSpec,
                 converted: ConvertedModule) -> None:
        self.modules = dict(graph_module.named_modules())
        self.captured = captured
        self.input = input_spec
        self.converted = converted
        self.layers: list[Any] = []
        self.state: dict[str, torch.Tensor] = {}
        self.tensor: dict[fx.Node, str] = {}
        self.current = INPUT_SOURCE
        self.flatten_order: np.ndarray | None = None  # CHW -> HWC column order for the next linear layer
        self.float_relu: str | None = None  # an nn.ReLU waiting for its QuantIdentity
        self.input_absorbed = False

    # ------------------------------------------------------------------ helpers
    def shape(self) -> tuple[int, ...]:
        if not self.layers:
            return self.input.shape
        return SequentialSpec(input=self.input, layers=tuple(self.layers)).output_shape

    def out_type(self) -> FixedPoint:
        if not self.layers:
            return self.input.type
        return SequentialSpec(input=self.input, layers=tuple(self.layers)).output_type

    def add(self, layer: Any, node: fx.Node) -> None:
        if self.float_relu is not None:
            raise ImportError_(f"{self.float_relu}: an unquantized ReLU must be followed directly by a QuantIdentity "
                               "(or use QuantReLU)")
        self.layers.append(layer)
        self.current = layer.name
        self.tensor[node] = layer.name

    def data_input(self, node: fx.Node, where: str) -> None:
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or self.tensor.get(source) != self.current:
            raise ImportError_(
                f"{where}: reads {source}, not the output of the layer before it ({self.current}); only chains with "
                "residual adds are supported (no parallel branches)"
            )

    def proxy_output(self, path: str, what: str) -> Any:
        if path not in self.captured:
            raise ImportError_(f"{what}: its quantizer did not run on the calibration batch (is it disabled?)")
        return self.captured[path]

    # ------------------------------------------------------------------ nodes
    def walk(self, graph: fx.Graph) -> None:
        for node in graph.nodes:
            if node.op == "placeholder":
                if self.tensor:
                    raise ImportError_(f"the module takes more than one input ({node.name}); it must take one tensor")
                self.tensor[node] = INPUT_SOURCE
            elif node.op == "call_module":
                self.module_node(node, self.modules[node.target])
            elif node.op in ("call_function", "call_method"):
                self.function_node(node)
            elif node.op == "output":
                result = node.args[0]
                if not isinstance(result, fx.Node) or self.tensor.get(result) != self.current:
                    raise ImportError_("the module must return one tensor, the output of its last layer")
                if self.flatten_order is not None:
                    raise ImportError_("the module ends with a Flatten of a multi-dimensional tensor: aeforge flattens "
                                       "channels-last as hls4ml does, so the element order would change; end the "
                                       "model before the Flatten (or after a Linear layer)")
                if self.float_relu is not None:
                    raise ImportError_(f"{self.float_relu}: the model ends with an unquantized ReLU; use QuantReLU")

    def module_node(self, node: fx.Node, module: nn.Module) -> None:
        path = str(node.target)
        kind = type(module).__name__
        if isinstance(module, _DROPPED):
            self.tensor[node] = self.tensor[node.args[0]]
            self.converted.dropped.append(f"{path} ({kind})")
            return
        self.data_input(node, f"{path} ({kind})")
        if kind == "QuantIdentity":
            spec = _activation_type(self.proxy_output(f"{path}.act_quant", path), module.act_quant, path)
            if self.float_relu is not None:
                self.float_relu = None
                self.add(ReLUSpec(name=path, type=spec), node)
            elif not self.layers and not self.input_absorbed and spec == self.input.type:
                self.input_absorbed = True  # the input quantizer: inputs already sit on the input grid
                self.tensor[node] = INPUT_SOURCE
            else:
                self.add(QuantSpec(name=path, type=spec), node)
        elif kind == "QuantReLU":
            spec = _activation_type(self.proxy_output(f"{path}.act_quant", path), module.act_quant, path)
            self.add(ReLUSpec(name=path, type=spec), node)
        elif isinstance(module, nn.ReLU):
            self.float_relu = path
            self.tensor[node] = self.current
        elif kind == "QuantLinear" or kind in _CONVS:
            self.weight_layer(node, module, path, kind)
        elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
            self.pool(node, module, path)
        elif isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ImportError_(f"{path}: only Flatten(start_dim=1) is supported")
            self.flatten(node, path)
        elif isinstance(module, nn.Upsample):
            self.upsample(node, module, path)
        else:
            raise ImportError_(
                f"{path}: {kind} is not supported; supported: QuantIdentity, QuantReLU, QuantLinear, QuantConv1d/2d, "
                "BatchNorm after a conv/linear, MaxPool/AvgPool 1d/2d, Flatten, Upsample (nearest), Dropout, "
                "Identity, residual adds"
            )

    def function_node(self, node: fx.Node) -> None:
        target = node.target
        if target in (operator.add, torch.add) or (node.op == "call_method" and target == "add"):
            operands = [a for a in node.args if isinstance(a, fx.Node)]
            if len(operands) != 2 or len(node.args) != 2 or node.kwargs:
                raise ImportError_(f"{node.name}: only the sum of two tensors is supported")
            names = [self.tensor.get(a) for a in operands]
            if self.current not in names:
                raise ImportError_(f"{node.name}: adds {names[0]} and {names[1]}, neither of which is the previous "
                                   f"layer ({self.current}); only residual adds of a chain are supported")
            other = names[1] if names[0] == self.current else names[0]
            if other is None:
                raise ImportError_(f"{node.name}: adds a tensor that is not a layer output")
            self.add(AddSpec(name=node.name, source=other), node)
        elif target in (torch.flatten,) or (node.op == "call_method" and target == "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if start != 1 or len(node.args) > 2 or "end_dim" in node.kwargs:
                raise ImportError_(f"{node.name}: only flatten(x, 1) is supported (keep the batch axis)")
            self.data_input(node, node.name)
            self.flatten(node, node.name)
        else:
            raise ImportError_(f"{node.name}: the operation {getattr(target, '__name__', target)} is not supported; "
                               "use modules (nn.Flatten, QuantReLU, ...) and residual '+' only")

    # ------------------------------------------------------------------ layers
    def weight_layer(self, node: fx.Node, module: nn.Module, path: str, kind: str) -> None:
        if getattr(module, "input_quant", None) is not None and module.input_quant.is_quant_enabled:
            spec = _activation_type(self.proxy_output(f"{path}.input_quant", path), module.input_quant, f"{path} input")
            self.add(QuantSpec(name=f"{path}.input_quant", type=spec), node)
        quant_weight = module.quant_weight()
        weight = quant_weight.value.detach().double()
        weight_type = _container_type(weight, quant_weight, f"{path}.weight")
        bias, bias_type = None, None
        if module.bias is not None:
            if not module.bias_quant.is_quant_enabled:
                raise ImportError_(f"{path}: the bias is float (no bias quantizer); give it bias_quant (e.g. "
                                   "Int16Bias) or build it with bias=False")
            quant_bias = self.proxy_output(f"{path}.bias_quant", f"{path}.bias")
            bias = quant_bias.value.detach().double()
            bias_type = _container_type(bias, quant_bias, f"{path}.bias")
        shape = self.shape()
        if kind == "QuantLinear":
            if len(shape) != 1:
                raise ImportError_(f"{path}: QuantLinear needs a flat input, got {shape}; add an nn.Flatten first")
            if self.flatten_order is not None:
                weight = weight[:, torch.as_tensor(self.flatten_order)]
                self.flatten_order = None
            layer: Any = DenseSpec(name=path, units=module.out_features, weight=weight_type, bias=bias_type)
        else:
            layer = self.conv(module, path, kind, weight_type, bias_type, shape)
        self.add(layer, node)
        index = len(self.layers) - 1
        self.state[f"layers.{index}.weight"] = weight.float()
        if bias is not None:
            self.state[f"layers.{index}.bias"] = bias.float()
        if getattr(module, "output_quant", None) is not None and module.output_quant.is_quant_enabled:
            spec = _activation_type(self.proxy_output(f"{path}.output_quant", path), module.output_quant,
                                    f"{path} output")
            self.add(QuantSpec(name=f"{path}.output_quant", type=spec), node)

    def conv(self, module: nn.Module, path: str, kind: str, weight_type: FixedPoint, bias_type: FixedPoint | None,
             shape: tuple[int, ...]) -> Any:
        dims = _CONVS[kind]
        if len(shape) != dims + 1:
            raise ImportError_(f"{path}: {kind} needs a {dims}-D input with channels, got {shape}")
        if module.groups != 1 or any(d != 1 for d in module.dilation):
            raise ImportError_(f"{path}: grouped/depthwise or dilated convolutions are not supported")
        if module.padding_mode != "zeros":
            raise ImportError_(f"{path}: padding_mode {module.padding_mode!r} is not supported; use zeros")
        kernel = tuple(module.kernel_size)
        if module.padding == "valid":
            pads: tuple[tuple[int, int], ...] = tuple((0, 0) for _ in kernel)
        elif module.padding == "same":
            pads = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
        else:
            pads = tuple((int(p), int(p)) for p in module.padding)
        if dims == 1:
            return Conv1DSpec(name=path, filters=module.out_channels, kernel_size=kernel[0],
                              strides=int(module.stride[0]), padding=[list(pads[0])], weight=weight_type,
                              bias=bias_type)
        return Conv2DSpec(name=path, filters=module.out_channels, kernel_size=kernel, strides=tuple(module.stride),
                          padding=[list(p) for p in pads], weight=weight_type, bias=bias_type)

    def pool(self, node: fx.Node, module: nn.Module, path: str) -> None:
        dims = 1 if isinstance(module, (nn.MaxPool1d, nn.AvgPool1d)) else 2

        def per_axis(value: Any) -> tuple[int, ...]:
            return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims

        padding = per_axis(module.padding)
        if any(padding) or module.ceil_mode or getattr(module, "return_indices", False):
            raise ImportError_(f"{path}: pooling with padding, ceil_mode or return_indices is not supported")
        if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) and any(d != 1 for d in per_axis(module.dilation)):
            raise ImportError_(f"{path}: dilated pooling is not supported")
        if getattr(module, "divisor_override", None):
            raise ImportError_(f"{path}: divisor_override is not supported")
        kernel = per_axis(module.kernel_size)
        stride = per_axis(module.stride if module.stride is not None else module.kernel_size)
        cls = MaxPoolSpec if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) else AvgPoolSpec
        self.add(cls(name=path, pool_size=list(kernel), strides=list(stride)), node)

    def flatten(self, node: fx.Node, path: str) -> None:
        shape = self.shape()
        if len(shape) > 1:
            channels_first = (shape[-1], *shape[:-1])
            order = np.arange(math.prod(shape)).reshape(channels_first)
            self.flatten_order = np.moveaxis(order, 0, -1).reshape(-1)
        self.add(FlattenSpec(name=path), node)

    def upsample(self, node: fx.Node, module: nn.Module, path: str) -> None:
        if module.mode != "nearest" or module.size is not None or module.scale_factor is None:
            raise ImportError_(f"{path}: only Upsample(scale_factor=k, mode='nearest') is supported")
        factors = module.scale_factor if isinstance(module.scale_factor, tuple) else (module.scale_factor,)
        if any(float(f) != int(f) or int(f) < 1 for f in factors):
            raise ImportError_(f"{path}: scale factors must be positive integers, got {module.scale_factor}")
        self.add(UpsampleSpec(name=path, size=[int(f) for f in factors] if len(factors) > 1 else int(factors[0])),
                 node)


# ------------------------------------------------------------------------------------ entry point
def _to_channels_last(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*input_shape[1:], input_shape[0]) if len(input_shape) > 1 else tuple(input_shape)


def convert_module(module: nn.Module, input_shape: tuple[int, ...], input_type: FixedPoint,
                   calibration_inputs: np.ndarray) -> ConvertedModule:
    """Trace, fold and read ``module`` into a spec and state dict (not yet checked; see :func:`build_checked`)."""
    if not isinstance(module, nn.Module):
        raise ImportError_(f"expected a torch.nn.Module, got {type(module).__name__}")
    reference = _trace(copy.deepcopy(module).cpu().float().eval())
    converted = ConvertedModule(spec=None, state={}, reference=reference)  # type: ignore[arg-type]
    _fold_batchnorms(reference, converted.folded)
    for name, sub in reference.named_modules():
        if type(sub).__name__ == "ActQuantProxyFromInjector" and sub.is_quant_enabled:
            _check_calibrated(sub, name.rsplit(".", 1)[0] or name)
    capture = _Capture(reference)
    try:
        with torch.no_grad():
            reference(torch.as_tensor(calibration_inputs[:64], dtype=torch.float32))
    except Exception as error:
        raise ImportError_(f"{type(module).__name__}: running the module on a batch of shape "
                           f"{(64, *input_shape)} failed: {type(error).__name__}: {error}") from None
    finally:
        capture.close()
    walker = _Walker(reference, capture.outputs, InputSpec(shape=_to_channels_last(input_shape), type=input_type),
                     converted)
    walker.walk(reference.graph)
    if not walker.layers:
        raise ImportError_(f"{type(module).__name__}: the module has no layers aeforge can build")
    converted.spec = SequentialSpec(input=walker.input, layers=tuple(walker.layers))
    converted.state = walker.state
    return converted


def _run(module: nn.Module, inputs: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    module = copy.deepcopy(module).double().eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            out = module(torch.as_tensor(inputs[start:start + batch_size], dtype=torch.float64))
            out = getattr(out, "value", out)
            outputs.append(out.reshape(out.shape[0], -1).numpy())
    return np.concatenate(outputs)


def build_checked(converted: ConvertedModule, inputs: np.ndarray) -> nn.Module:
    """The aeforge model of ``converted``, after checking it equals the (folded) module bit for bit."""
    from aeforge.quantize.models.sequential import SequentialQuantModel

    model = SequentialQuantModel(converted.spec)
    state = model.state_dict()
    state.update(converted.state)
    model.load_state_dict(state)
    model.eval()
    expected = _run(converted.reference, inputs)
    got = _run(model, inputs)
    if expected.shape != got.shape:
        raise ImportError_(f"the rebuilt model returns {got.shape[1:]} values per sample, the module "
                           f"{expected.shape[1:]}")
    different = np.any(expected != got, axis=1)
    if different.any():
        row = int(np.argmax(different))
        lsb = converted.spec.output_type.lsb
        worst = float(np.max(np.abs(expected - got)) / lsb)
        raise ImportError_(
            f"the rebuilt model differs from the module on {int(different.sum())} of {len(inputs)} inputs (first: "
            f"row {row}, up to {worst:g} output LSB): a quantizer behaves in a way aeforge does not reproduce "
            "(e.g. a custom quantizer, a float operation between layers, or inputs off the input grid)"
        )
    return model
