"""The TensorRT runner's logic around the ``tensorrt`` module, with a small fake module injected.

The fake records the builder calls; it stands in for TensorRT only to test what aeforge decides
(flags, profile, timing cache, engine cache path, refusals). Real engines are built and run in
tests/hardware/test_trt_device.py on a machine with TensorRT and a GPU.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aeforge.edge.engine_cache import BuildFlags, DeviceIdentity, EngineCache, engine_key, sha256_path
from aeforge.edge.runners import TrtRunner, trt_runner
from aeforge.edge.runners.base import TensorMeta
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError

IDENTITY = DeviceIdentity("10.3.0", "Orin", "8.7")


class _Flag(int):
    pass


def fake_tensorrt(version: str = "10.3.0", parse_ok: bool = True, build_ok: bool = True,
                  input_shape: tuple[int, ...] = (-1, 1, 8, 8)) -> types.ModuleType:
    """A ``tensorrt`` stand-in recording what the runner asks of it in ``trt.calls``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = calls = {"builds": 0, "flags": [], "profiles": [], "deserialized": []}

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    creation = {"EXPLICIT_BATCH": _Flag(0)}
    if int(version.split(".")[0]) >= 9:
        creation["STRONGLY_TYPED"] = _Flag(1)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**creation)
    trt.BuilderFlag = types.SimpleNamespace(INT8="INT8", FP16="FP16")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.float32 = "float32"
    trt.nptype = lambda dtype: {"float32": np.float32}[dtype]

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape = name, shape

    class Network:
        num_inputs = 1

        def get_input(self, index: int) -> Tensor:
            return Tensor("input", input_shape)

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            calls["parsed"] = path
            return parse_ok

        def get_error(self, index: int) -> str:
            return "In node 3 (Round): unsupported"

    class Profile:
        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
            calls["profiles"].append((name, low, opt, high))

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+timed"

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls["workspace"] = (pool, size)

        def set_flag(self, flag: str) -> None:
            calls["flags"].append(flag)

        def add_optimization_profile(self, profile: Profile) -> None:
            calls["profile_added"] = True

        def create_timing_cache(self, data: bytes) -> TimingCache:
            calls["timing_in"] = data
            self.cache = TimingCache(data)
            return self.cache

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> None:
            calls["timing_ignore_mismatch"] = ignore_mismatch

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            calls["network_flags"] = flags
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            calls["builds"] += 1
            return b"ENGINE:" + version.encode() if build_ok else None

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index: int) -> str:
            return ["input", "output"][index]

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name == "input" else "OUTPUT"

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return input_shape if name == "input" else (-1, 16)

        def create_execution_context(self) -> object:
            return object()

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine:
            calls["deserialized"].append(data)
            return Engine()

    trt.Logger, trt.OnnxParser, trt.Builder, trt.Runtime = Logger, Parser, Builder, Runtime
    return trt


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"pretend onnx")
    return path


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError


def _use(monkeypatch: pytest.MonkeyPatch, trt: Any, identity: DeviceIdentity = IDENTITY) -> None:
    """Inject the fake module, a fake GPU identity and a CUDA-less torch stand-in."""
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_runner, "current_identity", lambda _trt: identity)
    monkeypatch.setattr(trt_runner, "_import_torch_cuda", lambda: types.SimpleNamespace())


# ------------------------------------------------------------------------------------ without tensorrt
def test_module_imports_and_activate_says_why(no_tensorrt: None, onnx_file: Path, tmp_path: Path) -> None:
    runner = TrtRunner(onnx_file, cache_dir=tmp_path / "cache")
    with pytest.raises(ToolUnavailableError, match=r"tensorrt is not available .*install TensorRT"):
        runner.activate()
    assert not runner.is_active
    second = TrtRunner(onnx_file, cache_dir=tmp_path)
    with pytest.raises(ToolUnavailableError, match="tensorrt is not available"), second:
        pass
    assert not (tmp_path / "cache").exists() and not (tmp_path / "engines").exists()


