"""Module symmetries of the HGCAL trigger-cell geometry (augmentation maps), against the reference data."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from aeforge.data.hgcal import geometry as geo

GEOMETRY_JSON = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hgcal" / "geometry.json"
needs_reference = pytest.mark.skipif(not GEOMETRY_JSON.exists(), reason=f"reference data {GEOMETRY_JSON} not present")

IDENTITY = np.arange(48)


@pytest.fixture(scope="module")
def ref() -> dict:
    with GEOMETRY_JSON.open() as f:
        return json.load(f)


@pytest.fixture(scope="module")
def ref_distance_neighbours(ref: dict) -> np.ndarray:
    """Neighbours from the upstream centres (``hexCoords_raw``, cm): closer than 1.25 pitch."""
    xy = np.asarray(ref["hexCoords_raw"]["value"])
    pitch = 2.0 * ref["hexCoords_normalization"]["oneHexCell"]
    near = np.linalg.norm(xy[:, None] - xy[None], axis=-1) < geo.NEIGHBOUR_RADIUS_PITCH * pitch
    np.fill_diagonal(near, False)
    return near


@pytest.fixture(scope="module")
def ref_lattice_neighbours(ref: dict) -> np.ndarray:
    """Neighbours on the CMSSW (u, v) trigger-cell lattice: (u, v) differ by ±(1,0), ±(0,1), ±(1,1)."""
    u = np.asarray(ref["cmssw_ae_outputCellU"]["value"])
    v = np.asarray(ref["cmssw_ae_outputCellV"]["value"])
    du, dv = u[:, None] - u[None], v[:, None] - v[None]
    return ((np.abs(du) + np.abs(dv) == 1) | ((du == dv) & (np.abs(du) == 1)))


def all_maps() -> list[np.ndarray]:
    return list(geo.symmetry_maps(reflections=True))


def moved_adjacency(cell_map: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Edge (a, b) -> (map[a], map[b]), written independently of geometry.preserves_adjacency."""
    out = np.zeros_like(adjacency)
    for a, b in zip(*np.nonzero(adjacency), strict=True):
        out[cell_map[a], cell_map[b]] = True
    return out


@needs_reference
def test_uv_coordinates_match_cmssw(ref: dict) -> None:
    uv = geo.trigger_cell_uv()
    np.testing.assert_array_equal(uv[:, 0], ref["cmssw_ae_outputCellU"]["value"])
    np.testing.assert_array_equal(uv[:, 1], ref["cmssw_ae_outputCellV"]["value"])
    remap = np.asarray(ref["cmssw_cellUVremap"]["value"])
    np.testing.assert_array_equal(remap[uv[:, 0], uv[:, 1]], IDENTITY)


@needs_reference
def test_neighbour_graph_is_the_lattice_graph(ref_distance_neighbours, ref_lattice_neighbours) -> None:
    """Two independent reference definitions of 'neighbour' agree, and with ours: 120 edges."""
    np.testing.assert_array_equal(ref_distance_neighbours, ref_lattice_neighbours)
    np.testing.assert_array_equal(geo.neighbour_matrix(), ref_lattice_neighbours)
    assert ref_lattice_neighbours.sum() == 2 * 120
    degrees = ref_lattice_neighbours.sum(axis=1)
    assert degrees.min() == 3 and degrees.max() == 6  # the six corners have 3, the interior 6
    assert (degrees == 3).sum() == 6
    # the radius sits in a gap of the distance spectrum (1.146 -> 1.521 pitch): robust to rounding
    pitch_units = geo.cell_distance_matrix() / 2.0
    values = np.unique(np.round(pitch_units[np.triu_indices(48, 1)], 4))
    assert values[values < geo.NEIGHBOUR_RADIUS_PITCH].max() < 1.15
    assert values[values > geo.NEIGHBOUR_RADIUS_PITCH].min() > 1.5


@needs_reference
@pytest.mark.parametrize("index", range(6))
def test_each_map_is_a_permutation_keeping_neighbours(index, ref_distance_neighbours, ref_lattice_neighbours) -> None:
    cell_map = all_maps()[index]
    assert sorted(cell_map.tolist()) == list(range(48))
    for adjacency in (ref_distance_neighbours, ref_lattice_neighbours):
        np.testing.assert_array_equal(moved_adjacency(cell_map, adjacency), adjacency)
    assert geo.preserves_adjacency(cell_map)


