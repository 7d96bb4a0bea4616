#!/usr/bin/env python3
"""Run an aeforge deploy bundle on its device (copied into the bundle as ``run.py``).

Needs only numpy and the bundle's runtime: onnxruntime (``rpi`` bundles) or tensorrt plus
cuda-python or pycuda (``jetson`` bundles). aeforge itself is NOT needed (only ``--energy`` uses
the aeforge harness when it happens to be installed).

    python run.py --self-check [--quick] [--json FILE]   # expected outputs of the Brevitas model
    python run.py --bench [--seconds S] [--batch B] [--threads T] [--label L] [--json FILE]
    python run.py --energy                      # needs the aeforge harness (aeforge bench)

Exit codes: 0 ok; 1 self-check mismatch; 2 runtime not available (onnxruntime / tensorrt /
CUDA bindings / energy harness); 3 invalid bundle or arguments (manifest, model hash, batch).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_UNAVAILABLE, EXIT_INVALID = 0, 1, 2, 3
HERE = Path(__file__).resolve().parent


class BundleExit(Exception):
    """Stop with a message and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(bundle: Path) -> dict:
    """The bundle's manifest, with the model file checked against its recorded sha256."""
    path = bundle / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        model = bundle / manifest["model"]["file"]
        expected_sha256 = manifest["model"]["sha256"]
        manifest["inputs"][0]["name"], manifest["outputs"][0]["name"], manifest["expected"]["inputs"]
    except FileNotFoundError:
        raise BundleExit(EXIT_INVALID, f"{path}: manifest missing; is this an aeforge bundle?") from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BundleExit(EXIT_INVALID, f"{path}: corrupted manifest ({type(exc).__name__}: {exc})") from None
    if not model.is_file():
        raise BundleExit(EXIT_INVALID, f"{model}: model file missing")
    if _sha256(model) != expected_sha256:
        raise BundleExit(EXIT_INVALID, f"{model}: sha256 differs from the manifest (modified or truncated)")
    check = manifest.get("check_set")
    if check:
        path = bundle / str(check.get("file", ""))
        if not path.is_file():
            raise BundleExit(EXIT_INVALID, f"{path}: recorded check set missing")
        if _sha256(path) != check.get("sha256"):
            raise BundleExit(EXIT_INVALID, f"{path}: sha256 differs from the manifest (modified or truncated)")
    return manifest


# ------------------------------------------------------------------------------------ backends
class OrtBackend:
    """onnxruntime on the CPU, without graph optimizations (bit-exact QDQ arithmetic)."""

    name = "onnxruntime"

    def __init__(self, model: Path, input_name: str, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BundleExit(EXIT_UNAVAILABLE, f"onnxruntime not available ({exc}); pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.version = ort.__version__
        self.session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        self.providers = list(self.session.get_providers())
        self.available_providers = list(ort.get_available_providers())
        self.input_name = input_name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: x})[0]

    def close(self) -> None:
        self.session = None


class _CudaRuntime:
    """Device memory through cuda-python (``cuda.bindings.runtime`` / ``cuda.cudart``), else pycuda."""

    def __init__(self) -> None:
        self.cudart = self.pycuda = None
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart
            self.cudart = cudart
        except ImportError:
            try:
                import pycuda.autoinit  # creates the CUDA context
                import pycuda.driver
            except ImportError:
                raise BundleExit(EXIT_UNAVAILABLE, "CUDA Python bindings not available; pip install cuda-python "
                                 "(or pycuda)") from None
            self.pycuda = pycuda.driver
        self.stream = self._check(self.cudart.cudaStreamCreate()) if self.cudart else self.pycuda.Stream()

    def _check(self, result: tuple):
        err, *values = result
        if int(err) != 0:
            raise BundleExit(EXIT_UNAVAILABLE, f"CUDA runtime error {err}")
        return values[0] if values else None

    def device(self) -> tuple[str, str]:
        if self.cudart:
            props = self._check(self.cudart.cudaGetDeviceProperties(0))
            name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else props.name
            return name, f"{props.major}.{props.minor}"
        device = self.pycuda.Device(0)
        return device.name(), "{}.{}".format(*device.compute_capability())

    def stream_handle(self) -> int:
        return int(self.stream) if self.cudart else self.stream.handle

    def alloc(self, nbytes: int):
        return self._check(self.cudart.cudaMalloc(nbytes)) if self.cudart else self.pycuda.mem_alloc(nbytes)

    def to_device(self, pointer, array: np.ndarray) -> None:
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream))
        else:
            self.pycuda.memcpy_htod_async(pointer, array, self.stream)

    def to_host(self, array: np.ndarray, pointer) -> None:
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream))
        else:
            self.pycuda.memcpy_dtoh_async(array, pointer, self.stream)

    def synchronize(self) -> None:
        if self.cudart:
            self._check(self.cudart.cudaStreamSynchronize(self.stream))
        else:
            self.stream.synchronize()

    def free(self, pointer) -> None:
        if self.cudart:
            self.cudart.cudaFree(pointer)


