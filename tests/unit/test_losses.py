"""Telescope / MSE losses vs an independent numpy transcription of upstream telescopeMSE2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeforge.data.hgcal import geometry as geo
from aeforge.errors import ConfigError, DataError
from aeforge.quantize.losses import (
    get_loss,
    mse_loss,
    telescope_loss,
    telescope_loss_8x8,
    telescope_supercell_weights,
)

# Upstream SCmask_48_36 (fastml-science sensor-data-compression/telescope.py lines 38-75):
# four calQ indices and the weight, exactly as tabulated there.
UPSTREAM_SC_48_36 = [
    (0, 1, 4, 5, 0.25 * 1.5), (2, 3, 6, 7, 0.25 * 1.0 + 1.0 / 12), (8, 9, 12, 13, 0.25 * 2.25),
    (10, 11, 14, 15, 0.25 * 1.5), (16, 17, 20, 21, 0.25 * 1.5), (18, 19, 22, 23, 0.25 * 1.0 + 1.0 / 12),
    (24, 25, 28, 29, 0.25 * 2.25), (26, 27, 30, 31, 0.25 * 1.5), (32, 33, 36, 37, 0.25 * 1.5),
    (34, 35, 38, 39, 0.25 * 1.0 + 1.0 / 12), (40, 41, 44, 45, 0.25 * 2.25), (42, 43, 46, 47, 0.25 * 1.5),
    (4, 5, 8, 9, 0.25 * 1.5), (6, 7, 10, 11, 0.25 * 1.0), (20, 21, 24, 25, 0.25 * 1.5),
    (22, 23, 26, 27, 0.25 * 1.0), (36, 37, 40, 41, 0.25 * 1.5), (38, 39, 42, 43, 0.25 * 1.0),
    (1, 2, 5, 6, 0.25 * 1.0), (9, 10, 13, 14, 0.25 * 1.5), (17, 18, 21, 22, 0.25 * 1.0),
    (25, 26, 29, 30, 0.25 * 1.5), (33, 34, 37, 38, 0.25 * 1.0), (41, 42, 45, 46, 0.25 * 1.5),
    (5, 6, 9, 10, 0.25 * 1.0), (21, 22, 25, 26, 0.25 * 1.0), (37, 38, 41, 42, 0.25 * 1.0),
    (0, 1, 27, 31, 0.25 * 1.5), (1, 2, 23, 27, 0.25 * 1.0), (2, 3, 19, 23, 0.25 * 1.0 + 1.0 / 6),
    (3, 7, 34, 35, 0.25 * 1.0 + 1.0 / 6), (7, 11, 33, 34, 0.25 * 1.0), (11, 15, 32, 33, 0.25 * 1.5),
    (16, 17, 47, 43, 0.25 * 1.5), (17, 18, 43, 39, 0.25 * 1.0), (18, 19, 39, 35, 0.25 * 1.0 + 1.0 / 6),
]  # fmt: skip
# Upstream SCmask_48_12: 2x2 super trigger cells; Remap_12_3 sums groups 4i..4i+3.
UPSTREAM_SC_48_12 = [
    (0, 1, 4, 5), (2, 3, 6, 7), (8, 9, 12, 13), (10, 11, 14, 15), (16, 17, 20, 21), (18, 19, 22, 23),
    (24, 25, 28, 29), (26, 27, 30, 31), (32, 33, 36, 37), (34, 35, 38, 39), (40, 41, 44, 45),
    (42, 43, 46, 47),
]  # fmt: skip


def reference_telescope(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-sample telescopeMSE2, straight from the upstream tables, in float64 numpy loops."""
    out = []
    for t, p in zip(y_true, y_pred, strict=True):

        def term(a: float, b: float) -> float:
            return (a - b) ** 2 * max(a, b)

        l1 = np.mean([term(t[i], p[i]) for i in range(48)])
        l2 = np.mean([w * term(t[list(c)].sum(), p[list(c)].sum()) for *c, w in UPSTREAM_SC_48_36])
        t12 = [t[list(g)].sum() for g in UPSTREAM_SC_48_12]
        p12 = [p[list(g)].sum() for g in UPSTREAM_SC_48_12]
        l3 = np.mean([term(sum(t12[4 * i : 4 * i + 4]), sum(p12[4 * i : 4 * i + 4])) for i in range(3)])
        out.append(4 * l1 + 2 * l2 + l3)
    return np.array(out)


