"""External power recordings: a CSV (or whitespace-separated serial log) of timestamped power samples.

Accepted layouts (``#`` comment and blank lines are skipped; the delimiter is ``,``, tab, ``;`` or spaces):

* a header naming one time column (``timestamp_s``, ``time``, ``t``, ``time_ms``, ``epoch_s``...) and power
  columns (``power_w``, ``power``, ``<rail>_w``, ``<rail>_mw``...; several power columns are several rails,
  all counted), or a voltage column (``voltage_v``, ``voltage_mv``, ``v``) with a current column
  (``current_a``, ``current_ma``, ``i``) giving one rail ``power`` = V x I. Units in brackets work too
  (``Power (mW)`` reads as ``power_mw``). Other columns are ignored.
* no header: two numeric columns are ``time_s, power_w``; three are ``time_s, voltage_v, current_a``.

Timestamps are seconds (or ms/us/ns by the column suffix) or ISO-8601 date-times with a time zone (``Z`` or
``+hh:mm``). They must not decrease. Ambiguous timestamps are refused: ISO date-times without a zone (local
time of which machine, and which side of a DST change?), two time columns, and a unit-less time column whose
values are epoch milliseconds or finer (name it ``time_ms``...). A total column (``power``, ``total_w``,
``vdd_in``...) beside rail columns would be counted twice: refused unless ``use="total"`` or ``use="rails"``
says which to keep. **Alignment:** measurement windows are Unix epoch seconds of the host running
``aeforge bench`` (it records each window's ``window_start_epoch_s``/``window_end_epoch_s`` in its JSON), and a
trace sample at file time ``t`` is taken to be at host epoch ``t + offset_s``. A logger on the same host (or an
NTP-synchronised one) writing ``time.time()`` needs ``offset_s=0``; a logger counting from its own start needs
``offset_s`` = the epoch at which it started. Without any window, :func:`aeforge.benchmarks.energy.compute_from_trace`
takes the trace's own span as the run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aeforge.benchmarks.meters.base import PowerMeter
from aeforge.errors import DataError

_TIME_RE = re.compile(r"^(timestamp|time|t|ts|epoch|unix|unix_time|elapsed)(?:_(s|ms|us|ns))?$")
_POWER_RE = re.compile(r"^(?:(.+?)_)?(w|mw|uw|watts?|milliwatts?)$|^(power|p)$")
_VOLT_RE = re.compile(r"^(?:voltage|volt|volts|v|u)(?:_(v|mv))?$|^(mv)$")
_CURR_RE = re.compile(r"^(?:current|curr|i|amps?|a)(?:_(a|ma|ua))?$|^(ma)$")
_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "w": 1.0, "watt": 1.0, "watts": 1.0, "mw": 1e-3,
          "milliwatt": 1e-3, "milliwatts": 1e-3, "uw": 1e-6, "v": 1.0, "mv": 1e-3, "a": 1.0, "ma": 1e-3,
          "ua": 1e-6, None: 1.0}


@dataclass
class PowerTrace:
    """Timestamped power samples: ``times_s`` (host epoch after the offset) and watts per rail."""

    times_s: np.ndarray
    power_w: dict[str, np.ndarray]
    source: str = ""
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def total_power_w(self) -> np.ndarray:
        """Sum of all rails per sample (W)."""
        return np.sum(np.stack(list(self.power_w.values())), axis=0)

    @property
    def span_s(self) -> tuple[float, float]:
        """First and last timestamp."""
        return float(self.times_s[0]), float(self.times_s[-1])


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


_TOTAL_RAILS = ("power", "total", "sum", "all", "vdd_in", "vin", "input", "in")
_MAX_EPOCH_S = 1e11  # year 5138: a larger "seconds" value is milliseconds (or finer) since the epoch


class AmbiguousTimestamp(ValueError):
    """A timestamp that could mean several instants."""


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    iso = text.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        raise AmbiguousTimestamp(f"date-time {text!r} has no time zone (local time of which machine?); "
                                 "write it with Z or +hh:mm, or log epoch seconds")
    return moment.timestamp()


def _is_number_or_time(text: str) -> bool:
    try:
        _parse_time(text)
    except AmbiguousTimestamp:
        return True
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: str | None) -> list[str]:
    return [f.strip() for f in (line.split(delimiter) if delimiter else line.split())]


@dataclass(frozen=True)
class _Layout:
    time_col: int
    time_scale: float
    time_unit_named: bool
    power_cols: dict[str, tuple[int, float]]          # rail -> (column, scale to W)
    vi_cols: tuple[int, float, int, float] | None      # voltage col/scale, current col/scale
    description: dict[str, str]


def _layout_from_header(fields: list[str], where: str, use: str | None = None) -> _Layout:
    names = [_normalise(f) for f in fields]
    time_col, time_scale, time_unit_named = -1, 1.0, False
    power: dict[str, tuple[int, float]] = {}
    volt: tuple[int, float] | None = None
    curr: tuple[int, float] | None = None
    for col, name in enumerate(names):
        if m := _TIME_RE.match(name):
            if time_col >= 0:
                raise DataError(f"{where}: two time columns, {fields[time_col]!r} and {fields[col]!r}: which one "
                                "the samples are at is ambiguous; keep one")
            time_col, time_scale, time_unit_named = col, _SCALE[m.group(2) or "s"], m.group(2) is not None
        elif m := _POWER_RE.match(name):
            rail = m.group(1) if m.group(1) and m.group(1) != "power" else "power"
            unit = m.group(2) if m.group(2) else "w"
            power[rail if rail not in power else f"{rail}_{col}"] = (col, _SCALE[unit])
        elif (m := _VOLT_RE.match(name)) and volt is None:
            volt = (col, _SCALE[m.group(1) or m.group(2) or "v"])
        elif (m := _CURR_RE.match(name)) and curr is None:
            curr = (col, _SCALE[m.group(1) or m.group(2) or "a"])
    if time_col < 0:
        raise DataError(f"{where}: no time column in header {fields} (name one timestamp_s, time, t, time_ms...)")
    power = _total_or_rails(power, fields, where, use)
    vi = None
    if not power:
        if volt is None or curr is None:
            raise DataError(f"{where}: header {fields} has no power column (power_w, <rail>_mw...) "
                            "and no voltage_v + current_a pair")
        vi = (volt[0], volt[1], curr[0], curr[1])
    description = {"time": fields[time_col]}
    description |= {rail: fields[col] for rail, (col, _) in power.items()}
    if vi is not None:
        description["power"] = f"{fields[vi[0]]} x {fields[vi[2]]}"
    return _Layout(time_col, time_scale, time_unit_named, power, vi, description)


def _total_or_rails(power: dict[str, tuple[int, float]], fields: list[str], where: str,
                    use: str | None) -> dict[str, tuple[int, float]]:
    """Refuse a total column summed with its rails (each watt counted twice), unless ``use`` picks one side."""
    totals = {rail: spec for rail, spec in power.items() if rail.split("_")[0] in _TOTAL_RAILS
              or rail in _TOTAL_RAILS or rail.endswith("_total")}
    rails = {rail: spec for rail, spec in power.items() if rail not in totals}
    if use not in (None, "total", "rails"):
        raise DataError(f"{where}: use={use!r}: expected 'total' or 'rails'")
    if not totals or not rails:
        return power
    if use == "total":
        if len(totals) > 1:
            raise DataError(f"{where}: several total columns ({', '.join(fields[c] for c, _ in totals.values())})")
        return totals
    if use == "rails":
        return rails
    raise DataError(
        f"{where}: total column(s) {', '.join(fields[c] for c, _ in totals.values())} beside rail column(s) "
        f"{', '.join(fields[c] for c, _ in rails.values())}: summing them counts the power twice; keep only the "
        "total or only the rails (or pass use='total' / use='rails')")


def _layout_without_header(n_fields: int, where: str) -> _Layout:
    if n_fields == 2:
        return _Layout(0, 1.0, False, {"power": (1, 1.0)}, None, {"time": "column 1 (s)", "power": "column 2 (W)"})
    if n_fields == 3:
        return _Layout(0, 1.0, False, {}, (1, 1.0, 2, 1.0),
                       {"time": "column 1 (s)", "power": "column 2 (V) x column 3 (A)"})
    raise DataError(f"{where}: {n_fields} columns and no header; name the columns (timestamp_s,power_w or "
                    "timestamp_s,voltage_v,current_a)")


def parse_power_trace(path: str | Path, *, offset_s: float = 0.0, use: str | None = None) -> PowerTrace:
    """Read a power recording (see the module docstring); malformed lines raise DataError naming file:line.

    ``use``: ``"total"`` or ``"rails"`` when the file has both a total column and rail columns.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read power trace: {exc}") from exc
    layout: _Layout | None = None
    delimiter: str | None = None
    times: list[float] = []
    values: dict[str, list[float]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if layout is None:
            delimiter = next((d for d in (",", "\t", ";") if d in line), None)
            fields = _split(line, delimiter)
            if not all(_is_number_or_time(f) for f in fields):
                layout = _layout_from_header(fields, where, use)
                values = {rail: [] for rail in (layout.power_cols or {"power": (0, 1.0)})}
                continue
            layout = _layout_without_header(len(fields), where)
            values = {rail: [] for rail in (layout.power_cols or {"power": (0, 1.0)})}
        fields = _split(line, delimiter)
        needed = max([layout.time_col, *(c for c, _ in layout.power_cols.values()),
                      *((layout.vi_cols[0], layout.vi_cols[2]) if layout.vi_cols else ())])
        if len(fields) <= needed:
            raise DataError(f"{where}: expected at least {needed + 1} fields, got {len(fields)}: {line!r}")
        try:
            raw_time = fields[layout.time_col]
            t = _parse_time(raw_time) * layout.time_scale
            if not layout.time_unit_named and abs(t) >= _MAX_EPOCH_S and _is_plain_number(raw_time):
                raise DataError(f"{where}: timestamp {raw_time} in a column without a unit is too large for epoch "
                                "seconds (milliseconds or finer?); name the column time_ms, time_us or time_ns")
            row = {rail: float(fields[col]) * scale for rail, (col, scale) in layout.power_cols.items()}
            if layout.vi_cols is not None:
                vc, vs, cc, cs = layout.vi_cols
                row["power"] = float(fields[vc]) * vs * float(fields[cc]) * cs
        except AmbiguousTimestamp as exc:
            raise DataError(f"{where}: ambiguous timestamp: {exc}") from None
        except ValueError as exc:
            raise DataError(f"{where}: not a number: {exc} in {line!r}") from exc
        if not math.isfinite(t) or not all(math.isfinite(v) for v in row.values()):
            raise DataError(f"{where}: non-finite value in {line!r}")
        if times and t < times[-1]:
            raise DataError(f"{where}: timestamp {t} goes backwards (previous {times[-1]})")
        times.append(t)
        for rail, value in row.items():
            values[rail].append(value)
    if layout is None or len(times) < 2:
        raise DataError(f"{path}: power trace needs at least 2 samples, found {len(times)}")
    return PowerTrace(np.asarray(times) + offset_s, {r: np.asarray(v) for r, v in values.items()}, str(path),
                      layout.description)


def _is_plain_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ExternalTraceMeter(PowerMeter):
    """A power recording file (``--meter external:FILE``), read after the run and aligned by epoch time."""

    name: ClassVar[str] = "external"
    kind = "trace"

    def __init__(self, path: str | Path, offset_s: float = 0.0, use: str | None = None) -> None:
        self.path = Path(path)
        self.offset_s = float(offset_s)
        self.use = use
        self._rails: list[str] = []

    def unavailable_reason(self) -> str | None:
        if not self.path.is_file():
            return f"power trace {self.path} does not exist (start the logger before the run)"
        return None

    @property
    def rails(self) -> list[str]:
        return list(self._rails)

    def load(self) -> PowerTrace:
        """Parse the file now (it may have grown during the run)."""
        trace = parse_power_trace(self.path, offset_s=self.offset_s, use=self.use)
        self._rails = list(trace.power_w)
        return trace

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info |= {"path": str(self.path), "offset_s": self.offset_s}
        return info
