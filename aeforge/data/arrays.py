"""User data as arrays: ``.npy``, ``.npz``, CSV and HDF5 files, and two datasets generated in code.

:func:`load_array` returns ``(N, features)`` or ``(N, C, ...)`` float64 samples (channels-first, as
PyTorch takes them); errors name the file and what is wrong (missing key, non-numeric CSV cell with
its line and column, NaNs). The generated datasets let the example configs run offline:

* ``machine_sound``: log-mel-like frames in the layout of the MLPerf Tiny anomaly-detection
  reference (5 frames x 128 bins = 640 features): a machine's smooth spectrum, harmonics with
  jittered gains and noise; anomalies (labels 1) add a narrow-band tone or shift a harmonic;
* ``shapes``: ``1 x 16 x 16`` images of a blurred square, disc or bar at a random place.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aeforge.errors import DataError

GENERATORS = ("machine_sound", "shapes")
SUFFIXES = (".npy", ".npz", ".csv", ".h5", ".hdf5")


def load_array(path: str | Path, key: str | None = None, columns: str | None = None,
               shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Samples from ``path`` (``key``: the .npz / HDF5 array; ``columns``: CSV columns, e.g. ``"2:50"``
    or ``"a,b,c"``; ``shape``: one sample's channels-first shape to reshape flat rows to)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown data file type {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if suffix == ".npy":
        data = _npy(path)
    elif suffix == ".npz":
        data = _npz(path, key)
    elif suffix == ".csv":
        data = _csv(path, columns)
    else:
        data = _hdf5(path, key)
    if data.dtype.kind not in "iuf":
        raise DataError(f"{path}: array has dtype {data.dtype}; expected numbers")
    data = data.astype(np.float64)
    if data.ndim < 2 or len(data) == 0:
        raise DataError(f"{path}: expected an array (N, features) or (N, C, ...) with N >= 1, got shape {data.shape}")
    if shape is not None:
        if int(np.prod(data.shape[1:])) != int(np.prod(shape)):
            raise DataError(f"{path}: samples of shape {data.shape[1:]} cannot be reshaped to {tuple(shape)}")
        data = data.reshape(len(data), *shape)
    bad = ~np.isfinite(data)
    if bad.any():
        row = int(np.argwhere(bad.reshape(len(data), -1).any(axis=1))[0, 0])
        raise DataError(f"{path}: sample {row} contains NaN or infinite values")
    return data


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npy array: {error}") from None


def _npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None and len(names) == 1:
                key = names[0]
            if key not in names:
                raise DataError(f"{path}: {'no array ' + repr(key) if key else 'several arrays'}; set data.key to "
                                f"one of {', '.join(names)}")
            return archive[key]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz archive: {error}") from None


def _hdf5(path: Path, key: str | None) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            datasets: list[str] = []
            handle.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
            if key is None and len(datasets) == 1:
                key = datasets[0]
            if key not in datasets:
                raise DataError(f"{path}: {'no dataset ' + repr(key) if key else 'several datasets'}; set data.key "
                                f"to one of {', '.join(datasets)}")
            return np.asarray(handle[key])
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file: {error}") from None


def _column_indices(header: list[str], columns: str | None, path: Path) -> list[int]:
    if columns is None:
        return list(range(len(header)))
    text = columns.strip()
    if ":" in text and "," not in text:
        start, _, stop = text.partition(":")
        try:
            indices = list(range(len(header)))[slice(int(start) if start else None, int(stop) if stop else None)]
        except ValueError:
            raise DataError(f"{path}: data.columns {columns!r}: expected 'start:stop' integers") from None
        if not indices:
            raise DataError(f"{path}: data.columns {columns!r} selects no column of {len(header)}")
        return indices
    indices = []
    for item in text.split(","):
        item = item.strip()
        if item in header:
            indices.append(header.index(item))
        elif item.lstrip("-").isdigit() and -len(header) <= int(item) < len(header):
            indices.append(int(item) % len(header))
        else:
            raise DataError(f"{path}: data.columns: no column {item!r} (the header has {', '.join(header[:8])}...)")
    return indices


def _csv(path: Path, columns: str | None) -> np.ndarray:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: unreadable CSV: {error}") from None
    rows = [row for row in rows if row]
    if not rows:
        raise DataError(f"{path}: empty CSV file")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    has_header = not all(numeric(cell) for cell in rows[0])
    header = [c.strip() for c in rows[0]] if has_header else [str(i) for i in range(len(rows[0]))]
    indices = _column_indices(header, columns, path)
    values = np.empty((len(rows) - has_header, len(indices)))
    for line, row in enumerate(rows[has_header:], start=1 + has_header):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: {len(row)} cells, the header has {len(header)}")
        for j, index in enumerate(indices):
            try:
                values[line - 1 - has_header, j] = float(row[index])
            except ValueError:
                raise DataError(f"{path}:{line}: column {header[index]!r}: not a number: {row[index]!r}") from None
    return values


# ------------------------------------------------------------------------------------ generated
def generate(name: str, n: int, seed: int = 0, anomaly_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of generator ``name`` and their labels (1 = anomalous)."""
    if name not in GENERATORS:
        raise DataError(f"data.generator: unknown generator {name!r}; available: {', '.join(GENERATORS)}")
    if n < 1:
        raise DataError(f"data.n_samples: must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < anomaly_fraction).astype(np.int64)
    if name == "machine_sound":
        return _machine_sound(rng, labels), labels
    return _shapes(rng, n), labels


def _machine_sound(rng: np.random.Generator, labels: np.ndarray, frames: int = 5, bins: int = 128) -> np.ndarray:
    n = len(labels)
    axis = np.arange(bins)
    base = 1.5 * np.exp(-axis / 60.0) + 0.3 * np.sin(axis / 9.0)  # the machine's smooth spectrum
    fundamental = rng.uniform(10.0, 14.0, size=(n, 1))
    spectra = np.repeat(base[None, :], n, axis=0)
    for harmonic in range(1, 6):
        gain = rng.normal(1.0 / harmonic, 0.1 / harmonic, size=(n, 1))
        spectra += gain * np.exp(-0.5 * ((axis[None, :] - harmonic * fundamental) / 1.5) ** 2)
    anomalous = labels.astype(bool)
    if anomalous.any():  # a narrow-band tone at an unusual place, or a shifted harmonic
        where = rng.uniform(70.0, 120.0, size=(int(anomalous.sum()), 1))
        spectra[anomalous] += 0.9 * np.exp(-0.5 * ((axis[None, :] - where) / 1.2) ** 2)
    frames_out = spectra[:, None, :] * rng.normal(1.0, 0.05, size=(n, frames, 1))
    frames_out += rng.normal(0.0, 0.08, size=(n, frames, bins))
    return (frames_out.reshape(n, frames * bins) - 0.5).astype(np.float64)


def _shapes(rng: np.random.Generator, n: int, size: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = np.zeros((n, 1, size, size))
    kinds = rng.integers(0, 3, size=n)
    centres = rng.uniform(4.0, size - 4.0, size=(n, 2))
    radii = rng.uniform(2.0, 4.0, size=n)
    for i in range(n):
        cy, cx = centres[i]
        if kinds[i] == 0:  # square
            image = (np.abs(yy - cy) < radii[i]) & (np.abs(xx - cx) < radii[i])
        elif kinds[i] == 1:  # disc
            image = (yy - cy) ** 2 + (xx - cx) ** 2 < radii[i] ** 2
        else:  # bar
            image = (np.abs(yy - cy) < 1.2) & (np.abs(xx - cx) < 2 * radii[i])
        images[i, 0] = image * rng.uniform(0.6, 1.0)
    images += rng.normal(0.0, 0.03, size=images.shape)
    return np.clip(images, 0.0, None)
