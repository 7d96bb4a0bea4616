"""The pieces of distributed split training that need no process group: the torchrun environment, the
batch order across ranks, BatchNorm conversion, checkpoint refusal (the 2-process run is in
tests/integration/test_split_distributed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from aeforge.edge.split.data import SplitData  # noqa: E402
from aeforge.edge.split.distributed import (  # noqa: E402
    Checkpointer,
    DistContext,
    DistributedError,
    GlooSyncBatchNorm,
    batches_per_epoch,
    context_from_env,
    convert_batchnorm,
    revert_batchnorm,
    train_batches,
)
from aeforge.errors import ArtifactError, ConfigError  # noqa: E402

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_environment_of_torchrun() -> None:
    assert context_from_env(env={}) == DistContext()
    ctx = context_from_env("gloo", env=TORCHRUN)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend, ctx.distributed, ctx.is_main) == \
        (1, 2, 1, "gloo", True, False)
    assert context_from_env(env={**TORCHRUN, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}).backend is None


@pytest.mark.parametrize(("change", "message"), [
    ({"WORLD_SIZE": None}, "RANK=1 is set but WORLD_SIZE is not; launch with torchrun"),
    ({"RANK": None}, "WORLD_SIZE=2 is set but RANK not"),
    ({"RANK": "2"}, r"RANK=2 is outside the world of WORLD_SIZE=2 processes \(0..1\)"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"MASTER_PORT": None}, "WORLD_SIZE=2 but MASTER_PORT not set"),
])
def test_misconfigured_environment(change: dict[str, str | None], message: str) -> None:
    env = {key: value for key, value in {**TORCHRUN, **change}.items() if value is not None}
    with pytest.raises(DistributedError, match=message):
        context_from_env("gloo", env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without GPUs")
def test_nccl_needs_gpus() -> None:
    with pytest.raises(DistributedError, match="nccl needs CUDA GPUs and none is visible"):
        context_from_env("nccl", env=TORCHRUN)


def test_global_batch_must_divide() -> None:
    assert DistContext(0, 4).local_batch(64) == 16
    with pytest.raises(ConfigError, match="10 is the global batch and must be a multiple of the world size 4"):
        DistContext(0, 4).local_batch(10)


@pytest.mark.parametrize("world", [2, 3])
def test_rank_batches_make_up_the_single_process_batches(world: int) -> None:
    """The union of the ranks' k-th batches is the one process's k-th batch (24 samples, global batch 6*world/2)."""
    x = torch.arange(24, dtype=torch.float32).view(24, 1, 1, 1).expand(24, 3, 2, 2).contiguous()
    data = SplitData(x, torch.arange(24), x[:4], torch.arange(4), 24, "test")
    batch = 3 * world
    one = [y.tolist() for _, y in train_batches(data, batch, 5, 2, DistContext())]
    ranks = [[y.tolist() for _, y in train_batches(data, batch, 5, 2, DistContext(r, world))] for r in range(world)]
    assert all(len(r) == len(one) == batches_per_epoch(24, batch, DistContext(0, world)) for r in ranks)
    for k, expected in enumerate(one):
        assert sorted(label for r in ranks for label in r[k]) == sorted(expected)
    other_epoch = [y.tolist() for _, y in train_batches(data, batch, 5, 3, DistContext())]
    assert other_epoch != one  # set_epoch reshuffles


def test_batchnorm_conversion_round_trip() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    weight, keys = model[1].weight, list(model.state_dict())
    assert convert_batchnorm(model, DistContext()) is model and type(model[1]) is torch.nn.BatchNorm2d
    convert_batchnorm(model, DistContext(0, 2, backend="gloo"))
    assert isinstance(model[1], GlooSyncBatchNorm) and model[1].weight is weight
    assert list(model.state_dict()) == keys
    x = torch.randn(8, 3, 4, 4)
    reference = torch.nn.functional.batch_norm(model[0](x), None, None, model[1].weight, model[1].bias, True)
    assert torch.allclose(model(x), torch.relu(reference), atol=1e-6)  # no process group: plain BatchNorm
    revert_batchnorm(model)
    assert type(model[1]) is torch.nn.BatchNorm2d and model[1].weight is weight
    assert int(model[1].num_batches_tracked) == 1


def test_old_checkpoints_need_resume(tmp_path: Path) -> None:
    (tmp_path / "latest.pt").write_bytes(b"")
    with pytest.raises(ArtifactError, match="pass --resume to continue it, or --force to discard it"):
        Checkpointer(tmp_path).check()
    Checkpointer(tmp_path, resume=True).check()
    with pytest.raises(ArtifactError, match="unreadable checkpoint"):
        Checkpointer(tmp_path, resume=True).start(DistContext(), {})
