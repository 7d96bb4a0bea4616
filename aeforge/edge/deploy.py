"""Self-contained deploy bundles for a Jetson (TensorRT) or a Raspberry Pi (onnxruntime).

``build_bundle(RUN, device, OUT)`` writes::

    OUT/model.onnx      the QDQ ONNX of the run's hardware model (for a train/demo run: the encoder,
                        which is what runs on the device; the decoder stays off-detector). A split run
                        gives OUT/head.onnx instead: the head (input quantizer, backbone stages, encoder
                        to the integer code), the same graph as ``aeforge export split``'s head.onnx
    OUT/manifest.json   I/O names, shapes, dtypes, quantization scales (every quantizer: its ONNX
                        encoding, scale, zero point, bits), TensorRT check findings, expected outputs of the
                        Brevitas model on a few vectors, tolerance, ONNX sha256, aeforge version
    OUT/check.npz       with ``n_check``: a larger recorded set (integer codes of the inputs and of the
                        Brevitas outputs, and their scales) that ``run.py --self-check`` uses when present
    OUT/requirements.txt  rpi: numpy and onnxruntime pinned to the versions verified on aarch64
                        (:data:`RPI_REQUIREMENTS`, emulated aarch64 Debian bookworm, Python 3.11)
    OUT/run.py          aeforge/edge/bundle_runner.py: numpy + onnxruntime (rpi) or tensorrt + CUDA
                        bindings (jetson); never aeforge. --self-check / --bench / --energy
    OUT/README.txt      the exact commands

Both devices get the QDQ export: on the Pi onnxruntime runs it without graph optimizations and
matches the Brevitas model bit for bit (checked here on every recorded vector before the bundle is
written; the rpi tolerance is zero: fixed-point outputs must be equal); on the Jetson TensorRT builds
an INT8 engine from it on first use (its own integer kernels may round differently: tolerance one
output LSB, not verified on a device here).

The bundle is built in a temporary folder beside ``OUT`` and renamed into place; an existing
``OUT`` is refused unless ``force`` (and even then only when it is an aeforge bundle).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError

DEVICES = {"rpi": "onnxruntime", "jetson": "tensorrt"}
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
HEAD_FILE = "head.onnx"
CHECK_FILE = "check.npz"
REQUIREMENTS_FILE = "requirements.txt"
RUN_SCRIPT = "run.py"
README = "README.txt"
RPI_TOLERANCE_ABS = 0.0
RPI_REQUIREMENTS = (
    "numpy==2.4.6",
    "onnxruntime==1.32.0",
    "flatbuffers==25.12.19",
    "packaging==26.4",
    "protobuf==7.36.2",
)
"""What an rpi bundle's requirements.txt pins: numpy and onnxruntime with onnxruntime's dependencies, the
versions pip resolved and ``.ci/arm64_bundles.py`` verified bit-exact on aarch64 (Debian 12 bookworm
under qemu-user, Python 3.11.2, the userland of Raspberry Pi OS 64-bit Bookworm)."""
CONSTRICTION_PIN = "constriction==0.5.0"  # the coded format is tied to constriction's major.minor
RPI_VERIFIED_ON = "aarch64 Debian 12 (bookworm) under qemu-user emulation, Python 3.11.2"
SPLIT_OPSET = 18  # the opset of `aeforge export split`, so that head.onnx is the same graph
EXIT_CODES = {
    "0": "ok (self-check within tolerance / benchmark done)",
    "1": "self-check mismatch (outputs differ from the Brevitas model beyond the tolerance)",
    "2": "runtime not available (onnxruntime, tensorrt, CUDA Python bindings, energy harness)",
    "3": "invalid bundle or arguments (manifest, model sha256, unsupported batch)",
}


def _export_qdq(module: Any, input_shape: tuple[int, ...], path: Path, opset: int = 17) -> dict[str, Any]:
    """QDQ ONNX with a dynamic batch via :func:`aeforge.edge.onnx_export.export_edge_onnx`."""
    try:
        from aeforge.edge.onnx_export import export_edge_onnx
    except ImportError as exc:
        raise ToolUnavailableError(f"QDQ ONNX export unavailable ({exc}); pip install 'aeforge[train]' onnx") from None
    return export_edge_onnx(module, input_shape, path, fmt="qdq", opset=opset, batch=None).as_dict()


def _ort_outputs(onnx_path: Path, inputs: np.ndarray, input_name: str, chunk: int = 1024) -> tuple[np.ndarray, str]:
    """Outputs of onnxruntime (exact session options, ``chunk`` vectors a call) and the model's input dtype."""
    from aeforge.edge.runners.ort_runner import OrtRunner

    with OrtRunner(onnx_path, threads=1) as runner:
        meta = runner.input_metadata()
        if input_name not in meta:
            raise ArtifactError(f"{onnx_path}: no input named {input_name!r} (inputs: {', '.join(meta)})")
        dtype = meta[input_name].dtype
        outputs = [next(iter(runner.infer({input_name: inputs[i : i + chunk].astype(dtype)}).values()))
                   for i in range(0, len(inputs), chunk)]
        return np.concatenate(outputs), str(dtype)