def test_supercell_weights_equal_upstream() -> None:
    table = {frozenset(int(i) for i in row[:4]): row[4] for row in UPSTREAM_SC_48_36}
    weights = telescope_supercell_weights()
    windows = geo.supercell_windows_2x2()
    assert weights.shape == (36,)
    for cells, w in zip(windows.tolist(), weights, strict=True):
        assert w == pytest.approx(table[frozenset(cells)], abs=1e-15)


def test_matches_reference_implementation() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.random((16, 48)) * (rng.random((16, 48)) < 0.4)
    y_pred = np.clip(y_true + 0.1 * rng.standard_normal((16, 48)), -0.05, None)
    expected = reference_telescope(y_true, y_pred)
    got = telescope_loss(torch.tensor(y_true), torch.tensor(y_pred), reduction="none")
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=0)
    mean = telescope_loss(torch.tensor(y_true), torch.tensor(y_pred))
    assert mean.item() == pytest.approx(expected.mean(), rel=1e-12)
    total = telescope_loss(torch.tensor(y_true), torch.tensor(y_pred), reduction="sum")
    assert total.item() == pytest.approx(expected.sum(), rel=1e-12)
    got32 = telescope_loss(torch.tensor(y_true), torch.tensor(y_pred, dtype=torch.float32), reduction="none")
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-5)


def test_hand_computed_single_cell() -> None:
    # unit charge in cell 0 only, prediction empty:
    # TC term 1/48; cell 0 is in 2 supercells (weights 0.375 each) -> 2*0.375/36; block term 1/3
    y_true = torch.zeros(1, 48, dtype=torch.float64)
    y_true[0, 0] = 1.0
    y_pred = torch.zeros_like(y_true)
    expected = 4 * (1 / 48) + 2 * (2 * 0.375 / 36) + 1 / 3
    assert telescope_loss(y_true, y_pred).item() == pytest.approx(expected, rel=1e-12)
    # charge 2 in cell 3 (a junction TC, 3 windows each weighted 1/4+1/12 or 1/4+1/6), predicted 1
    y_true = torch.zeros(1, 48, dtype=torch.float64)
    y_true[0, 3] = 2.0
    y_pred = torch.zeros_like(y_true)
    y_pred[0, 3] = 1.0
    w = (0.25 + 1 / 12) + (0.25 + 1 / 6) + (0.25 + 1 / 6)
    expected = 4 * (1 * 2 / 48) + 2 * (w * 1 * 2 / 36) + (1 * 2) / 3
    assert telescope_loss(y_true, y_pred).item() == pytest.approx(expected, rel=1e-12)


def test_zero_for_perfect_reconstruction_and_positive_otherwise() -> None:
    x = torch.rand(4, 48, dtype=torch.float64)
    assert torch.all(telescope_loss(x, x.clone(), reduction="none") == 0)
    assert torch.all(telescope_loss(x, x * 0.5, reduction="none") > 0)


def test_gradient_flows() -> None:
    y_true = torch.rand(8, 48)
    y_pred = torch.rand(8, 48, requires_grad=True)
    loss = telescope_loss(y_true, y_pred)
    loss.backward()
    assert y_pred.grad is not None
    assert torch.isfinite(y_pred.grad).all()
    assert y_pred.grad.abs().sum() > 0
    # numerical gradient check in float64
    yt = torch.rand(2, 48, dtype=torch.float64)
    yp = torch.rand(2, 48, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: telescope_loss(yt, p), (yp,))


