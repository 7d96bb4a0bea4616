"""Synthetic HGCAL ECON-T module readouts: the embedded default dataset (nothing is downloaded).

:func:`generate_readouts` returns ``(N, 48)`` integer-valued float64 charges in counts, in calQ
order — the format of ``CALQ_output.csv`` — so :func:`~aeforge.data.hgcal.readouts.normalize_econt`
applies unchanged. Lengths are in cell pitches (distance between adjacent trigger-cell centres),
energies in MIP_T (``counts_per_mip`` counts each).

Physics model (parameters in :class:`SyntheticConfig`), one module in one layer per event:

1. **Pile-up activity.** Each event draws a pile-up density ``lambda ~ Gamma(pileup_shape,
   pileup_hits_mean / pileup_shape)`` — the event-to-event spread of soft activity that dominates
   the occupancy at high pile-up — then ``Poisson(lambda)`` soft hits on uniformly random cells,
   each with a log-normal energy (median ``pileup_energy_median_mip``, log-sigma
   ``pileup_energy_log_sigma``); hits on the same cell add up.
2. **Shower deposits.** ``min(Poisson(mean_deposits), max_deposits)`` electromagnetic-shower-like
   deposits, each with a total energy log-uniform in [``energy_min_mip``, ``energy_max_mip``]. The
   centre is uniform over the module area (the union of the trigger cells); a fraction
   ``outside_fraction`` lies up to ``outside_margin_pitch`` outside the module so that only the
   tail enters. The lateral profile is a normalised 2-D core + halo exponential mixture,
   ``rho(r) = w exp(-r/a) / (2 pi a^2) + (1 - w) exp(-r/b) / (2 pi b^2)`` with ``a =
   core_radius_pitch``, ``b = halo_radius_pitch``, ``w = core_fraction`` (Moliere-radius-like in
   units of the cell pitch), integrated over each hexagonal cell; energy falling outside the 48
   cells is lost. Each cell's shower energy ``e`` fluctuates with a Gaussian of variance
   ``stochastic_mip * e`` (Poisson-like sampling fluctuation), clipped at zero.
3. **Electronics.** Gaussian noise (``noise_mip``) on every cell, conversion to counts
   (``counts_per_mip``), rounding to integers and saturation at ``saturation_counts``. Then
   zero-suppression: a cell is kept when its charge plus an independent Gaussian decision noise
   (``zs_noise_mip``) reaches ``zs_threshold_mip`` and it holds at least ``zs_min_counts`` — a
   soft threshold, as seen in the reference file.

Unless ``allow_empty``, events that end up all zero are drawn again (the reference file has none).
The defaults were tuned against the 6,050 readouts of ``CALQ_output.csv`` (Kolmogorov-Smirnov
distances of occupancy, maximum charge, row sum and non-zero charge spectrum, plus the fraction
of fully lit modules; see ``benchmarks/hgcal_synthetic_realism.py``). In that file the
occupancy is driven mostly by event-wide activity (neighbouring cells are only mildly more
correlated than distant ones) and charges are kept down to 2 counts with a turn-on around
3-4 counts (~0.1 MIP_T), so the default zero-suppression threshold is ~0.1 MIP_T, not the
~0.5 MIP_T of a physics reconstruction.

Generation is vectorised and deterministic: events are produced in fixed blocks of
``_BLOCK_EVENTS``, block ``k`` from ``numpy.random.default_rng([seed, k])``, so the first ``n``
events of a larger sample equal the sample of ``n`` events with the same seed and parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from aeforge.data.hgcal.geometry import N_TRIGGER_CELLS, trigger_cell_centres
from aeforge.errors import ConfigError

_BLOCK_EVENTS = 4096
"""Events generated per random-number block (fixed so that samples are prefix-stable)."""

_MAX_EMPTY_FRACTION = 0.9
"""Above this fraction of all-zero events (unless ``allow_empty``) the parameters are refused."""

_CELL_INRADIUS = 0.5
_CELL_CIRCUMRADIUS = 1.0 / math.sqrt(3.0)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic readout model (module docstring); lengths in cell pitches."""

    # pile-up
    pileup_hits_mean: float = 14.4
    pileup_shape: float = 1.37
    pileup_energy_median_mip: float = 0.67
    pileup_energy_log_sigma: float = 1.03
    # shower deposits
    mean_deposits: float = 0.46
    max_deposits: int = 4
    energy_min_mip: float = 1.0
    energy_max_mip: float = 300.0
    outside_fraction: float = 0.23
    outside_margin_pitch: float = 2.0
    core_radius_pitch: float = 0.35
    halo_radius_pitch: float = 1.9
    core_fraction: float = 0.29
    stochastic_mip: float = 0.15
    # electronics
    noise_mip: float = 0.01
    counts_per_mip: float = 35.0
    zs_threshold_mip: float = 0.107
    zs_noise_mip: float = 0.023
    zs_min_counts: float = 2.0
    saturation_counts: float = float(2**22 - 1)
    allow_empty: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "allow_empty":
                if not isinstance(value, bool):
                    raise ConfigError(f"SyntheticConfig.allow_empty must be a bool, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"SyntheticConfig.{field.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ConfigError(f"SyntheticConfig.{field.name} must be >= 0, got {value!r}")
        if not isinstance(self.max_deposits, int):
            raise ConfigError(f"SyntheticConfig.max_deposits must be an integer, got {self.max_deposits!r}")
        positive = (
            "pileup_shape",
            "energy_min_mip",
            "core_radius_pitch",
            "halo_radius_pitch",
            "counts_per_mip",
            "saturation_counts",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"SyntheticConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.energy_max_mip < self.energy_min_mip:
            raise ConfigError(
                f"SyntheticConfig: energy_max_mip ({self.energy_max_mip}) < energy_min_mip ({self.energy_min_mip})"
            )
        for name in ("outside_fraction", "core_fraction"):
            if getattr(self, name) > 1:
                raise ConfigError(f"SyntheticConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not self.allow_empty and self.pileup_hits_mean == 0 and self.mean_deposits == 0:
            raise ConfigError("SyntheticConfig: no pile-up and no deposits give only empty events")

    def replace(self, **changes: float | int | bool) -> SyntheticConfig:
        """A copy with some fields changed; unknown names raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)


def generate_readouts(
    n_events: int, seed: int = 0, *, config: SyntheticConfig | None = None, **params: float | int | bool
) -> np.ndarray:
    """Generate ``(n_events, 48)`` integer-valued float64 charges (counts) in calQ order.

    ``params`` override fields of ``config`` (default :class:`SyntheticConfig`), e.g.
    ``generate_readouts(1000, seed=1, mean_deposits=2.0)``. Deterministic for a given
    ``(seed, parameters)``; a sample is a prefix of any larger sample with the same seed.
    """
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 0:
        raise ConfigError(f"n_events must be a non-negative integer, got {n_events!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if config is None:
        config = SyntheticConfig()
    elif not isinstance(config, SyntheticConfig):
        raise ConfigError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    if params:
        config = config.replace(**params)
    n_blocks = -(-int(n_events) // _BLOCK_EVENTS)
    blocks = [_generate_block(config, np.random.default_rng([int(seed), k])) for k in range(n_blocks)]
    if not blocks:
        return np.zeros((0, N_TRIGGER_CELLS))
    return np.concatenate(blocks)[:n_events]


# ------------------------------------------------------------------------------------- internals
def _generate_block(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    counts = _generate_events(config, rng, _BLOCK_EVENTS)
    if config.allow_empty:
        return counts
    empty = np.flatnonzero(~counts.any(axis=1))
    if empty.size > _MAX_EMPTY_FRACTION * _BLOCK_EVENTS:
        raise ConfigError(
            f"synthetic parameters give almost only empty events ({empty.size / _BLOCK_EVENTS:.0%}); "
            "raise the activity or pass allow_empty=True"
        )
    while empty.size:  # P(empty) <= _MAX_EMPTY_FRACTION per draw, so this ends after a few dozen rounds
        counts[empty] = _generate_events(config, rng, empty.size)
        empty = empty[~counts[empty].any(axis=1)]
    return counts


def _generate_events(config: SyntheticConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    energy_mip = _pileup_mip(config, rng, n) + _showers_mip(config, rng, n)
    if config.noise_mip > 0:
        energy_mip += rng.normal(0.0, config.noise_mip, size=energy_mip.shape)
    counts = np.rint(np.clip(energy_mip, 0.0, None) * config.counts_per_mip)
    np.minimum(counts, math.floor(config.saturation_counts), out=counts)
    decision_mip = counts / config.counts_per_mip
    if config.zs_noise_mip > 0:
        decision_mip = decision_mip + rng.normal(0.0, config.zs_noise_mip, size=counts.shape)
    counts[(decision_mip < config.zs_threshold_mip) | (counts < config.zs_min_counts)] = 0.0
    return counts


def _pileup_mip(config: SyntheticConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Soft hits on random cells; the per-event density is Gamma distributed."""
    density = rng.gamma(config.pileup_shape, config.pileup_hits_mean / config.pileup_shape, size=n)
    n_hits = rng.poisson(density)
    total = int(n_hits.sum())
    event = np.repeat(np.arange(n), n_hits)
    cell = rng.integers(0, N_TRIGGER_CELLS, size=total)
    hit_mip = rng.lognormal(math.log(config.pileup_energy_median_mip), config.pileup_energy_log_sigma, size=total)
    flat = np.bincount(event * N_TRIGGER_CELLS + cell, weights=hit_mip, minlength=n * N_TRIGGER_CELLS)
    return flat.reshape(n, N_TRIGGER_CELLS)


def _showers_mip(config: SyntheticConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Core + halo shower deposits with Gaussian (Poisson-like) per-cell fluctuations."""
    n_deposits = np.minimum(rng.poisson(config.mean_deposits, size=n), config.max_deposits)
    total = int(n_deposits.sum())
    event = np.repeat(np.arange(n), n_deposits)
    log_e = rng.uniform(math.log(config.energy_min_mip), math.log(config.energy_max_mip), size=total)
    outside = rng.random(total) < config.outside_fraction
    centre = _deposit_centres(config, rng, outside)
    cells = _cell_centres_pitch()
    distance = np.sqrt(((centre[:, None, :] - cells[None, :, :]) ** 2).sum(axis=-1))
    radii, fraction_table = _cell_fraction_table(
        config.core_radius_pitch, config.halo_radius_pitch, config.core_fraction
    )
    deposit_mip = np.interp(distance, radii, fraction_table, right=0.0) * np.exp(log_e)[:, None]
    energy_mip = np.zeros((n, N_TRIGGER_CELLS))
    np.add.at(energy_mip, event, deposit_mip)
    if config.stochastic_mip > 0:
        energy_mip += np.sqrt(config.stochastic_mip * energy_mip) * rng.standard_normal(energy_mip.shape)
    return np.clip(energy_mip, 0.0, None)


def _deposit_centres(config: SyntheticConfig, rng: np.random.Generator, outside: np.ndarray) -> np.ndarray:
    """Centres uniform over the module area (``~outside``) or over a band around it (``outside``).

    The module area is the set of points within a cell circumradius of some cell centre (the
    union of the hexagonal cells, slightly rounded at the border); the band extends it by
    ``outside_margin_pitch``. Rejection sampling from the bounding box.
    """
    cells = _cell_centres_pitch()
    reach = _CELL_CIRCUMRADIUS + config.outside_margin_pitch
    low, high = cells.min(axis=0) - reach, cells.max(axis=0) + reach
    wanted = {False: int((~outside).sum()), True: int(outside.sum())}
    found: dict[bool, list[np.ndarray]] = {False: [], True: []}
    have = {False: 0, True: 0}
    while any(have[k] < wanted[k] for k in wanted):
        candidate = rng.uniform(low, high, size=(max(256, 4 * sum(wanted.values())), 2))
        nearest = np.sqrt(((candidate[:, None, :] - cells[None]) ** 2).sum(-1)).min(axis=1)
        inside = nearest <= _CELL_CIRCUMRADIUS
        band = ~inside & (nearest <= reach) if config.outside_margin_pitch > 0 else np.zeros_like(inside)
        for key, mask in ((False, inside), (True, band)):
            if have[key] < wanted[key]:
                found[key].append(candidate[mask])
                have[key] += int(mask.sum())
    centre = np.empty((outside.size, 2))
    for key in (False, True):
        if wanted[key]:
            centre[outside == key] = np.concatenate(found[key])[: wanted[key]]
    return centre


@functools.cache
def _cell_centres_pitch() -> np.ndarray:
    """Cell centres in units of the cell pitch (normalized geometry has pitch 2)."""
    return np.asarray(trigger_cell_centres(normalized=True), dtype=np.float64) / 2.0


@functools.cache
def _hexagon_points() -> np.ndarray:
    """Sample points filling one hexagonal cell (inradius 0.5) around the origin, equal weights."""
    step = 1.0 / 24.0
    grid = np.arange(-0.6, 0.6 + step / 2, step)
    x, y = np.meshgrid(grid, grid)
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    inside = np.ones(len(points), dtype=bool)
    for k in range(6):
        normal = np.array([math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)])
        inside &= points @ normal <= _CELL_INRADIUS
    return points[inside]


@functools.cache
def _cell_fraction_table(core_radius: float, halo_radius: float, core_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of a deposit's energy in a cell whose centre is at distance r (cell pitches).

    The 2-D profile is integrated over a hexagonal cell (and averaged over its orientation), so
    narrow cores are not under- or over-sampled at the cell centre.
    """
    radii = np.linspace(0.0, 12.0 + 10.0 * halo_radius, 1201)
    points = _hexagon_points()
    area = 0.5 * math.sqrt(3.0)  # hexagon of inradius 1/2
    fraction = np.zeros_like(radii)
    angles = np.linspace(0.0, math.pi / 3, 4, endpoint=False)
    for angle in angles:
        offset = np.stack([radii * math.cos(angle), radii * math.sin(angle)], axis=1)
        r = np.sqrt(((offset[:, None, :] + points[None]) ** 2).sum(-1))
        density = core_fraction * np.exp(-r / core_radius) / (2 * math.pi * core_radius**2) + (
            1 - core_fraction
        ) * np.exp(-r / halo_radius) / (2 * math.pi * halo_radius**2)
        fraction += density.mean(axis=1) * area
    return radii, fraction / len(angles)
