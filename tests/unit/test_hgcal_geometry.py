"""HGCAL module geometry computed in code vs the upstream reference tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aeforge.data.hgcal import geometry as geo
from aeforge.errors import DataError

GEOMETRY_JSON = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hgcal" / "geometry.json"

needs_reference = pytest.mark.skipif(
    not GEOMETRY_JSON.exists(), reason=f"reference data {GEOMETRY_JSON} not present"
)

# Upstream SCmask_48_36 index columns (fastml-science sensor-data-compression/telescope.py lines
# 38-75), as reference facts for the derived supercells.
UPSTREAM_SUPERCELLS = [
    (0, 1, 4, 5), (2, 3, 6, 7), (8, 9, 12, 13), (10, 11, 14, 15), (16, 17, 20, 21),
    (18, 19, 22, 23), (24, 25, 28, 29), (26, 27, 30, 31), (32, 33, 36, 37), (34, 35, 38, 39),
    (40, 41, 44, 45), (42, 43, 46, 47), (4, 5, 8, 9), (6, 7, 10, 11), (20, 21, 24, 25),
    (22, 23, 26, 27), (36, 37, 40, 41), (38, 39, 42, 43), (1, 2, 5, 6), (9, 10, 13, 14),
    (17, 18, 21, 22), (25, 26, 29, 30), (33, 34, 37, 38), (41, 42, 45, 46), (5, 6, 9, 10),
    (21, 22, 25, 26), (37, 38, 41, 42), (0, 1, 27, 31), (1, 2, 23, 27), (2, 3, 19, 23),
    (3, 7, 34, 35), (7, 11, 33, 34), (11, 15, 32, 33), (16, 17, 47, 43), (17, 18, 43, 39),
    (18, 19, 39, 35),
]  # fmt: skip


@pytest.fixture(scope="module")
def ref() -> dict:
    with GEOMETRY_JSON.open() as f:
        return json.load(f)


@needs_reference
def test_centres_match_reference(ref: dict) -> None:
    raw = np.asarray(ref["hexCoords_raw"]["value"])
    norm = np.asarray(ref["hexCoords_normalized"]["value"])
    np.testing.assert_allclose(geo.trigger_cell_centres(normalized=False), raw, rtol=0, atol=2e-5)
    np.testing.assert_allclose(geo.trigger_cell_centres(), norm, rtol=0, atol=2e-5)
    assert pytest.approx(ref["hexCoords_normalization"]["oneHexCell"], abs=1e-12) == geo.ONE_HEX_CELL


@needs_reference
def test_distance_matrix_matches_reference(ref: dict) -> None:
    dist = geo.cell_distance_matrix()
    assert dist.shape == (48, 48)
    assert dist.max() == pytest.approx(ref["hexMetric_max"], abs=1e-5)
    norm = np.asarray(ref["hexCoords_normalized"]["value"])
    ref_dist = np.linalg.norm(norm[:, None] - norm[None], axis=-1)
    np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=3e-5)


@needs_reference
@pytest.mark.parametrize(
    ("func", "key"),
    [(geo.arrange_8x8, "arrange_8x8"), (geo.mask_8x8, "arrMask_8x8"), (geo.remap_8x8, "remap_8x8")],
)
def test_8x8_tables_match_reference(ref: dict, func, key: str) -> None:
    np.testing.assert_array_equal(func(), np.asarray(ref[key]["value"]))


@needs_reference
def test_masked_positions_are_the_listed_duplicates(ref: dict) -> None:
    arrange, mask = geo.arrange_8x8(), geo.mask_8x8()
    dup = {int(p): c for p, c in ref["masked_positions_duplicate_of"].items()}
    assert set(np.flatnonzero(mask == 0).tolist()) == set(dup)
    for p, c in dup.items():
        assert arrange[p] == c


@needs_reference
def test_cmssw_cell_remap_consistent(ref: dict) -> None:
    expected = np.asarray(ref["cmssw_8x8_cellRemap"]["value"])
    np.testing.assert_array_equal(np.where(geo.mask_8x8() == 1, geo.arrange_8x8(), -1), expected)


def test_geometry_is_rotational() -> None:
    xy = geo.trigger_cell_centres(normalized=False)
    centre = np.asarray(geo.MODULE_CENTRE)
    np.testing.assert_allclose(xy.mean(axis=0), centre, atol=1e-9)
    t = np.radians(120.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    np.testing.assert_allclose((xy[:16] - centre) @ rot.T + centre, xy[16:32], atol=1e-9)
    np.testing.assert_allclose((xy[16:32] - centre) @ rot.T + centre, xy[32:], atol=1e-9)
    # in-block pitch is 2 (normalized); the closest pairs straddle a block seam at sqrt(13)/2
    dist = geo.cell_distance_matrix() + np.eye(48) * 99
    assert dist.min() == pytest.approx(np.sqrt(13) / 2)
    assert dist.min(axis=1).max() == pytest.approx(2.0)
    assert np.allclose(np.diag(geo.cell_distance_matrix()), 0)
    assert np.allclose(geo.cell_distance_matrix(), geo.cell_distance_matrix().T)


def test_remap_inverts_arrange() -> None:
    arrange, mask, remap = geo.arrange_8x8(), geo.mask_8x8(), geo.remap_8x8()
    np.testing.assert_array_equal(arrange[remap], np.arange(48))
    assert mask[remap].all()
    assert sorted(arrange[mask == 1].tolist()) == list(range(48))


def test_image_neighbours_are_physical_neighbours() -> None:
    """Horizontally/vertically adjacent real pixels are adjacent trigger cells (< 1.1 pitch)."""
    img = geo.arrange_8x8().reshape(8, 8)
    mask = geo.mask_8x8().reshape(8, 8)
    dist = geo.cell_distance_matrix()
    pairs = [((r, c), (r, c + 1)) for r in range(8) for c in range(7)]
    pairs += [((r, c), (r + 1, c)) for r in range(7) for c in range(8)]
    checked = 0
    for a, b in pairs:
        if mask[a] and mask[b]:
            assert dist[img[a], img[b]] < 2.0 * 1.1, (a, b, img[a], img[b])
            checked += 1
    assert checked == 2 * 8 * 7 - 2 * 4 * 3 - 2 * 4  # all pairs minus those touching the masked quadrant
    # the duplicate quadrant's top row continues block 0's bottom row
    for c in range(4, 8):
        assert dist[img[3, c], img[4, c]] < 2.0 * 1.1


def test_round_trip_8x8() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1000, size=(7, 48))
    img = geo.to_8x8(x)
    assert img.shape == (7, 8, 8, 1)
    assert img.dtype == x.dtype
    np.testing.assert_array_equal(img.reshape(7, 64)[:, geo.mask_8x8() == 0], 0)
    np.testing.assert_array_equal(geo.from_8x8(img), x)
    np.testing.assert_array_equal(geo.from_8x8(img[..., 0]), x)
    np.testing.assert_array_equal(geo.from_8x8(img.reshape(7, 64)), x)
    xf = rng.random((3, 48)).astype(np.float32)
    np.testing.assert_array_equal(geo.from_8x8(geo.to_8x8(xf)), xf)
    assert geo.to_8x8(xf).dtype == np.float32
    # image sum equals module sum (no duplicates leak through the mask)
    np.testing.assert_allclose(geo.to_8x8(xf).sum(axis=(1, 2, 3)), xf.sum(axis=1), rtol=1e-6)


def test_shape_errors() -> None:
    with pytest.raises(DataError, match="48"):
        geo.to_8x8(np.zeros((2, 47)))
    with pytest.raises(DataError, match="8, 8"):
        geo.from_8x8(np.zeros((2, 63)))


def test_supercells_match_upstream_and_are_compact() -> None:
    windows = geo.supercell_windows_2x2()
    assert windows.shape == (36, 4)
    assert {frozenset(w) for w in windows.tolist()} == {frozenset(w) for w in UPSTREAM_SUPERCELLS}
    dist = geo.cell_distance_matrix()
    for w in windows:
        assert len(set(w.tolist())) == 4
        sub = dist[np.ix_(w, w)]
        # each cell has at least two nearest neighbours in its window; the window is one rhombus
        assert ((sub > 0) & (sub < 2.2)).sum(axis=1).min() >= 2
        assert sub.max() <= np.sqrt(3) * 2 + 1e-6
    counts = np.bincount(windows.reshape(-1), minlength=48)
    assert counts.min() == 1 and counts.max() == 4
    # the three TCs at the three-block junction enter exactly 3 windows
    assert set(np.flatnonzero(counts == 3).tolist()) == {3, 19, 35}


def test_stc_groups_partition_cells() -> None:
    stc = geo.stc_groups()
    assert stc.shape == (12, 4)
    assert sorted(stc.reshape(-1).tolist()) == list(range(48))
    expected_block0 = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    np.testing.assert_array_equal(stc, np.concatenate([np.array(expected_block0) + 16 * b for b in range(3)]))
    dist = geo.cell_distance_matrix()
    for g in stc:
        assert dist[np.ix_(g, g)].max() <= np.sqrt(3) * 2 + 1e-6
    windows = {frozenset(w) for w in geo.supercell_windows_2x2().tolist()}
    assert all(frozenset(g) in windows for g in stc.tolist())


def test_blocks() -> None:
    blocks = geo.blocks_4x4()
    assert blocks.shape == (3, 16)
    np.testing.assert_array_equal(blocks.reshape(-1), np.arange(48))
    stc = geo.stc_groups()
    for b in range(3):
        assert set(stc[4 * b : 4 * b + 4].reshape(-1).tolist()) == set(blocks[b].tolist())


def test_returned_arrays_are_copies() -> None:
    a = geo.arrange_8x8()
    a[:] = 0
    assert geo.arrange_8x8().max() == 47
    c = geo.trigger_cell_centres()
    c[:] = 0
    assert np.abs(geo.trigger_cell_centres()).max() > 0