def test_leading_dims_and_8x8_variant() -> None:
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.random((3, 48)), rng.random((3, 48))
    expected = reference_telescope(y_true, y_pred)
    img_t = torch.tensor(geo.to_8x8(y_true))
    img_p = torch.tensor(geo.to_8x8(y_pred))
    got = telescope_loss_8x8(img_t, img_p, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # masked pixels do not matter
    img_p2 = img_p.clone().reshape(3, 64)
    img_p2[:, torch.tensor(geo.mask_8x8() == 0)] = 7.0
    np.testing.assert_allclose(
        telescope_loss_8x8(img_t, img_p2, reduction="none").numpy(), expected, rtol=1e-12
    )
    batched = telescope_loss(torch.tensor(y_true)[None], torch.tensor(y_pred)[None], reduction="none")
    assert batched.shape == (1, 3)


def test_mse() -> None:
    a = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 4.0]])
    np.testing.assert_allclose(mse_loss(a, b, reduction="none").numpy(), [5 / 3, 3.0])
    assert mse_loss(a, b).item() == pytest.approx((5 / 3 + 3) / 2)


def test_registry_and_errors() -> None:
    assert get_loss("telescope") is telescope_loss
    assert get_loss("mse") is mse_loss
    with pytest.raises(ConfigError, match="'huber'"):
        get_loss("huber")
    with pytest.raises(ConfigError, match="reduction"):
        telescope_loss(torch.zeros(1, 48), torch.zeros(1, 48), reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="48"):
        telescope_loss(torch.zeros(1, 47), torch.zeros(1, 47))
    with pytest.raises(DataError):
        telescope_loss(torch.zeros(2, 48), torch.zeros(1, 48))


# --------------------------------------------------------------------------- energy distance
def _energy_reference(t: np.ndarray, p: np.ndarray) -> float:
    """Székely's energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| written out with loops."""
    from aeforge.data.hgcal.geometry import cell_distance_matrix

    d = cell_distance_matrix()
    a, b = t / t.sum(), np.maximum(p, 0) / np.maximum(p, 0).sum()
    cross = sum(a[i] * b[j] * d[i, j] for i in range(48) for j in range(48))
    self_a = sum(a[i] * a[j] * d[i, j] for i in range(48) for j in range(48))
    self_b = sum(b[i] * b[j] * d[i, j] for i in range(48) for j in range(48))
    return 2 * cross - self_a - self_b


def test_energy_distance_matches_the_definition() -> None:
    from aeforge.quantize.losses import energy_distance_loss

    rng = np.random.default_rng(5)
    t = rng.random((3, 48)) * (rng.random((3, 48)) < 0.3) + 1e-3
    p = rng.normal(0.2, 0.3, size=(3, 48))
    got = energy_distance_loss(torch.as_tensor(t), torch.as_tensor(p), reduction="none").numpy()
    np.testing.assert_allclose(got, [_energy_reference(t[k], p[k]) for k in range(3)], rtol=1e-10)


def test_energy_distance_of_a_moved_unit_charge_is_twice_the_distance() -> None:
    from aeforge.data.hgcal.geometry import cell_distance_matrix
    from aeforge.quantize.losses import energy_distance_loss

    t, p = torch.zeros(1, 48, dtype=torch.float64), torch.zeros(1, 48, dtype=torch.float64)
    t[0, 3], p[0, 40] = 1.0, 5.0  # scale does not matter
    assert energy_distance_loss(t, p).item() == pytest.approx(2 * cell_distance_matrix()[3, 40])
    assert energy_distance_loss(t, 7 * t).item() == pytest.approx(0.0, abs=1e-15)


def test_energy_mse_adds_the_weighted_mse_and_has_gradients() -> None:
    from aeforge.quantize.losses import ENERGY_MSE_WEIGHT, energy_distance_loss, energy_mse_loss, get_loss

    t = torch.rand(4, 48, dtype=torch.float64)
    p = torch.rand(4, 48, dtype=torch.float64, requires_grad=True)
    total = energy_mse_loss(t, p)
    expected = energy_distance_loss(t, p) + ENERGY_MSE_WEIGHT * torch.square(t - p).mean()
    assert total.item() == pytest.approx(expected.item())
    total.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert get_loss("energy_mse") is energy_mse_loss