def _split_head_family() -> Any:
    """The model family of a split run's head (not registered: only deploy builds it)."""
    from aeforge.quantize.models.boundary import ModelFamily

    class SplitHeadFamily(ModelFamily):
        name = "split-head"

        def make_inputs(self, model: Any, n: int, seed: int) -> np.ndarray:
            """The run's test images first (random images when its data set is unavailable), then seeded
            standard-normal images."""
            from aeforge.edge.split.export import check_inputs

            images, _ = check_inputs(model.run_dir, n, model.input_shape)
            images = np.asarray(images, dtype=np.float64).reshape(-1, *model.input_shape)[:n]
            extra = np.random.default_rng(seed).standard_normal((n - len(images), *model.input_shape))
            return np.concatenate([images, extra])

    return SplitHeadFamily()


def _bundle_model(run_dir: Path, kind: str) -> tuple[Any, dict[str, Any]]:
    """The model that runs on the device (a :class:`aeforge.stages.HardwareModel`) and its bundle facts."""
    from aeforge.stages import HardwareModel, hardware_model

    if kind != "split":
        return hardware_model(run_dir), {"file": MODEL_FILE, "opset": 17,
                                         "module": "encoder" if kind in ("train", "demo") else "imported model"}
    from aeforge.edge.split.train import load_split_model

    split = load_split_model(run_dir)
    head = split.head.eval()
    model = HardwareModel(head, tuple(split.spec.input_shape), head.input_quant.spec, split.code_spec,
                          _split_head_family(), run_dir)
    code = split.code_spec
    facts = {"file": HEAD_FILE, "opset": SPLIT_OPSET, "module": "split head",
             "split": {"role": "head (the tail runs on the server: aeforge serve tail)",
                       "backbone": split.spec.backbone, "split_after": split.spec.split_after,
                       "code": {"type": code.ap_type(), "bits": code.bits, "signed": code.signed, "scale": code.lsb,
                                "shape": list(split.code_shape)},
                       "codes": "round(output / code.scale) are the integer codes sent to the tail"}}
    if hasattr(split, "entropy_spec"):  # the Entropic Student: the device also range-codes the codes
        facts["entropy"] = (split.entropy_spec(), tuple(split.code_shape))
        facts["split"]["codes"] += "; run.py range-codes them (entropy_coder.py, entropy_cdf.npy)"
    return model, facts


ENTROPY_MODULE = "entropy_coder.py"


