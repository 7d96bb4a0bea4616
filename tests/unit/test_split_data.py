"""Split data sets: digits (scikit-learn) and fake (torchvision), stratified and reproducible."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from aeforge.edge.split.config import SplitDataConfig  # noqa: E402
from aeforge.edge.split.data import from_grey_uint8, load_split_data, to_grey_uint8  # noqa: E402


def test_digits_split_is_stratified_and_reproducible() -> None:
    pytest.importorskip("sklearn")
    config = SplitDataConfig(source="digits", image_size=16, test_fraction=0.25, max_samples=200)
    data = load_split_data(config)
    again = load_split_data(config)
    assert data.x_train.shape[1:] == (3, 16, 16) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_test) == 200 and len(data.x_test) == 50
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.y_train, again.y_train)
    assert set(data.y_test.tolist()) == set(range(10))
    assert float(data.x_train.min()) >= -1.0 and float(data.x_train.max()) <= 1.0


def test_fake_data_and_grey_round_trip() -> None:
    pytest.importorskip("torchvision")
    data = load_split_data(SplitDataConfig(source="fake", image_size=12, fake_size=40, fake_classes=3))
    assert data.x_train.shape[1:] == (3, 12, 12) and data.num_classes == 3
    grey = to_grey_uint8(data.x_test)
    assert grey.dtype.name == "uint8" and grey.shape == (len(data.x_test), 12, 12)
    assert torch.allclose(from_grey_uint8(grey)[:, 0], data.x_test[:, 0], atol=1 / 255)
