"""HGCAL ECON-T module readouts: CSV loader, ECON-T normalisation and deterministic splits.

A readout is one row of 48 trigger-cell charges (in counts, 35 counts = 1 MIP_T) in calQ order,
as in the ``CALQ_output.csv`` files of the ECON-T autoencoder studies: a header row naming the
columns ``CALQ_0`` .. ``CALQ_47``, then one row of charges per module.

The ECON-T normalisation (:func:`normalize_econt`) divides each row by the power of two
``2**floor(log2(row_sum))`` — a shift in hardware — so that every non-zero row sums to [1, 2), and
rounds the result onto the encoder's input fixed-point grid (default ``ap_fixed<11,4>``).
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aeforge.errors import ConfigError, DataError
from aeforge.fixedpoint import FixedPoint

N_CELLS = 48
"""Number of trigger cells (calQ columns) in one module readout."""

COUNTS_PER_MIP = 35.0
"""Charge counts per MIP_T in the calQ readout."""

CALQ_COLUMNS: tuple[str, ...] = tuple(f"CALQ_{i}" for i in range(N_CELLS))
"""The required CSV header names, in calQ order."""

DEFAULT_INPUT_TYPE = FixedPoint(11, 4, signed=True)
"""The ECON-T encoder input type, ``ap_fixed<11,4,AP_RND_CONV,AP_SAT>`` (LSB 2**-7)."""

_CALQ_NAME = re.compile(r"^CALQ_(\d+)$")


# ---------------------------------------------------------------------------------------- loading
def load_calq_csv(path: str | os.PathLike[str], *, max_rows: int | None = None) -> np.ndarray:
    """Load a calQ readout CSV into an ``(N, 48)`` float64 array of charges (counts) in calQ order.

    The header must name each of ``CALQ_0`` .. ``CALQ_47`` exactly once, in any order (columns are
    reordered to calQ order). Other columns whose names do not look like ``CALQ_<n>`` (an event
    id, say) are ignored, whatever they hold; a ``CALQ_<n>`` with ``n`` outside 0..47 is an
    error, since it points at a different module geometry. Blank lines are skipped. Charges may be
    any finite non-negative numbers (the reference files hold integers).

    ``max_rows`` reads only the first that many data rows.

    Raises :class:`DataError` naming the file, the 1-based line and the column for a missing or
    empty file, a bad header, a row with the wrong number of fields, a non-numeric cell, NaN or
    infinity, or a negative charge.
    """
    path = Path(path)
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0):
        raise ConfigError(f"max_rows must be a non-negative integer or None, got {max_rows!r}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    header = _read_header(path)
    calq_index = _calq_positions(path, header)
    try:
        charges = _parse_fast(path, header, calq_index, max_rows)
    except (ValueError, OverflowError, UnicodeDecodeError):
        charges = None
    if charges is None or not _values_ok(charges):
        # The slow, line-by-line parser is authoritative: it either finds the first bad line
        # (and raises naming it) or parses what the fast path could not (e.g. quoted fields).
        charges = _parse_slow(path, header, calq_index, max_rows)
    if charges.shape[0] == 0 and max_rows != 0:
        raise DataError(f"{path}: has a header but no data rows")
    return charges


def _open_text(path: Path):
    # utf-8-sig drops a byte-order mark; newline="" lets the csv module see the raw line ends.
    return open(path, encoding="utf-8-sig", newline="")


def _read_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as handle:
            first = handle.readline()
            if not first.strip() and not handle.read(1):
                raise DataError(f"{path}: file is empty (expected a header naming CALQ_0..CALQ_47)")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    return [name.strip() for name in next(csv.reader([first]), [])]


def _calq_positions(path: Path, header: list[str]) -> np.ndarray:
    """Column position of CALQ_i in the file, for i = 0..47."""
    positions: dict[int, int] = {}
    for column, name in enumerate(header):
        match = _CALQ_NAME.match(name)
        if match is None:
            continue
        cell = int(match.group(1))
        if cell >= N_CELLS:
            raise DataError(f"{path}:1: column {name!r} is not a trigger cell (expected CALQ_0..CALQ_47)")
        if cell in positions:
            raise DataError(f"{path}:1: duplicate column {name!r} (columns {positions[cell] + 1} and {column + 1})")
        positions[cell] = column
    missing = [CALQ_COLUMNS[i] for i in range(N_CELLS) if i not in positions]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{path}:1: header is missing column(s) {shown}; expected CALQ_0..CALQ_47 "
            f"(got {', '.join(repr(h) for h in header[:4])}{', ...' if len(header) > 4 else ''})"
        )
    return np.array([positions[i] for i in range(N_CELLS)], dtype=np.intp)


def _parse_fast(path: Path, header: list[str], calq_index: np.ndarray, max_rows: int | None) -> np.ndarray:
    """numpy's C parser; raises ValueError on anything irregular (the slow path then explains)."""
    n_fields = len(header)
    extra = sorted(set(range(n_fields)) - set(calq_index.tolist()))
    # Extra columns are read as 0 by a converter (whatever they hold), so that loadtxt still checks
    # that every row has exactly n_fields fields.
    table = None
    # Integer parsing is several times faster than float parsing; real files hold integers.
    for dtype in (np.int64, np.float64):
        converters = dict.fromkeys(extra, lambda _text: 0) if extra else None
        try:
            with _open_text(path) as handle, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input line contained no data" for blank lines
                handle.readline()
                table = np.loadtxt(
                    handle,
                    delimiter=",",
                    comments=None,
                    dtype=dtype,
                    ndmin=2,
                    max_rows=max_rows,
                    converters=converters,
                )
            break
        except (ValueError, OverflowError):
            if dtype is np.float64:
                raise
    assert table is not None
    if table.shape[0] == 0:
        return np.zeros((0, N_CELLS))
    if table.shape[1] != n_fields:
        raise ValueError("field count differs from the header")
    if n_fields != N_CELLS or np.any(calq_index != np.arange(N_CELLS)):
        table = np.take(table, calq_index, axis=1)
    return table.astype(np.float64, copy=False)