def _write_entropy(staging: Path, entropy: tuple[Any, tuple[int, ...]], expected: np.ndarray, model: Any,
                   n_recorded: int) -> dict[str, Any]:
    """Put the range coder and its CDF tables into the bundle; record the blobs of the first vectors.

    ``run.py --self-check`` codes every expected output one sample a blob, checks that each decodes back
    to its codes and that the recorded ones are byte for byte the blobs coded here.
    """
    from aeforge.artifact import sha256_file
    from aeforge.edge.split import entropy_coder

    spec, code_shape = entropy
    (staging / spec.cdf_file).write_bytes(entropy_coder.cdf_bytes(spec.cdf))
    shutil.copyfile(entropy_coder.__file__, staging / ENTROPY_MODULE)
    codec = entropy_coder.EntropyCodec(spec, code_shape)
    codes = _codes(expected[:n_recorded], model.output_type.lsb, "expected codes").reshape(-1, *code_shape)
    blobs = [codec.encode(codes[i : i + 1]) for i in range(len(codes))]
    return {**spec.as_dict(), "module": ENTROPY_MODULE, "module_sha256": sha256_file(staging / ENTROPY_MODULE),
            "code_shape": list(code_shape), "recorded_blobs_hex": [blob.hex() for blob in blobs],
            "blob": "one sample a blob: 16-byte header (magic AECE) + range-coder words; see entropy_coder.py"}


def _codes(values: np.ndarray, scale: float, what: str) -> np.ndarray:
    """``values / scale`` as the smallest integer dtype; refuses values off the grid."""
    scaled = np.asarray(values, dtype=np.float64) / scale
    codes = np.round(scaled)
    if not np.array_equal(codes, scaled):
        raise ArtifactError(f"{what} are not integer multiples of their scale {scale:g}; cannot record them as codes")
    low, high = (float(codes.min()), float(codes.max())) if codes.size else (0.0, 0.0)
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return codes.astype(dtype)
    raise ArtifactError(f"{what}: codes out of the int64 range")


def _write_check_set(path: Path, inputs: np.ndarray, outputs: np.ndarray, model: Any) -> dict[str, Any]:
    """``check.npz``: integer codes of inputs and expected outputs with their scales; returns its manifest entry."""
    from aeforge.artifact import sha256_file

    in_scale, out_scale = model.input_type.lsb, model.output_type.lsb
    with open(path, "wb") as handle:
        np.savez_compressed(handle, input_codes=_codes(inputs, in_scale, "recorded inputs"),
                            input_scale=np.float64(in_scale),
                            output_codes=_codes(outputs, out_scale, "expected outputs"),
                            output_scale=np.float64(out_scale))
    return {"file": path.name, "n": len(inputs), "sha256": sha256_file(path),
            "arrays": {"input_codes": f"inputs = input_codes * input_scale ({model.input_type.ap_type()})",
                       "output_codes": f"expected = output_codes * output_scale ({model.output_type.ap_type()})"},
            "note": "the manifest's expected vectors are its first ones; run.py --self-check uses this set"}


def _requirements(aeforge_version: str, extra_pins: tuple[str, ...] = ()) -> str:
    lines = "\n".join(RPI_REQUIREMENTS)
    extra = "".join(f"{pin}  # the range coder of the entropic code (x86-64 only verified)\n" for pin in extra_pins)
    return (f"# run.py's dependencies (aeforge {aeforge_version} deploy bundle for a Raspberry Pi, 64-bit OS)\n"
            f"# pinned to the versions verified bit-exact on {RPI_VERIFIED_ON};\n"
            "# install into a venv: python3 -m venv venv && venv/bin/pip install -r requirements.txt\n"
            f"{lines}\n{extra}")


