"""C-simulation of a compiled hls4ml project, run in a subprocess.

hls4ml compiles the project's C++ into a shared library (``firmware/<name>-<stamp>.so``) whose
bridge functions ``<name>_float`` / ``<name>_double`` run one sample. That library reads its
weights from the ABSOLUTE path of ``firmware/weights`` where it was compiled and calls
``exit(1)`` -- killing the calling interpreter -- when they are missing; a copied project even
silently reads the original's weights. So:

* :func:`check_project_location` refuses, with :class:`~aeforge.errors.ArtifactError`, a project
  that is not where it was compiled (or whose library changed since), before anything is loaded;
* :func:`run_csim` loads the library only in a child process
  (``python -m aeforge.hls.csim PROJECT_DIR in.npy out.npy``), so even a C-level ``exit`` cannot
  take the caller down.

Inputs must already lie on the input type's grid (see :meth:`FixedPoint.quantize`): the bridge
converts each value to the input type, and values off the grid would be rounded there. They are
given per sample in hls4ml's order, i.e. NHWC flattened (``(N, 8, 8, 1)`` or ``(N, 64)``).

This module imports only numpy and aeforge's core, so the child starts quickly.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import confined_path, sha256_file, write_json_atomic
from aeforge.errors import AeforgeError, ArtifactError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.proc import DEFAULT_TOOL_TIMEOUT_S, run_tool

MANIFEST_NAME = "aeforge_hls.json"
MANIFEST_SCHEMA = 1


@dataclass(frozen=True)
class CsimResult:
    """Outputs of one C-simulation run and the time the library spent on them."""

    outputs: np.ndarray
    seconds: float

    @property
    def n(self) -> int:
        return int(self.outputs.shape[0])

    @property
    def events_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


# ------------------------------------------------------------------------------------ manifest
def load_manifest(project_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``aeforge_hls.json``, written last by the builder (so its absence means incomplete)."""
    path = Path(project_dir)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise ArtifactError(f"{path}: HLS project directory not found")
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{path}: not a complete aeforge HLS project ({MANIFEST_NAME} missing; the build did not finish "
            "or the project was not made by aeforge)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{manifest_path}: unreadable: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise ArtifactError(f"{manifest_path}: unknown manifest format")
    return manifest


def write_manifest(project_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    write_json_atomic(Path(project_dir) / MANIFEST_NAME, manifest)


def check_project_location(project_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Refuse a project moved or copied since it was compiled, or whose library changed; return the manifest.

    The compiled C-simulation library reads its weights from ``<compiled at>/firmware/weights``
    by absolute path: from anywhere else it either exits the process or reads another copy's
    weights. :func:`aeforge.hls.hls4ml_backend.recompile_project` rebuilds it in place.
    """
    path = Path(project_dir)
    manifest = load_manifest(path)
    here = str(path.resolve())
    built = manifest["compiled_at"]
    if here != built:
        raise ArtifactError(
            f"{path}: this hls4ml project was compiled at {built} and has since been moved or copied; its "
            f"C-simulation library reads the weights from {built}/firmware/weights by absolute path (it would "
            "exit the process, or silently use the other copy's weights). Recompile it in place with "
            f"aeforge.hls.hls4ml_backend.recompile_project({str(path)!r}) or export it again."
        )
    library = confined_path(path, str(manifest["library"]), f"library in {MANIFEST_NAME}")
    if not library.is_file():
        raise ArtifactError(f"{path}: compiled library {manifest['library']} is missing; recompile the project")
    if sha256_file(library) != manifest["library_sha256"]:
        raise ArtifactError(f"{path}: {manifest['library']} changed since aeforge built it; recompile the project")
    weights = path / "firmware" / "weights"
    if not weights.is_dir():
        raise ArtifactError(f"{path}: firmware/weights is missing (the C-simulation would exit)")
    return manifest


# ------------------------------------------------------------------------------------ inputs
def _prepare_inputs(manifest: dict[str, Any], inputs: np.ndarray) -> np.ndarray:
    array = np.asarray(inputs, dtype=np.float64)
    in_size = int(np.prod(manifest["input_shape"]))
    if array.ndim == 0 or array.size == 0 or array.size % in_size or array.shape[0] * in_size != array.size:
        raise ArtifactError(
            f"C-sim inputs of shape {np.shape(inputs)} do not match the project input "
            f"{tuple(manifest['input_shape'])} (NHWC, one row per sample)"
        )
    array = np.ascontiguousarray(array.reshape(array.shape[0], in_size))
    input_type = FixedPoint.from_config(manifest["input_type"])
    if not np.all(np.isfinite(array)):
        raise QuantizationError("C-sim inputs contain NaN or infinite values")
    off_grid = ~input_type.is_representable(array)
    if np.any(off_grid):
        row = int(np.argwhere(off_grid)[0][0])
        raise QuantizationError(
            f"C-sim input row {row} is not on the {input_type.ap_type()} grid; quantize inputs with "
            "input_type.quantize() first (hls4ml would round them a second time)"
        )
    return array


# ------------------------------------------------------------------------------------ parent side
def run_csim(
    project_dir: str | os.PathLike[str], inputs: np.ndarray, timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
) -> CsimResult:
    """Run the compiled C-simulation on ``inputs`` (NHWC, on the input grid) in a child process,
    killed (with its process group) after ``timeout_s``."""
    path = Path(project_dir)
    manifest = check_project_location(path)
    array = _prepare_inputs(manifest, inputs)
    with tempfile.TemporaryDirectory(prefix="aeforge-csim-") as scratch:
        in_path, out_path = Path(scratch) / "in.npy", Path(scratch) / "out.npy"
        np.save(in_path, array)
        command = [sys.executable, "-m", "aeforge.hls.csim", str(path), str(in_path), str(out_path)]
        try:
            done = run_tool(command, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"{path}: C-simulation took longer than {timeout_s:g} s (killed)") from None
        if done.returncode != 0 or not out_path.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise ArtifactError(
                f"{path}: C-simulation failed (exit status {done.returncode}): " + " | ".join(detail)
            )
        outputs = np.load(out_path)
        try:
            seconds = float(json.loads(out_path.with_suffix(".json").read_text())["seconds"])
        except (OSError, KeyError, TypeError, ValueError):
            seconds = float("nan")
    return CsimResult(outputs=outputs, seconds=seconds)


def csim_predict(project_dir: str | os.PathLike[str], inputs: np.ndarray) -> np.ndarray:
    """Outputs ``(N, *output_shape)`` of the C-simulation for NHWC inputs on the input grid."""
    return run_csim(project_dir, inputs).outputs


# ------------------------------------------------------------------------------------ child side
def _simulate(project_dir: Path, in_path: Path, out_path: Path) -> float:
    manifest = check_project_location(project_dir)
    array = _prepare_inputs(manifest, np.load(in_path))
    library = ctypes.cdll.LoadLibrary(str(confined_path(project_dir, str(manifest["library"]), "library")))
    function = getattr(library, f"{manifest['project_name']}_double")
    pointer = np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")
    function.restype = None
    function.argtypes = [pointer, pointer]
    out_size = int(np.prod(manifest["output_shape"]))
    outputs = np.zeros((array.shape[0], out_size), dtype=np.float64)
    start = time.perf_counter()
    for row in range(array.shape[0]):
        function(array[row], outputs[row])
    seconds = time.perf_counter() - start
    np.save(out_path, outputs.reshape(array.shape[0], *manifest["output_shape"]))
    out_path.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    return seconds


def main(argv: list[str] | None = None) -> int:
    """``python -m aeforge.hls.csim PROJECT_DIR IN.npy OUT.npy``; the loop time goes to ``OUT.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m aeforge.hls.csim PROJECT_DIR IN.npy OUT.npy", file=sys.stderr)
        return 2
    try:
        _simulate(Path(args[0]), Path(args[1]), Path(args[2]))
    except AeforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
