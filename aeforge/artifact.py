"""Run directories and their cards.

A run directory holds what one command made (checkpoints, reports, exports) and ``card.json``:
what made it (command, config), tool versions, metrics, and the sha256 of every file. Runs are
written into a hidden staging directory beside the target and renamed into place only when
complete, so a failed command never leaves a half-written run behind, and an existing run is
replaced only when asked.

Every write is fsynced (file, then directory) before it counts as done: SD cards on a Raspberry
Pi or Jetson lose renamed-but-unsynced files on power loss. Paths read from a card must stay
inside their run (:func:`confined_path`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from aeforge.errors import ArtifactError

CARD_NAME = "card.json"
CARD_SCHEMA = 1
TRACKED_DISTRIBUTIONS = (
    "aeforge", "numpy", "torch", "brevitas", "onnx", "onnxruntime", "qonnx", "hls4ml", "POT", "scipy",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tool_versions() -> dict[str, str | None]:
    """Python and installed versions of the packages that shape results (None when absent)."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in TRACKED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that a rename or unlink inside it survives a power loss (no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems (and platforms) cannot fsync a directory
    finally:
        os.close(descriptor)


def fsync_file(path: Path) -> None:
    """Flush a written file's data to the device."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory bottom-up (before ``root`` is renamed into place)."""
    directories = [root]
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_file():
            fsync_file(path)
        elif path.is_dir():
            directories.append(path)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file, fsync it, rename it and fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=False, default=_json_default)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_npy_atomic(path: Path, array: Any) -> None:
    """Write a numpy ``.npy`` file through a temporary file and an atomic rename."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.asarray(array))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def confined_path(root: str | Path, relative: str | os.PathLike[str], what: str = "path") -> Path:
    """``root / relative``, refusing absolute paths, ``..`` and symlinks that lead outside ``root``.

    Paths read from a card or a manifest are data someone else may have written; they must name a
    file inside the run (or bundle, or project) that holds them.
    """
    root = Path(root)
    text = os.fspath(relative)
    candidate = Path(text)
    if not text or candidate.is_absolute() or text.startswith(("/", "\\")) or candidate.drive:
        raise ArtifactError(f"{root}: {what} {text!r} is absolute; only paths inside {root} are accepted")
    if ".." in candidate.parts or ".." in text.replace("\\", "/").split("/"):
        raise ArtifactError(f"{root}: {what} {text!r} contains '..'; only paths inside {root} are accepted")
    resolved_root = root.resolve()
    resolved = (resolved_root / candidate).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ArtifactError(f"{root}: {what} {text!r} leads outside {root} (through a symbolic link)")
    return root / candidate


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass
class RunCard:
    """The parsed ``card.json`` of a run."""

    path: Path
    kind: str
    data: dict[str, Any] = field(repr=False)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.data.get("metrics", {})

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data.get("files", {})

    def verify_files(self) -> None:
        """Raise :class:`ArtifactError` if a recorded file is missing or its sha256 changed."""
        for name, entry in self.files.items():
            file_path = confined_path(self.path, name, f"file listed in {CARD_NAME}")
            if not file_path.is_file():
                raise ArtifactError(f"{self.path}: {name} is listed in {CARD_NAME} but missing")
            if sha256_file(file_path) != entry["sha256"]:
                raise ArtifactError(f"{self.path}: {name} changed since the run was written (sha256 mismatch)")


def load_run(path: str | Path, verify: bool = True) -> RunCard:
    """Open a run directory; checks that its card exists, parses, and (by default) its file hashes.

    An amendment that was interrupted half-way is first rolled forward (its card was committed)
    or back (it was not), so the card and the files always agree.
    """
    path = Path(path)
    card_path = path / CARD_NAME
    if not path.is_dir():
        raise ArtifactError(f"{path}: run directory not found")
    if (path / AMEND_DIR / AMEND_JOURNAL).is_file():
        try:
            with run_lock(path):
                recover_amendment(path)
        except OSError as error:
            raise ArtifactError(f"{path}: an interrupted amendment could not be finished ({error}); "
                                "make the run writable and open it again") from None
    if not card_path.is_file():
        raise ArtifactError(f"{path}: not an aeforge run ({CARD_NAME} missing)")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{card_path}: unreadable card: {error}") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise ArtifactError(f"{card_path}: not an aeforge card (no 'kind')")
    card = RunCard(path=path, kind=str(data["kind"]), data=data)
    if verify:
        card.verify_files()
    return card


class RunWriter:
    """Context manager that stages a run directory and publishes it atomically on success.

    >>> with RunWriter(Path("runs/econt"), kind="train", config=cfg) as run:
    ...     torch.save(state, run.path("model.pt"))
    ...     run.metrics["val_loss"] = 0.1

    On an exception the staging directory is removed and the target is left untouched. An
    existing target is replaced only with ``overwrite=True`` and only if it is an aeforge run
    (has a card): a directory of other files is never deleted.
    """

    def __init__(
        self,
        target: str | Path,
        kind: str,
        config: dict[str, Any] | None = None,
        overwrite: bool = False,
        command: list[str] | None = None,
    ) -> None:
        self.target = Path(target)
        self.kind = kind
        self.config = config or {}
        self.overwrite = overwrite
        self.command = command if command is not None else list(sys.argv)
        self.metrics: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.staging: Path | None = None

    def __enter__(self) -> RunWriter:
        self.check_target()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.staging-", dir=self.target.parent))
        return self

    def check_target(self) -> None:
        if not self.target.exists():
            return
        if not self.target.is_dir():
            raise ArtifactError(f"{self.target}: exists and is not a directory")
        if not any(self.target.iterdir()):
            return
        if not (self.target / CARD_NAME).is_file():
            raise ArtifactError(
                f"{self.target}: exists and is not an aeforge run; refusing to replace it (choose another --out)"
            )
        if not self.overwrite:
            raise ArtifactError(f"{self.target}: run already exists; pass --force to replace it")

    def path(self, relative: str) -> Path:
        """Where to write ``relative`` inside the staged run (parent folders are created)."""
        if self.staging is None:
            raise ArtifactError("RunWriter used outside its 'with' block")
        destination = self.staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        return destination

    def write_json(self, relative: str, data: Any) -> Path:
        destination = self.path(relative)
        write_json_atomic(destination, data)
        return destination

    def card(self) -> dict[str, Any]:
        assert self.staging is not None
        files = {}
        for file_path in sorted(self.staging.rglob("*")):
            if file_path.is_file() and file_path.name != CARD_NAME:
                relative = file_path.relative_to(self.staging).as_posix()
                files[relative] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
        return {
            "schema": CARD_SCHEMA,
            "kind": self.kind,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "tools": tool_versions(),
            "config": self.config,
            "metrics": self.metrics,
            **self.extra,
            "files": files,
        }

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        assert self.staging is not None
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        try:
            write_json_atomic(self.staging / CARD_NAME, self.card())
            fsync_tree(self.staging)
            self._publish()
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise

    def _publish(self) -> None:
        assert self.staging is not None
        retired = None
        if self.target.exists():
            retired = self.target.with_name(f".{self.target.name}.retired-{os.getpid()}")
            os.replace(self.target, retired)
        try:
            os.replace(self.staging, self.target)
        except BaseException:
            if retired is not None:
                os.replace(retired, self.target)
            raise
        fsync_dir(self.target.parent)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


LOCK_NAME = ".aeforge.lock"
AMEND_DIR = ".amend"
AMEND_JOURNAL = "journal.json"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on a run, held around every read-modify-write of its card."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (amendments are still atomic, only not serialised)
        yield
        return
    descriptor = os.open(Path(run_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def recover_amendment(run_dir: Path) -> str | None:
    """Finish what an interrupted :class:`RunAmendment` left: ``"forward"``, ``"back"`` or None (nothing to do).

    The amendment's journal lists the files it moves in; its new card is the commit point. When
    ``card.json`` already is the new card, only the leftovers are removed (roll forward); otherwise
    every moved file is taken out again and the replaced ones restored (roll back). Call under
    :func:`run_lock`.
    """
    run_dir = Path(run_dir)
    area = run_dir / AMEND_DIR
    journal_path = area / AMEND_JOURNAL
    if not journal_path.is_file():
        if area.exists():
            shutil.rmtree(area, ignore_errors=True)  # died before its journal: nothing was moved
        return None
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
        files = [str(name) for name in journal["files"]]
        new_card_sha = str(journal["card_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{journal_path}: unreadable amendment journal ({error}); "
                            "the run may be inconsistent") from None
    card_path = run_dir / CARD_NAME
    committed = card_path.is_file() and sha256_file(card_path) == new_card_sha
    if not committed:
        for name in files:
            destination = confined_path(run_dir, name, "amended file")
            staged = confined_path(area / "staged", name, "staged file")
            backup = confined_path(area / "backup", name, "backup file")
            if staged.exists():
                continue  # never moved in: the run still has the old file (or none)
            if backup.exists():
                os.replace(backup, destination)
            else:
                destination.unlink(missing_ok=True)
        fsync_dir(run_dir)
    shutil.rmtree(area, ignore_errors=True)
    fsync_dir(run_dir)
    return "forward" if committed else "back"


class RunAmendment:
    """Context manager that adds files (and metrics) to a published run, all or nothing.

    New files are staged inside the run (hidden) while the block runs. On success, under
    :func:`run_lock`, the new card (old card + hashes + metrics) and the staged files are fsynced,
    a journal naming them is written, the files are moved in (replaced ones kept as backups) and
    the new card is renamed over ``card.json``: that rename is the commit. :func:`load_run` rolls
    an interrupted amendment forward or back, so the card never lists a file that is not there.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.metrics: dict[str, Any] = {}
        self.staging: Path | None = None

    def __enter__(self) -> RunAmendment:
        load_run(self.run_dir)
        self.staging = Path(tempfile.mkdtemp(prefix=".amend-stage-", dir=self.run_dir))
        return self

    def path(self, relative: str) -> Path:
        if self.staging is None:
            raise ArtifactError("RunAmendment used outside its 'with' block")
        destination = confined_path(self.staging, relative, "amended file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        return destination

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        assert self.staging is not None
        try:
            if exc_type is None:
                with run_lock(self.run_dir):
                    recover_amendment(self.run_dir)
                    self._commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _commit(self) -> None:
        assert self.staging is not None
        card_path = self.run_dir / CARD_NAME
        card = json.loads(card_path.read_text(encoding="utf-8"))
        staged = [p for p in sorted(self.staging.rglob("*")) if p.is_file() and not p.is_symlink()]
        names = [p.relative_to(self.staging).as_posix() for p in staged]
        for name in names:
            if name == CARD_NAME or name.split("/")[0] in (AMEND_DIR, LOCK_NAME):
                raise ArtifactError(f"{self.run_dir}: an amendment cannot write {name}")
        for file_path, name in zip(staged, names, strict=True):
            card["files"][name] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
        card.setdefault("metrics", {}).update(self.metrics)
        area = self.run_dir / AMEND_DIR
        area.mkdir()
        os.replace(self.staging, area / "staged")
        self.staging.mkdir()  # the finally clause removes it
        fsync_tree(area / "staged")
        new_card = area / CARD_NAME
        write_json_atomic(new_card, card)
        write_json_atomic(area / AMEND_JOURNAL, {"files": names, "card_sha256": sha256_file(new_card)})
        for name in names:  # the journal is on disk: from here load_run can roll forward or back
            destination = self.run_dir / name
            if destination.exists():
                backup = area / "backup" / name
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(destination, backup)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(area / "staged" / name, destination)
        fsync_tree_dirs(self.run_dir, names)
        os.replace(new_card, card_path)  # the commit
        fsync_dir(self.run_dir)
        shutil.rmtree(area, ignore_errors=True)


def fsync_tree_dirs(root: Path, names: list[str]) -> None:
    """fsync the directories of ``root`` that hold ``names`` (after files were renamed into them)."""
    for directory in sorted({(root / name).parent for name in names}, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)


@contextlib.contextmanager
def replacing_directory(target: Path) -> Iterator[None]:
    """Build ``target`` anew inside the block: an existing ``target`` is moved aside first, put back when
    the block fails (whatever it left is removed), and deleted when the block succeeds."""
    previous = None
    if target.exists():
        previous = target.with_name(f".{target.name}.previous-{os.getpid()}")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(target, previous)
    try:
        yield
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        if previous is not None:
            os.replace(previous, target)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