def test_rotation_is_the_block_cycle() -> None:
    rotation = geo.rotation_map()
    blocks = geo.blocks_4x4()
    for b in range(3):
        np.testing.assert_array_equal(rotation[blocks[b]], blocks[(b + 1) % 3])


def test_group_structure() -> None:
    rot, ref = geo.rotation_map(), geo.reflection_map()
    twice = geo.compose_maps(rot, rot)
    assert not np.array_equal(rot, IDENTITY) and not np.array_equal(twice, IDENTITY)
    np.testing.assert_array_equal(geo.compose_maps(twice, rot), IDENTITY)  # rotation^3 = identity
    np.testing.assert_array_equal(geo.rotation_map(2), twice)
    np.testing.assert_array_equal(geo.rotation_map(3), IDENTITY)
    assert not np.array_equal(ref, IDENTITY)
    np.testing.assert_array_equal(geo.compose_maps(ref, ref), IDENTITY)  # reflection^2 = identity
    # dihedral relation: reflect, rotate, reflect = rotate backwards
    np.testing.assert_array_equal(geo.compose_maps(geo.compose_maps(ref, rot), ref), geo.invert_map(rot))
    maps = all_maps()
    keys = {tuple(m) for m in maps}
    assert len(keys) == 6 and tuple(IDENTITY) == tuple(maps[0])
    for a, b in itertools.product(maps, repeat=2):  # closed under composition
        assert tuple(geo.compose_maps(a, b)) in keys
    assert len(geo.symmetry_maps()) == 3


def test_rotations_are_isometries_reflection_is_not() -> None:
    """Rotations leave every ground distance (hence the EMD) unchanged; the reflection does not."""
    dist = geo.cell_distance_matrix()
    for cell_map in geo.symmetry_maps():
        np.testing.assert_allclose(dist[np.ix_(cell_map, cell_map)], dist, atol=1e-9)
    mirrored = dist[np.ix_(geo.reflection_map(), geo.reflection_map())]
    assert np.abs(mirrored - dist).max() / 2.0 == pytest.approx(0.319, abs=2e-3)  # pitch units


def test_emd_is_invariant_under_rotation() -> None:
    pytest.importorskip("ot")
    from aeforge.quantize.metrics import emd

    rng = np.random.default_rng(3)
    x, y = rng.random((20, 48)) * (rng.random((20, 48)) < 0.3), rng.random((20, 48))
    x[:, 0] += 0.1
    base = emd(x, y)
    for cell_map in geo.symmetry_maps()[1:]:
        moved = emd(geo.apply_symmetry(x, cell_map), geo.apply_symmetry(y, cell_map))
        np.testing.assert_allclose(moved, base, rtol=1e-9, atol=1e-9)


def test_wrong_maps_are_caught() -> None:
    """The adjacency check has teeth: near-miss maps fail it."""
    swap = IDENTITY.copy()
    swap[[0, 47]] = swap[[47, 0]]
    assert not geo.preserves_adjacency(swap)
    k = np.arange(16)
    transpose = np.concatenate([16 * b + 4 * (k % 4) + k // 4 for b in range(3)])  # col <-> row in each block
    assert not geo.preserves_adjacency(transpose)
    assert not geo.preserves_adjacency(np.zeros(48, dtype=int))  # not a permutation
    assert not geo.preserves_adjacency(IDENTITY[:47])
    # the reflection of the upstream 8x8 picture (image transposed) is no module symmetry either
    image = geo.arrange_8x8().reshape(8, 8)
    real = geo.mask_8x8().reshape(8, 8).astype(bool)
    transposed = np.full(48, -1)
    for r, c in zip(*np.nonzero(real & real.T), strict=True):
        transposed[image[r, c]] = image[c, r]
    assert not geo.preserves_adjacency(transposed)


def test_apply_symmetry_moves_charges_and_keeps_sums() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 500, size=(9, 48)).astype(float)
    for cell_map in all_maps():
        moved = geo.apply_symmetry(x, cell_map)
        np.testing.assert_array_equal(moved[:, cell_map], x)
        np.testing.assert_array_equal(moved.sum(axis=1), x.sum(axis=1))
        np.testing.assert_array_equal(np.sort(moved, axis=1), np.sort(x, axis=1))
    np.testing.assert_array_equal(geo.apply_symmetry(x[0], geo.rotation_map())[16:32], x[0, :16])
    with pytest.raises(Exception, match="expects"):
        geo.apply_symmetry(x[:, :47], IDENTITY)
