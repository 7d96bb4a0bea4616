"""Image data for split-computing experiments, held in memory as float32 NCHW tensors.

``digits``
    scikit-learn's bundled handwritten digits (1797 images, 8x8, 17 grey levels, 10 classes; no
    download). Images are scaled to [0, 1], upsampled bilinearly to ``image_size`` (so that ImageNet
    backbones keep spatial extent after their stride-4 stems), normalised to [-1, 1] and repeated to
    3 channels. It is the only learnable image set available offline here; the original 8x8 image
    is tiny (64 values), so rates are compared against the upsampled ``image_size`` input.
``fake``
    torchvision ``FakeData`` (random images, random labels) for smoke tests.

The test split is stratified and fixed by ``split_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aeforge.edge.split.config import SplitDataConfig
from aeforge.errors import DataError, ToolUnavailableError

MEAN, STD = 0.5, 0.5  # images in [0, 1] -> (x - MEAN) / STD in [-1, 1]


@dataclass
class SplitData:
    """Train and test images (float32, normalised, ``(N, 3, H, W)``) and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]


def normalize(images_01: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` grey images ``(N, 1, H, W)`` -> normalised 3-channel network input."""
    return ((images_01 - MEAN) / STD).repeat(1, 3, 1, 1).contiguous()


def to_grey_uint8(images: torch.Tensor) -> np.ndarray:
    """Network input (normalised, 3 channels) -> ``(N, H, W)`` uint8 grey images (first channel)."""
    values = (images[:, 0] * STD + MEAN).clamp(0, 1) * 255.0
    return torch.round(values).to(torch.uint8).numpy()


def from_grey_uint8(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` uint8 grey images -> normalised 3-channel network input."""
    tensor = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).unsqueeze(1)
    return normalize(tensor)


def digits_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as normalised ``(N, 3, image_size, image_size)`` float32 and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ToolUnavailableError(
            f"data.source digits needs scikit-learn ({error}); pip install scikit-learn"
        ) from None
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if image_size != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear",
                                                 align_corners=False).clamp(0, 1)
    return normalize(images), torch.from_numpy(digits.target.astype(np.int64))


def fake_images(size: int, image_size: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision ``FakeData``: ``size`` random images and labels (reproducible through ``seed``)."""
    try:
        from torchvision.datasets import FakeData
        from torchvision.transforms.functional import pil_to_tensor
    except ImportError as error:
        raise ToolUnavailableError(f"data.source fake needs torchvision ({error}); pip install torchvision") from None
    dataset = FakeData(size=size, image_size=(3, image_size, image_size), num_classes=num_classes,
                       random_offset=seed)
    images, labels = [], []
    for image, label in dataset:
        images.append(pil_to_tensor(image).float() / 255.0)
        labels.append(int(label))
    x = (torch.stack(images) - MEAN) / STD
    return x, torch.tensor(labels, dtype=torch.int64)


def load_split_data(config: SplitDataConfig) -> SplitData:
    """The configured data set, split into train and test (stratified, ``config.split_seed``)."""
    if config.source == "digits":
        x, y = digits_images(config.image_size)
        num_classes = 10
    elif config.source == "fake":
        x, y = fake_images(config.fake_size, config.image_size, config.fake_classes, config.split_seed)
        num_classes = config.fake_classes
    else:
        raise DataError(f"data.source: unknown source {config.source!r}")
    labels = y.numpy()
    rng = np.random.default_rng(config.split_seed)
    order = _stratified_order(labels, rng)
    if config.max_samples is not None and config.max_samples < len(order):
        order = order[: config.max_samples]
    n_test = max(1, round(len(order) * config.test_fraction))
    if n_test >= len(order):
        raise DataError(f"data: {len(order)} samples leave none for training (test_fraction {config.test_fraction})")
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return SplitData(x[train], y[train], x[test], y[test], num_classes, config.source)


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation that interleaves classes, so every prefix is close to stratified."""
    keys = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")
