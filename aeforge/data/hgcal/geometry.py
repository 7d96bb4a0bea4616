"""Geometry of one HGCAL silicon module as seen by the ECON-T ASIC, computed in code.

Conventions
-----------
* **calQ index** ``c`` in 0..47: the trigger-cell (TC) order of the ECON-T training CSVs
  (column ``CALQ_c``) and of CMSSW ``HGCalConcentratorAutoEncoderImpl``.
* The module is a hexagon made of three rhombic **blocks** of 4×4 TCs: ``c = 16*block + k``,
  ``k = 4*col + row`` with ``col = k // 4`` and ``row = k % 4`` (block-local lattice indices).
* **8×8 position** ``p`` in 0..63: row-major flat index of the (8, 8, 1) channels-last encoder
  input (``row = p // 8``, ``col = p % 8``).

Centres (units: cm, as upstream). With ``d = CELL_PITCH`` and ``h = d*sqrt(3)/2``, block 0 cell
``(col, row)`` sits at ``(col*h, -(row + col/2)*d)``: rows step by ``(0, -d)``, columns by
``(h, -d/2)``. Blocks 1 and 2 are block 0 rotated by +120° and −120° about the module centre
``MODULE_CENTRE = d*(-7*sqrt(3)/24, -25/8)`` (block-0 lattice point col = −7/12, row = 41/12; it is
also the centroid of the 48 centres). This reproduces the upstream coordinate table
(fastml-science ``sensor-data-compression/utils/metrics.py``) to < 1.5e-5 cm, which is that
table's own deviation from a perfect lattice (e.g. calQ 7: y = -8.458794 vs -3.5·d = -8.4588053).
The three junction TCs 3, 19 and 35 surround the centre.

8×8 arrangement (closed form). Write ``B_b[col, row] = 16*b + 4*col + row`` for block ``b``
(a 4×4 array). The image is four 4×4 quadrants::

    [[ flipud(B_1)          , B_0.T          ],      i.e. pixel (r, c) of a quadrant holds
     [ B_2.T[::-1, ::-1]    , fliplr(B_2) *  ]]      B_1[3-r, c]    | B_0[c, r]
                                                      B_2[3-c, 3-r]  | B_2[r, 3-c] (*)

(*) The lower-right quadrant repeats block 2 (calQ 32..47), mirrored so that its top row
continues block 0's bottom row physically; it is zeroed by the mask. The quadrants are oriented
so that pixels adjacent across the edges between real quadrants, and across the top edge of the
duplicate, are physical neighbours (tested); only the lower-left/lower-right seam is not. This equals
upstream ``arrange_8x8``/``arrMask_8x8``/``remap_8x8`` (fastml-science ``networks.py``,
``telescope.py``).

Symmetries (used to augment training events). Neighbours are cells whose centres lie within
``NEIGHBOUR_RADIUS_PITCH`` pitches (in-block pairs at 1, seam pairs at 0.90 and 1.15; the next
distance is 1.52): 120 pairs, exactly the edges of the CMSSW trigger-cell ``(u, v)`` lattice
(:func:`trigger_cell_uv`; neighbours differ by ``±(1,0), ±(0,1), ±(1,1)``). That lattice has the
symmetry group of a triangle (D3) about ``(u, v) = (11/3, 10/3)``: the 120° rotation
``(u, v) -> (v - u + 4, 7 - u)`` (block ``b`` -> ``b + 1``, same block-local cell: an isometry of
the centres, so it leaves the EMD unchanged) and the reflection ``(u, v) -> (7 - v, 7 - u)``.
The reflection keeps every neighbour a neighbour but is *not* an isometry of the upstream EMD
centres: the three rhombic blocks sit pinwheel-wise (seam pitches 0.90/1.15 instead of 1), so
their mirror image is a different pinwheel and some distances change by up to 0.32 pitch.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from aeforge.errors import DataError

__all__ = [
    "CELLS_PER_BLOCK",
    "CELL_PITCH",
    "MODULE_CENTRE",
    "NEIGHBOUR_RADIUS_PITCH",
    "N_BLOCKS",
    "N_TRIGGER_CELLS",
    "ONE_HEX_CELL",
    "apply_symmetry",
    "arrange_8x8",
    "blocks_4x4",
    "cell_distance_matrix",
    "compose_maps",
    "from_8x8",
    "invert_map",
    "mask_8x8",
    "neighbour_matrix",
    "preserves_adjacency",
    "reflection_map",
    "remap_8x8",
    "rotation_map",
    "stc_groups",
    "supercell_windows_2x2",
    "symmetry_maps",
    "to_8x8",
    "trigger_cell_centres",
    "trigger_cell_uv",
]

N_TRIGGER_CELLS = 48
N_BLOCKS = 3
BLOCK_SIDE = 4
CELLS_PER_BLOCK = BLOCK_SIDE * BLOCK_SIDE
IMAGE_SIDE = 8

CELL_PITCH = 2.4168015
"""Distance between neighbouring trigger-cell centres, cm (upstream value)."""

ONE_HEX_CELL = 0.5 * CELL_PITCH
"""Normalisation of the centres for the EMD (upstream ``oneHexCell``): TC pitch becomes 2."""

_H = CELL_PITCH * math.sqrt(3.0) / 2.0
MODULE_CENTRE = (-7.0 * math.sqrt(3.0) / 24.0 * CELL_PITCH, -25.0 / 8.0 * CELL_PITCH)
"""Rotation centre of the three blocks, cm (see module docstring)."""

_BLOCK_ROTATION_DEG = (0.0, 120.0, -120.0)
_SUPERCELL_DIAMETER = math.sqrt(3.0) * CELL_PITCH / ONE_HEX_CELL  # normalized units


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.cache
def _centres_raw() -> np.ndarray:
    k = np.arange(CELLS_PER_BLOCK)
    col, row = k // BLOCK_SIDE, k % BLOCK_SIDE
    block0 = np.stack([col * _H, -(row + col / 2.0) * CELL_PITCH], axis=1)
    centre = np.asarray(MODULE_CENTRE)
    out = []
    for deg in _BLOCK_ROTATION_DEG:
        t = math.radians(deg)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        out.append((block0 - centre) @ rot.T + centre)
    return _readonly(np.concatenate(out, axis=0))


def trigger_cell_centres(normalized: bool = True) -> np.ndarray:
    """Trigger-cell centres, shape (48, 2) float64, calQ order.

    ``normalized=True`` divides by ``ONE_HEX_CELL`` (upstream ``hexCoords_normalized``, the EMD
    geometry, TC pitch = 2); ``False`` gives cm (upstream ``hexCoords_raw``).
    """
    raw = _centres_raw()
    return raw / ONE_HEX_CELL if normalized else raw.copy()


@functools.cache
def _arrangement() -> tuple[np.ndarray, np.ndarray]:
    b0, b1, b2 = np.arange(N_TRIGGER_CELLS).reshape(N_BLOCKS, BLOCK_SIDE, BLOCK_SIDE)  # B_b[col, row]
    image = np.block(
        [
            [np.flipud(b1), b0.T],
            [b2.T[::-1, ::-1], np.fliplr(b2)],
        ]
    )
    mask = np.ones((IMAGE_SIDE, IMAGE_SIDE), dtype=np.int64)
    mask[BLOCK_SIDE:, BLOCK_SIDE:] = 0
    return _readonly(image.reshape(-1).astype(np.int64)), _readonly(mask.reshape(-1))


def arrange_8x8() -> np.ndarray:
    """(64,) int: ``image_flat[p] = calq[arrange_8x8()[p]]`` (includes the masked duplicates)."""
    return _arrangement()[0].copy()


def mask_8x8() -> np.ndarray:
    """(64,) int 0/1: 1 = real cell, 0 = duplicate of calQ 32..47 that is zeroed."""
    return _arrangement()[1].copy()


@functools.cache
def _remap() -> np.ndarray:
    arrange, mask = _arrangement()
    remap = np.full(N_TRIGGER_CELLS, -1, dtype=np.int64)
    real = np.flatnonzero(mask)
    remap[arrange[real]] = real
    assert (remap >= 0).all(), "every calQ cell appears once among the unmasked positions"
    return _readonly(remap)


def remap_8x8() -> np.ndarray:
    """(48,) int: ``calq[c] = image_flat[remap_8x8()[c]]`` (the inverse on unmasked positions)."""
    return _remap().copy()


def to_8x8(calq: np.ndarray) -> np.ndarray:
    """Charges (..., 48) in calQ order -> (..., 8, 8, 1) channels-last image, masked pixels 0."""
    x = np.asarray(calq)
    if x.ndim < 1 or x.shape[-1] != N_TRIGGER_CELLS:
        raise DataError(f"to_8x8 expects (..., {N_TRIGGER_CELLS}) calQ charges, got shape {x.shape}")
    arrange, mask = _arrangement()
    img = np.where(mask.astype(bool), x[..., arrange], np.zeros((), dtype=x.dtype))
    return img.reshape(*x.shape[:-1], IMAGE_SIDE, IMAGE_SIDE, 1)


def from_8x8(images: np.ndarray) -> np.ndarray:
    """Images (..., 8, 8, 1), (..., 8, 8) or (..., 64) -> (..., 48) calQ charges."""
    x = np.asarray(images)
    if x.ndim >= 3 and x.shape[-3:] == (IMAGE_SIDE, IMAGE_SIDE, 1):
        flat = x.reshape(*x.shape[:-3], IMAGE_SIDE * IMAGE_SIDE)
    elif x.ndim >= 2 and x.shape[-2:] == (IMAGE_SIDE, IMAGE_SIDE):
        flat = x.reshape(*x.shape[:-2], IMAGE_SIDE * IMAGE_SIDE)
    elif x.ndim >= 1 and x.shape[-1] == IMAGE_SIDE * IMAGE_SIDE:
        flat = x
    else:
        raise DataError(f"from_8x8 expects (..., 8, 8, 1), (..., 8, 8) or (..., 64), got shape {x.shape}")
    return flat[..., _remap()]


@functools.cache
def _windows() -> np.ndarray:
    img = _arrangement()[0].reshape(IMAGE_SIDE, IMAGE_SIDE)
    dist = _distances()
    max_diameter = _SUPERCELL_DIAMETER * (1.0 + 1e-3)
    found: set[tuple[int, ...]] = set()
    for r in range(IMAGE_SIDE - 1):
        for c in range(IMAGE_SIDE - 1):
            cells = sorted(int(v) for v in img[r : r + 2, c : c + 2].reshape(-1))
            if len(set(cells)) == 4 and dist[np.ix_(cells, cells)].max() <= max_diameter:
                found.add(tuple(cells))
    return _readonly(np.array(sorted(found), dtype=np.int64))


def supercell_windows_2x2() -> np.ndarray:
    """(36, 4) int: calQ indices of the overlapping 2×2 supercells of the telescope loss.

    Derived from the 8×8 arrangement: every 2×2 window of the image (duplicate quadrant included)
    whose four calQ cells are distinct and physically compact (diameter ≤ √3·pitch, the long
    diagonal of one lattice rhombus), de-duplicated as sets. The compactness cut removes the
    windows across the lower-left/lower-right seam, where the mirrored duplicate does not continue
    block 2; the duplicate's top edge yields the block-0/block-2 straddlers. That gives 9 windows
    inside each block plus 9 straddling block edges (3 per edge, none at the three-block
    junction), exactly upstream ``SCmask_48_36`` (fastml-science
    ``sensor-data-compression/telescope.py`` lines 38-75).
    Rows sorted ascending; rows ordered lexicographically (upstream order differs; it is irrelevant
    to the loss). The per-window weights live in :mod:`aeforge.quantize.losses`.
    """
    return _windows().copy()


@functools.cache
def _stc() -> np.ndarray:
    img = _arrangement()[0].reshape(IMAGE_SIDE, IMAGE_SIDE)
    mask = _arrangement()[1].reshape(IMAGE_SIDE, IMAGE_SIDE)
    groups = [
        sorted(int(v) for v in img[r : r + 2, c : c + 2].reshape(-1))
        for r in range(0, IMAGE_SIDE, 2)
        for c in range(0, IMAGE_SIDE, 2)
        if mask[r, c]
    ]
    return _readonly(np.array(sorted(groups), dtype=np.int64))


def stc_groups() -> np.ndarray:
    """(12, 4) int: the non-overlapping 2×2 super trigger cells (STC4), calQ indices.

    The aligned 2×2 tiles of the three real quadrants of the 8×8 image, i.e. per block the
    lattice squares ``{4*col + row : col in {2i, 2i+1}, row in {2j, 2j+1}}``; equals upstream
    ``SCmask_48_12`` / ``Remap_48_12`` (telescope.py) in the same order.
    """
    return _stc().copy()


def blocks_4x4() -> np.ndarray:
    """(3, 16) int: the three 4×4 blocks (calQ 0-15, 16-31, 32-47; upstream ``Remap_12_3``)."""
    return np.arange(N_TRIGGER_CELLS, dtype=np.int64).reshape(N_BLOCKS, CELLS_PER_BLOCK)


@functools.cache
def _distances() -> np.ndarray:
    xy = trigger_cell_centres(normalized=True)
    diff = xy[:, None, :] - xy[None, :, :]
    return _readonly(np.sqrt((diff**2).sum(axis=-1)))


def cell_distance_matrix() -> np.ndarray:
    """(48, 48) float64 Euclidean distances between normalized centres (EMD ground metric)."""
    return _distances().copy()


# ----------------------------------------------------------------------------------- symmetries
NEIGHBOUR_RADIUS_PITCH = 1.25
"""Two trigger cells are neighbours when their centres are closer than this many pitches."""

_UV_ROTATION = ((-1, 1, 4), (-1, 0, 7))  # rows of [[a, b, t]]: u' = a*u + b*v + t (120°)
_UV_REFLECTION = ((0, -1, 7), (-1, 0, 7))


def _block0_uv() -> np.ndarray:
    k = np.arange(CELLS_PER_BLOCK)
    col, row = k // BLOCK_SIDE, k % BLOCK_SIDE
    return np.stack([7 - row, 4 + col], axis=1)  # CMSSW triggerCellU/V of block 0 (calQ 0..15)


def _apply_affine(uv: np.ndarray, affine: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    m = np.asarray(affine, dtype=np.int64)
    return uv @ m[:, :2].T + m[:, 2]


@functools.cache
def _uv() -> np.ndarray:
    blocks = [_block0_uv()]
    for _ in range(N_BLOCKS - 1):  # block b+1 is block b turned by +120°, cell for cell
        blocks.append(_apply_affine(blocks[-1], _UV_ROTATION))
    return _readonly(np.concatenate(blocks).astype(np.int64))


def trigger_cell_uv() -> np.ndarray:
    """(48, 2) int: CMSSW ``(triggerCellU, triggerCellV)`` of each calQ cell (0..7 each).

    Block 0 ``(col, row)`` is ``(7 - row, 4 + col)``; blocks 1 and 2 follow by the lattice's
    120° rotation. Equals CMSSW ``ae_outputCellU_/V_`` (``HGCalConcentratorAutoEncoderImpl.h``).
    """
    return _uv().copy()


def _uv_map(affine: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    uv = _uv()
    lookup = {(int(u), int(v)): c for c, (u, v) in enumerate(uv)}
    image = _apply_affine(uv, affine)
    try:
        return np.array([lookup[(int(u), int(v))] for u, v in image], dtype=np.int64)
    except KeyError as missing:  # pragma: no cover - the lattice maps are symmetries by construction
        raise DataError(f"lattice map leaves the module at (u, v) = {missing}") from None


@functools.cache
def _rotation() -> np.ndarray:
    return _readonly(_uv_map(_UV_ROTATION))


@functools.cache
def _reflection() -> np.ndarray:
    return _readonly(_uv_map(_UV_REFLECTION))


def rotation_map(steps: int = 1) -> np.ndarray:
    """(48,) int cell map of the rotation by ``steps`` x 120°: cell ``c`` goes to ``map[c]``.

    One step sends block ``b`` to block ``b + 1`` (mod 3), same block-local cell.
    """
    out = np.arange(N_TRIGGER_CELLS)
    for _ in range(steps % N_BLOCKS):
        out = _rotation()[out]
    return out


def reflection_map() -> np.ndarray:
    """(48,) int cell map of the lattice reflection ``(u, v) -> (7 - v, 7 - u)`` (an involution).

    It keeps neighbours neighbours but is not an isometry of the EMD centres (module docstring).
    """
    return _reflection().copy()


def compose_maps(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """The cell map of applying ``first`` and then ``then``: ``c -> then[first[c]]``."""
    return np.asarray(then)[np.asarray(first)]


def invert_map(cell_map: np.ndarray) -> np.ndarray:
    """Inverse of a cell map (a permutation of 0..47)."""
    return np.argsort(np.asarray(cell_map), kind="stable")


def symmetry_maps(reflections: bool = False) -> np.ndarray:
    """(3, 48) or (6, 48) int: the module's symmetries as cell maps, identity first.

    Rows: rotations by 0, 120 and 240 degrees, then (with ``reflections``) the reflection
    followed by each rotation.
    """
    rotations = [rotation_map(k) for k in range(N_BLOCKS)]
    maps = rotations + ([compose_maps(reflection_map(), r) for r in rotations] if reflections else [])
    return np.stack(maps)


def apply_symmetry(events: np.ndarray, cell_map: np.ndarray) -> np.ndarray:
    """Move each event's charges by ``cell_map``: ``out[..., cell_map[c]] = events[..., c]``."""
    x = np.asarray(events)
    if x.shape[-1:] != (N_TRIGGER_CELLS,):
        raise DataError(f"apply_symmetry expects (..., {N_TRIGGER_CELLS}) events, got shape {x.shape}")
    return x[..., invert_map(cell_map)]


@functools.cache
def _neighbours() -> np.ndarray:
    pitch = CELL_PITCH / ONE_HEX_CELL
    near = _distances() < NEIGHBOUR_RADIUS_PITCH * pitch
    np.fill_diagonal(near, False)
    return _readonly(near)


def neighbour_matrix() -> np.ndarray:
    """(48, 48) bool: cells whose centres are closer than ``NEIGHBOUR_RADIUS_PITCH`` pitches."""
    return _neighbours().copy()


def preserves_adjacency(cell_map: np.ndarray, neighbours: np.ndarray | None = None) -> bool:
    """True when ``cell_map`` is a permutation of the 48 cells mapping neighbours exactly onto
    neighbours (a graph automorphism of ``neighbours``, default :func:`neighbour_matrix`)."""
    g = np.asarray(cell_map)
    adjacency = _neighbours() if neighbours is None else np.asarray(neighbours, dtype=bool)
    if g.shape != (N_TRIGGER_CELLS,) or sorted(g.tolist()) != list(range(N_TRIGGER_CELLS)):
        return False
    moved = np.zeros_like(adjacency)
    moved[np.ix_(g, g)] = adjacency  # edge (a, b) becomes (g[a], g[b])
    return bool((moved == adjacency).all())
