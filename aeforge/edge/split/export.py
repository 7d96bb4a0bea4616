"""Export of a trained split run: ``head.onnx`` (device), ``tail.onnx`` (server), ``full.onnx`` and ``split.json``.

* ``head.onnx``: the edge QDQ export (:func:`aeforge.edge.onnx_export.export_edge_onnx`, ``qdq``) of the
  head: input ``input`` float32 ``(batch, 3, H, W)`` -> output ``output`` float32 code values, each an
  integer multiple of the code scale (``codes = round(output / scale)``, exact);
* ``tail.onnx``: the ``fp32`` export of the tail: dequantized code float32 ``(batch, C, H', W')`` -> logits;
* ``full.onnx``: the whole bottlenecked model (``qdq``), for local-only inference and the check below;
* ``split.json``: the code's type and shape, tensor names, class count and the sha256 of both models;
* ``entropy_cdf.npy`` (``model.bottleneck: entropic``): the integer CDF tables of the range coder, described
  (coder, constriction version, sha256) by split.json's ``entropy`` section.

Before anything is published the export is checked on up to ``check_samples`` test images: ONNX
Runtime's head gives exact integer codes equal to PyTorch's, the codes survive the wire codec, and
ORT head -> codes -> ORT tail equals ORT ``full.onnx`` (<= 1e-6) and PyTorch (<= 1e-5), both relative
to the logits' magnitude. Files are written atomically (staged, then moved; into the run with
:class:`~aeforge.artifact.RunAmendment` when the output is inside it).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.artifact import RunAmendment, write_json_atomic
from aeforge.errors import AeforgeError, ArtifactError

DEFAULT_OPSET = 18  # the tail's global average pooling is ReduceMean with an axes input (opset >= 18)
FULL_TOLERANCE = 1e-6
TORCH_TOLERANCE = 1e-5


def _session(path: Path) -> Any:
    import onnxruntime as ort

    from aeforge.edge.onnx_export import exact_session_options

    return ort.InferenceSession(str(path), exact_session_options(), providers=["CPUExecutionProvider"])


def _run(session: Any, values: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: values})[0]


def _relative_error(values: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(values - reference)) / max(1.0, float(np.max(np.abs(reference)))))


def check_inputs(run_dir: Path, count: int, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """Up to ``count`` test images of the run's data set (random images when the data is unavailable)."""
    from aeforge.edge.split.data import load_split_data
    from aeforge.edge.split.train import load_run_config

    try:
        data = load_split_data(load_run_config(run_dir).data)
        return data.x_test[:count].numpy().astype(np.float32), f"{data.source} test images"
    except AeforgeError:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(count, *shape, generator=generator).numpy(), "random images"


def verify_split(head: Path, tail: Path, full: Path, model: Any, images: np.ndarray) -> dict[str, Any]:
    """ORT head -> integer codes -> (codec) -> ORT tail against ORT full model and PyTorch; raises on mismatch."""
    spec = model.code_spec
    head_out = _run(_session(head), images)
    codes = np.round(head_out / np.float32(spec.lsb))
    off_grid = float(np.max(np.abs(head_out - codes * np.float32(spec.lsb))))
    if off_grid != 0.0 or codes.min() < spec.min_code or codes.max() > spec.max_code:
        raise ArtifactError(f"{head}: head output is not on the code grid (off by {off_grid}, codes span "
                            f"[{codes.min()}, {codes.max()}] for {spec.ap_type()})")
    codes = codes.astype(np.int64)
    with torch.no_grad():
        torch_values = model.head(torch.from_numpy(images)).numpy()
        torch_logits = model(torch.from_numpy(images)).numpy()
    torch_codes = np.round(torch_values / spec.lsb).astype(np.int64)
    code_mismatches = int(np.count_nonzero(torch_codes != codes))
    codec_used = False
    if getattr(model.spec, "bottleneck", "quantized") == "entropic":  # the range coder of the frozen tables
        codec = model.codec()
        received = codec.decode(codec.encode(codes), max_batch=len(codes)).astype(np.int64)
        codec_used = True
    else:
        try:
            from aeforge.edge.split.codec import decode_code, encode_code
        except ImportError:
            received = codes
        else:
            codec_used = True
            received = decode_code(encode_code(codes, spec.bits, spec.lsb, spec.signed)).codes.astype(np.int64)
    dequantized = (received * spec.lsb).astype(np.float32)
    tail_logits = _run(_session(tail), dequantized)
    full_logits = _run(_session(full), images)
    result = {
        "samples": len(images),
        "codes_exact": off_grid == 0.0,
        "code_mismatches_vs_torch": code_mismatches,
        "codec_round_trip": codec_used and bool(np.array_equal(received, codes)),
        "split_vs_full_ort_max_abs": float(np.max(np.abs(tail_logits - full_logits))),
        "split_vs_full_ort_rel": _relative_error(tail_logits, full_logits),
        "split_vs_torch_max_abs": float(np.max(np.abs(tail_logits - torch_logits))),
        "split_vs_torch_rel": _relative_error(tail_logits, torch_logits),
        "argmax_agreement_vs_torch": float(np.mean(tail_logits.argmax(1) == torch_logits.argmax(1))),
    }
    problems = []
    if code_mismatches:
        problems.append(f"{code_mismatches} ORT codes differ from PyTorch's")
    if codec_used and not result["codec_round_trip"]:
        problems.append("codes changed through the wire codec")
    if result["split_vs_full_ort_rel"] > FULL_TOLERANCE:
        error = result["split_vs_full_ort_rel"]
        problems.append(f"head+tail differs from full.onnx by {error:.3g} (> {FULL_TOLERANCE})")
    if result["split_vs_torch_rel"] > TORCH_TOLERANCE:
        problems.append(f"head+tail differs from PyTorch by {result['split_vs_torch_rel']:.3g} (> {TORCH_TOLERANCE})")
    if problems:
        raise ArtifactError(f"split export check failed on {len(images)} images: {'; '.join(problems)}")
    return result


