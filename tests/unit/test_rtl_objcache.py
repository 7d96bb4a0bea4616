"""The Verilator runtime object cache (aeforge.hls.rtl.objcache), run as make runs it: a script before the compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aeforge.hls.rtl import objcache

SCRIPT = Path(objcache.__file__)
CXX = os.environ.get("CXX", "g++")
pytestmark = pytest.mark.skipif(shutil.which(CXX) is None, reason=f"no C++ compiler ({CXX}) on PATH")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A stand-in VERILATOR_ROOT: a runtime source and the version header the key reads."""
    include = tmp_path / "verilator" / "include"
    include.mkdir(parents=True)
    (include / "verilated_config.h").write_text('#define VERILATOR_VERSION "5.048"\n')
    (include / "verilated.cpp").write_text("int verilated_answer() { return 42; }\n")
    return tmp_path / "verilator"


def compile_with_cache(root: Path, cache: Path | str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERILATOR_ROOT": str(root), objcache.CACHE_ENV: str(cache)}
    return subprocess.run([sys.executable, str(SCRIPT), CXX, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_runtime_object_is_compiled_once_and_reused(root: Path, tmp_path: Path) -> None:
    cache, source = tmp_path / "cache", root / "include" / "verilated.cpp"
    first = compile_with_cache(root, cache, "-O0", "-fPIC", "-c", "-o", "first.o", str(source), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    [entry] = cache.iterdir()
    assert entry.name.startswith("verilated-") and entry.read_bytes() == (tmp_path / "first.o").read_bytes()
    entry.write_bytes(b"cached object")  # what comes back next is this file, not a new compile
    again = compile_with_cache(root, cache, "-O0", "-fPIC", "-c", "-o", "again.o", str(source), cwd=tmp_path)
    assert again.returncode == 0 and (tmp_path / "again.o").read_bytes() == b"cached object"

    other_flags = compile_with_cache(root, cache, "-O1", "-fPIC", "-c", "-o", "o1.o", str(source), cwd=tmp_path)
    assert other_flags.returncode == 0 and (tmp_path / "o1.o").read_bytes()[:4] == b"\x7fELF"  # compiled
    assert len(list(cache.iterdir())) == 2
    source.write_text("int verilated_answer() { return 43; }  // a new Verilator\n")
    changed = compile_with_cache(root, cache, "-O0", "-fPIC", "-c", "-o", "new.o", str(source), cwd=tmp_path)
    assert changed.returncode == 0 and (tmp_path / "new.o").read_bytes()[:4] == b"\x7fELF"
    assert len(list(cache.iterdir())) == 3


def test_design_sources_failures_and_off_are_not_cached(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    design = tmp_path / "Vtop.cpp"
    design.write_text("int top() { return 1; }\n")
    result = compile_with_cache(root, cache, "-c", "-o", "Vtop.o", str(design), cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "Vtop.o").is_file() and not cache.exists()

    broken = root / "include" / "verilated.cpp"
    broken.write_text("this is not C++\n")
    failed = compile_with_cache(root, cache, "-c", "-o", "bad.o", str(broken), cwd=tmp_path)
    assert failed.returncode != 0 and "error" in failed.stderr and not cache.exists()

    broken.write_text("int verilated_answer() { return 42; }\n")
    off = compile_with_cache(root, "off", "-c", "-o", "off.o", str(broken), cwd=tmp_path)
    assert off.returncode == 0 and (tmp_path / "off.o").is_file() and not (tmp_path / "off").exists()


def test_verilator_env_passes_the_wrapper_to_make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aeforge.hls.rtl.simulate import verilator_env, why_verilator_unavailable

    if why_verilator_unavailable():
        pytest.skip(why_verilator_unavailable())
    monkeypatch.setenv(objcache.CACHE_ENV, str(tmp_path / "cache"))
    assert f"OBJCACHE={sys.executable}\\ {SCRIPT}" in verilator_env()["MAKEFLAGS"]
    monkeypatch.setenv(objcache.CACHE_ENV, "off")
    assert "OBJCACHE" not in verilator_env()["MAKEFLAGS"]
