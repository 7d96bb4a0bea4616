"""The TensorRT engine cache: keys, layout, sidecar checks and refusals (pure Python, fake identities)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from aeforge.edge.engine_cache import (
    ENGINE_FILE,
    SIDECAR_FIELDS,
    SIDECAR_FILE,
    BuildFlags,
    DeviceIdentity,
    EngineCache,
    default_cache_root,
    engine_key,
    load_engine_file,
    sha256_bytes,
)
from aeforge.errors import ArtifactError, ConfigError

ORIN = DeviceIdentity("10.3.0", "Orin", "8.7")
ONNX = sha256_bytes(b"model")
FLAGS = BuildFlags("int8", (1, 8, 64), 1 << 28)
ENGINE = b"\x00serialized engine\xff" * 10


def test_key_is_stable_and_depends_on_every_input() -> None:
    key = engine_key(ORIN, ONNX, FLAGS)
    assert key == engine_key(DeviceIdentity("10.3.0", "Orin", "8.7"), ONNX, BuildFlags("int8", (1, 8, 64), 1 << 28))
    assert len(key) == 64
    variants = [
        engine_key(replace(ORIN, trt_version="10.4.0"), ONNX, FLAGS),
        engine_key(replace(ORIN, gpu_name="Xavier"), ONNX, FLAGS),
        engine_key(replace(ORIN, compute_capability="7.2"), ONNX, FLAGS),
        engine_key(ORIN, sha256_bytes(b"other model"), FLAGS),
        engine_key(ORIN, ONNX, replace(FLAGS, precision="fp16")),
        engine_key(ORIN, ONNX, replace(FLAGS, batch_profile=(1, 1, 64))),
        engine_key(ORIN, ONNX, replace(FLAGS, workspace_bytes=1 << 29)),
    ]
    assert len({key, *variants}) == len(variants) + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int4"}, "precision 'int4'"),
        ({"batch_profile": (4, 2, 8)}, "min <= opt <= max"),
        ({"batch_profile": (0, 1, 1)}, "three positive integers"),
        ({"batch_profile": (1, 2)}, "three positive integers"),
        ({"workspace_bytes": 0}, "workspace_bytes"),
    ],
)
def test_bad_build_flags_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BuildFlags(**kwargs)


def test_bad_onnx_hash_is_refused() -> None:
    with pytest.raises(ArtifactError, match="not a hex sha256"):
        engine_key(ORIN, "abc", FLAGS)


def test_store_then_load_roundtrip_and_layout(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load(ORIN, ONNX, FLAGS) is None
    entry = cache.store(ORIN, ONNX, FLAGS, ENGINE)
    key = engine_key(ORIN, ONNX, FLAGS)
    assert entry.engine_path == tmp_path / "engines" / key / ENGINE_FILE
    assert entry.sidecar_path == tmp_path / "engines" / key / SIDECAR_FILE
    sidecar = json.loads(entry.sidecar_path.read_text())
    assert set(SIDECAR_FIELDS) <= set(sidecar)
    assert sidecar["trt_version"] == "10.3.0" and sidecar["gpu_name"] == "Orin"
    assert sidecar["compute_capability"] == "8.7" and sidecar["batch_profile"] == [1, 8, 64]
    assert sidecar["engine_bytes"] == len(ENGINE) and sidecar["onnx_sha256"] == ONNX
    assert cache.load(ORIN, ONNX, FLAGS) == ENGINE
    assert [p.name for p in (tmp_path / "engines").iterdir()] == [key]  # no staging folders left behind
    cache.store(ORIN, ONNX, FLAGS, ENGINE + b"v2")  # replaces the entry
    assert cache.load(ORIN, ONNX, FLAGS) == ENGINE + b"v2"


def test_other_identity_misses_instead_of_loading(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(ORIN, ONNX, FLAGS, ENGINE)
    assert cache.load(replace(ORIN, trt_version="10.4.0"), ONNX, FLAGS) is None


def test_engine_from_another_tensorrt_version_is_refused_naming_both(tmp_path: Path) -> None:
    entry = EngineCache(tmp_path).store(ORIN, ONNX, FLAGS, ENGINE)
    with pytest.raises(ArtifactError, match=r"TensorRT 10\.3\.0, this is TensorRT 8\.6\.1"):
        load_engine_file(entry.engine_path, replace(ORIN, trt_version="8.6.1"))


def test_engine_for_another_gpu_is_refused_naming_both(tmp_path: Path) -> None:
    entry = EngineCache(tmp_path).store(ORIN, ONNX, FLAGS, ENGINE)
    with pytest.raises(ArtifactError, match=r"built for Orin \(sm 8\.7\), this GPU is NVIDIA H100 \(sm 9\.0\)"):
        load_engine_file(entry.engine_path, DeviceIdentity("10.3.0", "NVIDIA H100", "9.0"))


def test_a_tampered_sidecar_inside_the_cache_is_refused(tmp_path: Path) -> None:
    """An entry whose sidecar was edited to another version is found by key but refused, not loaded."""
    cache = EngineCache(tmp_path)
    entry = cache.store(ORIN, ONNX, FLAGS, ENGINE)
    data = json.loads(entry.sidecar_path.read_text())
    entry.sidecar_path.write_text(json.dumps(dict(data, trt_version="9.9.9")))
    with pytest.raises(ArtifactError, match=r"TensorRT 9\.9\.9, this is TensorRT 10\.3\.0"):
        cache.load(ORIN, ONNX, FLAGS)
    entry.sidecar_path.write_text(json.dumps(dict(data, key="0" * 64)))
    with pytest.raises(ArtifactError, match="records key 000000000000"):
        cache.load(ORIN, ONNX, FLAGS)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "corrupted engine sidecar"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema": 1}', "missing key, trt_version"),
        (None, "sidecar missing"),
    ],
)
def test_corrupted_or_missing_sidecar_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    cache = EngineCache(tmp_path)
    entry = cache.store(ORIN, ONNX, FLAGS, ENGINE)
    if content is None:
        entry.sidecar_path.unlink()
    else:
        entry.sidecar_path.write_text(content)
    with pytest.raises(ArtifactError, match=message) as info:
        cache.load(ORIN, ONNX, FLAGS)
    assert str(entry.sidecar_path) in str(info.value) or str(entry.engine_path.parent) in str(info.value)


def test_sidecar_with_wrong_schema_or_types_is_refused(tmp_path: Path) -> None:
    entry = EngineCache(tmp_path).store(ORIN, ONNX, FLAGS, ENGINE)
    data = json.loads(entry.sidecar_path.read_text())
    entry.sidecar_path.write_text(json.dumps(dict(data, schema=7)))
    with pytest.raises(ArtifactError, match="schema 7"):
        load_engine_file(entry.engine_path, ORIN)
    entry.sidecar_path.write_text(json.dumps(dict(data, gpu_name=3)))
    with pytest.raises(ArtifactError, match="gpu_name is not a string"):
        load_engine_file(entry.engine_path, ORIN)


def test_modified_or_missing_engine_is_refused(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    entry = cache.store(ORIN, ONNX, FLAGS, ENGINE)
    entry.engine_path.write_bytes(ENGINE[:-3])
    with pytest.raises(ArtifactError, match="sha256 differs from its sidecar"):
        cache.load(ORIN, ONNX, FLAGS)
    entry.engine_path.unlink()
    with pytest.raises(ArtifactError, match="engine file missing"):
        cache.load(ORIN, ONNX, FLAGS)


def test_timing_cache_roundtrip_per_identity(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load_timing_cache(ORIN) == b""
    path = cache.save_timing_cache(ORIN, b"timing")
    assert path == tmp_path / "timing" / "trt10.3.0_orin_sm87.cache"
    assert cache.load_timing_cache(ORIN) == b"timing"
    assert cache.load_timing_cache(replace(ORIN, gpu_name="NVIDIA H100 80GB HBM3")) == b""


def test_default_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEFORGE_ENGINE_CACHE", str(tmp_path / "explicit"))
    assert default_cache_root() == tmp_path / "explicit"
    assert EngineCache().root == tmp_path / "explicit"
    monkeypatch.delenv("AEFORGE_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "aeforge" / "engines"


def test_identity_text() -> None:
    assert ORIN.describe() == "TensorRT 10.3.0 on Orin (sm 8.7)"
    assert DeviceIdentity("8.6.2", "NVIDIA Jetson AGX Orin", "8.7").slug() == "trt8.6.2_nvidia-jetson-agx-orin_sm87"
