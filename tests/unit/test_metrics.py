"""EMD metric and classic ECON-T baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aeforge.data.hgcal import geometry as geo
from aeforge.errors import DataError
from aeforge.quantize import metrics as m

ot = pytest.importorskip("ot")

CALQ_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hgcal" / "CALQ_output.csv"


def one_hot(cell: int, n: int = 1) -> np.ndarray:
    x = np.zeros((n, 48))
    x[:, cell] = 1.0
    return x


def random_maps(rng: np.random.Generator, n: int, p_hit: float = 0.4) -> np.ndarray:
    return rng.exponential(50.0, size=(n, 48)) * (rng.random((n, 48)) < p_hit)


# ---------------------------------------------------------------- EMD


def test_identical_maps_have_zero_emd() -> None:
    x = random_maps(np.random.default_rng(0), 20)
    x[:, 0] += 1.0  # no empty rows
    np.testing.assert_allclose(m.emd(x, x), 0.0, atol=1e-12)
    np.testing.assert_allclose(m.emd(x, 3.5 * x), 0.0, atol=1e-12)  # scale-invariant


@pytest.mark.parametrize(("a", "b"), [(0, 1), (0, 47), (3, 19), (15, 44), (31, 0)])
def test_unit_mass_moved_costs_the_distance(a: int, b: int) -> None:
    dist = geo.cell_distance_matrix()[a, b]
    assert m.emd(one_hot(a), one_hot(b))[0] == pytest.approx(dist, rel=1e-12)
    # half the mass moved costs half the distance
    x = one_hot(a)
    y = 0.5 * (one_hot(a) + one_hot(b))
    assert m.emd(x, y)[0] == pytest.approx(0.5 * dist, rel=1e-12)


def test_max_emd_is_the_module_diameter() -> None:
    d = geo.cell_distance_matrix()
    i, j = np.unravel_index(np.argmax(d), d.shape)
    assert m.emd(one_hot(int(i)), one_hot(int(j)))[0] == pytest.approx(13.7568, abs=1e-3)


def test_symmetry_and_batched_equals_looped() -> None:
    rng = np.random.default_rng(1)
    x, y = random_maps(rng, 30), random_maps(rng, 30)
    x[:, 5] += 1.0
    y[:, 40] += 1.0
    batched = m.emd(x, y)
    looped = np.array([m.emd(xi, yi) for xi, yi in zip(x, y, strict=True)])
    np.testing.assert_allclose(batched, looped, rtol=0, atol=0)
    np.testing.assert_allclose(m.emd(y, x), batched, rtol=1e-10, atol=1e-12)
    assert isinstance(m.emd(x[0], y[0]), float)


def test_matches_plain_pot_on_the_full_metric() -> None:
    rng = np.random.default_rng(2)
    x, y = random_maps(rng, 25), random_maps(rng, 25, p_hit=0.2)
    x[:, 0] += 1.0
    y[:, 20] += 1.0
    metric = geo.cell_distance_matrix()
    expected = [
        ot.emd2(a / a.sum(), b / b.sum(), metric, numItermax=10**6) for a, b in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(m.emd(x, y), expected, rtol=1e-9, atol=1e-12)


def test_empty_maps_give_nan_and_summary_counts_them() -> None:
    x = np.vstack([one_hot(0), np.zeros((1, 48)), one_hot(3), np.zeros((1, 48))])
    y = np.vstack([one_hot(1), one_hot(1), np.zeros((1, 48)), np.zeros((1, 48))])
    values = m.emd(x, y)
    assert values[0] == pytest.approx(geo.cell_distance_matrix()[0, 1])
    assert np.isnan(values[1:]).all()
    summary = m.emd_summary(values)
    assert summary.n_events == 4
    assert summary.n_empty == 3
    assert summary.mean == pytest.approx(values[0])
    assert summary.median == pytest.approx(values[0])
    assert set(summary.as_dict()) == {"n_events", "n_empty", "mean", "median", "std"}
    all_empty = m.emd_summary(np.full(3, np.nan))
    assert all_empty.n_empty == 3 and math.isnan(all_empty.mean)


def test_negative_predictions_are_clipped() -> None:
    x = one_hot(0)
    y = one_hot(0) - 0.3 * one_hot(10)
    assert m.emd(x, y)[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(m.emd(x, -one_hot(2))[0])  # all-negative prediction is an empty map


def test_emd_shape_errors() -> None:
    with pytest.raises(DataError, match="48"):
        m.emd(np.ones((2, 47)), np.ones((2, 47)))
    with pytest.raises(DataError, match="shape"):
        m.emd(np.ones((2, 48)), np.ones((3, 48)))


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float64, (3, 48), elements=st.floats(0, 100, allow_nan=False)).filter(
        lambda a: (a.sum(axis=1) > 1e-3).all()
    )
)
def test_emd_is_a_metric(maps: np.ndarray) -> None:
    x, y, z = maps[0:1], maps[1:2], maps[2:3]
    xy, yz, xz = m.emd(x, y)[0], m.emd(y, z)[0], m.emd(x, z)[0]
    assert xy >= -1e-12
    assert xz <= xy + yz + 1e-9
    assert xy == pytest.approx(m.emd(y, x)[0], abs=1e-9)


# ---------------------------------------------------------------- baselines


def test_occupancy() -> None:
    x = np.array([[0.0] * 46 + [1.0, 2.0], [0.0] * 48])
    np.testing.assert_array_equal(m.occupancy(x), [2, 0])
    np.testing.assert_array_equal(m.occupancy(x, threshold=1.0), [1, 0])


@pytest.mark.parametrize("n_cells", sorted(m.BEST_CHOICE_CELLS_BY_ELINKS.values()))
def test_best_choice_keeps_the_largest(n_cells: int) -> None:
    rng = np.random.default_rng(3)
    x = random_maps(rng, 50)
    out = m.best_choice(x, n_cells)
    np.testing.assert_array_equal(m.occupancy(out), np.minimum(m.occupancy(x), n_cells))
    kept = out > 0
    np.testing.assert_array_equal(out[kept], x[kept])  # values untouched
    for xi, oi in zip(x, out, strict=True):
        dropped = xi[oi == 0]
        if (oi > 0).any() and dropped.size:
            assert dropped.max() <= oi[oi > 0].min()


def test_best_choice_ties_go_to_lower_index() -> None:
    x = np.ones((1, 48))
    out = m.best_choice(x, 4)
    np.testing.assert_array_equal(np.flatnonzero(out[0]), [0, 1, 2, 3])


def test_threshold_baseline_bounds_and_ties() -> None:
    rng = np.random.default_rng(4)
    x = np.round(random_maps(rng, 200))  # integer charges: ties happen
    for n in (4, 9, 14):
        out = m.threshold_baseline(x, n)
        assert (m.occupancy(out) <= n).all()
        assert (m.occupancy(out) <= m.occupancy(m.best_choice(x, n))).all()
        kept = out > 0
        np.testing.assert_array_equal(out[kept], x[kept])
        # a threshold: every dropped cell is <= every kept cell
        for xi, oi in zip(x, out, strict=True):
            if (oi > 0).any():
                assert xi[oi == 0].max(initial=0) < oi[oi > 0].min()
    tie = np.zeros((1, 48))
    tie[0, :5] = [9, 7, 5, 5, 1]
    np.testing.assert_array_equal(np.flatnonzero(m.threshold_baseline(tie, 3)[0]), [0, 1])
    np.testing.assert_array_equal(np.flatnonzero(m.best_choice(tie, 3)[0]), [0, 1, 2])
    np.testing.assert_array_equal(m.threshold_baseline(x, 48), x)


def test_fixed_threshold_is_inclusive() -> None:
    x = np.zeros((1, 48))
    x[0, :3] = [69.0, 70.0, 71.0]
    np.testing.assert_array_equal(m.fixed_threshold(x, 70.0)[0, :3], [0.0, 70.0, 71.0])


def test_super_trigger_cells_conserve_sum_and_sit_on_the_max() -> None:
    rng = np.random.default_rng(5)
    x = random_maps(rng, 40)
    out = m.super_trigger_cells(x)
    np.testing.assert_allclose(out.sum(axis=1), x.sum(axis=1))
    groups = geo.stc_groups()
    for xi, oi in zip(x, out, strict=True):
        for g in groups:
            assert (oi[g] > 0).sum() <= 1
            if xi[g].sum() > 0:
                assert oi[g[np.argmax(xi[g])]] == pytest.approx(xi[g].sum())
    assert (m.occupancy(out) <= 12).all()
    eq = m.super_trigger_cells(x, mode="equal")
    np.testing.assert_allclose(eq.sum(axis=1), x.sum(axis=1))
    np.testing.assert_allclose(eq[:, groups].std(axis=2), 0.0, atol=1e-12)
    with pytest.raises(DataError, match="mode"):
        m.super_trigger_cells(x, mode="min")


def test_pca_reconstructs_low_rank_data_exactly() -> None:
    rng = np.random.default_rng(6)
    latent = rng.random((300, 12))
    basis = rng.random((12, 48))
    x = latent @ basis + rng.random(48)  # affine rank 12 <= 16, non-negative
    pca = m.PCABaseline(16).fit(x)
    np.testing.assert_allclose(pca.reconstruct(x), x, rtol=0, atol=1e-9)
    assert pca.encode(x).shape == (300, 16)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(16), atol=1e-10)
    # full-rank data is not reconstructed exactly, and negative outputs are clipped
    y = rng.standard_normal((200, 48))
    rec = m.PCABaseline(16).fit(y).reconstruct(y)
    assert (rec >= 0).all()
    assert np.abs(m.PCABaseline(16).fit(y).reconstruct(y, clip=False) - y).max() > 0.1


def test_pca_errors() -> None:
    with pytest.raises(DataError, match="not fitted"):
        m.PCABaseline().reconstruct(np.zeros((1, 48)))
    with pytest.raises(DataError, match="n_components"):
        m.PCABaseline(0)


def test_bandwidth_tables() -> None:
    assert sorted(m.BEST_CHOICE_CELLS_BY_ELINKS) == sorted(m.LATENT_BITS_BY_ELINKS) == [2, 3, 4, 5]
    assert m.LATENT_BITS_BY_ELINKS[5] == 9


@pytest.mark.skipif(not CALQ_CSV.exists(), reason=f"reference data {CALQ_CSV} not present")
def test_sanity_on_real_readouts() -> None:
    x = np.loadtxt(CALQ_CSV, delimiter=",", skiprows=1, max_rows=600)
    assert x.shape == (600, 48)
    xn = x / np.maximum(x.sum(axis=1, keepdims=True), 1.0)
    bc4 = m.emd_summary(m.emd(x, m.best_choice(x, 4)))
    bc14 = m.emd_summary(m.emd(x, m.best_choice(x, 14)))
    thr4 = m.emd_summary(m.emd(x, m.threshold_baseline(x, 4)))
    stc = m.emd_summary(m.emd(x, m.super_trigger_cells(x)))
    pca = m.emd_summary(m.emd(xn[300:], m.PCABaseline(16).fit(xn[:300]).reconstruct(xn[300:])))
    assert bc14.mean < bc4.mean
    assert 0.1 < bc14.mean < 0.5
    assert 1.0 < bc4.mean < 2.0
    assert bc4.mean <= thr4.mean < bc4.mean + 0.2
    assert 0.2 < stc.mean < 1.0
    assert 1.0 < pca.mean < 2.5
