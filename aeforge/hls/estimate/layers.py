"""Per-layer analytical cost of a model's spec: interval nodes in, adders, comparators, multipliers out.

:func:`layer_costs` walks the :class:`~aeforge.quantize.models.spec.SequentialSpec` of any hardware
model (its :class:`~aeforge.quantize.models.sequential.SequentialQuantModel`; the ECON-T encoder
through ``as_sequential()``), propagating one :data:`~aeforge.hls.estimate.intervals.Node` per
element (channels-last). Per kind, as da4ml builds it (:mod:`aeforge.hls.rtl.trace`):

* ``conv1d`` / ``conv2d`` / ``dense``: CSD shift-and-add terms per constant weight (padding dropped),
  one balanced adder tree per output;
* ``relu`` / ``quant``: a rounding adder (RND_CONV below the new LSB) and a saturation mux, 1 LUT a bit;
* ``maxpool``: a tree of ``window - 1`` comparators (a subtractor: 1 LUT a bit and its carry chain)
  each with a mux of the result width;
* ``avgpool``: an adder tree per window (the ``2**-k`` is wiring); ``add``: one adder per element;
* ``sq_error``: a subtractor, a multiplier (``diff x diff``) per element, and an adder tree. On xc7
  Yosys maps a product of ``XC7_DSP_MIN_PRODUCT_BITS`` bits or more to a DSP48E1, smaller ones to
  about ``XC7_MULT_LUT_PER_BIT2 x n^2`` LUTs (measured with Yosys 0.23 on ``a * a``: 3 bits 7 LUTs,
  4 bits 10 LUTs, 5 bits one DSP);
* ``flatten`` / ``upsample``: wiring, no cost.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aeforge.hls.estimate.intervals import (
    Node,
    adder_bits,
    constant_node,
    csd_digits,
    max_node,
    negate,
    node_bits,
    shift_node,
    square_node,
    sum_tree,
    type_node,
)

GENERIC_GATES_PER_ADDER_BIT = 6.0
"""Yosys generic gates per ripple-adder bit (ABC maps a full adder to about 2 XOR/XNOR and 3-4
AND/OR-type cells); used for ``ResourceEstimate.gates`` (also an upper bound: Yosys / estimate
0.62 ECON-T, 0.61 and 0.68 for the MLPs)."""
GENERIC_GATES_PER_MUX_BIT = 2.0
"""Generic gates per rounding-adder / saturation-mux / max-mux bit."""
XC7_DSP_MIN_PRODUCT_BITS = 9
"""Yosys ``synth_xilinx`` puts a multiplier on a DSP48E1 from this product width on (0.23, measured)."""
XC7_MULT_LUT_PER_BIT2 = 0.65
"""LUTs of an ``n x n`` LUT multiplier on xc7, per ``n^2`` (Yosys 0.23: n=3 7 LUTs, n=4 10 LUTs)."""
MULTIPLIER_DELAY = 2
"""Delay units (adder levels) charged for one variable x variable multiplier."""


@dataclass(frozen=True)
class LayerEstimate:
    """Analytical cost of one layer (adders and bits summed over all its outputs)."""

    name: str
    kind: str  # the spec kind: conv1d, conv2d, dense, relu, quant, maxpool, avgpool, upsample, add, sq_error
    macs: int  # multiply-accumulates (non-padded inputs x outputs); 0 for other kinds
    nonzero_weights: int  # nonzero weight uses (conv: per output pixel)
    csd_digits: int  # nonzero CSD digits over those uses (shift-and-add terms)
    adders: int  # adders and subtractors (a maxpool's comparators are counted in ``comparators``)
    adder_bits: int  # summed widths of the adders and comparators (quantizers: rounding + mux bits)
    lut: int
    carry: int
    depth: int  # delay units (adder levels) of the layer
    outputs: int  # elements of the layer's output
    output_bits: int  # bits of the layer's output vector
    comparators: int = 0  # maxpool: compare-and-select units
    multipliers: int = 0  # sq_error: variable x variable products
    dsp: int = 0  # xc7: multipliers Yosys maps to DSP48E1
    gates: int = 0  # generic-gate estimate of the layer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerCost:
    """One layer's estimate, its output nodes and the live bits after each of its delay units."""

    spec: Any
    estimate: LayerEstimate
    nodes: list[Node]
    shape: tuple[int, ...]
    levels: list[int] = field(default_factory=list)
    register_capped: bool = False  # a cut inside an adder tree may register the layer's inputs instead


