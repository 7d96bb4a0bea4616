"""``aeforge demo``: the ECON-T autoencoder end to end on the embedded synthetic data.

Trains a float model and its QAT fine-tune, evaluates the Earth Mover's Distance of both against
the classic ECON-T algorithms at equal bandwidth (threshold, super trigger cells, best choice) and
a 16-component PCA, on held-out synthetic events or on a real CALQ CSV, fine-tunes one QAT model
per latent width (3/5/7/9 bits = 2..5 e-links) for the bandwidth table, and writes a report.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeforge.artifact import RunWriter, write_json_atomic
from aeforge.config import DataConfig, ExperimentConfig, SyntheticDataConfig, TrainConfig, to_dict
from aeforge.data.hgcal.readouts import load_calq_csv, normalize_econt
from aeforge.quantize import metrics
from aeforge.quantize.models.econt import EcontAutoencoder, build_autoencoder, reconstruct
from aeforge.quantize.train import fit, save_checkpoints, train_experiment

ELINKS = (2, 3, 4, 5)


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("aeforge-demo")
    data: Path | None = None
    progress: bool = True
    quick: bool = False
    latent_table_epochs: int = 6


def demo_config(quick: bool = False) -> ExperimentConfig:
    """The demo's experiment: sized to run in a few minutes on 2 CPU cores."""
    if quick:
        return ExperimentConfig(
            name="demo-quick",
            data=DataConfig(synthetic=SyntheticDataConfig(n_events=6_000, seed=1)),
            train=TrainConfig(float_epochs=3, qat_epochs=2, batch_size=256),
        )
    return ExperimentConfig(  # one-cycle: same epochs, QAT EMD 1.21 instead of 1.31 (PCA-16: 1.54)
        name="demo",
        data=DataConfig(synthetic=SyntheticDataConfig(n_events=40_000, seed=1)),
        train=TrainConfig(float_epochs=80, qat_epochs=20, schedule="one_cycle"),
    )


@torch.no_grad()
def evaluate(
    events: np.ndarray, train_events: np.ndarray, models: dict[str, EcontAutoencoder], best_choice_cells: int
) -> dict[str, np.ndarray]:
    """Per-event EMD of every method on ``events`` (NaN for empty events)."""
    pca = metrics.PCABaseline(n_components=16).fit(train_events)
    reconstructions = {name: reconstruct(model, events) for name, model in models.items()}
    reconstructions["pca16"] = pca.reconstruct(events)
    reconstructions["threshold"] = metrics.threshold_baseline(events, best_choice_cells)
    reconstructions["stc"] = metrics.super_trigger_cells(events)
    reconstructions["best_choice"] = metrics.best_choice(events, best_choice_cells)
    return {name: metrics.emd(events, recon) for name, recon in reconstructions.items()}


def _summaries(per_event: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: metrics.emd_summary(values).as_dict() for name, values in per_event.items()}


def latent_bit_table(
    config: ExperimentConfig, float_model: EcontAutoencoder, splits: Any, eval_events: np.ndarray,
    epochs: int, progress: bool,
) -> list[dict[str, Any]]:
    """One short QAT fine-tune per e-link count; EMD next to best choice at the same bandwidth."""
    rows = []
    for elinks in ELINKS:
        bits = metrics.LATENT_BITS_BY_ELINKS[elinks]
        cells = metrics.BEST_CHOICE_CELLS_BY_ELINKS[elinks]
        quant = dataclasses.replace(config.quant, latent_bits=bits)
        model = build_autoencoder(config.model, quant)
        model.load_state_dict(float_model.state_dict())
        fit(
            model, splits.train, splits.val, phase=f"qat-{bits}b", epochs=epochs,
            learning_rate=config.train.qat_learning_rate, batch_size=config.train.batch_size,
            loss_name=config.train.loss, patience=config.train.patience, min_delta=0.0,
            seed=config.train.seed + bits, progress=progress, schedule=config.train.schedule,
            warmup_fraction=config.train.warmup_fraction,
        )
        ae = metrics.emd_summary(metrics.emd(eval_events, reconstruct(model, eval_events)))
        bc = metrics.emd_summary(metrics.emd(eval_events, metrics.best_choice(eval_events, cells)))
        rows.append({
            "elinks": elinks,
            "latent_bits": bits,
            "latent_bits_per_event": bits * config.model.latent_dim,
            "ae_qat_emd_mean": ae.mean,
            "best_choice_cells": cells,
            "best_choice_emd_mean": bc.mean,
        })
    return rows


