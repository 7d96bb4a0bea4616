"""Compiler wrapper for Verilator's makefiles that reuses the compiled objects of Verilator's own runtime.

Every Verilator build (the emulator library of :mod:`aeforge.hls.rtl.simulate`, the interface
testbench of :mod:`aeforge.hls.rtl.testbench`) compiles the design *and* Verilator's runtime
(``verilated.cpp``, ``verilated_threads.cpp``, ``verilated_timing.cpp``), and the runtime is most of
the compile time of a small design. The runtime does not depend on the design, so this wrapper, run
by make as ``$(OBJCACHE) $(CXX) ...`` (:func:`~aeforge.hls.rtl.simulate.verilator_env` sets
``OBJCACHE``), keeps each runtime object it compiles in a cache directory and copies it back for
the next build with the same compile command. The key is the whole command line (less the output
path), the compiler's and the source's identity (path, size, modification time) and Verilator's
version header. Design sources and any command it does not recognise are compiled as given.

The cache is ``$AEFORGE_VERILATOR_CACHE``, else ``$XDG_CACHE_HOME/aeforge/verilator-runtime`` (default
``~/.cache/aeforge/verilator-runtime``); ``AEFORGE_VERILATOR_CACHE=off`` turns it off. It runs as a
script (standard library only): ``python objcache.py CXX ARGS...``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE_ENV = "AEFORGE_VERILATOR_CACHE"
RUNTIME_SUFFIXES = (".cpp", ".cc")


def cache_dir() -> Path | None:
    """Where runtime objects are kept, or None when the cache is turned off."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given.lower() in ("off", "0", "no", "false"):
        return None
    if given:
        return Path(given)
    try:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except RuntimeError:  # no home directory: no cache
        return None
    return Path(base) / "aeforge" / "verilator-runtime"


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def runtime_key(args: list[str], output_index: int, source: Path, include_dir: Path) -> str | None:
    """Cache key of compiling ``source`` (a file of Verilator's runtime) with ``args``; None if not cacheable."""
    compiler = shutil.which(args[0])
    version = include_dir / "verilated_config.h"
    if compiler is None or not version.is_file():
        return None
    command = [arg for index, arg in enumerate(args) if index != output_index]
    parts = [*command, _identity(Path(compiler)), _identity(source), _identity(version), sys.platform]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _runtime_source(args: list[str]) -> tuple[Path, int] | None:
    """``(source, index of the output path)`` when ``args`` compiles one file of Verilator's runtime."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or "-c" not in args or "-o" not in args or args.count("-o") != 1:
        return None
    output_index = args.index("-o") + 1
    sources = [arg for arg in args[1:] if arg.endswith(RUNTIME_SUFFIXES)]
    if output_index >= len(args) or len(sources) != 1:
        return None
    source = Path(sources[0])
    include = (Path(root) / "include").resolve()
    try:
        source.resolve().relative_to(include)
    except ValueError:
        return None
    return source, output_index


def _store(obj: Path, cached: Path) -> None:
    """Copy ``obj`` into the cache atomically (a concurrent build may write the same entry)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-", suffix=".o")
    os.close(fd)
    try:
        shutil.copyfile(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, cached)
    finally:
        Path(tmp).unlink(missing_ok=True)


def main(args: list[str]) -> int:
    """Compile ``args`` (``CXX ARGS...``), reusing a cached object for Verilator's runtime files."""
    if not args:
        print("objcache.py: usage: objcache.py CXX ARGS...", file=sys.stderr)
        return 2
    found = _runtime_source(args)
    directory = cache_dir()
    if found is None or directory is None:
        return subprocess.call(args)
    source, output_index = found
    include = Path(os.environ["VERILATOR_ROOT"]) / "include"
    key = runtime_key(args, output_index, source, include)
    if key is None:
        return subprocess.call(args)
    obj = Path(args[output_index])
    cached = directory / f"{source.stem}-{key[:32]}.o"
    if cached.is_file():
        try:
            shutil.copyfile(cached, obj)
            return 0
        except OSError:
            pass  # compile it instead
    code = subprocess.call(args)
    if code == 0 and obj.is_file():
        with contextlib.suppress(OSError):  # an unwritable cache only costs the next build its compile
            _store(obj, cached)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