def _readme(device: str, manifest: dict[str, Any]) -> str:
    install = ("a 64-bit OS (aarch64; Raspberry Pi OS Bookworm) with Python 3.11:\n"
               "    python3 -m venv venv && venv/bin/pip install -r requirements.txt\n"
               f"(requirements.txt pins the versions verified bit-exact on {RPI_VERIFIED_ON})"
               if device == "rpi" else
               "Python >= 3.8, TensorRT from JetPack (python3-libnvinfer) + pip install numpy cuda-python")
    python = "venv/bin/python" if device == "rpi" else "python3"
    first = ""
    if device == "jetson":
        first = "\nThe first run builds a TensorRT engine into engines/ (a minute or so).\n"
        violations = manifest["tensorrt"]["violations"]
        if violations:
            first += (f"TensorRT check: {len(violations)} finding(s) (manifest.json tensorrt.violations), e.g. "
                      f"{violations[0]['node']}: {violations[0]['rule']}; those layers run in float, not INT8.\n")
    check = manifest.get("check_set")
    n_check = check["n"] if check else manifest["expected"]["n"]
    return f"""aeforge deploy bundle for {device} ({manifest['runtime']})
model: {manifest['model']['file']} (sha256 {manifest['model']['sha256']})
source: {manifest['source']['run']} ({manifest['source']['module']})

Requirements (no aeforge needed): {install}
{first}
Check the outputs against the Brevitas model ({n_check} recorded vectors; exit 1 on any mismatch):
    {python} run.py --self-check

Latency benchmark (warm-up, then p50/p99 latency and throughput as JSON):
    {python} run.py --bench --seconds 10 --batch 1
    {python} run.py --bench --seconds 10 --batch 64 --json bench_b64.json

Energy per inference needs the aeforge harness (power meters):
    {python} run.py --energy        (points to `aeforge bench` when aeforge is not installed)

Exit codes: {'; '.join(f'{k} {v}' for k, v in EXIT_CODES.items())}
"""


