"""The embedded synthetic HGCAL readout generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aeforge.data.hgcal.readouts import CALQ_COLUMNS, load_calq_csv, normalize_econt
from aeforge.data.hgcal.synthetic import SyntheticConfig, generate_readouts
from aeforge.errors import ConfigError

# A single, fully contained, noiseless shower of fixed energy: checks the lateral profile.
CLEAN_SHOWER = {
    "pileup_hits_mean": 0.0, "mean_deposits": 50.0, "max_deposits": 1, "energy_min_mip": 100.0,
    "energy_max_mip": 100.0, "outside_fraction": 0.0, "stochastic_mip": 0.0, "noise_mip": 0.0,
    "zs_threshold_mip": 0.0, "zs_noise_mip": 0.0, "zs_min_counts": 0.0,
}  # fmt: skip


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return generate_readouts(5000, seed=3)


def test_shape_integrality_and_range(sample: np.ndarray) -> None:
    assert sample.shape == (5000, 48)
    assert sample.dtype == np.float64
    assert np.all(sample == np.round(sample))
    assert np.all(sample >= 0)
    assert np.all(sample <= SyntheticConfig().saturation_counts)
    assert np.all(sample.sum(axis=1) > 0)  # no empty events by default


def test_deterministic_per_seed(sample: np.ndarray) -> None:
    np.testing.assert_array_equal(generate_readouts(5000, seed=3), sample)
    assert not np.array_equal(generate_readouts(5000, seed=4), sample)


def test_samples_are_prefix_stable(sample: np.ndarray) -> None:
    np.testing.assert_array_equal(generate_readouts(100, seed=3), sample[:100])
    assert generate_readouts(0).shape == (0, 48)


def test_threshold_respected(sample: np.ndarray) -> None:
    config = SyntheticConfig()
    assert sample[sample > 0].min() >= config.zs_min_counts
    hard = generate_readouts(3000, seed=1, zs_threshold_mip=0.5, zs_noise_mip=0.0)
    assert hard[hard > 0].min() >= 0.5 * config.counts_per_mip
    # the soft default threshold: few cells just above the hard floor, a plateau above ~5 counts
    values = sample[sample > 0]
    assert np.mean(values == 2) < 0.2 * np.mean(values == 6)


def test_saturation() -> None:
    charges = generate_readouts(3000, seed=2, saturation_counts=100)
    assert charges.max() == 100
    assert np.mean(charges == 100) > 0.001


def test_clean_shower_is_contained_and_peaked() -> None:
    total_counts = 100.0 * SyntheticConfig().counts_per_mip
    narrow = generate_readouts(500, seed=5, **CLEAN_SHOWER, halo_radius_pitch=0.6)
    assert np.median(narrow.sum(axis=1)) > 0.75 * total_counts  # a narrow shower inside is mostly seen
    charges = generate_readouts(500, seed=5, **CLEAN_SHOWER)
    sums = charges.sum(axis=1)
    assert np.all(sums <= total_counts * 1.001)
    assert np.median(sums) > 0.45 * total_counts  # the default halo is broad (1.9 pitches)
    assert np.median(charges.max(axis=1) / sums) > 0.15  # a core, not a flat carpet
    outside = generate_readouts(500, seed=5, **{**CLEAN_SHOWER, "outside_fraction": 1.0})
    assert np.median(outside.sum(axis=1)) < 0.5 * np.median(sums)  # only tails enter


def test_allow_empty() -> None:
    quiet = {"pileup_hits_mean": 0.5, "mean_deposits": 0.0}
    charges = generate_readouts(2000, seed=0, allow_empty=True, **quiet)
    assert np.any(charges.sum(axis=1) == 0)
    assert np.all(generate_readouts(2000, seed=0, **quiet).sum(axis=1) > 0)


def test_config_object_and_overrides() -> None:
    config = SyntheticConfig(mean_deposits=2.0)
    np.testing.assert_array_equal(
        generate_readouts(50, seed=1, config=config), generate_readouts(50, seed=1, mean_deposits=2.0)
    )
    assert config.replace(max_deposits=2).max_deposits == 2
    with pytest.raises(ConfigError, match="SyntheticConfig"):
        generate_readouts(5, config={"mean_deposits": 2.0})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"no_such_knob": 1.0}, "unknown synthetic parameter"),
        ({"pileup_hits_mean": -1.0}, "pileup_hits_mean must be >= 0"),
        ({"core_radius_pitch": 0.0}, "core_radius_pitch must be > 0"),
        ({"energy_min_mip": 10.0, "energy_max_mip": 5.0}, "energy_max_mip"),
        ({"core_fraction": 1.5}, "core_fraction must be in"),
        ({"max_deposits": 1.5}, "max_deposits must be an integer"),
        ({"noise_mip": float("nan")}, "noise_mip must be a finite number"),
        ({"pileup_hits_mean": 0.0, "mean_deposits": 0.0}, "only empty events"),
    ],
)
def test_bad_parameters(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_readouts(10, **params)


def test_almost_always_empty_is_an_error() -> None:
    with pytest.raises(ConfigError, match="almost only empty events"):
        generate_readouts(10, zs_threshold_mip=1e6, zs_noise_mip=0.0)
    assert not generate_readouts(10, zs_threshold_mip=1e6, allow_empty=True).any()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_event_count(bad: object) -> None:
    with pytest.raises(ConfigError, match="n_events"):
        generate_readouts(bad)  # type: ignore[arg-type]


def test_same_format_as_the_csv(tmp_path: Path, sample: np.ndarray) -> None:
    path = tmp_path / "synthetic.csv"
    np.savetxt(path, sample[:200], fmt="%d", delimiter=",", header=",".join(CALQ_COLUMNS), comments="")
    np.testing.assert_array_equal(load_calq_csv(path), sample[:200])
    normalized, row_scale = normalize_econt(sample)
    assert np.all(row_scale >= 1) and np.all(normalized.max(axis=1) <= 2)


def test_resembles_the_real_file(hgcal_csv: Path, sample: np.ndarray) -> None:
    real = load_calq_csv(hgcal_csv)
    real_occupancy, synthetic_occupancy = (real > 0).sum(axis=1), (sample > 0).sum(axis=1)
    assert abs(synthetic_occupancy.mean() / real_occupancy.mean() - 1) < 0.15
    assert abs(np.median(synthetic_occupancy) - np.median(real_occupancy)) <= 3
    assert abs(np.median(sample.max(axis=1)) / np.median(real.max(axis=1)) - 1) < 0.25
    assert abs(np.median(sample.sum(axis=1)) / np.median(real.sum(axis=1)) - 1) < 0.25
    per_cell = np.abs((sample > 0).mean(axis=0) - (real > 0).mean(axis=0))
    assert per_cell.max() < 0.1
