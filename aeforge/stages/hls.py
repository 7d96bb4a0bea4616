"""``aeforge hls``: the hls4ml project of a run, compiled for C-simulation in ``RUN/hls``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeforge.artifact import CARD_NAME, confined_path, replacing_directory, sha256_file, write_json_atomic
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError
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


def check_hls_options(options: HlsOptions, build: bool = False, cosim: bool = False, vsynth: bool = False) -> Any:
    """Every check that can fail before work starts: option values and combinations, tools present.

    Returns the vendor backend that ``build`` will run (None without ``build``).
    """
    from aeforge.hls.hls4ml_backend import BACKENDS, IO_TYPES, STRATEGIES, backend_status

    if options.backend not in BACKENDS:
        raise ConfigError(f"unknown HLS backend {options.backend!r}; expected one of {', '.join(BACKENDS)}")
    if options.io_type not in IO_TYPES:
        raise ConfigError(f"unknown io_type {options.io_type!r}; expected one of {', '.join(IO_TYPES)}")
    if options.strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {options.strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if isinstance(options.reuse_factor, bool) or not isinstance(options.reuse_factor, int) \
            or options.reuse_factor < 1:
        raise ConfigError(f"--reuse-factor must be a positive integer, got {options.reuse_factor!r}")
    if not options.clock_period_ns > 0:
        raise ConfigError(f"--clock-ns must be positive, got {options.clock_period_ns!r}")
    if (cosim or vsynth) and not build:
        raise ConfigError("--cosim and --vsynth need --build")
    available, reason = backend_status(options.backend)
    if not available:
        raise ToolUnavailableError(f"hls4ml {options.backend} backend: {reason}")
    if not build:
        return None
    from aeforge.hls.vendor import get_backend

    vendor = get_backend(options.backend)
    if not vendor.is_available():
        raise ToolUnavailableError(f"--build: {vendor.why_unavailable()}")
    if vsynth and vendor.which("vivado") is None:
        raise ToolUnavailableError("--vsynth: logic synthesis needs vivado on PATH (source Vivado's settings64.sh)")
    return vendor


def hls_stage(
    run_dir: str | Path, options: HlsOptions, force: bool = False, build: bool = False,
    cosim: bool = False, vsynth: bool = False,
) -> dict[str, Any]:
    """``aeforge hls``: export (if needed), write and compile the hls4ml project in ``RUN/hls``.

    Options, tools and the QONNX export are checked before an existing ``RUN/hls`` is touched;
    with ``force`` the old artifact is moved aside and put back if the new build fails. The
    project is built at its final place (its C-simulation library records absolute paths) and
    ``RUN/hls/card.json`` is written last, with the project path relative to the run. With
    ``build`` the vendor tool runs C synthesis (plus co-simulation / Vivado logic synthesis with
    ``cosim`` / ``vsynth``) and its report goes into the card.
    """
    from aeforge.hls.hls4ml_backend import build_hls_project

    run_dir = Path(run_dir)
    hls_dir = run_dir / HLS_DIR
    if hls_dir.exists():
        if not force:
            raise ArtifactError(f"{hls_dir}: HLS project already exists; pass --force to replace it")
        if not (hls_dir / CARD_NAME).is_file():
            raise ArtifactError(f"{hls_dir}: exists and is not an aeforge HLS artifact; refusing to replace it")
    vendor = check_hls_options(options, build=build, cosim=cosim, vsynth=vsynth)
    if not (run_dir / QONNX_DIR / CARD_NAME).is_file():
        export_qonnx_stage(run_dir)
    qonnx_model = load_qonnx(run_dir)
    with replacing_directory(hls_dir):  # every check passed: the old artifact is restored on failure
        project = build_hls_project(
            qonnx_model, hls_dir / HLS_PROJECT, backend=options.backend, io_type=options.io_type,
            reuse_factor=options.reuse_factor, strategy=options.strategy, part=options.part,
            clock_period_ns=options.clock_period_ns,
        )
        card: dict[str, Any] = {
            "schema": 1,
            "kind": "hls",
            "parent": {"run": "..", "qonnx_sha256": sha256_file(run_dir / QONNX_DIR / QONNX_FILE)},
            "options": options.__dict__,
            "project": f"{HLS_DIR}/{HLS_PROJECT}",
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
    return {**card, "project": str(project.path)}


def hls_project_dir(run_dir: str | Path) -> Path | None:
    """The compiled HLS project of a run, or None when ``aeforge hls`` has not run.

    The card's ``project`` is relative to the run (older cards: absolute); either way it must lie
    inside the run.
    """
    run_dir = Path(run_dir)
    card_path = run_dir / HLS_DIR / CARD_NAME
    if not card_path.is_file():
        return None
    try:
        recorded = str(json.loads(card_path.read_text(encoding="utf-8"))["project"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{card_path}: unreadable HLS card ({error})") from None
    if Path(recorded).is_absolute():  # cards written before the path was stored relative
        try:
            recorded = Path(recorded).resolve().relative_to(run_dir.resolve()).as_posix()
        except ValueError:
            raise ArtifactError(f"{card_path}: project {recorded!r} is outside the run {run_dir}") from None
    return confined_path(run_dir, recorded, f"HLS project in {HLS_DIR}/{CARD_NAME}")
