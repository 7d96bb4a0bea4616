"""A content-addressed cache of serialized TensorRT engines (pure Python, no TensorRT needed).

A TensorRT engine is only valid for the TensorRT version and the GPU (name and compute
capability) that built it, so the cache key is a sha256 over exactly what determines an engine:

* TensorRT version, GPU name and compute capability (:class:`DeviceIdentity`),
* the sha256 of the ONNX file,
* the build flags (:class:`BuildFlags`: precision, batch profile, workspace).

Layout under the cache root (default ``$AEFORGE_ENGINE_CACHE`` or ``~/.cache/aeforge/engines``)::

    ROOT/engines/<key>/engine.plan     the serialized engine
    ROOT/engines/<key>/engine.json     its sidecar (fields: SIDECAR_FIELDS)
    ROOT/timing/<identity>.cache       the builder timing cache of one TensorRT version + GPU

An engine whose sidecar records another TensorRT version or GPU than the current one is refused
with an :class:`~aeforge.errors.ArtifactError` naming both, before a byte of it is deserialized;
a missing, unreadable or inconsistent sidecar, or an engine whose sha256 differs from the
sidecar's, is refused too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aeforge.errors import ArtifactError, ConfigError

SCHEMA = 1
ENGINE_FILE = "engine.plan"
SIDECAR_FILE = "engine.json"
PRECISIONS = ("fp32", "fp16", "int8", "strongly_typed")
"""``int8``: explicit quantization of a QDQ graph (``BuilderFlag.INT8``); ``strongly_typed``: the
network's own types (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, TensorRT >= 9); ``fp16``:
``BuilderFlag.FP16``; ``fp32``: no reduced-precision flag."""
SIDECAR_FIELDS = (
    "schema", "key", "trt_version", "gpu_name", "compute_capability", "onnx_sha256", "precision",
    "batch_profile", "workspace_bytes", "engine_sha256", "engine_bytes", "created_utc", "aeforge_version",
)
DEFAULT_WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class DeviceIdentity:
    """What an engine is bound to: the TensorRT version and the GPU (name, compute capability "8.7")."""

    trt_version: str
    gpu_name: str
    compute_capability: str

    def describe(self) -> str:
        """``TensorRT 10.3.0 on Orin (sm 8.7)``."""
        return f"TensorRT {self.trt_version} on {self.gpu_name} (sm {self.compute_capability})"

    def slug(self) -> str:
        """A file-name-safe rendering, e.g. ``trt10.3.0_orin_sm87``."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "gpu"
        return f"trt{self.trt_version}_{gpu}_sm{self.compute_capability.replace('.', '')}"


