"""``aeforge hls``: the hls4ml project of a run, compiled for C-simulation in ``RUN/hls``."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeforge.artifact import CARD_NAME, sha256_file, write_json_atomic
from aeforge.errors import ArtifactError, ToolUnavailableError
from aeforge.stages.export import export_qonnx_stage, load_qonnx
from aeforge.stages.paths import HLS_DIR, HLS_PROJECT, QONNX_DIR, QONNX_FILE


@dataclass(frozen=True)
class HlsOptions:
    backend: str = "Vitis"
    io_type: str = "io_parallel"
    reuse_factor: int = 1
    strategy: str = "Latency"
    part: str | None = None
    clock_period_ns: float = 5.0


def hls_stage(
    run_dir: str | Path, options: HlsOptions, force: bool = False, build: bool = False,
    cosim: bool = False, vsynth: bool = False,
) -> dict[str, Any]:
    """``aeforge hls``: export (if needed), write and compile the hls4ml project in ``RUN/hls``.

    The project is built at its final place (its C-simulation library records absolute paths)
    and ``RUN/hls/card.json`` is written last; a failure leaves no ``RUN/hls``. With ``build``
    the vendor tool runs C synthesis (plus co-simulation / Vivado logic synthesis with ``cosim`` /
    ``vsynth``) and its report goes into the card.
    """
    from aeforge.hls.hls4ml_backend import build_hls_project

    run_dir = Path(run_dir)
    hls_dir = run_dir / HLS_DIR
    if hls_dir.exists():
        if not force:
            raise ArtifactError(f"{hls_dir}: HLS project already exists; pass --force to replace it")
        if not (hls_dir / CARD_NAME).is_file():
            raise ArtifactError(f"{hls_dir}: exists and is not an aeforge HLS artifact; refusing to replace it")
        shutil.rmtree(hls_dir)
    if not (run_dir / QONNX_DIR / CARD_NAME).is_file():
        export_qonnx_stage(run_dir)
    qonnx_model = load_qonnx(run_dir)
    vendor = None
    if (cosim or vsynth) and not build:
        raise ArtifactError("--cosim and --vsynth need --build")
    if build:  # fail before minutes of work when the vendor tool is missing
        from aeforge.hls.vendor import get_backend

        vendor = get_backend(options.backend)
        if not vendor.is_available():
            raise ToolUnavailableError(f"--build: {vendor.why_unavailable()}")
    try:
        project = build_hls_project(
            qonnx_model, hls_dir / HLS_PROJECT, backend=options.backend, io_type=options.io_type,
            reuse_factor=options.reuse_factor, strategy=options.strategy, part=options.part,
            clock_period_ns=options.clock_period_ns,
        )
        card: dict[str, Any] = {
            "schema": 1,
            "kind": "hls",
            "parent": {"run": str(run_dir.resolve()), "qonnx_sha256": sha256_file(run_dir / QONNX_DIR / QONNX_FILE)},
            "options": options.__dict__,
            "project": str(project.path),
            "input_type": project.input_type.ap_type(),
            "output_type": project.output_type.ap_type(),
            "precisions": project.precisions,
            "metrics": {"build_seconds": round(project.build_seconds, 2)},
            "files": {},
        }
        if vendor is not None:
            report = vendor.build(project.path, synth=True, cosim=cosim, vsynth=vsynth)
            card["metrics"]["synthesis"] = report.as_dict()
        write_json_atomic(hls_dir / CARD_NAME, card)
    except BaseException:
        shutil.rmtree(hls_dir, ignore_errors=True)
        raise
    return card


def hls_project_dir(run_dir: str | Path) -> Path | None:
    """The compiled HLS project of a run, or None when ``aeforge hls`` has not run."""
    card = Path(run_dir) / HLS_DIR / CARD_NAME
    if not card.is_file():
        return None
    return Path(json.loads(card.read_text(encoding="utf-8"))["project"])


