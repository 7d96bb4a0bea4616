"""One sweep trial: train → quality → export QONNX → RTL cost → verify, as a run directory with its card.

Training and quality (ECON-T's EMD, the autoencoder's MSE/AUC, ...) are the family's
(:mod:`aeforge.sweep.families`); export, cost and verification take any run directory.

:func:`run_trial` runs in a worker process (a local child process or a Ray worker). It never raises for a
trial that goes wrong: the error is returned (and written to the trial's run directory) so the sweep goes on.
Only the death of the process itself (killed, out of memory, node lost) leaves no result; the driver sees
that as a lost worker and retries the trial.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeforge.artifact import CARD_NAME, RunAmendment, RunWriter, write_json_atomic
from aeforge.errors import AeforgeError, ArtifactError
from aeforge.sweep.store import RUNNING_DIR, TRIALS_DIR, clear_trial_dir, now_utc, trial_name

TRIAL_RECORD = "trial.json"
ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs for one attempt of one trial (plain data: it is pickled to the worker)."""

    sweep_dir: str  # absolute; on a multi-node cluster a filesystem shared by the nodes
    trial_id: int
    attempt: int
    params: dict[str, Any]
    config: dict[str, Any]  # the plain experiment config of this trial
    cost: dict[str, Any]  # CostSpec (resolved) as a dict
    max_events: int
    num_cpus: float = 1.0
    family: str = "econt"  # model.family: which adapter of aeforge.sweep.families trains the trial

    @property
    def trial_dir(self) -> Path:
        return Path(self.sweep_dir) / TRIALS_DIR / trial_name(self.trial_id)

    @property
    def running_file(self) -> Path:
        return Path(self.sweep_dir) / RUNNING_DIR / f"{trial_name(self.trial_id)}.json"


def run_trial(task: TrialTask) -> dict[str, Any]:
    """Run one attempt of a trial; returns ``{"status": "done"|"failed", "metrics", "error", ...}``."""
    start = time.perf_counter()
    result: dict[str, Any] = {
        "trial": task.trial_id, "attempt": task.attempt, "pid": os.getpid(), "host": socket.gethostname(),
        "dir": str(task.trial_dir), "status": "failed", "metrics": {}, "stage_s": {}, "error": None,
    }
    write_json_atomic(task.running_file, {"trial": task.trial_id, "attempt": task.attempt, "pid": os.getpid(),
                                          "host": result["host"], "started_utc": now_utc()})
    current = {"stage": "setup"}
    try:
        for stage, seconds, metrics in _stages(task, current):
            result["stage_s"][stage] = round(seconds, 3)
            result["metrics"].update(metrics)
        result["status"] = "done"
    except Exception as error:
        message = str(error) if isinstance(error, AeforgeError) else f"{type(error).__name__}: {error}"
        stage = current["stage"]
        result.update(error=f"{stage}: {message}", failed_stage=stage, traceback=traceback.format_exc())
    finally:
        result["wall_s"] = round(time.perf_counter() - start, 3)
        try:
            record_result(task, result)
        except Exception as error:  # the result still goes back to the driver
            result.setdefault("record_error", f"{type(error).__name__}: {error}")
        task.running_file.unlink(missing_ok=True)
    return result


def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|brevitas|qonnx|onnx)")
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found"


def _stages(task: TrialTask, current: dict[str, str]) -> Any:
    """Yield ``(stage, seconds, metrics)`` as each stage finishes; ``current["stage"]`` names the one running."""
    _quiet()
    clear_trial_dir(task.trial_dir)
    clock = time.perf_counter()
    import torch

    from aeforge.sweep.families import get_family

    family = get_family(task.family)
    config = family.build(task.config, source=f"trial {trial_name(task.trial_id)}")
    config = family.for_trial(config, threads=max(1, int(task.num_cpus)))
    torch.set_num_threads(config.train.threads)
    yield "setup", time.perf_counter() - clock, {}

    current["stage"] = "train"
    clock = time.perf_counter()
    trained = family.train(config, task.trial_dir)
    yield "train", time.perf_counter() - clock, trained.metrics

    current["stage"] = "quality"
    clock = time.perf_counter()
    quality = family.quality_metrics(trained, task.max_events)
    yield "quality", time.perf_counter() - clock, quality

    from aeforge.stages import export_qonnx_stage, rtl_stage, verify_stage

    current["stage"] = "export"
    clock = time.perf_counter()
    export_qonnx_stage(task.trial_dir)
    yield "export", time.perf_counter() - clock, {"ebops": trial_ebops(task.trial_dir)}

    current["stage"] = "cost"
    clock = time.perf_counter()
    cost = task.cost
    if cost.get("rtl", True):
        synth = None if cost["synth"] == "none" else cost["synth"]
        rtl = rtl_stage(task.trial_dir, pipeline_stages=cost.get("pipeline_stages"), synth=synth,
                        energy=cost["energy"] == "netlist", node_nm=cost["node_nm"])
        yield "cost", time.perf_counter() - clock, cost_metrics(rtl, cost)
    else:
        estimated = estimate_metrics(task.trial_dir, cost)
        yield "cost", time.perf_counter() - clock, estimated

    current["stage"] = "verify"
    clock = time.perf_counter()
    verification = verify_stage(task.trial_dir, n=cost["verify_n"])
    counts = {name: f"{t['exact']}/{t['n']}" for name, t in verification["targets"].items()}
    if not verification["bit_exact"]:
        raise ArtifactError("hardware exports are NOT bit-exact against Brevitas: "
                            + ", ".join(f"{k} {v}" for k, v in counts.items()))
    yield "verify", time.perf_counter() - clock, {"bit_exact": True, "verified": counts}


