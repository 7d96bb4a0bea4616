"""Self-contained deploy bundles for a Jetson (TensorRT) or a Raspberry Pi (onnxruntime).

``build_bundle(RUN, device, OUT)`` writes::

    OUT/model.onnx      the QDQ ONNX of the run's hardware model (for a train/demo run: the encoder,
                        which is what runs on the device; the decoder stays off-detector)
    OUT/manifest.json   I/O names, shapes, dtypes, quantization scales (every quantizer: its ONNX
                        encoding, scale, zero point, bits), TensorRT check findings, expected outputs of the
                        Brevitas model on a few vectors, tolerance, ONNX sha256, aeforge version
    OUT/run.py          aeforge/edge/bundle_runner.py: numpy + onnxruntime (rpi) or tensorrt + CUDA
                        bindings (jetson); never aeforge. --self-check / --bench / --energy
    OUT/README.txt      the exact commands

Both devices get the QDQ export: on the Pi onnxruntime runs it without graph optimizations and
matches the Brevitas model bit for bit (checked here before the bundle is written; tolerance
1e-6); on the Jetson TensorRT builds an INT8 engine from it on first use (its own integer
kernels may round differently: tolerance one output LSB, not verified on a device here).

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
RUN_SCRIPT = "run.py"
README = "README.txt"
RPI_TOLERANCE_ABS = 1e-6
EXIT_CODES = {
    "0": "ok (self-check within tolerance / benchmark done)",
    "1": "self-check mismatch (outputs differ from the Brevitas model beyond the tolerance)",
    "2": "runtime not available (onnxruntime, tensorrt, CUDA Python bindings, energy harness)",
    "3": "invalid bundle or arguments (manifest, model sha256, unsupported batch)",
}


def _export_qdq(module: Any, input_shape: tuple[int, ...], path: Path) -> dict[str, Any]:
    """QDQ ONNX with a dynamic batch via :func:`aeforge.edge.onnx_export.export_edge_onnx`."""
    try:
        from aeforge.edge.onnx_export import export_edge_onnx
    except ImportError as exc:
        raise ToolUnavailableError(f"QDQ ONNX export unavailable ({exc}); pip install 'aeforge[train]' onnx") from None
    return export_edge_onnx(module, input_shape, path, fmt="qdq", opset=17, batch=None).as_dict()


def _ort_outputs(onnx_path: Path, inputs: np.ndarray, input_name: str) -> tuple[np.ndarray, str]:
    """Outputs of onnxruntime (exact session options) and the model's input dtype."""
    from aeforge.edge.runners.ort_runner import OrtRunner

    with OrtRunner(onnx_path, threads=1) as runner:
        meta = runner.input_metadata()
        if input_name not in meta:
            raise ArtifactError(f"{onnx_path}: no input named {input_name!r} (inputs: {', '.join(meta)})")
        dtype = meta[input_name].dtype
        outputs = runner.infer({input_name: inputs.astype(dtype)})
        return next(iter(outputs.values())), str(dtype)


def _readme(device: str, manifest: dict[str, Any]) -> str:
    install = ("pip install numpy onnxruntime" if device == "rpi" else
               "TensorRT from JetPack (python3-libnvinfer) + pip install numpy cuda-python")
    first = ""
    if device == "jetson":
        first = "\nThe first run builds a TensorRT engine into engines/ (a minute or so).\n"
        violations = manifest["tensorrt"]["violations"]
        if violations:
            first += (f"TensorRT check: {len(violations)} finding(s) (manifest.json tensorrt.violations), e.g. "
                      f"{violations[0]['node']}: {violations[0]['rule']}; those layers run in float, not INT8.\n")
    return f"""aeforge deploy bundle for {device} ({manifest['runtime']})
model: {manifest['model']['file']} (sha256 {manifest['model']['sha256']})
source: {manifest['source']['run']} ({manifest['source']['module']})

Requirements (no aeforge needed): Python >= 3.8, {install}
{first}
Check the outputs against the Brevitas model ({manifest['expected']['n']} recorded vectors):
    python3 run.py --self-check

Latency benchmark (warm-up, then p50/p99 latency and throughput as JSON):
    python3 run.py --bench --seconds 10 --batch 1
    python3 run.py --bench --seconds 10 --batch 64 --json bench_b64.json

Energy per inference needs the aeforge harness (power meters):
    python3 run.py --energy        (points to `aeforge bench` when aeforge is not installed)

Exit codes: {'; '.join(f'{k} {v}' for k, v in EXIT_CODES.items())}
"""


