"""Run directories and their cards.

A run directory holds what one command made (checkpoints, reports, exports) and ``card.json``:
what made it (command, config), tool versions, metrics, and the sha256 of every file. Runs are
written into a hidden staging directory beside the target and renamed into place only when
complete, so a failed command never leaves a half-written run behind, and an existing run is
replaced only when asked.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
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


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=False, default=_json_default)
            stream.write("\n")
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_npy_atomic(path: Path, array: Any) -> None:
    """Write a numpy ``.npy`` file through a temporary file and an atomic rename."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.asarray(array))
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
            file_path = self.path / name
            if not file_path.is_file():
                raise ArtifactError(f"{self.path}: {name} is listed in {CARD_NAME} but missing")
            if sha256_file(file_path) != entry["sha256"]:
                raise ArtifactError(f"{self.path}: {name} changed since the run was written (sha256 mismatch)")


def load_run(path: str | Path, verify: bool = True) -> RunCard:
    """Open a run directory; checks that its card exists, parses, and (by default) its file hashes."""
    path = Path(path)
    card_path = path / CARD_NAME
    if not path.is_dir():
        raise ArtifactError(f"{path}: run directory not found")
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
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


class RunAmendment:
    """Context manager that adds files (and metrics) to a published run.

    New files are staged beside the run and moved in only when the block succeeds; the card is
    rewritten last with their hashes, so an interrupted amendment leaves the run as it was
    (its card never lists a file that is not there). Existing files may be replaced.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.metrics: dict[str, Any] = {}
        self.staging: Path | None = None

    def __enter__(self) -> RunAmendment:
        load_run(self.run_dir)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.run_dir.name}.amend-", dir=self.run_dir.parent))
        return self

    def path(self, relative: str) -> Path:
        if self.staging is None:
            raise ArtifactError("RunAmendment used outside its 'with' block")
        destination = self.staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        return destination

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        assert self.staging is not None
        try:
            if exc_type is None:
                card_path = self.run_dir / CARD_NAME
                card = json.loads(card_path.read_text(encoding="utf-8"))
                staged = [p for p in sorted(self.staging.rglob("*")) if p.is_file()]
                for file_path in staged:
                    relative = file_path.relative_to(self.staging).as_posix()
                    card["files"][relative] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
                for file_path in staged:
                    destination = self.run_dir / file_path.relative_to(self.staging)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(file_path, destination)
                card["metrics"].update(self.metrics)
                write_json_atomic(card_path, card)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
