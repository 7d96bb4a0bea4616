"""Image data for split-computing experiments: float32 NCHW images and int64 labels.

``imagefolder``
    torchvision ``ImageFolder`` trees (``ROOT/CLASS/IMAGE``): ``train_dir`` and ``val_dir`` (or a
    stratified split of ``train_dir``), read lazily and decoded in ``data.workers`` DataLoader workers.
    Training images get the standard ImageNet augmentation (``RandomResizedCrop(image_size)`` or
    ``Resize(resize) + RandomCrop``, random horizontal flips); evaluation and calibration images
    ``Resize(resize) + CenterCrop(image_size)``; both are normalised with ``data.mean``/``data.std``.
``digits``
    scikit-learn's bundled handwritten digits (1797 images, 8x8, 17 grey levels, 10 classes; no
    download). Images are scaled to [0, 1], upsampled bilinearly to ``image_size`` (so that ImageNet
    backbones keep spatial extent after their stride-4 stems), normalised to [-1, 1] and repeated to
    3 channels. It is the only learnable image set available offline here; the original 8x8 image
    is tiny (64 values), so rates are compared against the upsampled ``image_size`` input.
``fake``
    torchvision ``FakeData`` (random images, random labels) for smoke tests.
``shapes``
    synthetic coloured squares, circles and triangles with class labels, boxes and masks
    (:mod:`~aeforge.edge.split.shapes_data`), for multi-task split models.

``digits`` and ``fake`` are held in memory as tensors; ``imagefolder`` images as :class:`LazyImages`,
which index and slice like a tensor (``images[:16]`` decodes 16 files). The test split is stratified
and fixed by ``split_seed``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.edge.split.config import SplitDataConfig
from aeforge.errors import DataError, ToolUnavailableError

MEAN, STD = 0.5, 0.5  # images in [0, 1] -> (x - MEAN) / STD in [-1, 1]


class LazyImages:
    """Images of a map-style dataset (``dataset[i] -> (image tensor, label)``), restricted to ``indices``.

    ``images[i]``, ``images[a:b]`` and ``images[index_tensor]`` decode those files and return a stacked
    tensor, so code written for in-memory tensors (``predict``, ``x_test[:n]``) works unchanged.
    """

    def __init__(self, dataset: Any, indices: Sequence[int], image_shape: tuple[int, int, int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.image_shape = image_shape

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    def __getitem__(self, key: int | slice | torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        if isinstance(key, int):
            return self.dataset[self.indices[key]][0]
        if isinstance(key, slice):
            positions = range(len(self))[key]
        else:
            positions = [int(i) for i in (key.tolist() if hasattr(key, "tolist") else key)]
        images = [self.dataset[self.indices[i]][0] for i in positions]
        return torch.stack(images) if images else torch.empty(0, *self.image_shape)

    def subset(self, positions: Sequence[int]) -> torch.utils.data.Dataset:
        """A torch ``Subset`` of the underlying dataset (for a DataLoader)."""
        return torch.utils.data.Subset(self.dataset, [self.indices[int(i)] for i in positions])


Images = torch.Tensor | LazyImages


@dataclass
class SplitData:
    """Train and test images (float32, normalised, ``(N, 3, H, W)``; tensors or :class:`LazyImages`),
    int64 labels, and how to batch them."""

    x_train: Images
    y_train: torch.Tensor
    x_test: Images
    y_test: torch.Tensor
    num_classes: int
    source: str
    workers: int = 0  # DataLoader workers for lazy images
    eval_batch_size: int = 256
    x_calibration: Images | None = None  # calibration images (lazy sources: train files, evaluation transform)
    classes: list[str] | None = None  # class names (imagefolder: folder names, in label order)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    def calibration_images(self, count: int) -> torch.Tensor:
        """The first ``count`` calibration images (in-memory sources: the first training images)."""
        source = self.x_calibration if self.x_calibration is not None else self.x_train
        return source[:count]

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor,
                                                                                         torch.Tensor]]:
        """One epoch of shuffled training batches (the order drawn from ``generator``)."""
        order = torch.randperm(len(self.x_train), generator=generator)
        if isinstance(self.x_train, torch.Tensor):
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                yield self.x_train[index], self.y_train[index]
            return
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        yield from self._loader(self.x_train, order.tolist(), batch_size, seed)

    def test_batches(self, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set in order, ``batch_size`` (default ``eval_batch_size``) images a batch."""
        size = batch_size or self.eval_batch_size
        if isinstance(self.x_test, torch.Tensor):
            for start in range(0, len(self.x_test), size):
                yield self.x_test[start:start + size], self.y_test[start:start + size]
            return
        yield from self._loader(self.x_test, list(range(len(self.x_test))), size, 0)

    def _loader(self, images: LazyImages, positions: list[int], batch_size: int,
                seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            images.subset(positions), batch_size=batch_size, shuffle=False, num_workers=self.workers,
            generator=torch.Generator().manual_seed(seed),  # seeds the workers' random transforms
        )
        for x, y in loader:
            yield x, y.to(torch.int64)


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
    if config.source == "imagefolder":
        return imagefolder_data(config)
    if config.source == "shapes":  # synthetic multi-task images: class labels, boxes and masks
        from aeforge.edge.split.shapes_data import shapes_data

        return shapes_data(config)
    if config.source in ("coco", "voc"):  # local COCO / VOC trees: class labels, boxes and masks
        from aeforge.edge.split.detection_data import detection_data

        return detection_data(config)
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
    return SplitData(x[train], y[train], x[test], y[test], num_classes, config.source,
                     eval_batch_size=config.eval_batch_size)