def build_bundle(
    run_dir: str | os.PathLike[str], device: str, out_dir: str | os.PathLike[str], n_expected: int = 8,
    force: bool = False, seed: int = 0, n_check: int = 0,
) -> Path:
    """Write the deploy bundle of a trained / imported / split run for ``device`` ("jetson" or "rpi").

    ``n_expected`` vectors go into the manifest; ``n_check`` > 0 also records that many (the manifest's
    among them) in ``check.npz`` for ``run.py --self-check``. Returns ``out_dir``.
    """
    from aeforge import __version__
    from aeforge.artifact import CARD_NAME, load_run, sha256_file
    from aeforge.verification import predict_brevitas

    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if n_expected < 1:
        raise ConfigError(f"n_expected must be at least 1, got {n_expected}")
    if n_check < 0:
        raise ConfigError(f"n_check must be 0 (no check set) or positive, got {n_check}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists():
        if not force:
            raise ArtifactError(f"{out_dir}: already exists; pass --force to replace it")
        if not (out_dir / MANIFEST).is_file():
            raise ArtifactError(f"{out_dir}: exists and is not an aeforge bundle; refusing to replace it")
    card = load_run(run_dir)
    model, facts = _bundle_model(run_dir, card.kind)
    model_file = facts["file"]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        export = _export_qdq(model.module, model.input_shape, staging / model_file, opset=facts["opset"])
        input_name, output_name = export["input_name"], export["output_name"]
        n_total = max(n_expected, n_check)
        inputs = model.verification_inputs(n_total, seed)
        expected = predict_brevitas(model.module, inputs, model.input_type)
        raw, input_dtype = _ort_outputs(staging / model_file, inputs, input_name)
        got = np.asarray(raw, dtype=np.float64).reshape(expected.shape)
        ort_err = float(np.max(np.abs(got - expected)))
        if not ort_err <= RPI_TOLERANCE_ABS:
            bad = int(np.any(got != expected, axis=tuple(range(1, got.ndim))).sum())
            raise ArtifactError(f"{run_dir}: the QDQ ONNX run by onnxruntime differs from the Brevitas model on "
                                f"{bad}/{n_total} vectors (max {ort_err:g}); refusing a bundle that would fail "
                                "its check")
        lsb = model.output_type.lsb
        tolerance = ({"abs": RPI_TOLERANCE_ABS, "lsb": 0.0, "exact": True,
                      "why": "fixed-point outputs; onnxruntime CPU without graph optimizations computes the QDQ "
                             "arithmetic exactly in float32: any difference is an export bug, not noise"}
                     if device == "rpi" else
                     {"abs": lsb, "lsb": 1.0, "exact": False, "why": "TensorRT INT8 kernels may round the "
                      "requantization differently; one output LSB (not verified on a Jetson)"})
        manifest: dict[str, Any] = {
            "schema": 1,
            "kind": "aeforge-bundle",
            "device": device,
            "runtime": DEVICES[device],
            "model": {"file": model_file, "sha256": sha256_file(staging / model_file), "format": "qdq",
                      "opset": facts["opset"]},
            "inputs": [{"name": input_name, "dtype": input_dtype, "shape": [None, *model.input_shape],
                        "layout": "NCHW" if len(model.input_shape) == 3 else "flat"}],
            "outputs": [{"name": output_name, "dtype": str(raw.dtype), "shape": [None, *expected.shape[1:]]}],
            "quantization": {
                "input_type": model.input_type.ap_type(), "input_scale": model.input_type.lsb,
                "input_min": model.input_type.min_value, "input_max": model.input_type.max_value,
                "output_type": model.output_type.ap_type(), "output_scale": lsb,
                "quantizers": export["quantization"],
            },
            "expected": {"n": int(n_expected), "seed": seed, "inputs": inputs[:n_expected].tolist(),
                         "outputs": expected[:n_expected].tolist()},
            "tolerance": tolerance,
            "build_check": {"runtime": "onnxruntime CPU (ORT_DISABLE_ALL)", "max_abs_err": ort_err,
                            "bit_exact": int(np.all(got == expected, axis=tuple(range(1, got.ndim))).sum()),
                            "n": int(n_total)},
            "source": {"run": str(run_dir.resolve()), "kind": card.kind, "family": model.family,
                       "card_sha256": sha256_file(run_dir / CARD_NAME), "module": facts["module"]},
            "export": {k: v for k, v in export.items() if k not in ("path", "quantization", "trt_violations")},
            "aeforge_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "exit_codes": EXIT_CODES,
        }
        if "split" in facts:
            manifest["split"] = facts["split"]
            exported = run_dir / "split" / "split.json"
            if exported.is_file():
                recorded = json.loads(exported.read_text(encoding="utf-8")).get("head_sha256")
                manifest["split"]["same_as_export_split_head"] = recorded == manifest["model"]["sha256"]
        if n_check:
            manifest["check_set"] = _write_check_set(staging / CHECK_FILE, inputs[:n_check], expected[:n_check], model)
        extra_pins: tuple[str, ...] = ()
        if "entropy" in facts:
            manifest["entropy"] = _write_entropy(staging, facts["entropy"], expected, model, n_expected)
            extra_pins = (CONSTRICTION_PIN,)
        if device == "rpi":
            (staging / REQUIREMENTS_FILE).write_text(_requirements(__version__, extra_pins), encoding="utf-8")
            manifest["requirements"] = {"file": REQUIREMENTS_FILE, "pins": [*RPI_REQUIREMENTS, *extra_pins],
                                        "verified_on": RPI_VERIFIED_ON}
        if device == "jetson":
            manifest["tensorrt"] = {"precision": "int8", "max_batch": 64, "violations": export["trt_violations"]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(Path(__file__).with_name("bundle_runner.py"), staging / RUN_SCRIPT)
        (staging / RUN_SCRIPT).chmod(0o755)
        (staging / README).write_text(_readme(device, manifest), encoding="utf-8")
        if out_dir.exists():  # force: move the old bundle aside, swap, and put it back if the swap fails
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            os.replace(out_dir, old / "bundle")
            try:
                os.replace(staging, out_dir)
            except BaseException:
                os.replace(old / "bundle", out_dir)
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