@dataclass(frozen=True)
class BuildFlags:
    """The builder settings that change an engine: precision, ``(min, opt, max)`` batch, workspace."""

    precision: str = "int8"
    batch_profile: tuple[int, int, int] = (1, 1, 1)
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        profile = tuple(self.batch_profile)
        if len(profile) != 3 or not all(isinstance(b, int) and b >= 1 for b in profile):
            raise ConfigError(f"batch_profile {self.batch_profile!r}: expected three positive integers (min, opt, max)")
        if not profile[0] <= profile[1] <= profile[2]:
            raise ConfigError(f"batch_profile {profile}: expected min <= opt <= max")
        object.__setattr__(self, "batch_profile", profile)
        if not isinstance(self.workspace_bytes, int) or self.workspace_bytes < 1:
            raise ConfigError(f"workspace_bytes {self.workspace_bytes!r}: expected a positive integer")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the batch profile as a list)."""
        return {"precision": self.precision, "batch_profile": list(self.batch_profile),
                "workspace_bytes": self.workspace_bytes}


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def engine_key(identity: DeviceIdentity, onnx_sha256: str, flags: BuildFlags) -> str:
    """The cache key: sha256 over the canonical JSON of identity, ONNX hash and build flags."""
    if not re.fullmatch(r"[0-9a-f]{64}", onnx_sha256):
        raise ArtifactError(f"onnx_sha256 {onnx_sha256!r} is not a hex sha256")
    payload = {"identity": asdict(identity), "onnx_sha256": onnx_sha256, "flags": flags.as_dict()}
    return sha256_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def default_cache_root() -> Path:
    """``$AEFORGE_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/aeforge/engines`` (``~/.cache`` by default)."""
    explicit = os.environ.get("AEFORGE_ENGINE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "aeforge" / "engines"


@dataclass(frozen=True)
class CachedEngine:
    """One cache entry: where its files are and what its sidecar says."""

    key: str
    engine_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]


def read_sidecar(sidecar_path: Path) -> dict[str, Any]:
    """Parse and check an ``engine.json`` sidecar; any defect is an ArtifactError naming the file."""
    try:
        data = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{sidecar_path}: engine sidecar missing; refusing an engine of unknown origin") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{sidecar_path}: corrupted engine sidecar ({exc}); delete the entry to rebuild") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{sidecar_path}: corrupted engine sidecar (not a JSON object); delete the entry")
    missing = [field for field in SIDECAR_FIELDS if field not in data]
    if missing:
        raise ArtifactError(f"{sidecar_path}: corrupted engine sidecar (missing {', '.join(missing)})")
    if data["schema"] != SCHEMA:
        raise ArtifactError(f"{sidecar_path}: engine sidecar schema {data['schema']!r}, expected {SCHEMA}")
    for field in ("trt_version", "gpu_name", "compute_capability", "engine_sha256", "key", "onnx_sha256"):
        if not isinstance(data[field], str):
            raise ArtifactError(f"{sidecar_path}: corrupted engine sidecar ({field} is not a string)")
    return data


def check_identity(sidecar: dict[str, Any], identity: DeviceIdentity, where: Path) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU (naming both)."""
    recorded = DeviceIdentity(sidecar["trt_version"], sidecar["gpu_name"], sidecar["compute_capability"])
    if recorded.trt_version != identity.trt_version:
        raise ArtifactError(
            f"{where}: engine built with TensorRT {recorded.trt_version}, this is TensorRT {identity.trt_version}; "
            "engines are not portable across versions: rebuild it (delete the entry)"
        )
    if (recorded.gpu_name, recorded.compute_capability) != (identity.gpu_name, identity.compute_capability):
        raise ArtifactError(
            f"{where}: engine built for {recorded.gpu_name} (sm {recorded.compute_capability}), this GPU is "
            f"{identity.gpu_name} (sm {identity.compute_capability}); rebuild it on this device"
        )


def load_engine_file(engine_path: str | os.PathLike[str], identity: DeviceIdentity,
                     sidecar_path: str | os.PathLike[str] | None = None) -> bytes:
    """Bytes of a serialized engine after its sidecar (default: ``engine.json`` beside it) was checked.

    Refuses (ArtifactError) a missing/corrupted sidecar, a TensorRT version or GPU other than
    ``identity``, and engine bytes whose sha256 differs from the sidecar. Nothing is deserialized.
    """
    engine_path = Path(engine_path)
    sidecar_path = Path(sidecar_path) if sidecar_path is not None else engine_path.with_name(SIDECAR_FILE)
    sidecar = read_sidecar(sidecar_path)
    check_identity(sidecar, identity, engine_path)
    try:
        data = engine_path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{engine_path}: engine file missing beside its sidecar {sidecar_path.name}") from None
    if sha256_bytes(data) != sidecar["engine_sha256"]:
        raise ArtifactError(f"{engine_path}: engine sha256 differs from its sidecar (truncated or modified)")
    return data