def build_bundle(
    run_dir: str | os.PathLike[str], device: str, out_dir: str | os.PathLike[str], n_expected: int = 8,
    force: bool = False, seed: int = 0,
) -> Path:
    """Write the deploy bundle of a trained / imported run for ``device`` ("jetson" or "rpi"); returns ``out_dir``."""
    from aeforge import __version__
    from aeforge.artifact import CARD_NAME, load_run, sha256_file
    from aeforge.stages import hardware_model, verification_inputs
    from aeforge.verification import predict_brevitas

    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if n_expected < 1:
        raise ConfigError(f"n_expected must be at least 1, got {n_expected}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists():
        if not force:
            raise ArtifactError(f"{out_dir}: already exists; pass --force to replace it")
        if not (out_dir / MANIFEST).is_file():
            raise ArtifactError(f"{out_dir}: exists and is not an aeforge bundle; refusing to replace it")
    card = load_run(run_dir)
    model = hardware_model(run_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        export = _export_qdq(model.module, model.input_shape, staging / MODEL_FILE)
        input_name, output_name = export["input_name"], export["output_name"]
        inputs = verification_inputs(model, n_expected, seed)
        expected = predict_brevitas(model.module, inputs, model.input_type)
        raw, input_dtype = _ort_outputs(staging / MODEL_FILE, inputs, input_name)
        got = np.asarray(raw, dtype=np.float64).reshape(expected.shape)
        ort_err = float(np.max(np.abs(got - expected)))
        if not ort_err <= RPI_TOLERANCE_ABS:
            raise ArtifactError(f"{run_dir}: the QDQ ONNX run by onnxruntime differs from the Brevitas model by "
                                f"{ort_err:g} (> {RPI_TOLERANCE_ABS:g}); refusing a bundle that would fail its check")
        lsb = model.output_type.lsb
        tolerance = ({"abs": RPI_TOLERANCE_ABS, "lsb": RPI_TOLERANCE_ABS / lsb,
                      "why": "onnxruntime CPU, no graph optimizations: float32 QDQ arithmetic, bit-exact"}
                     if device == "rpi" else
                     {"abs": lsb, "lsb": 1.0, "why": "TensorRT INT8 kernels may round the requantization "
                      "differently; one output LSB (not verified on a Jetson)"})
        manifest: dict[str, Any] = {
            "schema": 1,
            "kind": "aeforge-bundle",
            "device": device,
            "runtime": DEVICES[device],
            "model": {"file": MODEL_FILE, "sha256": sha256_file(staging / MODEL_FILE), "format": "qdq", "opset": 17},
            "inputs": [{"name": input_name, "dtype": input_dtype, "shape": [None, *model.input_shape],
                        "layout": "NCHW" if len(model.input_shape) == 3 else "flat"}],
            "outputs": [{"name": output_name, "dtype": str(raw.dtype), "shape": [None, *expected.shape[1:]]}],
            "quantization": {
                "input_type": model.input_type.ap_type(), "input_scale": model.input_type.lsb,
                "input_min": model.input_type.min_value, "input_max": model.input_type.max_value,
                "output_type": model.output_type.ap_type(), "output_scale": lsb,
                "quantizers": export["quantization"],
            },
            "expected": {"n": int(n_expected), "seed": seed, "inputs": inputs.tolist(), "outputs": expected.tolist()},
            "tolerance": tolerance,
            "build_check": {"runtime": "onnxruntime CPU (ORT_DISABLE_ALL)", "max_abs_err": ort_err,
                            "bit_exact": int(np.all(got == expected, axis=1).sum()), "n": int(n_expected)},
            "source": {"run": str(run_dir.resolve()), "kind": card.kind, "family": model.family,
                       "card_sha256": sha256_file(run_dir / CARD_NAME),
                       "module": "encoder" if card.kind in ("train", "demo") else "imported model"},
            "export": {k: v for k, v in export.items() if k not in ("path", "quantization", "trt_violations")},
            "aeforge_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "exit_codes": EXIT_CODES,
        }
        if device == "jetson":
            manifest["tensorrt"] = {"precision": "int8", "max_batch": 64, "violations": export["trt_violations"]}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(Path(__file__).with_name("bundle_runner.py"), staging / RUN_SCRIPT)
        (staging / RUN_SCRIPT).chmod(0o755)
        (staging / README).write_text(_readme(device, manifest), encoding="utf-8")
        if out_dir.exists():  # force: move the old bundle aside, then swap
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            os.replace(out_dir, old / "bundle")
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
