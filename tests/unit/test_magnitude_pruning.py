"""Magnitude pruning with fixed masks (aeforge.quantize.magnitude_pruning) and its config keys."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from aeforge.errors import ConfigError  # noqa: E402
from aeforge.quantize.magnitude_pruning import (  # noqa: E402
    WeightMasks,
    magnitude_masks,
    prunable_layers,
    weight_density,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 3), nn.Conv1d(1, 2, 3))


def test_masks_keep_the_largest_weights_of_each_layer() -> None:
    model = _model()
    masks = magnitude_masks(model, 0.8)
    assert set(masks) == set(prunable_layers(model)) == {"0", "2", "3"}
    first = model[0].weight.detach().abs()
    kept = masks["0"]
    assert int(kept.sum()) == 40  # 20% of 200
    assert first[kept].min() >= first[~kept].max()  # no pruned weight is larger than a kept one
    # every output unit keeps at least one input, even where 80% of 30 weights would leave some empty
    assert bool(masks["2"].any(dim=1).all()) and bool(masks["3"].flatten(1).any(dim=1).all())
    assert WeightMasks(masks).density() == pytest.approx(
        sum(int(m.sum()) for m in masks.values()) / (200 + 30 + 6))


def test_attached_masks_hold_zeros_through_training_and_bake_them_in() -> None:
    model = _model()[:3]
    masks = WeightMasks(magnitude_masks(model, 0.5))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(64, 20)
    with masks.attached(model):
        for _ in range(5):
            optimizer.zero_grad()
            out = model(x)
            # the forward pass saw the pruned weights as zeros
            assert torch.count_nonzero(model[0].weight.detach()[~masks.masks["0"]]) == 0
            out.square().mean().backward()
            optimizer.step()  # Adam moves pruned weights again...
        assert torch.count_nonzero(model[0].weight.detach()[~masks.masks["0"]]) > 0
    # ...and leaving the block zeroes them for good
    assert torch.count_nonzero(model[0].weight.detach()[~masks.masks["0"]]) == 0
    assert weight_density(model) == pytest.approx(masks.density())
    handles = model[0]._forward_pre_hooks
    assert not handles  # the hooks are gone


def test_bad_sparsity_and_mismatched_masks_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"train\.sparsity"):
        magnitude_masks(_model(), 1.0)
    masks = WeightMasks(magnitude_masks(_model(), 0.5))
    with pytest.raises(ConfigError, match="layers the model lacks: 3"):
        masks.apply(_model()[:3])
    other = nn.Sequential(nn.Linear(21, 10), nn.ReLU(), nn.Linear(10, 3), nn.Conv1d(1, 2, 3))
    with pytest.raises(ConfigError, match=r"pruning mask of 0: shape \(10, 20\)"):
        masks.apply(other)


def test_autoencoder_config_checks_the_pruning_keys() -> None:
    from aeforge.quantize.autoencoder import AeTrainConfig

    assert AeTrainConfig(sparsity=0.9).sparsity == 0.9
    with pytest.raises(ConfigError, match=r"train\.sparsity"):
        AeTrainConfig(sparsity=-0.1)
    with pytest.raises(ConfigError, match=r"train\.prune_epochs"):
        AeTrainConfig(prune_epochs=-1)
