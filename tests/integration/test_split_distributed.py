"""Split training under torchrun (2 gloo CPU processes) equals one process, and resumes from checkpoints.

Why the runs are comparable (see :mod:`aeforge.edge.split.distributed`): ``train.batch_size`` is the
global batch (here 10: 5 a rank; the 24 training images give batches of 10, 10 and 4, i.e. 5, 5, 2 a rank),
every epoch is DistributedSampler's permutation (the same for 1 and 2 processes; rank r takes positions
r, r+2, ...), so the union of the ranks' k-th batches is the single process's k-th batch; the random crops
and flips are seeded per (seed, epoch, image); losses are per-sample means and DDP averages the
gradients; BatchNorm statistics are those of the global batch (GlooSyncBatchNorm). What remains is float
rounding (other summation orders), which Adam turns into at most about ``2 * lr`` a step for the few
weights whose true gradient is ~0 (their update is lr * sign(gradient)): hence the small learning rates,
the bound ``2 * lr * steps`` on the largest difference, and a tight bound on the typical (median) one.
A wrong batch, order, gradient scale (weight decay makes Adam see it) or BatchNorm moves every weight by
~lr and the epoch losses in their 4th digit. Measured here: largest difference 1.7e-5, median 1.2e-7, epoch
losses within 1.3e-6 (fine-tuning included); with per-rank BatchNorm (not synchronised) the largest is
1.4, the median 6e-5 and the teacher's epoch loss moves by 0.16.

Every run takes one thread (``train.threads: 1``, as each torchrun rank with OMP_NUM_THREADS=1): the
fixed-point head is a step function of its float weights, so a rounding difference that lands one weight
on the other side of a rounding tie moves its 8-bit code by one step, and the 3-bit code and the tail's
train-mode BatchNorms (batch 10 at 1x1) turn that into a different student. A single process at torch's
default 2 threads did exactly that: one folded head weight sat exactly on a tie (37/1024 on a 1/512 grid)
at 1 thread and 1 ulp above it at 2 threads; the first fine-tuning logits moved by 0.44 and the tail's
running variances by 0.53, with no second process involved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")
image_module = pytest.importorskip("PIL.Image")
datasets = pytest.importorskip("sklearn.datasets")

from aeforge.cli import main  # noqa: E402
from aeforge.edge.split.config import load_split_config  # noqa: E402
from aeforge.edge.split.distributed import Checkpointer, resume_dir  # noqa: E402
from aeforge.edge.split.train import train_split_experiment  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = 3
LR = 1e-5
STEPS = 3 + 3 + 2 * 3  # teacher 1 epoch, head distillation 1, fine-tuning 2; 3 batches an epoch
TIMINGS: dict[str, float] = {}


def digits_tree(root: Path) -> tuple[Path, Path]:
    """``root/{train,val}/digit_N/*.png``: 8 training and 2 validation digits of classes 0..2, 16x16 RGB."""
    digits = datasets.load_digits()
    for label in range(CLASSES):
        images = digits.images[digits.target == label]
        for split, chosen in (("train", images[:8]), ("val", images[8:10])):
            folder = root / split / f"digit_{label}"
            folder.mkdir(parents=True)
            for i, image in enumerate(chosen):
                grey = np.kron(image * 255.0 / 16.0, np.ones((2, 2))).astype(np.uint8)
                image_module.fromarray(grey, "L").convert("RGB").save(folder / f"{i}.png")
    return root / "train", root / "val"


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_restored() -> Any:
    """``train.threads: 1`` sets this process's torch threads; give later modules theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split_dist")
    train_dir, val_dir = digits_tree(root)
    torch.manual_seed(0)
    weights = root / "resnet18-3.pth"  # the same starting teacher for every run
    torch.save(models.resnet18(weights=None, num_classes=CLASSES).state_dict(), weights)
    path = root / "split.yaml"
    path.write_text(f"""
name: dist
model: {{family: split, backbone: resnet18, split_after: layer1, channels: 2, bits: 3, encoder_channels: 8,
        weights: {weights}}}
data: {{source: imagefolder, train_dir: {train_dir}, val_dir: {val_dir}, image_size: 16, resize: 18,
       train_crop: random, hflip: true, workers: 0, eval_batch_size: 4}}
train: {{batch_size: 10, threads: 1, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 2, seed: 3,
        weight_decay: 0.01, teacher_learning_rate: {LR}, head_learning_rate: {LR}, finetune_learning_rate: {LR},
        progress: false}}
""")
    return path


@pytest.fixture(scope="module")
def single_run(config_path: Path) -> Path:
    """The reference: one process, plain ``aeforge train`` (no torchrun)."""
    out = config_path.parent / "single"
    start = time.perf_counter()
    assert main(["train", str(config_path), "--out", str(out), "--quiet"]) == 0
    TIMINGS["single"] = time.perf_counter() - start
    assert not resume_dir(out).exists()  # discarded once the run is published
    return out


def torchrun(config_path: Path, out: Path, nproc: int = 2, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "aeforge", "train", str(config_path), "--out", str(out), "--quiet", *extra]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=420)


@pytest.fixture(scope="module")
def distributed_run(config_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = config_path.parent / "distributed"
    start = time.perf_counter()
    done = torchrun(config_path, out)
    TIMINGS["torchrun_2"] = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done


def states(run: Path) -> dict[str, dict[str, Any]]:
    return {name: torch.load(run / f"{name}.pt", map_location="cpu", weights_only=True)["state_dict"]
            for name in ("teacher", "student")}


def differences(a: Path, b: Path, names: tuple[str, ...] = ("teacher", "student"),
                running_stats: bool = True) -> tuple[float, float, list[str]]:
    """(largest, median largest-per-tensor) float differences of ``names``' states, and unequal non-floats."""
    worst, unequal = [], []
    for name, left in states(a).items():
        if name not in names:
            continue
        right = states(b)[name]
        assert set(left) == set(right), name
        for key, value in left.items():
            other = right[key]
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                if running_stats or ".running_" not in key:
                    worst.append(float((value.double() - other.double()).abs().max()))
            elif not (torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other):
                unequal.append(f"{name}.{key}")
    return max(worst), float(np.median(worst)), unequal


def _histories(single_run: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    one, two = (json.loads((run / "history.json").read_text()) for run in (single_run, out))
    assert [len(one[k]) for k in ("teacher", "head_distillation", "finetune")] == [1, 1, 2]
    return one, two


def _same_epochs(one: list[dict[str, Any]], two: list[dict[str, Any]], stage: str) -> None:
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"])), (stage, a, b)
        assert a["test_accuracy"] == b["test_accuracy"], (stage, a, b)


def test_two_gloo_processes_equal_one(single_run: Path, distributed_run: tuple[Path, Any]) -> None:
    """Teacher training and head distillation on 2 processes equal one process (same batches, global
    BatchNorm, averaged gradients); the student's weights after fine-tuning stay within Adam's reach."""
    out, done = distributed_run
    assert "trained on 2 processes (gloo, global batch 10)" in done.stdout
    largest, median, unequal = differences(single_run, out, names=("teacher",))
    print(f"teacher: max abs diff {largest:.3g}, median per-tensor max {median:.3g}; timings {TIMINGS}")
    assert unequal == []  # BatchNorm counters
    assert largest <= 2 * LR * STEPS and median <= 1e-6
    largest, _, unequal = differences(single_run, out, names=("student",), running_stats=False)
    assert unequal == [] and largest <= 2 * LR * STEPS  # the quantizers' calibrated types (extra state)
    one, two = _histories(single_run, out)
    for stage in ("teacher", "head_distillation"):
        _same_epochs(one[stage], two[stage], stage)


def test_fine_tuning_on_two_gloo_processes_equals_one(single_run: Path, distributed_run: tuple[Path, Any]) -> None:
    out, _ = distributed_run
    largest, median, unequal = differences(single_run, out)
    print(f"teacher and student after fine-tuning: max abs diff {largest:.3g}, median per-tensor max {median:.3g}")
    assert unequal == [] and largest <= 2 * LR * STEPS and median <= 1e-6
    one, two = _histories(single_run, out)
    _same_epochs(one["finetune"], two["finetune"], "finetune")
    m1, m2 = (json.loads((run / "metrics.json").read_text()) for run in (single_run, out))
    assert m1["teacher_accuracy"] == m2["teacher_accuracy"] and m1["student_accuracy"] == m2["student_accuracy"]


def test_only_rank_0_writes(config_path: Path, distributed_run: tuple[Path, Any]) -> None:
    out, done = distributed_run
    assert done.stdout.count("run: ") == 1  # rank 1 prints and writes nothing
    siblings = sorted(p.name for p in out.parent.iterdir() if p.name.startswith("distributed"))
    assert siblings == ["distributed"]  # no staging leftovers, resume checkpoints discarded
    assert (out / "card.json").is_file() and (out / "student.pt").is_file()


class _Stop(Exception):
    pass


def test_resume_after_an_interruption_equals_the_uninterrupted_run(config_path: Path, single_run: Path) -> None:
    out = config_path.parent / "resumed"

    def interrupt(stage: str, epochs_done: int) -> None:
        if (stage, epochs_done) == ("finetune", 1):  # mid-stage: optimizer and schedule must be restored
            raise _Stop

    with pytest.raises(_Stop):
        train_split_experiment(load_split_config(config_path), checkpointer=Checkpointer(resume_dir(out),
                                                                                         on_saved=interrupt))
    assert (resume_dir(out) / "latest.pt").is_file() and not out.exists()
    assert main(["train", str(config_path), "--out", str(out), "--quiet"]) == 1  # refuses to overwrite it
    start = time.perf_counter()
    assert main(["train", str(config_path), "--out", str(out), "--quiet", "--resume"]) == 0
    TIMINGS["resume"] = time.perf_counter() - start
    largest, _, unequal = differences(single_run, out)
    assert largest == 0.0 and unequal == []  # same process, same arithmetic: bit for bit
    assert json.loads((out / "history.json").read_text()) == json.loads((single_run / "history.json").read_text())
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["after_head_distillation.pt"]
    assert not resume_dir(out).exists()


def test_resume_refuses_another_config(config_path: Path) -> None:
    out = config_path.parent / "other"

    def interrupt(stage: str, epochs_done: int) -> None:
        raise _Stop  # after the first epoch

    with pytest.raises(_Stop):
        train_split_experiment(load_split_config(config_path),
                               checkpointer=Checkpointer(resume_dir(out), on_saved=interrupt))
    code = main(["train", str(config_path), "--out", str(out), "--quiet", "--resume", "--set", "train.seed=4"])
    assert code == 1 and (resume_dir(out) / "latest.pt").is_file()


def test_misconfigured_world_fails_fast_and_clearly(config_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = str(config_path.parent / "never")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert main(["train", str(config_path), "--out", out, "--quiet"]) == 1
    assert "WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT not set; launch with torchrun" in capsys.readouterr().err
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")  # 10 does not split into 3: refused before joining (no hang)
    assert main(["train", str(config_path), "--out", out, "--quiet"]) == 1
    assert "train.batch_size: 10 is the global batch and must be a multiple of the world size 3" in \
        capsys.readouterr().err
    if not torch.cuda.is_available():
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(["train", str(config_path), "--out", out, "--quiet", "--dist-backend", "nccl"]) == 1
        assert "--dist-backend nccl needs CUDA GPUs and none is visible" in capsys.readouterr().err
    assert not Path(out).exists()


@pytest.mark.hardware
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="nccl: needs 2 CUDA GPUs (one process a GPU)")
def test_two_nccl_gpus_equal_one_gpu(config_path: Path) -> None:
    one, two = config_path.parent / "gpu1", config_path.parent / "gpu2"
    for out, nproc in ((one, 1), (two, 2)):
        done = torchrun(config_path, out, nproc, "--dist-backend", "nccl")
        assert done.returncode == 0, done.stderr[-4000:]
    largest, median, unequal = differences(one, two)
    assert unequal == [] and largest <= 2 * LR * STEPS and median <= 1e-6