class TrtBackend:
    """TensorRT: the engine is built from model.onnx on first use and kept in ``engines/<TRT>_<GPU>/``.

    An engine is reused only when its sidecar names this TensorRT version and GPU and its sha256
    matches; anything else is rebuilt (engines are not portable across versions or GPUs).
    """

    name = "tensorrt"

    def __init__(self, model: Path, manifest: dict, max_batch: int) -> None:
        try:
            import tensorrt as trt
        except (ImportError, OSError) as exc:
            raise BundleExit(EXIT_UNAVAILABLE, f"tensorrt not available ({exc}); install JetPack's TensorRT "
                             "(python3-libnvinfer) or pip install tensorrt") from None
        self.trt = trt
        self.version = trt.__version__
        self.providers = self.available_providers = ["TensorRT"]
        self.cuda = _CudaRuntime()
        gpu, capability = self.cuda.device()
        self.logger = trt.Logger(trt.Logger.WARNING)
        precision = manifest.get("tensorrt", {}).get("precision", "int8")
        batch_max = max(max_batch, int(manifest.get("tensorrt", {}).get("max_batch", 1)))
        slug = "".join(c if c.isalnum() or c in ".-" else "-" for c in f"trt{self.version}_{gpu}_sm{capability}")
        folder = model.parent / "engines" / f"{slug}_{precision}_b{batch_max}"
        identity = {"trt_version": self.version, "gpu_name": gpu, "compute_capability": capability,
                    "onnx_sha256": manifest["model"]["sha256"], "precision": precision, "max_batch": batch_max}
        engine = self._cached(folder, identity)
        if engine is None:
            engine = self._build(model, precision, batch_max)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.plan").write_bytes(engine)
            sidecar = dict(identity, engine_sha256=hashlib.sha256(engine).hexdigest())
            (folder / "model.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine)
        if self.engine is None:
            raise BundleExit(EXIT_INVALID, f"{folder}: TensorRT could not deserialize the engine; delete the folder")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.buffers: dict[str, tuple[object, int]] = {}

    @staticmethod
    def _cached(folder: Path, identity: dict) -> bytes | None:
        try:
            sidecar = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            engine = (folder / "model.plan").read_bytes()
        except (OSError, ValueError):
            return None
        if any(sidecar.get(k) != v for k, v in identity.items()):
            print(f"note: {folder} was built for {sidecar.get('trt_version')} on {sidecar.get('gpu_name')}; rebuilding")
            return None
        if hashlib.sha256(engine).hexdigest() != sidecar.get("engine_sha256"):
            print(f"note: {folder}/model.plan does not match its sidecar; rebuilding")
            return None
        return engine

    def _build(self, model: Path, precision: str, max_batch: int) -> bytes:
        trt = self.trt
        print(f"building the TensorRT engine ({precision}, batch 1..{max_batch}); this takes a minute the first time")
        builder = trt.Builder(self.logger)
        flags = 0
        creation = trt.NetworkDefinitionCreationFlag
        if int(self.version.split(".")[0]) < 10:
            flags |= 1 << int(creation.EXPLICIT_BATCH)
        if precision == "strongly_typed":
            flags |= 1 << int(creation.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(model)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BundleExit(EXIT_INVALID, f"{model}: TensorRT's ONNX parser rejected the model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        elif precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if shape and shape[0] < 0:
                dynamic = True
                opt = max(1, max_batch // 2)
                profile.set_shape(tensor.name, (1, *shape[1:]), (opt, *shape[1:]), (max_batch, *shape[1:]))
        if dynamic:
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BundleExit(EXIT_INVALID, f"{model}: TensorRT failed to build an engine (see its log above)")
        return bytes(serialized)

    def _buffer(self, name: str, nbytes: int):
        pointer, size = self.buffers.get(name, (None, 0))
        if size < nbytes:
            if pointer is not None:
                self.cuda.free(pointer)
            pointer = self.cuda.alloc(nbytes)
            self.buffers[name] = (pointer, nbytes)
        return pointer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        trt, context = self.trt, self.context
        name = self.inputs[0]
        x = np.ascontiguousarray(x, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
        if not context.set_input_shape(name, x.shape):
            raise BundleExit(EXIT_INVALID, f"TensorRT refused input shape {x.shape} (rebuild with a larger batch)")
        pointer = self._buffer(name, x.nbytes)
        self.cuda.to_device(pointer, x)
        context.set_tensor_address(name, int(pointer))
        results = {}
        for out in self.outputs:
            host = np.empty(tuple(context.get_tensor_shape(out)), dtype=trt.nptype(self.engine.get_tensor_dtype(out)))
            results[out] = (host, self._buffer(out, max(host.nbytes, 1)))
            context.set_tensor_address(out, int(results[out][1]))
        if not context.execute_async_v3(self.cuda.stream_handle()):
            raise BundleExit(EXIT_INVALID, "TensorRT execution failed")
        for host, pointer in results.values():
            self.cuda.to_host(host, pointer)
        self.cuda.synchronize()
        return results[self.outputs[0]][0]

    def close(self) -> None:
        for pointer, _ in self.buffers.values():
            self.cuda.free(pointer)
        self.buffers = {}


def open_backend(manifest: dict, threads: int | None, max_batch: int = 1):
    """The runtime the bundle was built for."""
    model = HERE / manifest["model"]["file"]
    if manifest["runtime"] == "onnxruntime":
        return OrtBackend(model, manifest["inputs"][0]["name"], threads)
    if manifest["runtime"] == "tensorrt":
        return TrtBackend(model, manifest, max_batch)
    raise BundleExit(EXIT_INVALID, f"manifest.json: unknown runtime {manifest['runtime']!r}")


# ------------------------------------------------------------------------------------ entropy coder
def open_entropy_codec(manifest: dict):
    """The range coder of an Entropic Student head's bundle (``None`` for other bundles).

    Loads the bundle's ``entropy_coder.py`` (checked against its sha256) and CDF tables (checked by the
    module against ``cdf_sha256``); exit 2 without constriction, exit 3 on a tampered file.
    """
    entropy = manifest.get("entropy")
    if not entropy:
        return None
    module_path = HERE / entropy["module"]
    if not module_path.is_file() or _sha256(module_path) != entropy["module_sha256"]:
        raise BundleExit(EXIT_INVALID, f"{entropy['module']}: missing or not the file the bundle was built with")
    spec = importlib.util.spec_from_file_location("aeforge_bundle_entropy_coder", module_path)
    coder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = coder  # its dataclasses look their module up
    spec.loader.exec_module(coder)
    try:
        tables = coder.EntropySpec.from_dict(entropy, HERE, where="manifest.json")
    except coder.ToolUnavailableError as exc:
        raise BundleExit(EXIT_UNAVAILABLE, str(exc)) from None
    except coder.ArtifactError as exc:
        raise BundleExit(EXIT_INVALID, str(exc)) from None
    return coder.EntropyCodec(tables, tuple(entropy["code_shape"]))


def check_entropy_coding(manifest: dict, codec, outputs: np.ndarray) -> dict:
    """Code each output one sample a blob: it must decode to its codes, and the recorded blobs must be equal."""
    scale = float(manifest["quantization"]["output_scale"])
    codes = np.round(outputs / scale).astype(np.int64).reshape(-1, *codec.shape)
    recorded = manifest["entropy"]["recorded_blobs_hex"]
    sizes, roundtrip_bad, recorded_bad = [], 0, []
    for i in range(len(codes)):
        blob = codec.encode(codes[i : i + 1])
        sizes.append(len(blob))
        roundtrip_bad += int(not np.array_equal(codec.decode(blob).reshape(codes[i : i + 1].shape), codes[i : i + 1]))
        if i < len(recorded) and blob.hex() != recorded[i]:
            recorded_bad.append(i)
    return {"blobs": len(codes), "bytes_per_sample": float(np.mean(sizes)) if sizes else 0.0,
            "roundtrip_mismatched": roundtrip_bad, "recorded": min(len(recorded), len(codes)),
            "recorded_mismatched": recorded_bad, "passed": not roundtrip_bad and not recorded_bad}


# ------------------------------------------------------------------------------------ commands
def _expected(manifest: dict, quick: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """Recorded inputs (the model's input dtype), expected outputs (float64) and where they came from:
    the check set (``check.npz``) when the bundle has one and not ``quick``, else the manifest's vectors."""
    dtype = np.dtype(manifest["inputs"][0]["dtype"])
    check = manifest.get("check_set")
    if check and not quick:
        try:
            with np.load(HERE / check["file"], allow_pickle=False) as data:
                inputs = data["input_codes"].astype(np.float64) * float(data["input_scale"])
                outputs = data["output_codes"].astype(np.float64) * float(data["output_scale"])
        except (OSError, KeyError, ValueError) as exc:
            raise BundleExit(EXIT_INVALID, f"{check['file']}: unreadable check set ({exc})") from None
        return inputs.astype(dtype), outputs, str(check["file"])
    inputs = np.asarray(manifest["expected"]["inputs"], dtype=np.float64).astype(dtype)
    outputs = np.asarray(manifest["expected"]["outputs"], dtype=np.float64)
    return inputs, outputs, "manifest.json"


def _environment() -> dict:
    return {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def self_check(manifest: dict, threads: int | None, quick: bool = False, report: Path | None = None) -> int:
    """Run the recorded inputs and compare with the Brevitas outputs; bit for bit where the manifest says so."""
    inputs, expected, source = _expected(manifest, quick)
    chunk = 1024 if manifest["runtime"] == "onnxruntime" else int(manifest.get("tensorrt", {}).get("max_batch", 64))
    tolerance = float(manifest["tolerance"]["abs"])
    exact_required = bool(manifest["tolerance"].get("exact", False))
    started = time.perf_counter()
    backend = open_backend(manifest, threads, max_batch=min(len(inputs), chunk))
    try:
        opened = time.perf_counter()
        got = np.concatenate([np.asarray(backend(inputs[i : i + chunk]), dtype=np.float64)
                              for i in range(0, len(inputs), chunk)]).reshape(expected.shape)
        infer_s = time.perf_counter() - opened
    finally:
        backend.close()
    wall_s = time.perf_counter() - started
    error = np.abs(got - expected)
    error[~np.isfinite(error)] = np.inf
    bad = np.argwhere(got != expected) if exact_required else np.argwhere(error > tolerance)
    exact = int(np.all(got == expected, axis=tuple(range(1, got.ndim))).sum())
    n = len(expected)
    max_err = float(error.max()) if error.size else 0.0
    scale = float(manifest.get("quantization", {}).get("output_scale") or 0.0)
    first = tuple(int(i) for i in bad[0]) if bad.size else None
    result = {
        "mode": "self-check", "passed": not bad.size, "vectors": source, "n": n, "exact": exact,
        "mismatched_vectors": len(np.unique(bad[:, 0])) if bad.size else 0,
        "max_abs_err": max_err, "max_err_lsb": max_err / scale if scale else None,
        "tolerance_abs": tolerance, "exact_required": exact_required,
        "first_mismatch": None if first is None else {"vector": first[0], "output": list(first[1:]),
                                                      "expected": float(expected[first]), "got": float(got[first])},
        "runtime": backend.name, "runtime_version": backend.version,
        "providers": list(getattr(backend, "providers", [])),
        "available_providers": list(getattr(backend, "available_providers", [])),
        "infer_s": infer_s, "wall_s": wall_s, **_environment(),
    }
    codec = open_entropy_codec(manifest) if first is None else None
    if codec is not None:  # the head's codes are right: now the bytes that go on the wire
        result["entropy"] = check_entropy_coding(manifest, codec, got)
        result["passed"] = result["entropy"]["passed"]
    if report is not None:
        report.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rule = "bit-exact required" if exact_required else f"within {tolerance:g}"
    if codec is not None and not result["entropy"]["passed"]:
        coded = result["entropy"]
        print(f"self-check FAILED: the range coder ({manifest['entropy']['coder']}) gave "
              f"{coded['roundtrip_mismatched']} blobs that do not decode to their codes and blobs "
              f"{coded['recorded_mismatched'][:5]} that differ from the ones recorded at build time")
        return EXIT_MISMATCH
    if first is not None:
        print(f"self-check FAILED ({backend.name} {backend.version}, {platform.machine()}): "
              f"{result['mismatched_vectors']}/{n} vectors differ ({rule}); first: vector {first[0]} "
              f"output{list(first[1:])} expected {expected[first]!r}, got {got[first]!r} (max |err| {max_err:g})")
        return EXIT_MISMATCH
    print(f"self-check passed ({backend.name} {backend.version}, {platform.machine()}): {n}/{n} vectors of {source} "
          f"{rule} (bit-exact {exact}/{n}, max |err| {max_err:g})")
    if codec is not None:
        coded = result["entropy"]
        print(f"range coder: {coded['blobs']} blobs decode to their codes, {coded['recorded']} equal to the recorded "
              f"bytes; {coded['bytes_per_sample']:.1f} bytes per sample")
    return EXIT_OK


def bench(manifest: dict, seconds: float, batch: int, threads: int | None, warmup_s: float,
          label: str | None = None) -> dict:
    """Latency benchmark: warm-up, then timed calls for ``seconds``; p50/p99 latency and throughput."""
    meta = manifest["inputs"][0]
    static = meta["shape"][0]
    if static is not None and static != batch:
        raise BundleExit(EXIT_INVALID, f"this model has a fixed batch of {static}; use --batch {static}")
    inputs, _, _ = _expected(manifest, quick=True)
    x = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))
    codec = open_entropy_codec(manifest)
    scale = float(manifest["quantization"]["output_scale"])

    def infer() -> int:  # the head, then (entropic bundles) the range coder: bytes on the wire
        out = backend(x)
        if codec is None:
            return 0
        return len(codec.encode(np.round(np.asarray(out, dtype=np.float64) / scale).astype(np.int64)
                                .reshape(-1, *codec.shape)))

    backend = open_backend(manifest, threads, max_batch=batch)
    try:
        start = time.perf_counter()
        warm = 0
        while warm < 10 or time.perf_counter() - start < warmup_s:
            infer()
            warm += 1
        latencies, coded_bytes = [], []
        start = time.perf_counter()
        while len(latencies) < 20 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            coded_bytes.append(infer())
            latencies.append(time.perf_counter() - t0)
        total_s = time.perf_counter() - start
    finally:
        backend.close()
    lat = np.asarray(latencies)
    coded = ({"entropy_coded": True, "coded_bytes_per_sample": float(np.mean(coded_bytes)) / batch}
             if codec is not None else {})
    return {**coded,
        "label": label, "device": manifest["device"], "runtime": f"{backend.name} {backend.version}",
        "providers": list(getattr(backend, "providers", [])), "host": platform.node(),
        "machine": platform.machine(), "python": platform.python_version(), "batch": batch, "threads": threads,
        "warmup_runs": warm, "runs": len(lat),
        "latency_s": {"p50": float(np.median(lat)), "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean()),
                      "min": float(lat.min())},
        "throughput_per_s": float(batch * len(lat) / total_s),
    }


def energy(manifest: dict) -> int:
    """Energy needs power meters; the aeforge harness measures them when installed."""
    if importlib.util.find_spec("aeforge") is None:
        print("energy needs the aeforge harness: install aeforge on this device and run `aeforge bench` "
              "(it reads the board's power rails); run.py alone measures latency only (--bench)")
        return EXIT_UNAVAILABLE
    try:
        from aeforge.benchmarks.energy import measure_bundle_energy  # optional, aeforge >= harness release
    except ImportError:
        print("this aeforge has no bundle energy harness yet; use `aeforge bench` for energy (run.py --bench "
              "measures latency)")
        return EXIT_UNAVAILABLE
    print(json.dumps(measure_bundle_energy(HERE), indent=2))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 3 (invalid arguments), never 2 (reserved: runtime missing)
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="run.py", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--self-check", action="store_true", help="compare with the recorded Brevitas outputs")
    mode.add_argument("--bench", action="store_true", help="latency benchmark (JSON on stdout)")
    mode.add_argument("--energy", action="store_true", help="energy per inference (needs the aeforge harness)")
    parser.add_argument("--seconds", type=float, default=5.0, help="benchmark duration (default 5)")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="warm-up duration (default 1)")
    parser.add_argument("--batch", type=int, default=1, help="benchmark batch size (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (onnxruntime; default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the benchmark / self-check JSON here")
    parser.add_argument("--quick", action="store_true", help="self-check: only the manifest's few vectors, not "
                        "the recorded check set")
    parser.add_argument("--label", default=None, help="benchmark: a label stored with the numbers (e.g. emulated)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.seconds <= 0 or (args.threads is not None and args.threads < 1):
        parser.error("--batch and --threads must be >= 1 and --seconds > 0")
    try:
        manifest = load_manifest(HERE)
        if args.self_check:
            return self_check(manifest, args.threads, quick=args.quick, report=args.json)
        if args.energy:
            return energy(manifest)
        result = bench(manifest, args.seconds, args.batch, args.threads, args.warmup_seconds, args.label)
        text = json.dumps(result, indent=2)
        print(text)
        if args.json is not None:
            args.json.write_text(text + "\n", encoding="utf-8")
        return EXIT_OK
    except BundleExit as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