class EngineCache:
    """Serialized engines under ``root`` keyed by :func:`engine_key` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def entry_dir(self, key: str) -> Path:
        """The folder of one entry."""
        return self.root / "engines" / key

    def timing_cache_path(self, identity: DeviceIdentity) -> Path:
        """Where the builder timing cache of this TensorRT version + GPU lives."""
        return self.root / "timing" / f"{identity.slug()}.cache"

    def lookup(self, identity: DeviceIdentity, onnx_sha256: str, flags: BuildFlags) -> CachedEngine | None:
        """The entry for these inputs, or None when absent. A present but inconsistent entry raises."""
        key = engine_key(identity, onnx_sha256, flags)
        folder = self.entry_dir(key)
        if not folder.exists():
            return None
        sidecar_path = folder / SIDECAR_FILE
        sidecar = read_sidecar(sidecar_path)
        if sidecar["key"] != key:
            raise ArtifactError(f"{sidecar_path}: records key {sidecar['key'][:12]}..., expected {key[:12]}...")
        check_identity(sidecar, identity, folder)
        return CachedEngine(key, folder / ENGINE_FILE, sidecar_path, sidecar)

    def load(self, identity: DeviceIdentity, onnx_sha256: str, flags: BuildFlags, attempts: int = 20) -> bytes | None:
        """The checked engine bytes for these inputs, or None on a cache miss.

        An entry replaced by another builder between reading its sidecar and its engine is read
        again (up to ``attempts`` times); an entry that is inconsistent on its own raises.
        """
        for attempt in range(attempts):
            try:
                entry = self.lookup(identity, onnx_sha256, flags)
                if entry is None:
                    return None
                return load_engine_file(entry.engine_path, identity, entry.sidecar_path)
            except ArtifactError:
                if attempt + 1 == attempts:
                    raise
                if not self._replaced_meanwhile(identity, onnx_sha256, flags):
                    time.sleep(0.01)  # a swap may still be under way: the entry is judged once more
                    if attempt >= 2 and not self._replaced_meanwhile(identity, onnx_sha256, flags):
                        raise
                time.sleep(0.002 * (attempt + 1))  # let the other builder finish its swap
        raise AssertionError("unreachable")

    def _replaced_meanwhile(self, identity: DeviceIdentity, onnx_sha256: str, flags: BuildFlags) -> bool:
        """Whether the entry is gone or consistent now (so a failed read raced with a writer)."""
        folder = self.entry_dir(engine_key(identity, onnx_sha256, flags))
        return not folder.exists() or self._entry_valid(folder, identity)

    def store(self, identity: DeviceIdentity, onnx_sha256: str, flags: BuildFlags, engine: bytes) -> CachedEngine:
        """Write an engine and its sidecar atomically (temp folder, then rename); replaces a stale entry."""
        from aeforge import __version__

        key = engine_key(identity, onnx_sha256, flags)
        sidecar = {
            "schema": SCHEMA, "key": key, **asdict(identity), "onnx_sha256": onnx_sha256, **flags.as_dict(),
            "engine_sha256": sha256_bytes(engine), "engine_bytes": len(engine),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "aeforge_version": __version__,
        }
        folder = self.entry_dir(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=folder.parent))
        try:
            _write_synced(staging / ENGINE_FILE, engine)
            _write_synced(staging / SIDECAR_FILE, (json.dumps(sidecar, indent=2) + "\n").encode("utf-8"))
            _fsync_dir(staging)
            self._publish(staging, folder, identity)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return CachedEngine(key, folder / ENGINE_FILE, folder / SIDECAR_FILE, sidecar)

    def _publish(self, staging: Path, folder: Path, identity: DeviceIdentity, attempts: int = 16) -> None:
        """Rename ``staging`` to ``folder`` so that a reader sees the old entry, no entry, or the new one.

        An existing entry is first renamed away under a unique name (never deleted in place, where a
        reader or a second builder could see it half-gone), then removed. When other builders keep
        publishing the same key, a valid entry of theirs (same key: same inputs) is accepted.
        """
        for _ in range(attempts):
            try:
                os.rename(staging, folder)  # fails while folder exists (a non-empty directory)
                _fsync_dir(folder.parent)
                return
            except OSError:
                if not folder.exists():
                    continue  # it went away between the two calls: try again
            retired = folder.with_name(f".{folder.name[:12]}.retired-{os.getpid()}-{time.monotonic_ns()}")
            try:
                os.rename(folder, retired)
            except FileNotFoundError:
                continue  # another builder retired it first
            shutil.rmtree(retired, ignore_errors=True)
        if self._entry_valid(folder, identity):
            return
        raise ArtifactError(f"{folder}: could not replace the cache entry after {attempts} attempts "
                            "(other builders keep writing it)")

    @staticmethod
    def _entry_valid(folder: Path, identity: DeviceIdentity) -> bool:
        try:
            load_engine_file(folder / ENGINE_FILE, identity, folder / SIDECAR_FILE)
        except ArtifactError:
            return False
        return True

    def load_timing_cache(self, identity: DeviceIdentity) -> bytes:
        """The serialized timing cache of this identity, or ``b""`` when there is none yet."""
        path = self.timing_cache_path(identity)
        return path.read_bytes() if path.is_file() else b""

    def save_timing_cache(self, identity: DeviceIdentity, data: bytes) -> Path:
        """Write the timing cache atomically."""
        path = self.timing_cache_path(identity)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".timing-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return path


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    from aeforge.artifact import fsync_dir

    fsync_dir(path)