def trial_ebops(run_dir: Path) -> int:
    """EBOPs of the run's hardware model (:func:`aeforge.quantize.hgq.ebops.model_ebops`)."""
    from aeforge.quantize.hgq.ebops import model_ebops
    from aeforge.quantize.models.boundary import hardware_model

    return model_ebops(hardware_model(run_dir).module)["total"]


def cost_metrics(rtl: dict[str, Any], cost: dict[str, Any]) -> dict[str, Any]:
    """LUT/FF, energy and latency of a trial from the ``rtl_stage`` summary, each with where it came from."""
    estimate = rtl["estimate"]
    energy = rtl["energy_estimate"]
    out: dict[str, Any] = {
        "latency_cycles": rtl["latency_cycles"], "latency_measured": rtl.get("latency_cycles_measured", False),
        "lut_estimate": estimate["lut"], "ff_estimate": estimate["ff"],
        "energy_mac_j": energy["programmable_mac"]["energy_j_per_inference"],
    }
    if cost["synth"] != "none":
        out.update(lut=rtl["lut"], ff=rtl["ff"], lut_source=f"yosys {cost['synth']}")
    else:
        out.update(lut=estimate["lut"], ff=estimate["ff"], lut_source="ESTIMATE (tool-free, no synthesis)")
    if cost["energy"] == "netlist":
        out.update(energy_j=energy["netlist"]["energy_j_per_inference"],
                   energy_source=f"ESTIMATE: Yosys generic-gate netlist at {cost['node_nm']:g} nm")
    else:
        out.update(energy_j=out["energy_mac_j"],
                   energy_source=f"ESTIMATE: programmable-MAC model at {cost['node_nm']:g} nm")
    return out


def estimate_metrics(run_dir: Path, cost: dict[str, Any]) -> dict[str, Any]:
    """LUT/FF, energy and latency from the tool-free estimates of the run's hardware model (``cost.rtl: false``:
    no RTL is generated, simulated or verified)."""
    from aeforge.hls.estimate import estimate_mac_energy, estimate_resources
    from aeforge.quantize.models.boundary import hardware_model

    module = hardware_model(run_dir).module
    estimate = estimate_resources(module, cost.get("pipeline_stages"))
    energy = estimate_mac_energy(module, node_nm=cost["node_nm"]).as_dict()["energy_j_per_inference"]
    return {"latency_cycles": estimate.latency_cycles, "latency_measured": False,
            "lut_estimate": estimate.lut, "ff_estimate": estimate.ff, "energy_mac_j": energy,
            "lut": estimate.lut, "ff": estimate.ff, "lut_source": "ESTIMATE (tool-free, no RTL generated)",
            "energy_j": energy, "energy_source": f"ESTIMATE: programmable-MAC model at {cost['node_nm']:g} nm"}


def record_result(task: TrialTask, result: dict[str, Any]) -> None:
    """Put the trial's parameters, metrics and (on failure) error into its run directory and card."""
    record = {"trial": task.trial_id, "attempt": task.attempt, "params": task.params, "cost": task.cost,
              **{k: result.get(k) for k in ("status", "metrics", "stage_s", "error", "wall_s", "host", "pid")}}
    card_metrics = {"sweep_trial": {k: record[k] for k in ("trial", "params", "status", "metrics", "error")}}
    if (task.trial_dir / CARD_NAME).is_file():
        with RunAmendment(task.trial_dir) as amendment:
            write_json_atomic(amendment.path(TRIAL_RECORD), record)
            if result["status"] != "done":
                amendment.path(ERROR_FILE).write_text(f"{result['error']}\n\n{result.get('traceback', '')}",
                                                      encoding="utf-8")
            amendment.metrics.update(card_metrics)
        return
    clear_trial_dir(task.trial_dir)
    with RunWriter(task.trial_dir, kind="sweep-trial", config=task.config) as run:
        run.write_json(TRIAL_RECORD, record)
        run.path(ERROR_FILE).write_text(f"{result['error']}\n\n{result.get('traceback', '')}", encoding="utf-8")
        run.metrics.update(card_metrics)