def test_tensorrt_without_a_gpu_is_unavailable(monkeypatch: pytest.MonkeyPatch, onnx_file: Path,
                                               tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    with pytest.raises(ToolUnavailableError, match="no CUDA GPU visible"):
        TrtRunner(onnx_file, cache_dir=tmp_path).activate()


def test_bad_build_options_fail_at_construction(onnx_file: Path) -> None:
    with pytest.raises(ConfigError, match="precision 'int4'"):
        TrtRunner(onnx_file, precision="int4")
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        TrtRunner(onnx_file, batch_profile=(8, 1, 64))


# ------------------------------------------------------------------------------------ build
def test_int8_build_sets_flag_profile_workspace_and_timing_cache(onnx_file: Path) -> None:
    trt = fake_tensorrt("10.3.0")
    engine, timing = trt_runner.build_serialized_engine(trt, onnx_file, BuildFlags("int8", (1, 8, 64), 1 << 20),
                                                        b"old")
    calls = trt.calls
    assert engine == b"ENGINE:10.3.0" and timing == b"old+timed"
    assert calls["flags"] == ["INT8"] and calls["workspace"] == ("WORKSPACE", 1 << 20)
    assert calls["profiles"] == [("input", (1, 1, 8, 8), (8, 1, 8, 8), (64, 1, 8, 8))] and calls["profile_added"]
    assert calls["network_flags"] == 0  # TensorRT 10: always explicit batch
    assert calls["timing_in"] == b"old" and calls["timing_ignore_mismatch"] is False
    assert calls["parsed"] == str(onnx_file)


def test_tensorrt_8_uses_explicit_batch_and_lacks_strong_typing(onnx_file: Path) -> None:
    trt = fake_tensorrt("8.6.1")
    trt_runner.build_serialized_engine(trt, onnx_file, BuildFlags("fp16"))
    assert trt.calls["network_flags"] == 1 << 0 and trt.calls["flags"] == ["FP16"]
    with pytest.raises(ConfigError, match=r"needs TensorRT >= 9; this is TensorRT 8\.6\.1"):
        trt_runner.build_serialized_engine(trt, onnx_file, BuildFlags("strongly_typed"))


def test_strongly_typed_sets_the_network_flag_and_no_builder_flag(onnx_file: Path) -> None:
    trt = fake_tensorrt("10.3.0")
    trt_runner.build_serialized_engine(trt, onnx_file, BuildFlags("strongly_typed"))
    assert trt.calls["network_flags"] == 1 << 1 and trt.calls["flags"] == []


def test_static_input_gets_no_profile_and_rejects_a_batch_range(onnx_file: Path) -> None:
    trt = fake_tensorrt(input_shape=(1, 1, 8, 8))
    trt_runner.build_serialized_engine(trt, onnx_file, BuildFlags("fp32"))
    assert trt.calls["profiles"] == [] and "profile_added" not in trt.calls
    with pytest.raises(ConfigError, match=r"static shape .*dynamic batch"):
        trt_runner.build_serialized_engine(trt, onnx_file, BuildFlags("fp32", (1, 1, 64)))


def test_only_the_batch_may_be_dynamic(onnx_file: Path) -> None:
    with pytest.raises(ConfigError, match="only the batch"):
        trt_runner.build_serialized_engine(fake_tensorrt(input_shape=(-1, 1, -1, 8)), onnx_file, BuildFlags())


def test_parser_and_build_failures_are_artifact_errors(onnx_file: Path) -> None:
    with pytest.raises(ArtifactError, match=r"parser rejected the model: In node 3 \(Round\)"):
        trt_runner.build_serialized_engine(fake_tensorrt(parse_ok=False), onnx_file, BuildFlags())
    with pytest.raises(ArtifactError, match="failed to build an engine"):
        trt_runner.build_serialized_engine(fake_tensorrt(build_ok=False), onnx_file, BuildFlags())


# ------------------------------------------------------------------------------------ cache
def test_engine_is_built_once_and_cached_under_its_key(monkeypatch: pytest.MonkeyPatch, onnx_file: Path,
                                                       tmp_path: Path) -> None:
    trt = fake_tensorrt()
    _use(monkeypatch, trt)
    cache_dir = tmp_path / "cache"
    flags = BuildFlags("int8", (1, 8, 64))
    key = engine_key(IDENTITY, sha256_path(onnx_file), flags)
    with TrtRunner(onnx_file, batch_profile=(1, 8, 64), cache_dir=cache_dir) as runner:
        assert runner.built and trt.calls["builds"] == 1
        assert runner.engine_entry is not None
        assert runner.engine_entry.engine_path == cache_dir / "engines" / key / "engine.plan"
        assert runner.input_metadata() == {"input": TensorMeta(np.dtype(np.float32), (None, 1, 8, 8))}
    sidecar = json.loads((cache_dir / "engines" / key / "engine.json").read_text())
    assert sidecar["trt_version"] == "10.3.0" and sidecar["gpu_name"] == "Orin" and sidecar["precision"] == "int8"
    assert EngineCache(cache_dir).load_timing_cache(IDENTITY) == b"+timed"
    with TrtRunner(onnx_file, batch_profile=(1, 8, 64), cache_dir=cache_dir) as again:
        assert not again.built and trt.calls["builds"] == 1  # loaded, not rebuilt
    assert trt.calls["deserialized"] == [b"ENGINE:10.3.0"] * 2
    assert trt.calls["timing_in"] == b""  # the first build started from an empty timing cache


def test_new_tensorrt_or_gpu_builds_a_new_entry(monkeypatch: pytest.MonkeyPatch, onnx_file: Path,
                                                tmp_path: Path) -> None:
    _use(monkeypatch, fake_tensorrt())
    TrtRunner(onnx_file, cache_dir=tmp_path).prepare_engine(fake_tensorrt(), IDENTITY)
    other = DeviceIdentity("10.4.0", "Orin", "8.7")
    runner = TrtRunner(onnx_file, cache_dir=tmp_path)
    runner.prepare_engine(fake_tensorrt("10.4.0"), other)
    assert runner.built
    assert len(list((tmp_path / "engines").iterdir())) == 2


def test_changed_onnx_or_flags_miss_the_cache(onnx_file: Path, tmp_path: Path) -> None:
    trt = fake_tensorrt()
    TrtRunner(onnx_file, cache_dir=tmp_path).prepare_engine(trt, IDENTITY)
    TrtRunner(onnx_file, precision="fp16", cache_dir=tmp_path).prepare_engine(trt, IDENTITY)
    onnx_file.write_bytes(b"retrained model")
    TrtRunner(onnx_file, cache_dir=tmp_path).prepare_engine(trt, IDENTITY)
    assert trt.calls["builds"] == 3


def test_foreign_engine_in_the_cache_is_refused_and_never_deserialized(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    trt = fake_tensorrt()
    _use(monkeypatch, trt)
    runner = TrtRunner(onnx_file, cache_dir=tmp_path)
    runner.prepare_engine(trt, IDENTITY)
    sidecar_path = runner.engine_entry.sidecar_path
    data = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps(dict(data, trt_version="8.6.1")))
    with pytest.raises(ArtifactError, match=r"TensorRT 8\.6\.1, this is TensorRT 10\.3\.0"):
        TrtRunner(onnx_file, cache_dir=tmp_path).activate()
    sidecar_path.write_text("{corrupt")
    with pytest.raises(ArtifactError, match="corrupted engine sidecar"):
        TrtRunner(onnx_file, cache_dir=tmp_path).activate()
    assert trt.calls["deserialized"] == []


def test_missing_onnx_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"missing\.onnx: ONNX model not found"):
        TrtRunner(tmp_path / "missing.onnx", cache_dir=tmp_path).prepare_engine(fake_tensorrt(), IDENTITY)


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, onnx_file: Path,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("AEFORGE_ENGINE_CACHE", str(tmp_path / "env-cache"))
    runner = TrtRunner(onnx_file)
    runner.prepare_engine(fake_tensorrt(), IDENTITY)
    assert runner.engine_entry.engine_path.is_relative_to(tmp_path / "env-cache" / "engines")
