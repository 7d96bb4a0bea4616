"""Multi-task split training resumes bit for bit and runs under torchrun (2 gloo CPU processes) like one.

The machinery is the single-task one (:mod:`aeforge.edge.split.distributed`, see
``test_split_distributed.py`` for why the runs are comparable): per-epoch checkpoints of every teacher and
the student, DistributedSampler batches, DDP and synchronised BatchNorm. The resume test trains all three
task kinds; the 2-process test two classification tasks, whose losses are per-sample means (FCOS's loss is
normalised by the batch's foreground count, Faster R-CNN samples and FCN/DeepLab heads draw dropout per rank,
so those agree with one process in distribution only). Every run takes one thread. The fixed-point head is a step
function of its float weights, so the student is compared from the same teachers: teachers trained on 1
and 2 processes differ by rounding (2.4e-5 here), and that moved one stem weight of the folded head by
one step, after which head distillation parted by 4e-5 in its loss.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("brevitas")

from aeforge.cli import main  # noqa: E402
from aeforge.edge.split.config import load_split_config  # noqa: E402
from aeforge.edge.split.distributed import Checkpointer, resume_dir  # noqa: E402
from aeforge.edge.split.multitask import train_multitask  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
LR = 1e-5
STEPS = 2 * 3 + 3 + 2 * 3  # two teachers 1 epoch each, head distillation 1, fine-tuning 2; 3 batches an epoch
TRAIN = """train: {batch_size: 8, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 2, progress: false, seed: 1,
        threads: 1, teacher_learning_rate: 1.0e-5, head_learning_rate: 1.0e-5, finetune_learning_rate: 1.0e-5}
"""
ALL_KINDS = """
name: multitask_resume
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 4, encoder_channels: 8}
tasks:
  - {kind: classification}
  - {kind: detection, loss_weight: 0.5}
  - {kind: segmentation, head: fcn}
data: {source: shapes, image_size: 32, shapes_count: 32, shapes_per_image: 2, eval_batch_size: 16}
""" + TRAIN
TWO_CLASSIFIERS = """
name: multitask_ddp
model: {family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 4, encoder_channels: 8}
tasks:
  - {kind: classification, name: shape}
  - {kind: classification, name: again, loss_weight: 0.5}
data: {source: shapes, image_size: 32, shapes_count: 32, shapes_per_image: 2, eval_batch_size: 16}
""" + TRAIN


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_restored() -> Any:
    """``train.threads: 1`` sets this process's torch threads; give later modules theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def train_cli(config: Path, out: Path, *extra: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(["train", str(config), "--out", str(out), "--quiet", *extra])


def states(run: Path) -> dict[str, Any]:
    """Every teacher's and the student's state dict entries, by ``teacher.<task>.<key>`` / ``student.<key>``."""
    teachers = torch.load(run / "teachers.pt", map_location="cpu", weights_only=True)["state_dicts"]
    student = torch.load(run / "student.pt", map_location="cpu", weights_only=True)["state_dict"]
    found = {f"teacher.{task}.{key}": value for task, state in teachers.items() for key, value in state.items()}
    found.update({f"student.{key}": value for key, value in student.items()})
    return found


def _state_differences(left: dict[str, Any], right: dict[str, Any]) -> tuple[float, float, list[str]]:
    assert set(left) == set(right)
    worst, unequal = [], []
    for key, value in left.items():
        other = right[key]
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            worst.append(float((value.double() - other.double()).abs().max()))
        elif not (torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other):
            unequal.append(key)
    return max(worst), float(np.median(worst)), unequal


def differences(a: Path, b: Path, keys: list[str] | None = None) -> tuple[float, float, list[str]]:
    """(largest, median per-tensor largest) float differences of two runs (``keys``: all), and the unequal
    non-floats."""
    left, right = states(a), states(b)
    assert set(left) == set(right)
    keys = list(left) if keys is None else keys
    return _state_differences({key: left[key] for key in keys}, {key: right[key] for key in keys})


class _Stop(Exception):
    pass


def _interrupt_at(stage: str, epochs: int) -> Any:
    def on_saved(saved_stage: str, epochs_done: int) -> None:
        if (saved_stage, epochs_done) == (stage, epochs):
            raise _Stop

    return on_saved


