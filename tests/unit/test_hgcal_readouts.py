"""CALQ CSV loader, ECON-T normalisation and deterministic splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aeforge.data.hgcal.readouts import (
    CALQ_COLUMNS,
    DEFAULT_INPUT_TYPE,
    load_calq_csv,
    normalize_econt,
    restore_charges,
    split_indices,
)
from aeforge.errors import ConfigError, DataError
from aeforge.fixedpoint import FixedPoint


def write_csv(path: Path, rows: list[list[object]] | np.ndarray, header: list[str] | None = None) -> Path:
    header = list(CALQ_COLUMNS) if header is None else header
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def charges() -> np.ndarray:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 500, size=(20, 48)) * (rng.random((20, 48)) < 0.5)
    values[4] = 0  # an all-zero row
    return values.astype(np.float64)


def int_rows(values: np.ndarray) -> list[list[int]]:
    return values.astype(int).tolist()


# ------------------------------------------------------------------------------------ good files
def test_round_trip(tmp_path: Path, charges: np.ndarray) -> None:
    path = write_csv(tmp_path / "calq.csv", int_rows(charges))
    loaded = load_calq_csv(path)
    assert loaded.dtype == np.float64
    assert loaded.shape == (20, 48)
    np.testing.assert_array_equal(loaded, charges)


def test_max_rows(tmp_path: Path, charges: np.ndarray) -> None:
    path = write_csv(tmp_path / "calq.csv", int_rows(charges))
    np.testing.assert_array_equal(load_calq_csv(path, max_rows=5), charges[:5])
    assert load_calq_csv(path, max_rows=0).shape == (0, 48)
    np.testing.assert_array_equal(load_calq_csv(path, max_rows=1000), charges)
    with pytest.raises(ConfigError, match="max_rows"):
        load_calq_csv(path, max_rows=-1)


def test_shuffled_columns_are_reordered(tmp_path: Path, charges: np.ndarray) -> None:
    order = np.random.default_rng(0).permutation(48)
    header = [CALQ_COLUMNS[i] for i in order]
    path = write_csv(tmp_path / "shuffled.csv", int_rows(charges[:, order]), header)
    np.testing.assert_array_equal(load_calq_csv(path), charges)


def test_extra_columns_are_ignored(tmp_path: Path, charges: np.ndarray) -> None:
    header = ["event", *CALQ_COLUMNS, "comment"]
    rows = [[f"ev{i}", *row, "x y"] for i, row in enumerate(int_rows(charges))]
    path = write_csv(tmp_path / "extra.csv", rows, header)
    np.testing.assert_array_equal(load_calq_csv(path), charges)


def test_float_charges_bom_quotes_and_blank_lines(tmp_path: Path) -> None:
    rows = [[0.5 * i for i in range(48)], [f'"{i}"' for i in range(48)]]
    text = "\ufeff" + ",".join(CALQ_COLUMNS) + "\n\n" + ",".join(map(str, rows[0])) + "\n  \n"
    text += ",".join(rows[1]) + "\n\n"
    path = tmp_path / "odd.csv"
    path.write_text(text, encoding="utf-8")
    loaded = load_calq_csv(path)
    np.testing.assert_array_equal(loaded, [[0.5 * i for i in range(48)], list(range(48))])


def test_real_file_loads(hgcal_csv: Path) -> None:
    loaded = load_calq_csv(hgcal_csv)
    assert loaded.shape == (6050, 48)
    assert np.all(loaded >= 0) and np.all(loaded == np.round(loaded))
    np.testing.assert_array_equal(load_calq_csv(hgcal_csv, max_rows=10), loaded[:10])


# ------------------------------------------------------------------------------------ bad files
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="not found") as info:
        load_calq_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["", "\n", "  \n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(DataError, match="empty") as info:
        load_calq_csv(path)
    assert str(path) in str(info.value)


def test_header_only(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "header.csv", [])
    with pytest.raises(DataError, match="no data rows") as info:
        load_calq_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([c for c in CALQ_COLUMNS if c != "CALQ_5"] + ["other"], "missing column.*CALQ_5"),
        ([*CALQ_COLUMNS[:-1], "CALQ_3"], "duplicate column 'CALQ_3'"),
        ([*CALQ_COLUMNS, "CALQ_48"], "'CALQ_48' is not a trigger cell"),
        ([str(i) for i in range(48)], "missing column.*CALQ_0"),
    ],
)
def test_bad_header(tmp_path: Path, header: list[str], message: str) -> None:
    path = write_csv(tmp_path / "bad_header.csv", [[1] * len(header)], header)
    with pytest.raises(DataError, match=message) as info:
        load_calq_csv(path)
    assert f"{path}:1:" in str(info.value)


def _bad_file(tmp_path: Path, bad_row: list[str], row_index: int = 2, n_rows: int = 5) -> Path:
    rows: list[list[object]] = [[1] * 48 for _ in range(n_rows)]
    rows[row_index] = bad_row
    return write_csv(tmp_path / "bad.csv", rows)


def _row_with(column: int, value: str) -> list[str]:
    row = ["7"] * 48
    row[column] = value
    return row


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (["1"] * 47, "expected 48 fields.*got 47"),
        (["1"] * 49, "expected 48 fields.*got 49"),
        (_row_with(7, "abc"), "column CALQ_7: non-numeric value 'abc'"),
        (_row_with(7, ""), "column CALQ_7: non-numeric value ''"),
        (_row_with(12, "nan"), "column CALQ_12: charge must be finite"),
        (_row_with(12, "-inf"), "column CALQ_12: charge must be finite"),
        (_row_with(12, "1e999"), "column CALQ_12: charge must be finite"),
        (_row_with(40, "-3"), "column CALQ_40: negative charge '-3'"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path: Path, bad_row: list[str], message: str) -> None:
    path = _bad_file(tmp_path, bad_row, row_index=2)
    with pytest.raises(DataError, match=message) as info:
        load_calq_csv(path)
    assert f"{path}:4:" in str(info.value)  # header is line 1, data row 2 (0-based) is line 4


def test_bad_line_number_counts_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    good = ",".join(["1"] * 48)
    bad = ",".join(_row_with(0, "-1"))
    path.write_text("\n".join([",".join(CALQ_COLUMNS), good, "", good, bad, good]) + "\n")
    with pytest.raises(DataError, match=r":5: column CALQ_0: negative"):
        load_calq_csv(path)


def test_bad_line_deep_in_a_large_file(tmp_path: Path) -> None:
    rows = np.ones((3000, 48), dtype=int).tolist()
    rows[2500][33] = "x1"
    path = write_csv(tmp_path / "large.csv", rows)
    with pytest.raises(DataError, match=r":2502: column CALQ_33: non-numeric value 'x1'"):
        load_calq_csv(path)


def test_bad_row_beyond_max_rows_is_not_read(tmp_path: Path) -> None:
    path = _bad_file(tmp_path, _row_with(3, "oops"), row_index=4)
    assert load_calq_csv(path, max_rows=4).shape == (4, 48)
    with pytest.raises(DataError, match=":6:"):
        load_calq_csv(path, max_rows=5)


def test_bad_row_in_shuffled_columns_names_the_column(tmp_path: Path) -> None:
    header = list(reversed(CALQ_COLUMNS))
    rows: list[list[object]] = [[1] * 48, [1] * 48]
    rows[1][0] = "-2"  # the first field is CALQ_47
    path = write_csv(tmp_path / "rev.csv", rows, header)
    with pytest.raises(DataError, match=r":3: column CALQ_47: negative"):
        load_calq_csv(path)


# -------------------------------------------------------------------------------- normalisation
def test_normalize_properties(charges: np.ndarray) -> None:
    normalized, row_scale = normalize_econt(charges)
    assert normalized.shape == charges.shape and row_scale.shape == (len(charges),)
    nonzero = charges.sum(axis=1) > 0
    exact_sums = (charges / row_scale[:, None]).sum(axis=1)
    assert np.all((exact_sums[nonzero] >= 1) & (exact_sums[nonzero] < 2))
    mantissa, _ = np.frexp(row_scale)
    assert np.all(mantissa == 0.5)  # powers of two
    assert np.all(DEFAULT_INPUT_TYPE.is_representable(normalized))
    # zero rows stay zero, with scale 1
    assert not nonzero[4]
    assert np.all(normalized[4] == 0) and row_scale[4] == 1.0
    # restoration is exact up to half an LSB of the input grid, times the row scale
    restored = restore_charges(normalized, row_scale)
    tolerance = 0.5 * DEFAULT_INPUT_TYPE.lsb * row_scale[:, None]
    assert np.all(np.abs(restored - charges) <= tolerance + 1e-12)


def test_normalize_matches_the_reference_formula(charges: np.ndarray) -> None:
    normalized, row_scale = normalize_econt(charges)
    sums = charges.sum(axis=1)
    with np.errstate(divide="ignore"):
        expected_scale = np.where(sums > 0, 2.0 ** np.floor(np.log2(sums)), 1.0)
    np.testing.assert_array_equal(row_scale, expected_scale)
    expected = np.round(charges / expected_scale[:, None] * 2**7) / 2**7
    np.testing.assert_array_equal(normalized, expected)


def test_normalize_custom_input_type(charges: np.ndarray) -> None:
    coarse = FixedPoint(6, 2, signed=False)
    normalized, _ = normalize_econt(charges, coarse)
    assert np.all(coarse.is_representable(normalized))
    assert len(np.unique(normalized)) <= 2**6


def test_normalize_small_fractional_sums() -> None:
    row = np.zeros((1, 48))
    row[0, :3] = [0.1, 0.05, 0.2]  # sum 0.35: floor(log2(0.35)) = -2
    normalized, row_scale = normalize_econt(row)
    assert row_scale[0] == 0.25
    assert 1 <= row.sum() / row_scale[0] < 2
    np.testing.assert_allclose(normalized[0, :3], [0.3984375, 0.203125, 0.796875])


@pytest.mark.parametrize(("value", "message"), [(np.nan, "finite"), (np.inf, "finite"), (-1.0, "non-negative")])
def test_normalize_rejects_bad_values(value: float, message: str) -> None:
    bad = np.ones((3, 48))
    bad[2, 9] = value
    with pytest.raises(DataError, match=f"row 2, CALQ_9.*{message}"):
        normalize_econt(bad)


def test_normalize_rejects_wrong_shape() -> None:
    with pytest.raises(DataError, match="shape"):
        normalize_econt(np.ones((3, 47)))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 8), st.just(48)), elements=st.integers(0, 100_000)))
def test_normalize_property(values: np.ndarray) -> None:
    charges = values.astype(np.float64)
    normalized, row_scale = normalize_econt(charges)
    sums = charges.sum(axis=1)
    exact = (charges / row_scale[:, None]).sum(axis=1)
    assert np.all((exact[sums > 0] >= 1) & (exact[sums > 0] < 2))
    assert np.all(normalized[sums == 0] == 0) and np.all(row_scale[sums == 0] == 1)
    assert np.all(DEFAULT_INPUT_TYPE.is_representable(normalized))
    assert np.all(
        np.abs(restore_charges(normalized, row_scale) - charges) <= 0.5 * DEFAULT_INPUT_TYPE.lsb * row_scale[:, None]
    )


def test_normalize_real_file(hgcal_csv: Path) -> None:
    normalized, row_scale = normalize_econt(load_calq_csv(hgcal_csv))
    sums = normalized.sum(axis=1)
    slack = 48 * 0.5 * DEFAULT_INPUT_TYPE.lsb
    assert np.all((sums >= 1 - slack) & (sums < 2 + slack))
    assert np.all(row_scale >= 1)


# ------------------------------------------------------------------------------------ splitting
def test_split_indices_partition_and_determinism() -> None:
    train, val, test = split_indices(1001, [0.7, 0.15, 0.15], seed=4)
    assert (len(train), len(val)) == (700, 150) and len(test) == 151
    joined = np.concatenate([train, val, test])
    np.testing.assert_array_equal(np.sort(joined), np.arange(1001))
    for part in (train, val, test):
        assert np.all(np.diff(part) > 0)
    again = split_indices(1001, [0.7, 0.15, 0.15], seed=4)
    for a, b in zip((train, val, test), again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = split_indices(1001, [0.7, 0.15, 0.15], seed=5)
    assert not np.array_equal(train, other[0])


@pytest.mark.parametrize("fractions", [[0.5, 0.4], [0.7, -0.1, 0.4], [], [float("nan"), 1.0]])
def test_split_indices_rejects_bad_fractions(fractions: list[float]) -> None:
    with pytest.raises(ConfigError):
        split_indices(10, fractions)
