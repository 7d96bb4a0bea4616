"""Images for converter experiments and the easy targets the converter learns.

``digits``: scikit-learn's bundled handwritten digits (1797 images, 8x8, 17 grey levels, 10
classes; no download), scaled to [0, 1], upsampled bilinearly to ``image_size`` and put on the
input type's grid. The split is stratified by class and fixed by ``data.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeforge.converter.config import CvDataConfig, CvEasyConfig
from aeforge.errors import DataError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint

NUM_CLASSES = 10


@dataclass
class ImageSplits:
    """Channels-first float32 images ``(N, 1, S, S)`` on the input grid and int64 labels per split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def digits_images(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as ``(N, 1, image_size, image_size)`` float32 in [0, 1] and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ToolUnavailableError(f"data.source digits needs scikit-learn ({error}); pip install scikit-learn") \
            from None
    import torch

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if image_size != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear",
                                                 align_corners=False)
    return images.clamp(0.0, 1.0).numpy(), digits.target.astype(np.int64)


def stratified_split(labels: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """(train, val, test) index arrays with ``fractions`` = (val, test) of every class; sorted."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val, n_test = (max(1, round(f * len(members))) for f in fractions)
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val:n_val + n_test])
        parts[0].append(members[n_val + n_test:])
    return tuple(np.sort(np.concatenate(part)) for part in parts)


def load_images(data: CvDataConfig, input_type: FixedPoint) -> ImageSplits:
    """The configured images, split and quantized to ``input_type``."""
    images, labels = digits_images(data.image_size)
    images = input_type.quantize(images).astype(np.float32)
    train, val, test = stratified_split(labels, (data.val_fraction, data.test_fraction), data.seed)
    return ImageSplits(images[train], labels[train], images[val], labels[val], images[test], labels[test],
                       f"digits {data.image_size}x{data.image_size}")


def easy_targets(images: np.ndarray, labels: np.ndarray, pool: np.ndarray, pool_labels: np.ndarray,
                 easy: CvEasyConfig, seed: int) -> np.ndarray:
    """The converter's target of each image: an easy image of the same class from ``pool``.

    ``nearest``: the easy image closest in pixel L2 (an easy image of the pool is its own target);
    ``random``: one drawn per image (seeded). Every class needs at least one easy image.
    """
    rng = np.random.default_rng(seed)
    targets = np.empty_like(images)
    flat_pool = pool.reshape(len(pool), -1).astype(np.float64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        candidates = np.flatnonzero(pool_labels == cls)
        if len(candidates) == 0:
            raise DataError(f"easy.threshold: no training image of class {cls} is easy; lower the threshold")
        if easy.target == "random":
            targets[members] = pool[rng.choice(candidates, size=len(members))]
            continue
        flat = images[members].reshape(len(members), -1).astype(np.float64)
        distances = ((flat[:, None, :] - flat_pool[None, candidates, :]) ** 2).sum(axis=-1)
        targets[members] = pool[candidates[np.argmin(distances, axis=1)]]
    return targets
