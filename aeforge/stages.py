"""Pipeline stages on run directories: the functions behind ``aeforge export/hls/verify/predict/import``.

A trained (``train``/``demo``) or imported (``import``) run holds a model; the stages add
artifacts beside it without touching what is there::

    RUN/card.json, model_qat.pt ...        the trained run (never modified)
    RUN/qonnx/model.onnx + card.json       aeforge export qonnx RUN
    RUN/hls/<project> + card.json          aeforge hls RUN (compiled for C-simulation in place)

For an autoencoder the hardware artifact is its encoder. Input vectors for verification are
realistic events (ECON-T: normalised synthetic readouts) or uniform values over the input type.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aeforge.artifact import CARD_NAME, RunWriter, load_run, sha256_file, write_json_atomic
from aeforge.errors import ArtifactError, ConfigError, DataError, ToolUnavailableError
from aeforge.fixedpoint import FixedPoint

QONNX_DIR = "qonnx"
QONNX_FILE = "model.onnx"
HLS_DIR = "hls"
HLS_PROJECT = "project"
RTL_DIR = "rtl"
IMPORT_SPEC = "model.json"
IMPORT_WEIGHTS = "model.pt"
TARGETS = ("brevitas", "qonnx", "hls", "rtl", "ort")
ONNX_DIR = "onnx"


@dataclass
class HardwareModel:
    """The part of a run that becomes hardware, with its port types."""

    module: Any  # torch.nn.Module
    input_shape: tuple[int, ...]  # one sample, channels-first
    input_type: FixedPoint
    output_type: FixedPoint
    family: str  # "econt" or "sequential"


def hardware_model(run_dir: str | Path) -> HardwareModel:
    """Load the quantized hardware model of a trained or imported run."""
    card = load_run(run_dir)
    run_dir = Path(run_dir)
    if card.kind in ("train", "demo"):
        from aeforge.quantize.train import load_trained_model

        module = load_trained_model(run_dir, "qat").encoder
        family = "econt"
    elif card.kind == "import":
        from aeforge.quantize.models.sequential import load_sequential

        module = load_sequential(run_dir / IMPORT_SPEC, run_dir / IMPORT_WEIGHTS)
        family = "sequential"
    else:
        raise ArtifactError(f"{run_dir}: a {card.kind!r} run holds no trained model (use a train, demo or import run)")
    if module.input_type is None or module.output_type is None:
        raise ArtifactError(f"{run_dir}: the model is not quantized; hardware export needs the QAT model")
    return HardwareModel(module.eval(), tuple(module.input_shape), module.input_type, module.output_type, family)


# ------------------------------------------------------------------------------------ export
def export_qonnx_stage(run_dir: str | Path, force: bool = False) -> Path:
    """``aeforge export qonnx``: write ``RUN/qonnx/model.onnx`` (cleaned, channels-last) with its card."""
    from aeforge.quantize.export import export_qonnx

    run_dir = Path(run_dir)
    model = hardware_model(run_dir)
    parent = load_run(run_dir, verify=False)
    with RunWriter(run_dir / QONNX_DIR, kind="qonnx", overwrite=force) as run:
        export_qonnx(model.module, model.input_shape, model.input_type, run.path(QONNX_FILE))
        run.extra["parent"] = {"run": str(run_dir.resolve()), "card_sha256": sha256_file(run_dir / CARD_NAME)}
        run.extra["input_type"] = model.input_type.ap_type()
        run.extra["output_type"] = model.output_type.ap_type()
        run.extra["input_shape_nhwc"] = [*model.input_shape[1:], model.input_shape[0]]
        run.metrics["family"] = parent.kind
    return run_dir / QONNX_DIR / QONNX_FILE


def load_qonnx(run_dir: str | Path) -> Any:
    """The exported QONNX model of a run (``aeforge export qonnx`` must have run)."""
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(run_dir) / QONNX_DIR
    load_run(path)  # checks the card and the file hash
    return ModelWrapper(str(path / QONNX_FILE))


# ------------------------------------------------------------------------------------ hls
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


# ------------------------------------------------------------------------------------ rtl
def rtl_stage(
    run_dir: str | Path, pipeline_stages: int | None = None, language: str = "verilog", force: bool = False,
    synth: str | None = None, target_mhz: float | None = None, pnr: bool = False, energy: bool = False,
    node_nm: float = 65.0, n_check: int = 256, pnr_device: str = "85k", pnr_speed_grade: int = 6,
    pnr_route: bool = True, pnr_timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """``aeforge rtl``: da4ml RTL of the hardware model in ``RUN/rtl`` (combinational or pipelined).

    ``pipeline_stages`` or ``target_mhz`` (stages chosen from the ECP5 delay calibration of
    :mod:`aeforge.hls.rtl.pnr`) set the pipelining. When the Verilog can be simulated here, the
    valid-in/valid-out top is driven back to back and with gaps on ``n_check`` realistic vectors:
    the results must equal Brevitas', and the latency (valid_in to valid_out, in clock cycles) and
    the initiation interval are measured. ``synth`` runs Yosys for that target, ``pnr`` nextpnr-ecp5
    for Fmax on ``pnr_device`` (default the LFE5U-85F: the ECON-T encoder needs ~50k LUT4s, more than a
    25k or 45k holds) at ``pnr_speed_grade`` (6 = slowest); ``pnr_route=False`` reports the
    post-placement estimate (routing the encoder takes longer than 10 minutes). The tool-free
    resource estimate and the programmable-MAC energy estimate of
    :mod:`aeforge.hls.estimate` are always added; ``energy`` also synthesizes a generic gate netlist
    and estimates this design's energy per inference at ``node_nm`` from it, with the bit activity
    measured on realistic events. ``RUN/rtl/card.json`` holds everything and is written last; a
    failure leaves no ``RUN/rtl``. Missing tools are reported before any work is done.
    """
    from aeforge.hls.rtl import generate_rtl, why_verilator_unavailable
    from aeforge.hls.rtl.da4ml_backend import bus_layout_doc
    from aeforge.hls.rtl.interface import valid_delay

    run_dir = Path(run_dir)
    rtl_dir = run_dir / RTL_DIR
    if pipeline_stages is not None and target_mhz is not None:
        raise ConfigError("give --pipeline-stages or --target-mhz, not both")
    if (synth or pnr) and language != "verilog":
        raise ConfigError("synthesis and place-and-route read the Verilog project; use --language verilog")
    if synth is not None or energy:
        from aeforge.hls.rtl.yosys import why_yosys_unavailable

        if why_yosys_unavailable():
            raise ToolUnavailableError(f"--{'synth' if synth else 'energy'}: {why_yosys_unavailable()}")
    if pnr:
        from aeforge.hls.rtl.pnr import why_nextpnr_unavailable

        if why_nextpnr_unavailable():
            raise ToolUnavailableError(f"--pnr: {why_nextpnr_unavailable()}")
        from aeforge.hls.rtl.pnr import _check_args

        _check_args(pnr_device, "CABGA381", pnr_speed_grade, target_mhz or 40.0, 1)
    if rtl_dir.exists() and not force:
        raise ArtifactError(f"{rtl_dir}: already exists; pass --force to replace it")
    model = hardware_model(run_dir)
    latency_cutoff = None
    if target_mhz is not None:
        from aeforge.hls.rtl.pnr import cutoff_for_target_mhz

        latency_cutoff = cutoff_for_target_mhz(target_mhz)
    project = generate_rtl(model.module, rtl_dir, pipeline_stages=pipeline_stages, latency_cutoff=latency_cutoff,
                           language=language, overwrite=force,
                           clock_period_ns=1000.0 / target_mhz if target_mhz else 25.0)
    try:
        summary: dict[str, Any] = {
            "project": str(project.out_dir),
            "top": project.integration_top,
            "core": project.top,
            "language": project.language,
            "pipelined": project.pipelined,
            "pipeline_stages": project.latency_cycles,
            "latency_cycles": valid_delay(project),
            "latency_cycles_measured": False,
            "ii": 1,
            "ii_measured": False,
            "target_mhz": target_mhz,
            "ports": bus_layout_doc(project),
            "input_type": project.input.lane_type.ap_type(),
            "output_type": project.output.lane_type.ap_type(),
            "generation_s": round(project.generation_seconds, 2),
        }
        reason = why_verilator_unavailable() if language == "verilog" else "VHDL is not simulated here"
        if reason is None:
            summary.update(_check_interface(project, model, n_check))
        else:
            summary["simulation"] = f"not run: {reason}"
        if synth is not None:
            from aeforge.hls.rtl.yosys import synthesize

            report = synthesize(project, synth)
            summary.update({"lut": report.lut, "ff": report.ff, "dsp": report.dsp, "carry": report.carry,
                            "bram": report.bram, "logic_depth": report.logic_depth,
                            "synthesis": report.as_dict()})
        summary.update(_estimates(project, model, synth_report=summary.get("synthesis"), energy=energy,
                                  node_nm=node_nm, clock_mhz=target_mhz or 40.0))
        if pnr:
            from aeforge.hls.rtl.pnr import place_and_route

            routed = place_and_route(project, device=pnr_device, speed_grade=pnr_speed_grade,
                                     target_mhz=target_mhz or 40.0, route=pnr_route, timeout_s=pnr_timeout_s)
            summary.update({"fmax_mhz": routed.fmax_mhz, "pnr": routed.as_dict()})
        card = {"schema": 1, "kind": "rtl",
                "parent": {"run": str(run_dir.resolve()), "card_sha256": sha256_file(run_dir / CARD_NAME)},
                "metrics": summary, "files": {}}
        write_json_atomic(rtl_dir / CARD_NAME, card)
    except BaseException:
        shutil.rmtree(rtl_dir, ignore_errors=True)
        raise
    return summary


def _estimates(project: Any, model: HardwareModel, synth_report: dict[str, Any] | None, energy: bool,
               node_nm: float, clock_mhz: float) -> dict[str, Any]:
    """Tool-free resource estimate, MAC-model energy, and (``energy``) the netlist energy estimate."""
    from aeforge.hls.estimate import estimate_energy, estimate_mac_energy, estimate_resources, measure_activity

    stages = project.latency_cycles if project.pipelined else None
    out: dict[str, Any] = {
        "estimate": estimate_resources(model.module, stages).as_dict(),
        "energy_estimate": {"programmable_mac": estimate_mac_energy(model.module, node_nm=node_nm,
                                                                    clock_mhz=clock_mhz).as_dict()},
    }
    if energy:
        from aeforge.hls.rtl.yosys import synthesize

        if synth_report is not None and synth_report.get("target") == "generic":
            cells = synth_report["cells"]
        else:
            cells = synthesize(project, "generic").cells
        activity = measure_activity(model.module, verification_inputs(model, 2000))
        netlist = estimate_energy(cells, node_nm=node_nm, clock_mhz=clock_mhz, activity=activity)
        out["energy_estimate"]["netlist"] = netlist.as_dict()
    return out


def _check_interface(project: Any, model: HardwareModel, n_vectors: int) -> dict[str, Any]:
    """Drive the valid-in/valid-out top back to back and with random gaps; results must be Brevitas'."""
    from aeforge.hls.rtl.testbench import simulate_interface
    from aeforge.verification import predict_brevitas

    inputs = verification_inputs(model, n_vectors)
    expected = predict_brevitas(model.module, inputs, model.input_type)
    gaps = np.random.default_rng(0).random(3 * n_vectors) < 0.5
    gaps[:2] = True  # at least one back-to-back pair, for the initiation interval
    latencies: set[int] = set()
    intervals: list[int] = []
    for pattern in (None, gaps):
        run = simulate_interface(project, inputs, pattern)
        mismatched = int(np.sum(np.any(run.outputs.reshape(len(inputs), -1) != expected.reshape(len(inputs), -1),
                                       axis=1)))
        if mismatched:
            raise ArtifactError(
                f"{project.out_dir}: the valid-in/valid-out top returned {mismatched} of {len(inputs)} results "
                "different from Brevitas"
            )
        latencies |= set(run.latencies_cycles.tolist())
        if run.initiation_interval is not None:
            intervals.append(run.initiation_interval)
    if len(latencies) != 1:
        raise ArtifactError(f"{project.out_dir}: latency varies between vectors: {sorted(latencies)} cycles")
    return {"latency_cycles": latencies.pop(), "latency_cycles_measured": True,
            "ii": min(intervals) if intervals else 1, "ii_measured": bool(intervals),
            "interface_vectors_checked": 2 * len(inputs)}


