"""``aeforge import qkeras`` and :func:`aeforge.import_module`: bring a model into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aeforge.artifact import RunWriter
from aeforge.stages.paths import IMPORT_SPEC, IMPORT_WEIGHTS


def import_qkeras_stage(model_json: str | Path | None, weights_h5: str | Path, out: str | Path,
                        force: bool = False, input_type: Any = None) -> dict[str, Any]:
    """``aeforge import qkeras``: read Keras JSON + HDF5 (no TensorFlow) into a run of kind ``import``.

    ``input_type`` (an ``ap_fixed`` string or FixedPoint) is the input port's type for a model
    without an input quantizer (default: hls4ml's ``ap_fixed<16,6>``). The card's ``qkeras`` entry
    records the input type and whether it was defaulted, a trailing softmax run on the host (hardware
    targets and ``predict`` output the logits), ignored layers and folded batch normalizations.
    """
    from aeforge.quantize.models.sequential import save_sequential
    from aeforge.quantize.qkeras_import import load_qkeras

    imported = load_qkeras(Path(model_json) if model_json else None, Path(weights_h5), input_type=input_type)
    model = imported.build()
    with RunWriter(out, kind="import", config={"model": imported.spec.to_dict()}, overwrite=force) as run:
        run.extra["family"] = "imported"
        save_sequential(model, run.path(IMPORT_SPEC), run.path(IMPORT_WEIGHTS))
        run.extra["source"] = {"model_json": str(model_json) if model_json else None, "weights": str(weights_h5),
                               "layers": imported.source_names, "ignored": list(imported.ignored)}
        run.extra["qkeras"] = imported.card()
        run.extra["econt"] = imported.econt is not None
        run.extra["econt_mismatch"] = imported.econt_mismatch
        run.extra["fixed_point_types"] = model.fixed_point_types()
    return {"layers": len(imported.spec.layers), "econt": imported.econt is not None,
            "output_type": model.output_type.ap_type(), "input_type": imported.spec.input.type.ap_type(),
            "input_defaulted": imported.input_defaulted, "postprocess": imported.postprocess,
            "folded_batchnorm": list(imported.folded_batchnorm), "ignored": list(imported.ignored)}


def import_module_stage(module: Any, input_shape: tuple[int, ...] | list[int], input_type: Any, out: str | Path,
                        force: bool = False, n_check: int = 4096, sample: Any = None, seed: int = 0) -> Path:
    """A user's Brevitas module as an ``imported`` run (see :func:`aeforge.import_module`)."""
    import numpy as np

    from aeforge.errors import ConfigError
    from aeforge.fixedpoint import FixedPoint
    from aeforge.quantize.brevitas_import import build_checked, convert_module
    from aeforge.quantize.models.families import VERIFICATION_SAMPLE
    from aeforge.quantize.models.sequential import save_sequential

    if isinstance(input_type, str):
        input_type = FixedPoint.parse(input_type)
    if not isinstance(input_type, FixedPoint):
        raise ConfigError(f"input_type must be an ap_fixed string or a FixedPoint, got {type(input_type).__name__}")
    shape = tuple(input_shape)
    if not 1 <= len(shape) <= 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(f"input_shape must be one sample without batch, (F,), (C, L) or (C, H, W); got {input_shape}")
    rng = np.random.default_rng(seed)
    uniform = input_type.quantize(rng.uniform(input_type.min_value, input_type.max_value, size=(n_check, *shape)))
    extremes = np.stack([np.full(shape, v) for v in (input_type.min_value, 0.0, input_type.max_value)])
    checks = [uniform, extremes]
    if sample is not None:
        sample = np.asarray(sample, dtype=np.float64)
        if sample.ndim < 2 or tuple(sample.shape[1:]) != shape:
            raise ConfigError(f"sample has shape {sample.shape}; expected (N, {', '.join(map(str, shape))})")
        sample = input_type.quantize(sample)
        checks.insert(0, sample)
    inputs = np.concatenate(checks)
    converted = convert_module(module, shape, input_type, inputs)
    model = build_checked(converted, inputs)
    with RunWriter(out, kind="import", config={"model": converted.spec.to_dict()}, overwrite=force) as run:
        run.extra["family"] = "imported"
        save_sequential(model, run.path(IMPORT_SPEC), run.path(IMPORT_WEIGHTS))
        if sample is not None:
            np.save(run.path(VERIFICATION_SAMPLE), sample)
        run.extra["source"] = {"framework": "brevitas", "module": type(module).__name__,
                               "folded_batchnorm": converted.folded, "ignored": converted.dropped}
        run.extra["fixed_point_types"] = model.fixed_point_types()
        run.metrics["import_check"] = {"n": len(inputs), "exact": len(inputs)}
    return Path(out)
