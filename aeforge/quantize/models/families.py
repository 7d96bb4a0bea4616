"""The built-in model families (see :mod:`aeforge.quantize.models.boundary`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError
from aeforge.quantize.models.boundary import HardwareModel, ModelFamily, register_family

IMPORT_SPEC = "model.json"
IMPORT_WEIGHTS = "model.pt"


class EcontFamily(ModelFamily):
    """The ECON-T autoencoder of ``aeforge train``/``demo``; its hardware is the encoder."""

    name = "econt"
    input_hint = "(N, 48) calQ charges"

    def load(self, run_dir: Path, card: Any) -> Any:
        from aeforge.quantize.train import load_trained_model

        return load_trained_model(run_dir, "qat").encoder

    def make_inputs(self, model: HardwareModel, n: int, seed: int) -> np.ndarray:
        from aeforge.data.hgcal.geometry import to_8x8
        from aeforge.data.hgcal.readouts import normalize_econt
        from aeforge.data.hgcal.synthetic import generate_readouts

        events, _ = normalize_econt(generate_readouts(n, seed=seed), model.input_type)
        return np.moveaxis(to_8x8(events), -1, 1)

    def adapt_inputs(self, model: HardwareModel, inputs: np.ndarray) -> tuple[np.ndarray, str] | None:
        if inputs.ndim == 2 and inputs.shape[1] == 48:
            from aeforge.data.hgcal.geometry import to_8x8

            return to_8x8(inputs), "nhwc"
        return None


class ImportedFamily(ModelFamily):
    """A spec + state dict (``aeforge import qkeras``, :func:`aeforge.import_module`)."""

    name = "imported"

    def load(self, run_dir: Path, card: Any) -> Any:
        from aeforge.quantize.models.sequential import load_sequential

        return load_sequential(run_dir / IMPORT_SPEC, run_dir / IMPORT_WEIGHTS)

    def make_inputs(self, model: HardwareModel, n: int, seed: int) -> np.ndarray:
        sample = _recorded_sample(model)
        return sample_rows(sample, n, seed) if sample is not None else super().make_inputs(model, n, seed)


class AutoencoderFamily(ImportedFamily):
    """``model.family: autoencoder`` runs (:mod:`aeforge.quantize.autoencoder`): the hardware artifact is
    stored like an imported model; verification draws from the held-out rows of the user's data."""

    name = "autoencoder"


class ConverterFamily(ImportedFamily):
    """``model.family: converter`` runs (:mod:`aeforge.converter`): converter + light classifier as one model
    (and the heavy/light baselines in the run's ``heavy/`` and ``light/``), stored like an imported model;
    verification draws from the held-out test images."""

    name = "converter"


VERIFICATION_SAMPLE = "verification_inputs.npy"
"""Optional file of a run: realistic channels-first inputs (e.g. rows of the user's data) that
verification draws from instead of uniform values."""


def _recorded_sample(model: HardwareModel) -> np.ndarray | None:
    if model.run_dir is None or not (model.run_dir / VERIFICATION_SAMPLE).is_file():
        return None
    sample = np.load(model.run_dir / VERIFICATION_SAMPLE, allow_pickle=False)
    if sample.ndim < 2 or tuple(sample.shape[1:]) != tuple(model.input_shape):
        raise ArtifactError(f"{model.run_dir / VERIFICATION_SAMPLE}: shape {sample.shape} does not match the "
                            f"model input (N, {', '.join(map(str, model.input_shape))})")
    return sample


def sample_rows(sample: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows of ``sample``: all of them in order (repeated as needed), shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.permutation(len(sample)) for _ in range(-(-n // len(sample)))])[:n]
    return sample[index]


register_family(EcontFamily())
register_family(ImportedFamily())
register_family(AutoencoderFamily())
register_family(ConverterFamily())
