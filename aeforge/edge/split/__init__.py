"""Split computing: a backbone cut in two with a quantized bottleneck between device (head) and server (tail).

``build_split_model`` injects the bottleneck (:mod:`.bottleneck`, :mod:`.backbones`), ``train_split_experiment``
and ``save_split_run`` train it BottleFit-style and write a run (:mod:`.train`), ``export_split`` writes
``head.onnx``, ``tail.onnx`` and ``split.json`` (:mod:`.export`); :mod:`.codec` is the wire format.
``model.bottleneck: entropic`` is the Entropic Student (:mod:`.entropic`: learned factorized prior;
:mod:`.entropy_coder`: CDF tables and range coder).
``model.tasks`` makes it multi-task, Ladon-style (:mod:`.multitask`, :mod:`.tasks`, :mod:`.shapes_data`,
:mod:`.multitask_export`, :mod:`.multitask_serve`): one head and one code, a tail per task.
Names are imported lazily, so ``import aeforge.edge.split.codec`` needs neither torch nor torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SPLIT_POINTS": "config", "SplitExperimentConfig": "config", "load_split_config": "config",
    "parse_split_config": "config", "config_family": "config",
    "SplitModel": "bottleneck", "SplitSpec": "bottleneck", "build_split_model": "bottleneck", "calibrate": "bottleneck",
    "split_backbone": "backbones", "build_backbone": "backbones", "load_backbone_weights": "backbones",
    "SplitResult": "train", "train_split_experiment": "train", "save_split_run": "train",
    "load_split_model": "train", "load_split_teacher": "train",
    "load_split_data": "data",
    "export_split": "export",
    "EntropicSplitModel": "entropic", "build_entropic_model": "entropic",
    "EntropyCodec": "entropy_coder", "EntropySpec": "entropy_coder",
    "TaskConfig": "config", "MultiTaskSplitModel": "multitask", "train_multitask": "multitask",
    "save_multitask_run": "multitask", "load_multitask_model": "multitask", "export_multitask": "multitask_export",
    "MultiTaskTailModel": "multitask_serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