def test_interrupted_multitask_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    config.write_text(ALL_KINDS)
    reference, out = tmp_path / "reference", tmp_path / "resumed"
    assert train_cli(config, reference) == 0
    # stopped after the first teacher, then again in the middle of fine-tuning (optimizer and schedule saved)
    for stage, epochs, resume in (("teacher_cls", 1, False), ("finetune", 1, True)):
        with pytest.raises(_Stop):
            train_multitask(load_split_config(config), checkpointer=Checkpointer(
                resume_dir(out), resume=resume, on_saved=_interrupt_at(stage, epochs)))
        assert torch.load(resume_dir(out) / "latest.pt", weights_only=True)["stage"] == stage
    assert train_cli(config, out) == 1  # refuses to start over the interrupted run's checkpoint
    assert train_cli(config, out, "--resume") == 0
    largest, _, unequal = differences(reference, out)
    assert largest == 0.0 and unequal == []  # same process, same arithmetic: bit for bit
    history = json.loads((out / "history.json").read_text())
    assert history == json.loads((reference / "history.json").read_text())
    assert [len(history[key]) for key in ("teacher_cls", "teacher_det", "teacher_seg", "finetune")] == [1, 1, 1, 2]
    assert json.loads((out / "metrics.json").read_text())["tasks"] == \
        json.loads((reference / "metrics.json").read_text())["tasks"]
    assert not resume_dir(out).exists()  # discarded once the run is published


def test_resume_refuses_another_multitask_config(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    config.write_text(ALL_KINDS)
    out = tmp_path / "other"
    with pytest.raises(_Stop):
        train_multitask(load_split_config(config), checkpointer=Checkpointer(
            resume_dir(out), on_saved=_interrupt_at("teacher_cls", 1)))
    assert train_cli(config, out, "--resume", "--set", "train.seed=2") == 1
    assert (resume_dir(out) / "latest.pt").is_file() and not out.exists()


GIVEN_TEACHERS = """
import sys

import torch

from aeforge.edge.split.config import load_split_config
from aeforge.edge.split.distributed import distributed_session
from aeforge.edge.split.multitask import load_multitask_model, train_multitask

config, reference, out = sys.argv[1:]
teachers = load_multitask_model(reference).teachers
with distributed_session("gloo") as ctx:
    result = train_multitask(load_split_config(config), teachers=teachers, dist=ctx)
    if ctx.is_main:
        torch.save({"state_dict": result.model.state_dict(), "history": result.history}, out)
"""


def torchrun(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _close(one: list[dict[str, Any]], two: list[dict[str, Any]], stage: str) -> None:
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"])), (stage, a, b)


def test_two_gloo_processes_train_the_multitask_model_of_one(tmp_path: Path) -> None:
    """``aeforge train`` under torchrun trains the teachers of one process (float: up to rounding). The
    student is compared from the same teachers (``train_multitask(teachers=...)``): teachers that differ by
    rounding fold into a head whose fixed-point weights can differ by a step (measured: one stem weight)."""
    config = tmp_path / "two.yaml"
    config.write_text(TWO_CLASSIFIERS)
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_cli(config, one) == 0
    done = torchrun(tmp_path, "-m", "aeforge", "train", str(config), "--out", str(two), "--quiet")
    assert "trained on 2 processes (gloo, global batch 8)" in done.stdout and done.stdout.count("run: ") == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == ["two", "two.yaml"]
    first, second = (json.loads((run / "history.json").read_text()) for run in (one, two))
    assert list(first) == list(second) == ["teacher_shape", "teacher_again", "head_distillation", "finetune"]
    teachers = [key for key in states(one) if key.startswith("teacher.")]
    largest, median, unequal = differences(one, two, teachers)
    print(f"multi-task teachers, 2 gloo processes vs 1: max abs diff {largest:.3g}, median {median:.3g}")
    assert unequal == [] and largest <= 2 * LR * STEPS and median <= 1e-6
    for stage in ("teacher_shape", "teacher_again"):
        _close(first[stage], second[stage], stage)

    script = tmp_path / "given_teachers.py"
    script.write_text(GIVEN_TEACHERS)
    torchrun(tmp_path, str(script), str(config), str(one), str(tmp_path / "student_2.pt"))
    found = torch.load(tmp_path / "student_2.pt", weights_only=True)
    reference = torch.load(one / "student.pt", weights_only=True)["state_dict"]
    largest, median, unequal = _state_differences(reference, found["state_dict"])
    print(f"multi-task student from the same teachers, 2 gloo processes vs 1: max abs diff {largest:.3g}, "
          f"median {median:.3g}")
    assert unequal == [] and largest <= 2 * LR * STEPS and median <= 1e-6
    for stage in ("head_distillation", "finetune"):
        _close(first[stage], found["history"][stage], stage)