def weight_codes(layer: Any, module: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer weight codes (torch layout) and quantized bias values of a conv/dense layer."""
    weight = layer.weight.to_codes(_numpy(module.weight))
    bias = None
    if layer.bias is not None and getattr(module, "bias", None) is not None:
        bias = layer.bias.quantize(_numpy(module.bias))
    return weight, bias


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def conv_windows(layer: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], list[list[tuple[int, int]]]]:
    """Conv output shape and, per output position, (flat input index, flat weight index) pairs (padding dropped).

    Flat weight indices address the torch weight reshaped to ``(F, C * prod(kernel))``.
    """
    from aeforge.quantize.models.spec import padding_pairs, spatial

    dims = len(shape) - 1
    where = f"{layer.kind} layer {layer.name!r}"
    kernel = spatial(layer.kernel_size, dims, where)
    strides = spatial(layer.strides, dims, where)
    pads = padding_pairs(layer.padding, shape[:dims], kernel, strides, where)
    sizes, channels = shape[:dims], shape[-1]
    out = [(s + b + a - k) // st + 1 for s, (b, a), k, st in zip(sizes, pads, kernel, strides, strict=True)]
    taps = math.prod(kernel)
    positions = []
    for position in itertools.product(*(range(n) for n in out)):
        pairs = []
        for tap, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
            coords = [p * st + o - b for p, st, o, (b, _) in zip(position, strides, offset, pads, strict=True)]
            if all(0 <= c < s for c, s in zip(coords, sizes, strict=True)):
                base = int(np.ravel_multi_index(coords, sizes)) * channels
                pairs.extend((base + ch, ch * taps + tap) for ch in range(channels))
        positions.append(pairs)
    return (*out, layer.filters), positions


def pool_windows(layer: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], list[list[int]]]:
    """Pooling output shape and, per output element (channels-last), its flat input indices."""
    dims = len(shape) - 1
    pool, strides = layer.windows(dims)
    sizes, channels = shape[:dims], shape[-1]
    out = [(n - p) // s + 1 for n, p, s in zip(sizes, pool, strides, strict=True)]
    windows = []
    for position in itertools.product(*(range(n) for n in out)):
        cells = [
            int(np.ravel_multi_index([q * s + o for q, s, o in zip(position, strides, offset, strict=True)], sizes))
            for offset in itertools.product(*(range(p) for p in pool))
        ]
        windows.extend([c * channels + ch for c in cells] for ch in range(channels))
    return (*out, channels), windows


def upsample_index(layer: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """Upsampled shape and, per output element, the flat input index it repeats."""
    from aeforge.quantize.models.spec import spatial

    index = np.arange(math.prod(shape)).reshape(shape)
    for axis, factor in enumerate(spatial(layer.size, len(shape) - 1, f"upsample layer {layer.name!r}")):
        index = np.repeat(index, factor, axis=axis)
    return index.shape, index.ravel()


# ------------------------------------------------------------------------------------ costs per kind
def _estimate(layer: Any, nodes: list[Node], **counts: int) -> LayerEstimate:
    values = {"macs": 0, "nonzero_weights": 0, "csd_digits": 0, "adders": 0, "adder_bits": 0, "lut": 0,
              "carry": 0, "depth": 0, "comparators": 0, "multipliers": 0, "dsp": 0, "gates": 0, **counts}
    return LayerEstimate(name=layer.name, kind=layer.kind, outputs=len(nodes),
                         output_bits=sum(node_bits(n) for n in nodes), **values)


def _add_levels(levels: list[int], level_bits: list[int]) -> None:
    for level, bits in enumerate(level_bits):
        if level >= len(levels):
            levels.append(0)
        levels[level] += bits


def _linear(layer: Any, module: Any, nodes: list[Node], shape: tuple[int, ...]) -> LayerCost:
    codes, bias = weight_codes(layer, module)
    matrix = codes.reshape(codes.shape[0], -1)
    if layer.kind == "dense":
        out_shape: tuple[int, ...] = (matrix.shape[0],)
        groups = [[(i, i) for i in range(len(nodes))]]
    else:
        out_shape, groups = conv_windows(layer, shape)
    lsb_w = -layer.weight.frac_bits
    c = dict.fromkeys(("macs", "nonzero", "digits", "adders", "bits", "carry", "depth"), 0)
    levels: list[int] = []
    outputs: list[Node] = []
    digit_cache: dict[int, list[tuple[int, int]]] = {}
    for pairs in groups:  # conv: one group per position; outputs are (position, filter), channels-last
        for f in range(matrix.shape[0]):
            terms: list[Node] = []
            for x_index, w_index in pairs:
                c["macs"] += 1
                code = int(matrix[f, w_index])
                lo, hi, lsb = nodes[x_index]
                if code == 0 or (lo == 0 and hi == 0):
                    continue
                c["nonzero"] += 1
                digits = digit_cache.setdefault(code, csd_digits(code))
                c["digits"] += len(digits)
                for position, sign in digits:
                    scale = sign * 2.0 ** (position + lsb_w)
                    terms.append((min(lo * scale, hi * scale), max(lo * scale, hi * scale), lsb + position + lsb_w))
            if bias is not None and bias[f] != 0:
                terms.append(constant_node(float(bias[f])))
            total, tree = sum_tree(terms)
            outputs.append(total if total is not None else (0.0, 0.0, 0))
            c["adders"] += tree.adders
            c["bits"] += tree.bits
            c["carry"] += tree.carry
            c["depth"] = max(c["depth"], tree.depth)
            _add_levels(levels, tree.level_bits)
    if levels:  # an output whose tree finished early stays alive at the later levels
        levels[-1] = sum(node_bits(n) for n in outputs)
    estimate = _estimate(layer, outputs, macs=c["macs"], nonzero_weights=c["nonzero"], csd_digits=c["digits"],
                         adders=c["adders"], adder_bits=c["bits"], lut=c["bits"], carry=c["carry"], depth=c["depth"],
                         gates=round(c["bits"] * GENERIC_GATES_PER_ADDER_BIT))
    return LayerCost(layer, estimate, outputs, out_shape, levels, register_capped=True)


def quant_node(node: Node, spec: Any, relu: bool) -> tuple[Node, int, int]:
    """Output node, LUT bits (rounding adder + saturation mux) and delay units of one quantizer."""
    from aeforge.hls.estimate.intervals import msb

    lo, hi, lsb = node
    if relu:
        lo, hi = max(lo, 0.0), max(hi, 0.0)
    out_lo, out_hi = (float(v) for v in spec.quantize(np.array([lo, hi])))
    out = (out_lo, out_hi, -spec.frac_bits)
    if node[0] == 0 and node[1] == 0:
        return (0.0, 0.0, 0), 0, 0
    bits = 0
    delay = 0
    if lsb < -spec.frac_bits and spec.rounding != "TRN":
        bits += max(msb(lo, hi) + 1 + spec.frac_bits, 1)  # add half (+ the new LSB) above the new LSB
        delay = 1
    clamps = lo < spec.min_value or hi > spec.max_value or (relu and node[0] < 0)
    if clamps:
        bits += node_bits(out)  # one LUT per output bit selects value / bound
        delay = max(delay, 1)
    return out, bits, delay


def _quant(layer: Any, nodes: list[Node], shape: tuple[int, ...], relu: bool) -> LayerCost:
    quantized = [quant_node(n, layer.type, relu) for n in nodes]
    outputs = [q[0] for q in quantized]
    bits = sum(q[1] for q in quantized)
    depth = max((q[2] for q in quantized), default=0)
    estimate = _estimate(layer, outputs, adder_bits=bits, lut=bits, depth=depth,
                         gates=round(bits * GENERIC_GATES_PER_MUX_BIT))
    out_bits = estimate.output_bits
    return LayerCost(layer, estimate, outputs, shape, [out_bits] * depth)


def _reduce_tree(windows: list[list[Node]], combine: Any) -> tuple[list[Node], dict[str, int], list[int]]:
    """Balanced trees of a two-input unit over each window: outputs, summed counters, live bits per level."""
    counts = {"units": 0, "bits": 0, "carry": 0, "mux": 0, "depth": 0}
    levels: list[int] = []
    outputs = []
    for window in windows:
        nodes = list(window)
        level_bits = []
        while len(nodes) > 1:
            paired = []
            for i in range(0, len(nodes) - 1, 2):
                result, bits, mux = combine(nodes[i], nodes[i + 1])
                counts["units"] += 1
                counts["bits"] += bits
                counts["carry"] += math.ceil(bits / 4)
                counts["mux"] += mux
                paired.append(result)
            nodes = paired + ([nodes[-1]] if len(nodes) % 2 else [])
            level_bits.append(sum(node_bits(n) for n in nodes))
        counts["depth"] = max(counts["depth"], len(level_bits))
        _add_levels(levels, level_bits)
        outputs.append(nodes[0])
    if levels:
        levels[-1] = sum(node_bits(n) for n in outputs)
    return outputs, counts, levels


def _max_unit(a: Node, b: Node) -> tuple[Node, int, int]:
    out = max_node(a, b)
    return out, adder_bits(a, negate(b))[1], node_bits(out)


def _add_unit(a: Node, b: Node) -> tuple[Node, int, int]:
    out, bits = adder_bits(a, b)
    return out, bits, 0


def _pool(layer: Any, nodes: list[Node], shape: tuple[int, ...]) -> LayerCost:
    out_shape, windows = pool_windows(layer, shape)
    window_nodes = [[nodes[i] for i in window] for window in windows]
    if layer.kind == "maxpool":
        outputs, c, levels = _reduce_tree(window_nodes, _max_unit)
        gates = round(c["bits"] * GENERIC_GATES_PER_ADDER_BIT + c["mux"] * GENERIC_GATES_PER_MUX_BIT)
        estimate = _estimate(layer, outputs, comparators=c["units"], adder_bits=c["bits"], lut=c["bits"] + c["mux"],
                             carry=c["carry"], depth=c["depth"], gates=gates)
        return LayerCost(layer, estimate, outputs, out_shape, levels)
    sums, c, levels = _reduce_tree(window_nodes, _add_unit)
    shift = len(windows[0]).bit_length() - 1 if windows else 0
    outputs = [shift_node(n, -shift) for n in sums]
    estimate = _estimate(layer, outputs, adders=c["units"], adder_bits=c["bits"], lut=c["bits"], carry=c["carry"],
                         depth=c["depth"], gates=round(c["bits"] * GENERIC_GATES_PER_ADDER_BIT))
    return LayerCost(layer, estimate, outputs, out_shape, levels)


def _add(layer: Any, nodes: list[Node], other: list[Node], shape: tuple[int, ...]) -> LayerCost:
    results = [adder_bits(a, b) for a, b in zip(nodes, other, strict=True)]
    outputs = [r[0] for r in results]
    bits = sum(r[1] for r in results)
    estimate = _estimate(layer, outputs, adders=len(results), adder_bits=bits, lut=bits,
                         carry=sum(math.ceil(r[1] / 4) for r in results), depth=1,
                         gates=round(bits * GENERIC_GATES_PER_ADDER_BIT))
    return LayerCost(layer, estimate, outputs, shape, [estimate.output_bits])


def _sq_error(layer: Any, nodes: list[Node], other: list[Node], target: str) -> LayerCost:
    diffs = [adder_bits(s, negate(x)) for s, x in zip(other, nodes, strict=True)]
    sub_bits = sum(d[1] for d in diffs)
    squares, mult_lut, mult_gates, dsp = [], 0, 0.0, 0
    for diff, _ in diffs:
        n = node_bits(diff)
        squares.append(square_node(diff))
        if target == "xc7" and 2 * n >= XC7_DSP_MIN_PRODUCT_BITS:
            dsp += 1
        else:
            mult_lut += round(XC7_MULT_LUT_PER_BIT2 * n * n)
        mult_gates += n * n + n * (n - 1) * GENERIC_GATES_PER_ADDER_BIT  # AND array + full adders
    total, tree = sum_tree(squares)
    outputs = [total if total is not None else (0.0, 0.0, 0)]
    bits = sub_bits + tree.bits
    estimate = _estimate(layer, outputs, adders=len(diffs) + tree.adders, adder_bits=bits, lut=bits + mult_lut,
                         carry=sum(math.ceil(d[1] / 4) for d in diffs) + tree.carry,
                         depth=1 + MULTIPLIER_DELAY + tree.depth, multipliers=len(diffs), dsp=dsp,
                         gates=round(bits * GENERIC_GATES_PER_ADDER_BIT + mult_gates))
    live = sum(node_bits(n) for n in squares)
    levels = [sum(node_bits(d[0]) for d in diffs)] + [live] * MULTIPLIER_DELAY + tree.level_bits
    levels[-1] = estimate.output_bits
    return LayerCost(layer, estimate, outputs, (1,), levels)


def layer_costs(model: Any, target: str = "xc7") -> tuple[Any, list[LayerCost]]:
    """The model's SequentialQuantModel and the cost of each of its layers, in order.

    Raises :class:`~aeforge.errors.ArtifactError` (naming what is accepted) for models without a
    spec, the ECON-T autoencoder and float models.
    """
    from aeforge.hls.rtl.trace import to_sequential_model

    model = to_sequential_model(model, "the resource estimate")
    spec = model.spec
    shape = spec.input.shape
    nodes: list[Node] = [type_node(spec.input.type)] * math.prod(shape)
    kept = {"input": nodes}
    sources = spec.sources()
    costs: list[LayerCost] = []
    for layer, module in zip(spec.layers, model.layers, strict=True):
        if layer.kind in ("conv1d", "conv2d", "dense"):
            cost = _linear(layer, module, nodes, shape)
        elif layer.kind in ("relu", "quant"):
            cost = _quant(layer, nodes, shape, relu=layer.kind == "relu")
        elif layer.kind in ("maxpool", "avgpool"):
            cost = _pool(layer, nodes, shape)
        elif layer.kind == "add":
            cost = _add(layer, nodes, kept[layer.source], shape)
        elif layer.kind == "sq_error":
            cost = _sq_error(layer, nodes, kept[layer.source], target)
        elif layer.kind == "upsample":
            out_shape, index = upsample_index(layer, shape)
            outputs = [nodes[i] for i in index]
            cost = LayerCost(layer, _estimate(layer, outputs), outputs, out_shape)
        else:  # flatten
            cost = LayerCost(layer, _estimate(layer, nodes), nodes, (math.prod(shape),))
        nodes, shape = cost.nodes, cost.shape
        if layer.name in sources:
            kept[layer.name] = nodes
        costs.append(cost)
    return model, costs