def _values_ok(charges: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(charges)) and not np.any(charges < 0))


def _parse_slow(path: Path, header: list[str], calq_index: np.ndarray, max_rows: int | None) -> np.ndarray:
    """Line-by-line parse with the csv module; raises DataError at the first bad line."""
    n_fields = len(header)
    rows: list[list[float]] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for fields in reader:
            if max_rows is not None and len(rows) >= max_rows:
                break
            line = reader.line_num
            if len(fields) <= 1 and not "".join(fields).strip():
                continue  # blank line
            if len(fields) != n_fields:
                raise DataError(f"{path}:{line}: expected {n_fields} fields as in the header, got {len(fields)}")
            row = []
            for cell, column in enumerate(calq_index):
                text = fields[column].strip()
                name = CALQ_COLUMNS[cell]
                try:
                    value = float(text)
                except ValueError:
                    raise DataError(f"{path}:{line}: column {name}: non-numeric value {text!r}") from None
                if not math.isfinite(value):
                    raise DataError(f"{path}:{line}: column {name}: charge must be finite, got {text!r}")
                if value < 0:
                    raise DataError(f"{path}:{line}: column {name}: negative charge {text!r}")
                row.append(value)
            rows.append(row)
    if not rows:
        return np.zeros((0, N_CELLS))
    return np.asarray(rows, dtype=np.float64)


# ---------------------------------------------------------------------------------- normalisation
def _check_charges(charges: np.ndarray, what: str = "charges") -> np.ndarray:
    array = np.asarray(charges, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != N_CELLS:
        raise DataError(f"{what} must have shape (N, {N_CELLS}), got {array.shape}")
    bad = ~np.isfinite(array) | (array < 0)
    if np.any(bad):
        row, cell = np.argwhere(bad)[0]
        raise DataError(
            f"{what}: row {row}, CALQ_{cell}: charge must be finite and non-negative, got {array[row, cell]!r}"
        )
    return array


def normalize_econt(charges: np.ndarray, input_type: FixedPoint | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ECON-T normalisation of ``(N, 48)`` charges; returns ``(normalized, row_scale)``.

    Each row is divided by ``row_scale = 2**floor(log2(row_sum))`` (so a non-zero row then sums to
    [1, 2)) and rounded onto the grid of ``input_type`` (default ``ap_fixed<11,4>``, LSB 2**-7)
    with its rounding and overflow modes. All-zero rows stay zero, with ``row_scale = 1``.
    ``normalized * row_scale[:, None]`` restores the charges up to the rounding
    (see :func:`restore_charges`). NaN, infinite or negative charges raise :class:`DataError`.
    """
    array = _check_charges(charges)
    input_type = DEFAULT_INPUT_TYPE if input_type is None else input_type
    row_sum = array.sum(axis=1)
    row_scale = np.ones_like(row_sum)
    nonzero = row_sum > 0
    # frexp gives sum = m * 2**e with m in [0.5, 1): floor(log2(sum)) = e - 1, exactly.
    _, exponent = np.frexp(row_sum[nonzero])
    row_scale[nonzero] = np.ldexp(1.0, exponent - 1)
    normalized = input_type.quantize(array / row_scale[:, None])
    return normalized, row_scale


def restore_charges(normalized: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
    """Undo :func:`normalize_econt` (up to its rounding): ``normalized * row_scale[:, None]``."""
    return np.asarray(normalized, dtype=np.float64) * np.asarray(row_scale, dtype=np.float64)[:, None]


# --------------------------------------------------------------------------------------- splitting
def split_indices(n: int, fractions: Sequence[float], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Deterministically split ``range(n)`` into disjoint index arrays, e.g. train/val/test.

    ``fractions`` must be non-negative and sum to 1; part ``k`` gets ``floor(fractions[k] * n)``
    indices and the last part the remainder. The shuffle depends only on ``seed``; each part is
    sorted so that slicing keeps the file order.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"split_indices: n must be a non-negative integer, got {n!r}")
    fractions = [float(f) for f in fractions]
    if not fractions or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ConfigError(f"split_indices: fractions must be non-negative numbers, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"split_indices: fractions must sum to 1, got {fractions} (sum {sum(fractions)})")
    order = np.random.default_rng(seed).permutation(int(n))
    sizes = [math.floor(f * n) for f in fractions[:-1]]
    bounds = np.cumsum([0, *sizes])
    parts = [order[bounds[k] : bounds[k + 1]] for k in range(len(sizes))]
    parts.append(order[bounds[-1] :])
    return tuple(np.sort(part) for part in parts)
