"""Sweep files: parsing into a search space, and errors that name the file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aeforge.cli import main
from aeforge.config import ExperimentConfig
from aeforge.errors import ConfigError
from aeforge.sweep.space import load_sweep, parse_sweep

GOOD = """\
name: bits
base: econt.yaml
set:
  train.float_epochs: 2
  data.synthetic.n_events: 3000
space:
  quant.weight.bits: [4, 5, 6, 8]
  quant.latent.bits: [3, 5, 7, 9]
  model.filters: {low: 4, high: 12, step: 4}
sampler: {name: grid, seed: 3}
objectives: [emd, lut]
resources: {num_cpus: 2, max_retries: 1}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_grid_space_and_trial_configs(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, GOOD))
    assert spec.name == "bits"
    assert spec.keys == ["quant.weight.bits", "quant.latent.bits", "model.filters"]
    assert spec.grid() == {"quant.weight.bits": [4, 5, 6, 8], "quant.latent.bits": [3, 5, 7, 9],
                           "model.filters": [4, 8, 12]}
    assert spec.sampler.n_trials == 4 * 4 * 3 and spec.sampler.seed == 3
    assert spec.objectives == ("emd", "lut")
    assert spec.resources.num_cpus == 2.0 and spec.resources.max_retries == 1
    raw = spec.trial_config({"quant.weight.bits": 5, "quant.latent.bits": 3, "model.filters": 12})
    # `.bits` changes only the width: integer bits and modes of the base types are kept
    assert raw["quant"]["weight"] == "ap_fixed<5,2,AP_RND_CONV,AP_SAT>"
    assert raw["quant"]["latent"] == "ap_ufixed<3,1,AP_RND_CONV,AP_SAT>"
    assert raw["model"]["filters"] == 12
    assert raw["train"]["float_epochs"] == 2 and raw["data"]["synthetic"]["n_events"] == 3000
    assert raw["train"]["qat_epochs"] == 20  # from econt.yaml
    # the spec's own base config is untouched by trial configs
    assert spec.base_raw["quant"]["weight"] == "ap_fixed<6,2,AP_RND_CONV,AP_SAT>"


def test_distributions_and_identity(tmp_path: Path) -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    spec = parse_sweep(textwrap.dedent("""\
        space:
          quant.weight.bits: [4, 6]
          train.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
          model.latent_dim: {low: 8, high: 16}
        sampler: {name: tpe, n_trials: 5}
        """))
    dists = spec.distributions()
    assert isinstance(dists["quant.weight.bits"], CategoricalDistribution)
    assert isinstance(dists["train.learning_rate"], FloatDistribution) and dists["train.learning_rate"].log
    assert isinstance(dists["model.latent_dim"], IntDistribution)
    assert spec.grid_size() is None
    assert spec.base is None and spec.base_raw["model"]["filters"] == ExperimentConfig().model.filters
    longer = parse_sweep(spec.text.replace("n_trials: 5", "n_trials: 50"))
    assert longer.identity() == spec.identity()  # n_trials may grow on --resume
    other = parse_sweep(spec.text.replace("[4, 6]", "[4, 8]"))
    assert other.identity() != spec.identity()


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("space:\n  quant.weigth.bits: [4, 6]\n", 2,
     "space.quant.weigth.bits: unknown config key (did you mean 'weight'?)"),
    ("space:\n  model.filters: []\n", 2, "space.model.filters: empty list of values"),
    ("space:\n  model.filters: [4, 8]\n  model.stride: [x, 2]\n", 3,
     "space.model.stride[0]: value 'x' is not a valid config: model.stride: expected an integer"),
    ("space:\n  model.filters:\n    - 4\n    - 0\n", 4, "space.model.filters[1]: value 0 is not a valid config"),
    ("space:\n  quant.weight.bitz: [4]\n", 2, "a fixed-point type has the fields"),
    ("space:\n  model: [4]\n", 2, "model is a section"),
    ("space:\n  model.filters: 8\n", 2, "expected a list of values"),
    ("space:\n  model.filters: [4, 4]\n", 2, "space.model.filters[1]: duplicate value 4"),
    ("space:\n  model.filters: {low: 8, high: 4}\n", 2, "low must be below high"),
    ("space:\n  model.filters: [4]\nsampler: bayes\n", 3, "sampler: unknown sampler 'bayes'"),
    ("space:\n  model.filters: [4]\nsampler: {name: random}\n", 3, "the random sampler needs n_trials"),
    ("space:\n  model.filters: [4, 8]\nsampler: {name: grid, n_trials: 3}\n", 3, "grid has only 2 points"),
    ("space:\n  model.filters: [4]\nobjectives: [emd, area]\n", 3, "objectives[1]: unknown objective 'area'"),
    ("space:\n  model.filters: [4]\nobjectives: []\n", 3, "objectives: expected a non-empty list"),
    ("space:\n  model.filters: [4]\ncost: {synth: vivado}\n", 3, "cost.synth: expected one of"),
    ("space:\n  model.filters: [4]\nresources: {num_cpus: many}\n", 3, "resources.num_cpus: expected a number"),
    ("space:\n  model.filters: [4]\nresources: {gpus: 1}\n", 3, "resources.gpus: unknown key"),
    ("spaces:\n  model.filters: [4]\n", 1, "spaces: unknown key (did you mean 'space'?)"),
    ("set:\n  train.float_epochs: -1\nspace:\n  model.filters: [4]\n", 2,
     "set.train.float_epochs: invalid value -1"),
    ("set:\n  model.filters: 4\nspace:\n  model.filters: [4, 8]\n", 4, "overlaps set.model.filters"),
    ("space: {}\n", 1, "at least one dimension"),
    ("base: nowhere.yaml\nspace:\n  model.filters: [4]\n", 1, "experiment file 'nowhere.yaml' not found"),
    ("space:\n  model.filters: [4\n", 3, "invalid YAML"),
])
def test_bad_sweep_files_name_file_line_and_field(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_sweep(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert fragment in message


def test_cli_rejects_bad_sweep_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "space:\n  quant.weight.bits: []\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aeforge sweep: error: ") and f"{path}:2: space.quant.weight.bits: empty list" in err
    assert not out.exists()


def test_sweep_help_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, aeforge.cli\n"
            "try:\n    aeforge.cli.main(['sweep', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'optuna', 'ray', 'brevitas') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--resume" in result.stdout and "--ray" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
