"""Small-sample training recipe: symmetry augmentation, one-cycle schedule, early stopping on EMD."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aeforge.config import ConfigError, DataConfig, ExperimentConfig, SyntheticDataConfig, TrainConfig, parse_config
from aeforge.data.hgcal import geometry as geo
from aeforge.quantize import train as tr


def test_defaults_keep_the_plain_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.augment, cfg.schedule, cfg.monitor) == ("none", "constant", "val_loss")
    options = tr.recipe_options(cfg, tr.EventSplits(np.ones((4, 48)), np.ones((4, 48)), np.ones((4, 48)), "x"))
    assert options["augment_maps"] is None and options["monitor"] is None and options["schedule"] == "constant"
    parsed = parse_config("train:\n  augment: symmetries\n  schedule: one_cycle\n  monitor: emd\n")
    assert (parsed.train.augment, parsed.train.schedule, parsed.train.monitor) == ("symmetries", "one_cycle", "emd")


@pytest.mark.parametrize(("key", "value"), [("augment", "flips"), ("schedule", "cosine"), ("monitor", "mse"),
                                             ("warmup_fraction", 1.0), ("emd_val_events", 3)])
def test_bad_recipe_values_are_refused(key: str, value) -> None:
    with pytest.raises(ConfigError, match=f"train.{key}"):
        parse_config(f"train:\n  {key}: {value}\n")


def test_one_cycle_schedule_shape() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = tr.make_scheduler(optimizer, "one_cycle", max_lr=0.01, total_steps=200, warmup_fraction=0.3)
    lrs = []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    lrs = np.asarray(lrs)
    peak = int(lrs.argmax())
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert lrs.max() == pytest.approx(0.01, rel=1e-3)
    assert abs(peak - 0.3 * 200) <= 2
    assert (np.diff(lrs[: peak + 1]) >= 0).all() and (np.diff(lrs[peak:]) <= 0).all()
    assert lrs[-1] < 0.01 / 25 / 100  # anneals far below the start
    assert tr.make_scheduler(optimizer, "constant", 0.01, 200) is None


def test_augment_batch_moves_events_by_symmetries_and_keeps_sums() -> None:
    rng = np.random.default_rng(0)
    events = torch.as_tensor(rng.random((600, 48)))
    maps = geo.symmetry_maps(reflections=True)
    gathers = tr.augmentation_gathers(maps)
    moved = tr.augment_batch(events, gathers, np.random.default_rng(1)).numpy()
    np.testing.assert_allclose(moved.sum(axis=1), events.numpy().sum(axis=1), rtol=1e-12)
    used = []
    for x, y in zip(events.numpy(), moved, strict=True):
        hits = [k for k, m in enumerate(maps) if np.array_equal(geo.apply_symmetry(x, m), y)]
        assert len(hits) == 1
        used.append(hits[0])
    counts = np.bincount(used, minlength=6)
    assert (counts > 60).all()  # every symmetry drawn, roughly uniformly


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(48, 8), torch.nn.ReLU(), torch.nn.Linear(8, 48))


def _scripted_monitor(scores: list[float], snapshots: list[dict]):
    def monitor(model: torch.nn.Module) -> float:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return scores[len(snapshots) - 1]

    return monitor


def _fit(model, monitor, **kw):
    rng = np.random.default_rng(0)
    data = rng.random((64, 48)).astype(np.float32)
    options = dict(phase="float", epochs=10, learning_rate=1e-2, batch_size=16, loss_name="mse",
                   patience=2, min_delta=0.0, seed=0, progress=False, monitor=monitor)
    options.update(kw)
    return tr.fit(model, data[:48], data[48:], **options)


def test_early_stopping_restores_the_best_scored_weights() -> None:
    snapshots: list[dict] = []
    model = _tiny_model()
    history = _fit(model, _scripted_monitor([3.0, 2.0, 1.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 9.0], snapshots))
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]  # two epochs without improvement, then stop
    assert [r.val_emd for r in history] == [3.0, 2.0, 1.0, 4.0, 5.0]
    final = model.state_dict()
    for key, value in snapshots[2].items():
        torch.testing.assert_close(final[key], value)  # epoch 3's weights, not the last ones
    assert any(not torch.equal(final[k], snapshots[-1][k]) for k in final)


def test_one_cycle_patience_counts_after_warmup() -> None:
    rising = [float(i) for i in range(1, 11)]
    plain = _fit(_tiny_model(), _scripted_monitor(rising, []), patience=1)
    assert len(plain) == 2
    cycled = _fit(_tiny_model(), _scripted_monitor(rising, []), patience=1, schedule="one_cycle",
                  warmup_fraction=0.5)
    assert len(cycled) == 6
    lrs = [r.learning_rate for r in cycled]
    assert lrs[0] == pytest.approx(1e-2 / 25) and max(lrs) > 5 * lrs[0]


def test_emd_monitor_on_econt_keeps_the_best_emd() -> None:
    pytest.importorskip("ot")
    from aeforge.quantize.models.econt import build_autoencoder

    rng = np.random.default_rng(0)
    events = rng.random((160, 48)) * (rng.random((160, 48)) < 0.4)
    events[:, 5] += 0.05
    events /= events.sum(axis=1, keepdims=True)
    config = ExperimentConfig()
    torch.manual_seed(0)
    model = build_autoencoder(config.model, None)
    monitor = tr.emd_monitor(events[128:])
    history = tr.fit(model, events[:128], events[128:], phase="float", epochs=6, learning_rate=3e-2, batch_size=32,
                     loss_name="energy_mse", patience=6, min_delta=0.0, seed=0, progress=False, monitor=monitor,
                     augment_maps=geo.symmetry_maps(), schedule="one_cycle")
    scores = [r.val_emd for r in history]
    assert all(np.isfinite(scores))
    assert monitor(model) == pytest.approx(min(scores), rel=1e-9)


def test_train_experiment_runs_the_recipe() -> None:
    pytest.importorskip("ot")
    config = ExperimentConfig(
        data=DataConfig(synthetic=SyntheticDataConfig(n_events=400, seed=2)),
        train=TrainConfig(float_epochs=2, qat_epochs=1, batch_size=64, augment="rotations", schedule="one_cycle",
                          monitor="emd", emd_val_events=30),
    )
    result = tr.train_experiment(config, progress=False)
    assert [r.phase for r in result.history] == ["float", "float", "qat"]
    assert all(r.val_emd is not None for r in result.history)  # inf while the untrained model outputs nothing
    assert np.isfinite(min(r.val_emd for r in result.history))
    plain = tr.train_experiment(dataclasses.replace(config, train=TrainConfig(float_epochs=1, qat_epochs=0)),
                                progress=False)
    assert plain.history[0].val_emd is None


def test_demo_uses_one_cycle_and_plain_configs_do_not() -> None:
    from aeforge.demo import demo_config

    assert demo_config().train.schedule == "one_cycle"
    assert demo_config().train.float_epochs == 80 and demo_config().train.qat_epochs == 20  # same budget as before
    assert ExperimentConfig().train.schedule == "constant"