def rtl_project(run_dir: str | Path) -> Any:
    """The RTL project of a run, or None when ``aeforge rtl`` has not run."""
    from aeforge.hls.rtl import load_rtl_project

    path = Path(run_dir) / RTL_DIR
    return load_rtl_project(path) if path.is_dir() else None


# ------------------------------------------------------------------------------------ inputs
def verification_inputs(model: HardwareModel, n: int, seed: int = 0) -> np.ndarray:
    """``n`` channels-first input vectors on the input grid: realistic events for ECON-T, else uniform."""
    if n < 1:
        raise DataError(f"--n must be at least 1, got {n}")
    if model.family == "econt":
        from aeforge.data.hgcal.geometry import to_8x8
        from aeforge.data.hgcal.readouts import normalize_econt
        from aeforge.data.hgcal.synthetic import generate_readouts

        events, _ = normalize_econt(generate_readouts(n, seed=seed), model.input_type)
        return np.moveaxis(to_8x8(events), -1, 1)
    rng = np.random.default_rng(seed)
    low, high = model.input_type.min_value, model.input_type.max_value
    return model.input_type.quantize(rng.uniform(low, high, size=(n, *model.input_shape)))


def to_channels_first(model: HardwareModel, inputs: np.ndarray, layout: str) -> np.ndarray:
    """Accept ``(N, H, W, C)`` (default), ``(N, C, H, W)`` with ``layout="nchw"``, ``(N, F)``, and for
    ECON-T ``(N, 48)`` encoder inputs in calQ order; returns channels-first on the input grid."""
    inputs = np.asarray(inputs)
    if inputs.dtype.kind not in "iuf":
        raise DataError(f"input array has dtype {inputs.dtype}; expected numbers")
    inputs = inputs.astype(np.float64)
    if not np.all(np.isfinite(inputs)):
        raise DataError("input array contains NaN or infinite values")
    shape = model.input_shape
    if model.family == "econt" and inputs.ndim == 2 and inputs.shape[1] == 48:
        from aeforge.data.hgcal.geometry import to_8x8

        inputs, layout = to_8x8(inputs), "nhwc"
    if len(shape) == 1:
        expected = shape
        candidate = inputs.shape[1:]
    elif layout == "nchw":
        expected, candidate = shape, inputs.shape[1:]
    elif layout == "nhwc":
        expected, candidate = (*shape[1:], shape[0]), inputs.shape[1:]
    else:
        raise DataError(f"unknown layout {layout!r}; expected nhwc or nchw")
    if inputs.ndim < 2 or tuple(candidate) != tuple(expected):
        hint = " or (N, 48) calQ charges" if model.family == "econt" else ""
        wanted = ", ".join(map(str, expected))
        where = layout.upper() if len(shape) > 1 else "flat"
        raise DataError(f"input shape {inputs.shape} does not match the model: expected (N, {wanted}) {where}{hint}")
    if len(shape) > 1 and layout == "nhwc":
        inputs = np.moveaxis(inputs, -1, 1)
    return model.input_type.quantize(inputs)