def hardware_check(out: Path, n: int) -> dict[str, Any]:
    """Export the trained encoder to QONNX and an hls4ml project, and verify both bit for bit."""
    import importlib.util
    import shutil

    from aeforge.stages import HlsOptions, export_qonnx_stage, hls_stage, verify_stage

    if importlib.util.find_spec("hls4ml") is None or importlib.util.find_spec("qonnx") is None:
        return {"not_run": "hls4ml/qonnx not installed (pip install 'aeforge[hls]')"}
    if shutil.which("g++") is None:
        return {"not_run": "g++ not on PATH (hls4ml C-simulation compiles the project)"}
    start = time.perf_counter()
    export_qonnx_stage(out)
    card = hls_stage(out, HlsOptions())
    results = verify_stage(out, n=n)
    results["project"] = card["project"]
    results["precisions"] = card["precisions"]
    results["wall_time_s"] = round(time.perf_counter() - start, 2)
    return results


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo into ``options.out`` (replacing a previous demo there); returns the summary.

    The trained run is published first; the QONNX export and the hls4ml project are then built
    inside it (the C-simulation library must be compiled where it stays), and the report is added
    last. If a later step fails, the whole output directory is removed again.
    """
    import shutil

    from aeforge.artifact import RunAmendment
    from aeforge.benchmarks.report import write_demo_report

    start = time.perf_counter()
    config = demo_config(options.quick)
    real_events = None
    if options.data is not None:  # load first: a bad file fails before minutes of training
        real_events, _ = normalize_econt(load_calq_csv(options.data), config.quant.input)
    with RunWriter(options.out, kind="demo", config=to_dict(config), overwrite=True) as run:
        result = train_experiment(config, progress=options.progress)
        assert result.float_model is not None and result.qat_model is not None
        save_checkpoints(result, run)
    try:
        models = {"float": result.float_model, "qat": result.qat_model}
        latent_bits = config.quant.latent.bits
        elinks = {bits: links for links, bits in metrics.LATENT_BITS_BY_ELINKS.items()}.get(latent_bits, 5)
        cells = metrics.BEST_CHOICE_CELLS_BY_ELINKS[elinks]

        synthetic_emd = evaluate(result.splits.test, result.splits.train, models, cells)
        eval_name, eval_events, eval_emd = "synthetic", result.splits.test, synthetic_emd
        if real_events is not None:
            eval_name, eval_events = str(options.data), real_events
            eval_emd = evaluate(real_events, result.splits.train, models, cells)
        table = latent_bit_table(
            config, result.float_model, result.splits, eval_events,
            epochs=1 if options.quick else options.latent_table_epochs, progress=options.progress,
        )
        verification = hardware_check(options.out, n=1000 if options.quick else 10_000)
        stats = _summaries(eval_emd)
        summary: dict[str, Any] = {
            "emd": {name: s["mean"] for name, s in stats.items()},
            "emd_median": {name: s["median"] for name, s in stats.items()},
            "eval_data": eval_name,
            "n_eval_events": len(eval_events),
            "n_empty_events": next(iter(stats.values()))["n_empty"],
            "latent_bits": latent_bits,
            "elinks": elinks,
            "best_choice_cells": cells,
            "latent_bit_table": table,
            "fixed_point_types": result.qat_model.encoder.fixed_point_types(),
            "verification": verification,
            "training": {"best_val_loss": result.best_val_loss, "wall_time_s": round(result.wall_time_s, 2)},
        }
        if real_events is not None:
            summary["emd_synthetic"] = {name: s["mean"] for name, s in _summaries(synthetic_emd).items()}
        summary["wall_time_s"] = round(time.perf_counter() - start, 2)
        with RunAmendment(options.out) as amendment:
            write_demo_report(amendment, summary, eval_emd, metrics.occupancy(eval_events), result.history)
            write_json_atomic(amendment.path("summary.json"), summary)
            amendment.metrics.update({"emd": summary["emd"], "eval_data": eval_name,
                                      "bit_exact": verification.get("bit_exact"),
                                      "wall_time_s": summary["wall_time_s"]})
    except BaseException:
        shutil.rmtree(options.out, ignore_errors=True)
        raise
    return summary
