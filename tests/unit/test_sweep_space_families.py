"""Sweep family adapters: chosen by the base experiment's ``model.family``; keys, objectives and directions per
family; the driver's front with a maximised objective (no training: an in-process executor)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aeforge.errors import ConfigError
from aeforge.sweep.families import AutoencoderSweep, EcontSweep, family_of, get_family, latent_of
from aeforge.sweep.space import build_config, load_sweep, parse_sweep
from aeforge.sweep.trial import TrialTask

pytest.importorskip("brevitas")  # autoencoder layer specs check their types against Brevitas

AD = """\
base: ad_dense.yaml
set:
  data.n_samples: 400
space:
  quant.weight.bits: [4, 8]
  quant.activation.bits: [6]
objectives: [auc, lut]
cost: {synth: none, energy: mac}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_adapter_is_chosen_by_the_base_family(tmp_path: Path) -> None:
    assert parse_sweep("space:\n  model.filters: [4]\n").family == "econt"  # no base: the ECON-T defaults
    assert parse_sweep("base: econt.yaml\nspace:\n  model.filters: [4]\n").adapter.name == "econt"
    spec = parse_sweep(AD)
    assert spec.family == "autoencoder" and isinstance(spec.adapter, AutoencoderSweep)
    assert isinstance(get_family("econt"), EcontSweep)
    assert family_of({"model": {"family": "autoencoder"}}) == "autoencoder" and family_of({}) == "econt"
    with pytest.raises(ConfigError, match=r"model\.family 'split' cannot be swept; sweepable families: econt, "
                                          r"autoencoder"):
        get_family("split")
    path = write(tmp_path, "base: split_resnet18_digits.yaml\nspace:\n  train.seed: [1]\n")
    with pytest.raises(ConfigError) as raised:
        load_sweep(path)
    assert str(raised.value).startswith(f"{path}:1: base: invalid base experiment: model.family 'split' cannot")


def test_autoencoder_keys_fixed_point_widths_and_trial_configs() -> None:
    spec = parse_sweep(AD)
    assert spec.objectives == ("auc", "lut") and spec.directions == ("max", "min")
    assert spec.sampler.n_trials == 2 and spec.as_dict()["family"] == "autoencoder"
    raw = spec.trial_config({"quant.weight.bits": 4, "quant.activation.bits": 6})
    assert raw["quant"]["weight"] == "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"  # ad_dense: ap_fixed<6,1>
    assert raw["quant"]["activation"] == "ap_ufixed<6,3,AP_RND_CONV,AP_SAT>"
    assert raw["data"]["n_samples"] == 400 and raw["model"]["hardware"] == "score"
    config = build_config(raw)  # dispatches on model.family
    assert type(config).__name__ == "AutoencoderConfig" and config.quant.weight.bits == 4
    assert spec.base_raw["quant"]["weight"] == "ap_fixed<6,1,AP_RND_CONV,AP_SAT>"
    # default objectives of the family
    assert parse_sweep(AD.replace("objectives: [auc, lut]\n", "")).objectives == ("mse", "lut", "energy_j", "bytes")