# ------------------------------------------------------------------------------------ verify / predict
def predict(
    run_dir: str | Path, inputs_nchw: np.ndarray, target: str, model: HardwareModel | None = None
) -> np.ndarray:
    """Outputs (float values of the output type, ``(N, outputs)``) of one target on channels-first inputs."""
    from aeforge.verification import nchw_to_nhwc, predict_brevitas, predict_hls_csim, predict_qonnx

    model = model or hardware_model(run_dir)
    if target == "brevitas":
        outputs = predict_brevitas(model.module, inputs_nchw, model.input_type)
    elif target == "qonnx":
        qonnx_model = load_qonnx(run_dir) if (Path(run_dir) / QONNX_DIR).is_dir() else _temporary_qonnx(model)
        outputs = predict_qonnx(qonnx_model, nchw_to_nhwc(inputs_nchw), model.input_type)
    elif target == "hls":
        project = hls_project_dir(run_dir)
        if project is None:
            raise ArtifactError(f"{run_dir}: no HLS project; run 'aeforge hls {run_dir}' first")
        outputs = predict_hls_csim(project, nchw_to_nhwc(inputs_nchw), model.input_type)
    elif target == "rtl":
        from aeforge.hls.rtl import rtl_predict

        rtl = rtl_project(run_dir)
        if rtl is None:
            raise ArtifactError(f"{run_dir}: no RTL project; run 'aeforge rtl {run_dir}' first")
        outputs = rtl_predict(rtl, inputs_nchw)
    elif target == "ort":
        outputs = _predict_ort(model, inputs_nchw)
    else:
        raise DataError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return np.asarray(outputs, dtype=np.float64).reshape(len(inputs_nchw), -1)