def imagenet_transforms(config: SplitDataConfig) -> tuple[Any, Any]:
    """The (training, evaluation) torchvision transforms of ``config`` (ImageNet recipe, sizes from it)."""
    from torchvision import transforms as T

    size = config.image_size
    resize = config.resize if config.resize is not None else max(size, round(size / 0.875))
    normalise = [T.ToTensor(), T.Normalize(config.mean, config.std)]
    evaluation = T.Compose([T.Resize(resize), T.CenterCrop(size), *normalise])
    if config.train_crop == "random_resized":
        crop = [T.RandomResizedCrop(size)]
    elif config.train_crop == "random":
        crop = [T.Resize(resize), T.RandomCrop(size)]
    else:
        crop = [T.Resize(resize), T.CenterCrop(size)]
    flip = [T.RandomHorizontalFlip()] if config.hflip else []
    return T.Compose([*crop, *flip, *normalise]), evaluation


def _image_folder(root: str, field_name: str, transform: Any) -> Any:
    try:
        from torchvision.datasets import ImageFolder
    except ImportError as error:
        raise ToolUnavailableError(f"data.source imagefolder needs torchvision ({error}); "
                                   "pip install torchvision") from None
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data.{field_name}: not a directory: {root}")
    try:
        return ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, OSError) as error:  # no class folders, or none with images
        raise DataError(f"data.{field_name}: {root}: not an ImageFolder tree (ROOT/CLASS/IMAGE): {error}") from None


def imagefolder_data(config: SplitDataConfig) -> SplitData:
    """``train_dir`` (and ``val_dir``, or a stratified split of ``train_dir``) as lazily decoded images."""
    assert config.train_dir is not None  # checked by SplitDataConfig
    train_tf, eval_tf = imagenet_transforms(config)
    train_set = _image_folder(config.train_dir, "train_dir", train_tf)
    train_eval_set = _image_folder(config.train_dir, "train_dir", eval_tf)  # calibration (and test w/o val_dir)
    classes = list(train_set.classes)
    if len(classes) < 2:
        raise DataError(f"data.train_dir: {config.train_dir}: needs at least 2 class folders, found {classes}")
    rng = np.random.default_rng(config.split_seed)
    train_labels = np.asarray(train_set.targets, dtype=np.int64)
    if config.val_dir is not None:
        test_set = _image_folder(config.val_dir, "val_dir", eval_tf)
        if list(test_set.classes) != classes:
            only_train = sorted(set(classes) - set(test_set.classes))
            only_val = sorted(set(test_set.classes) - set(classes))
            raise DataError(f"data.val_dir: {config.val_dir}: class folders differ from data.train_dir "
                            f"{config.train_dir}: only in train_dir: {only_train or 'none'}; "
                            f"only in val_dir: {only_val or 'none'}")
        test_labels = np.asarray(test_set.targets, dtype=np.int64)
        train = _stratified_order(train_labels, rng)[: config.max_samples]
        test = _stratified_order(test_labels, rng)[: config.max_samples]
    else:
        test_set, test_labels = train_eval_set, train_labels
        order = _stratified_order(train_labels, rng)[: config.max_samples]
        n_test = max(1, round(len(order) * config.test_fraction))
        if n_test >= len(order):
            raise DataError(f"data: {len(order)} images in {config.train_dir} leave none for training "
                            f"(test_fraction {config.test_fraction})")
        test, train = order[:n_test], order[n_test:]
    train, test = np.sort(train), np.sort(test)
    shape = (3, config.image_size, config.image_size)
    calibration = rng.permutation(train)
    return SplitData(
        LazyImages(train_set, train, shape), torch.from_numpy(train_labels[train]),
        LazyImages(test_set, test, shape), torch.from_numpy(test_labels[test]),
        len(classes), config.source, workers=config.workers, eval_batch_size=config.eval_batch_size,
        x_calibration=LazyImages(train_eval_set, calibration, shape), classes=classes,
    )


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation that interleaves classes, so every prefix is close to stratified."""
    keys = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")