def export_split(
    run_dir: str | Path, out_dir: str | Path | None = None, opset: int = DEFAULT_OPSET, check_samples: int = 64,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export split run ``run_dir`` into ``out_dir`` (default ``RUN/split``); returns split.json plus the check.

    An existing ``out_dir`` with a ``split.json`` is replaced only with ``overwrite``.
    """
    from aeforge.edge.onnx_export import export_edge_onnx
    from aeforge.edge.split.multitask import is_multitask_run
    from aeforge.edge.split.train import load_split_model

    run_dir = Path(run_dir)
    if is_multitask_run(run_dir):  # model.tasks: head.onnx, tail_<task>.onnx per task (multitask_export)
        from aeforge.edge.split.multitask_export import export_multitask

        return export_multitask(run_dir, out_dir, opset=opset, check_samples=min(check_samples, 32),
                                overwrite=overwrite)
    model = load_split_model(run_dir)
    spec, _ = model.spec, model.code_spec  # an uncalibrated code fails here, before any export
    out, inside, staging = staging_dir(run_dir, out_dir, overwrite)
    try:
        head = export_edge_onnx(model.head, spec.input_shape, staging / "head.onnx", fmt="qdq", opset=opset)
        tail = export_edge_onnx(model.tail, model.code_shape, staging / "tail.onnx", fmt="fp32", opset=opset)
        full = export_edge_onnx(model, spec.input_shape, staging / "full.onnx", fmt="qdq", opset=opset)
        images, source = check_inputs(run_dir, check_samples, spec.input_shape)
        check = verify_split(head.path, tail.path, full.path, model, images)
        check["inputs"] = source
        meta = {
            **head_meta(model, head),
            "tail_input_name": tail.input_name,
            "tail_output_name": tail.output_name,
            "num_classes": spec.num_classes,
            "head_sha256": head.sha256,
            "tail_sha256": tail.sha256,
            "full_sha256": full.sha256,
            "backbone": spec.backbone,
            "split_after": spec.split_after,
            "opset": opset,
            "feature_shape": list(spec.feature_shape),
            "head_trt_violations": len(head.trt_violations),
            "bottleneck": spec.bottleneck,
        }
        names = ["head.onnx", "tail.onnx", "full.onnx", "split.json"]
        if spec.bottleneck == "entropic":  # the frozen prior travels as integer CDF tables beside the models
            from aeforge.edge.split.entropy_coder import cdf_bytes

            entropy = model.entropy_spec()
            (staging / entropy.cdf_file).write_bytes(cdf_bytes(entropy.cdf))
            meta["entropy"] = entropy.as_dict()
            names.append(entropy.cdf_file)
        write_json_atomic(staging / "split.json", meta)
        _publish(staging, out, run_dir, inside, check, tuple(names))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**meta, "check": check, "path": str(out)}


def staging_dir(run_dir: Path, out_dir: str | Path | None, overwrite: bool) -> tuple[Path, bool, Path]:
    """``(out, inside, staging)``: the export directory (default ``RUN/split``, refused if it holds files and
    not ``overwrite``), whether it lies inside the run, and a fresh staging directory beside it."""
    out = Path(out_dir) if out_dir is not None else run_dir / "split"
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(f"{out}: already exists; pass overwrite (--force) to replace it")
    inside = out.resolve().is_relative_to(run_dir.resolve())
    parent = run_dir.parent if inside else out.parent
    parent.mkdir(parents=True, exist_ok=True)
    return out, inside, Path(tempfile.mkdtemp(prefix=".split-export-", dir=parent))


def head_meta(model: Any, head: Any) -> dict[str, Any]:
    """split.json's code and head entries (shared by single- and multi-task exports)."""
    spec, code = model.spec, model.code_spec
    return {"code": {"bits": code.bits, "signed": code.signed, "scale": code.lsb, "channels": spec.channels,
                     "shape": list(model.code_shape), "zero_point": 0, "type": code.ap_type()},
            "input": {"name": head.input_name, "shape": list(head.input_shape), "dtype": head.input_dtype},
            "head_output_name": head.output_name}


def _publish(staging: Path, out: Path, run_dir: Path, inside: bool, check: dict[str, Any],
             names: tuple[str, ...] = ("head.onnx", "tail.onnx", "full.onnx", "split.json")) -> None:
    if inside:
        relative = out.resolve().relative_to(run_dir.resolve()).as_posix()
        with RunAmendment(run_dir) as amendment:
            for name in names:
                shutil.copyfile(staging / name, amendment.path(f"{relative}/{name}"))
            amendment.metrics["split_export"] = {"path": relative, **check}
        return
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        temporary = out / f".{name}.tmp"
        shutil.copyfile(staging / name, temporary)
        temporary.replace(out / name)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