@pytest.mark.parametrize(("edit", "line", "fragment"), [
    (("quant.weight.bits", "quant.latent.bits"), 5, "space.quant.latent.bits: unknown config key"),
    (("quant.weight.bits", "model.filters"), 5, "space.model.filters: unknown config key"),
    (("data.n_samples: 400", "data.n_samples: 5"), 3, "set.data.n_samples: invalid value 5: data.n_samples: must "
                                                      "be >= 20"),
    (("data.n_samples: 400", "model.input_type.bits: 6"), 3,
     "set.model.input_type.bits: invalid value 6: model.hardware: score compares the reconstruction with the "
     "input"),
    (("data.n_samples: 400", "data.generator: noise"), 3, "set.data.generator: invalid value 'noise'"),
    (("[auc, lut]", "[emd, lut]"), 7, "objectives[0]: unknown objective 'emd' for the autoencoder family; "
                                      "available: mse, auc, val_loss, lut, ff, energy_j, bytes, latency_cycles, "
                                      "ebops"),
    (("[auc, lut]", "[lut, msee]"), 7, "objectives[1]: unknown objective 'msee' for the autoencoder family "
                                       "(did you mean 'mse'?)"),
    (("data.n_samples: 400", "data.anomaly_fraction: 0.0"), 7,
     "objectives[0]: objective 'auc' needs a labelled test split"),
    (("cost: {synth: none, energy: mac}", "cost: {synth: xc7, rtl: false}"), 8, "cost.synth: xc7 synthesizes"),
])
def test_bad_autoencoder_sweeps_name_file_line_and_field(tmp_path: Path, edit: tuple[str, str], line: int,
                                                         fragment: str) -> None:
    path = write(tmp_path, AD.replace(*edit))
    with pytest.raises(ConfigError) as raised:
        load_sweep(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message


def test_econt_objectives_stay_econt_only() -> None:
    with pytest.raises(ConfigError, match="unknown objective 'mse' for the econt family"):
        parse_sweep("space:\n  model.filters: [4]\nobjectives: [mse]\n")
    spec = parse_sweep("space:\n  model.filters: [4]\n")
    assert spec.objectives == ("emd", "lut", "energy_j", "bytes") and spec.directions == ("min",) * 4


def test_cost_rtl_off_and_identity() -> None:
    text = "space:\n  model.filters: [4]\n"
    default = parse_sweep(text)
    assert default.cost.rtl and parse_sweep(text + "cost: {rtl: true}\n").identity() == default.identity()
    off = parse_sweep(text + "cost: {rtl: false}\n")
    assert off.identity() != default.identity()
    assert off.cost.resolved(yosys_available=True).synth == "none"
    assert off.cost.resolved(yosys_available=True).energy == "mac"
    assert default.cost.resolved(yosys_available=True).synth == "xc7"


def test_latent_bytes_and_quality_metrics_of_an_autoencoder() -> None:
    from aeforge.quantize.autoencoder import autoencoder_specs

    spec = parse_sweep(AD)
    config = spec.adapter.build(spec.trial_config({"quant.weight.bits": 4, "quant.activation.bits": 6}))
    full, _hardware = autoencoder_specs(config, (640,))
    shape, latent = latent_of(SimpleNamespace(config=config, full_spec=full))
    assert shape == (8,) and latent.ap_type() == "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"  # the 'latent' quant layer
    result = SimpleNamespace(metrics={"mse": {"float": 0.2, "qat": 0.25}, "auc": {"float": 0.8, "qat": 0.75}},
                             data=SimpleNamespace(test=[0] * 40))
    quality = spec.adapter.quality_metrics(SimpleNamespace(result=result, metrics={}), max_events=10)
    assert quality == {"mse": 0.25, "mse_float": 0.2, "auc": 0.75, "auc_float": 0.8, "test_samples": 40}


class InlineExecutor:
    """'Trials' in the test process; AUC falls and LUT rises with the weight width."""

    kind = "inline"
    capacity = 2

    def __init__(self) -> None:
        self.pending: list[TrialTask] = []
        self.tasks: list[TrialTask] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.capacity}

    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, task: TrialTask) -> int | None:
        self.pending.append(task)
        self.tasks.append(task)
        return None

    def poll(self, timeout_s: float) -> list[Any]:
        from aeforge.sweep.executor import Outcome

        outcomes = []
        for task in self.pending:
            bits = task.params["quant.weight.bits"]
            metrics = {"auc": {4: 0.6, 6: 0.9, 8: 0.8}[bits], "lut": 100.0 * bits, "lut_source": "fake",
                       "energy_source": "fake"}
            outcomes.append(Outcome(task, "result", {"status": "done", "metrics": metrics, "wall_s": 0.0}))
        self.pending = []
        return outcomes

    def shutdown(self) -> None:
        self.pending = []


def test_driver_maximises_auc_on_the_front(tmp_path: Path) -> None:
    from aeforge.sweep.command import format_summary
    from aeforge.sweep.driver import SweepRun

    spec = parse_sweep(AD.replace("[4, 8]", "[4, 6, 8]"), source=str(tmp_path / "s.yaml"))
    executor = InlineExecutor()
    summary = SweepRun(spec, tmp_path / "out", log=None, executor=executor).run()
    assert {t.family for t in executor.tasks} == {"autoencoder"}
    assert all(t.config["model"]["family"] == "autoencoder" for t in executor.tasks)
    by_bits = {t["params"]["quant.weight.bits"]: t["trial"] for t in summary["trials"]}
    # 8 bits (auc 0.8, 800 LUT) is dominated by 6 bits (auc 0.9, 600 LUT); minimising auc would keep 4 bits only
    assert summary["front"] == sorted([by_bits[4], by_bits[6]])
    assert summary["directions"] == ["max", "min"] and summary["family"] == "autoencoder"
    assert "anomaly AUC" in summary["quality_note"] and "higher is better" in summary["objective_descriptions"]["auc"]
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["front"] == summary["front"]
    assert "auc (max)" in format_summary(summary)


def test_trial_task_defaults_to_econt() -> None:
    task = TrialTask(sweep_dir="/x", trial_id=0, attempt=1, params={}, config={}, cost={}, max_events=1)
    assert task.family == "econt"
