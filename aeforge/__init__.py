"""aeforge: quantization-aware trained autoencoders to bit-exact hardware and edge devices.

Python entry points (the CLI verbs' stages are in :mod:`aeforge.stages`):

* :func:`import_module`: a Brevitas ``nn.Module`` -> a run directory every stage accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def import_module(module: Any, input_shape: tuple[int, ...], input_type: Any, out: str | Path, *,
                  force: bool = False, n_check: int = 4096, sample: Any = None) -> Path:
    """Turn a user's Brevitas module into an aeforge run directory and return its path.

    ``input_shape`` is one sample without batch, channels-first as PyTorch takes it: ``(F,)``,
    ``(C, L)`` or ``(C, H, W)``; ``input_type`` an ``ap_fixed<...>`` string or a
    :class:`~aeforge.fixedpoint.FixedPoint`. The module is traced (torch.fx), BatchNorm is folded
    into the conv/linear before it, every quantizer is read in eval mode, and the rebuilt model
    must equal the module bit for bit on ``n_check`` random inputs on the input grid (plus
    ``sample``, realistic inputs that verification later draws from) before the run is written.
    Raises :class:`~aeforge.errors.AeforgeError` naming the module path for what hardware cannot
    compute exactly (non-power-of-two scales, float biases, unsupported layers, uncalibrated
    activation quantizers). Then ``aeforge hls/rtl/verify/predict RUN`` work as for any run.
    """
    from aeforge.stages.importing import import_module_stage

    return import_module_stage(module, input_shape, input_type, out, force=force, n_check=n_check, sample=sample)