def _predict_ort(model: HardwareModel, inputs_nchw: np.ndarray) -> np.ndarray:
    """onnxruntime (CPU, exact session options) on the edge QDQ export of the hardware model."""
    import tempfile

    from aeforge.edge.onnx_export import export_edge_onnx
    from aeforge.edge.runners.ort_runner import ort_predict

    with tempfile.TemporaryDirectory(prefix="aeforge_ort_") as scratch:
        exported = export_edge_onnx(model.module, model.input_shape, Path(scratch) / "model.onnx", fmt="qdq")
        return ort_predict(exported.path, model.input_type.quantize(np.asarray(inputs_nchw, dtype=np.float64)))


# ------------------------------------------------------------------------------------ edge
def export_onnx_stage(run_dir: str | Path, out: str | Path | None = None, fmt: str = "qdq", opset: int = 17,
                      batch: int | None = None, force: bool = False) -> dict[str, Any]:
    """``aeforge export onnx``: the hardware model as ONNX for TensorRT / onnxruntime (default
    ``RUN/onnx/model_<fmt>.onnx``), with a ``.json`` sidecar describing it and, for every format,
    the TensorRT explicit-quantization check (violations are reported, not fatal: ``check trt`` is).
    """
    from aeforge.edge.onnx_export import export_edge_onnx

    run_dir = Path(run_dir)
    model = hardware_model(run_dir)
    path = Path(out) if out is not None else run_dir / ONNX_DIR / f"model_{fmt}.onnx"
    if path.suffix != ".onnx":
        raise ArtifactError(f"{path}: the output file must end in .onnx")
    if path.exists() and not force:
        raise ArtifactError(f"{path}: already exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    exported = export_edge_onnx(model.module, model.input_shape, path, fmt=fmt, opset=opset, batch=batch)
    record = exported.as_dict()
    record["parent"] = {"run": str(run_dir.resolve()), "card_sha256": sha256_file(run_dir / CARD_NAME)}
    write_json_atomic(path.with_suffix(".json"), record)
    return record


def _temporary_qonnx(model: HardwareModel) -> Any:
    from aeforge.quantize.export import export_qonnx

    return export_qonnx(model.module, model.input_shape, model.input_type)


def verify_stage(run_dir: str | Path, n: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """``aeforge verify``: every available target against Brevitas on the same ``n`` vectors.

    QONNX execution always runs (exporting in memory when ``RUN/qonnx`` is absent); HLS C-sim runs
    when ``aeforge hls`` has built a project, RTL simulation when ``aeforge rtl`` has; onnxruntime
    (``ort``) runs the edge QDQ export with exact session options whenever onnxruntime is installed.
    Returns ``{"n", "targets": {name: Fidelity dict},
    "skipped": {name: reason}, "bit_exact"}``.
    """
    from aeforge.verification import compare

    model = hardware_model(run_dir)
    inputs = verification_inputs(model, n, seed)
    reference = predict(run_dir, inputs, "brevitas", model)
    results: dict[str, Any] = {"n": int(n), "input_type": model.input_type.ap_type(),
                               "output_type": model.output_type.ap_type(), "targets": {}, "skipped": {}}
    results["targets"]["brevitas"] = compare(reference, reference, model.output_type, "brevitas").as_dict()
    results["targets"]["qonnx"] = compare(
        reference, predict(run_dir, inputs, "qonnx", model), model.output_type, "qonnx").as_dict()
    if hls_project_dir(run_dir) is None:
        results["skipped"]["hls"] = f"no HLS project (run 'aeforge hls {run_dir}')"
    else:
        results["targets"]["hls"] = compare(
            reference, predict(run_dir, inputs, "hls", model), model.output_type, "hls").as_dict()
    if rtl_project(run_dir) is None:
        results["skipped"]["rtl"] = f"no RTL project (run 'aeforge rtl {run_dir}')"
    else:
        results["targets"]["rtl"] = compare(
            reference, predict(run_dir, inputs, "rtl", model), model.output_type, "rtl").as_dict()
    from aeforge.edge.runners.ort_runner import provider_unavailable_reason

    reason = provider_unavailable_reason("cpu")
    if reason is not None:
        results["skipped"]["ort"] = reason
    else:
        results["targets"]["ort"] = compare(
            reference, predict(run_dir, inputs, "ort", model), model.output_type, "ort").as_dict()
    results["bit_exact"] = all(t["exact"] == t["n"] for t in results["targets"].values())
    return results


def format_verification(results: dict[str, Any]) -> str:
    """The verification matrix as an aligned text table."""
    lines = [f"{'target':<10} {'n':>7} {'exact':>7} {'max |err| LSB':>14}  first mismatch"]
    for name, t in results["targets"].items():
        first = "-" if t["first_mismatch"] is None else str(t["first_mismatch"])
        lines.append(f"{name:<10} {t['n']:>7} {t['exact']:>7} {t['max_lsb']:>14g}  {first}")
    for name, reason in results["skipped"].items():
        lines.append(f"{name:<10} {'skipped':>7}  {reason}")
    lines.append("bit-exact" if results["bit_exact"] else "NOT bit-exact")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ import
def import_qkeras_stage(model_json: str | Path | None, weights_h5: str | Path, out: str | Path,
                        force: bool = False) -> dict[str, Any]:
    """``aeforge import qkeras``: read Keras JSON + HDF5 (no TensorFlow) into a run of kind ``import``."""
    from aeforge.quantize.models.sequential import save_sequential
    from aeforge.quantize.qkeras_import import load_qkeras

    imported = load_qkeras(Path(model_json) if model_json else None, Path(weights_h5))
    model = imported.build()
    with RunWriter(out, kind="import", config={"model": imported.spec.to_dict()}, overwrite=force) as run:
        save_sequential(model, run.path(IMPORT_SPEC), run.path(IMPORT_WEIGHTS))
        run.extra["source"] = {"model_json": str(model_json) if model_json else None, "weights": str(weights_h5),
                               "layers": imported.source_names, "ignored": list(imported.ignored)}
        run.extra["econt"] = imported.econt is not None
        run.extra["econt_mismatch"] = imported.econt_mismatch
        run.extra["fixed_point_types"] = model.fixed_point_types()
    return {"layers": len(imported.spec.layers), "econt": imported.econt is not None,
            "output_type": model.output_type.ap_type()}
