"""The sweep directory and its append-only journal (what makes a sweep resumable).

::

    DIR/sweep.yaml        the sweep file as given (a resume must describe the same trials)
    DIR/journal.jsonl     one JSON event a line, appended and fsynced: sweep, ask, start, lost, done, failed
    DIR/trials/0007/      trial 7: a train run (card.json) with qonnx/ and rtl/ beside its checkpoints
    DIR/running/0007.json the process running trial 7 (pid, host, attempt) while it runs
    DIR/sweep.json        every trial and the Pareto front (rewritten as trials finish)
    DIR/report.html       the HTML report with pareto.png

Replaying the journal gives each trial's state: ``done`` and ``failed`` trials are final and never rerun;
``asked``/``running`` ones were in flight when the sweep stopped and are run again on ``--resume``. A torn last
line (the sweep died while writing it) is ignored when read, and cut off before the next append (else it would
become a corrupt line in the middle of the journal).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeforge.errors import ArtifactError, ConfigError

SPEC_NAME = "sweep.yaml"
JOURNAL_NAME = "journal.jsonl"
SUMMARY_NAME = "sweep.json"
REPORT_NAME = "report.html"
PLOT_NAME = "pareto.png"
TRIALS_DIR = "trials"
RUNNING_DIR = "running"
FINAL_STATES = ("done", "failed")


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def trial_name(trial_id: int) -> str:
    return f"{trial_id:04d}"


@dataclass
class TrialRecord:
    """A trial as the journal tells it."""

    trial_id: int
    params: dict[str, Any]
    system_attrs: dict[str, Any] = field(default_factory=dict)
    status: str = "asked"  # asked | running | done | failed
    attempts: int = 0  # attempts started
    lost: list[dict[str, Any]] = field(default_factory=list)  # attempts whose worker was lost
    interrupted: int = 0  # attempts cut short by the sweep itself stopping (not counted as lost)
    values: list[float] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    duplicate_of: int | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    def as_dict(self) -> dict[str, Any]:
        result = self.result or {}
        return {
            "trial": self.trial_id, "status": self.status, "params": self.params, "attempts": self.attempts,
            "lost": self.lost, "interrupted": self.interrupted, "values": self.values,
            "metrics": result.get("metrics", {}), "error": self.error, "duplicate_of": self.duplicate_of,
            "dir": result.get("dir"), "wall_s": result.get("wall_s"), "stage_s": result.get("stage_s"),
            "host": result.get("host"), "pid": result.get("pid"),
        }


@dataclass
class JournalState:
    """Everything the journal says: the header event and the trials in id order."""

    header: dict[str, Any] | None
    trials: dict[int, TrialRecord]
    torn_line: bool = False

    def unfinished(self) -> list[TrialRecord]:
        return [t for t in self.trials.values() if not t.final]


def replay(events: list[dict[str, Any]]) -> JournalState:
    """Fold journal events into trial records (later events win)."""
    header = None
    trials: dict[int, TrialRecord] = {}
    for event in events:
        kind = event.get("event")
        if kind == "sweep":
            header = header or event
            continue
        if "trial" not in event:
            continue
        trial_id = int(event["trial"])
        if kind == "ask":
            trials[trial_id] = TrialRecord(trial_id, dict(event.get("params", {})),
                                           dict(event.get("system_attrs", {})))
            continue
        record = trials.get(trial_id)
        if record is None:
            continue  # an event for a trial never asked: ignore (hand-edited journal)
        if kind == "start":
            record.status, record.attempts = "running", max(record.attempts, int(event.get("attempt", 1)))
        elif kind == "lost":
            record.status = "asked"
            record.lost.append({"attempt": event.get("attempt"), "reason": event.get("reason")})
        elif kind == "interrupted":
            record.status = "asked"
            record.interrupted += 1
        elif kind == "done":
            record.status, record.values, record.result = "done", event.get("values"), event.get("result")
            record.error, record.duplicate_of = None, event.get("duplicate_of")
        elif kind == "failed":
            record.status, record.error, record.result = "failed", event.get("error"), event.get("result")
    return JournalState(header, dict(sorted(trials.items())))


class Journal:
    """Append-only JSON-lines event log; every line is flushed and fsynced before :meth:`append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, event: dict[str, Any]) -> None:
        line = json.dumps({"time_utc": now_utc(), **event}, sort_keys=False, default=_json_default)
        self.repair()
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    def repair(self) -> bool:
        """End the journal on a complete line: a torn last line is cut off (a complete one missing only its
        newline gets it). Returns whether the file was changed."""
        if not self.path.is_file():
            return False
        with open(self.path, "r+b") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size == 0:
                return False
            stream.seek(size - 1)
            if stream.read(1) == b"\n":
                return False
            stream.seek(0)
            text = stream.read()
            cut = text.rfind(b"\n")
            last = text[cut + 1:]
            try:
                complete = isinstance(json.loads(last.decode("utf-8")), dict)
            except (UnicodeDecodeError, json.JSONDecodeError):
                complete = False
            if complete:
                stream.seek(0, os.SEEK_END)
                stream.write(b"\n")
            else:
                stream.truncate(cut + 1)
            stream.flush()
            os.fsync(stream.fileno())
        return True

    def read(self) -> tuple[list[dict[str, Any]], bool]:
        """The events, and whether a torn (unparseable) last line was skipped."""
        if not self.path.is_file():
            return [], False
        lines = self.path.read_text(encoding="utf-8").splitlines()
        events: list[dict[str, Any]] = []
        torn = False
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    torn = True
                    continue
                raise ArtifactError(f"{self.path}:{number}: corrupt journal line (not JSON)") from None
            if isinstance(event, dict):
                events.append(event)
        return events, torn

    def state(self) -> JournalState:
        events, torn = self.read()
        state = replay(events)
        state.torn_line = torn
        return state


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


class SweepStore:
    """Paths of one sweep directory and the checks before it is (re)used."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.journal = Journal(self.root / JOURNAL_NAME)

    def path(self, name: str) -> Path:
        return self.root / name

    def trial_dir(self, trial_id: int) -> Path:
        return self.root / TRIALS_DIR / trial_name(trial_id)

    def running_file(self, trial_id: int) -> Path:
        return self.root / RUNNING_DIR / f"{trial_name(trial_id)}.json"

    def is_sweep(self) -> bool:
        return (self.root / JOURNAL_NAME).is_file() and (self.root / SPEC_NAME).is_file()

    def check(self, resume: bool, force: bool) -> None:
        """Raise unless the directory may be used as asked (nothing is written here)."""
        if resume and force:
            raise ConfigError("give --resume or --force, not both")
        exists = self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir()))
        if resume:
            if not self.is_sweep():
                raise ArtifactError(f"{self.root}: no sweep to resume ({JOURNAL_NAME} missing)")
            return
        if not exists:
            return
        if not self.root.is_dir():
            raise ArtifactError(f"{self.root}: exists and is not a directory")
        if not self.is_sweep():
            raise ArtifactError(f"{self.root}: exists and is not an aeforge sweep; refusing to use it (choose --out)")
        if not force:
            raise ArtifactError(f"{self.root}: a sweep is already there; pass --resume to continue it "
                                "or --force to replace it")

    def create(self, spec_text: str, header: dict[str, Any], force: bool) -> None:
        """Start a new sweep directory (replacing an old sweep with ``force``)."""
        if force and self.is_sweep():
            shutil.rmtree(self.root)
        (self.root / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
        (self.root / RUNNING_DIR).mkdir(exist_ok=True)
        (self.root / SPEC_NAME).write_text(spec_text, encoding="utf-8")
        self.journal.append({"event": "sweep", **header})

    def clear_trial(self, trial_id: int) -> None:
        """Remove what an interrupted attempt of a trial left (its run, staging leftovers, running file)."""
        clear_trial_dir(self.trial_dir(trial_id))
        self.running_file(trial_id).unlink(missing_ok=True)


def clear_trial_dir(trial_dir: Path) -> None:
    """Delete a trial directory and the hidden staging/retired directories a killed writer left beside it."""
    if trial_dir.exists():
        shutil.rmtree(trial_dir, ignore_errors=True)
    parent = trial_dir.parent
    if parent.is_dir():
        for leftover in parent.glob(f".{trial_dir.name}.*"):
            shutil.rmtree(leftover, ignore_errors=True)
