"""Distributed split training under ``torchrun``: one process per GPU (nccl) or CPU process (gloo).

The design makes a run's result independent of the number of processes W, so that the same config on
one process or on W processes (any nodes) trains the same weights up to float rounding:

* ``train.batch_size`` is the **global** batch; each rank takes ``batch_size / W`` (must divide).
* The order of every epoch is :class:`~torch.utils.data.DistributedSampler`'s permutation
  (``seed`` + ``set_epoch(epoch)``, the same permutation for every W). Rank ``r`` takes positions
  ``r, r + W, ...``; its ``k``-th batch of ``B`` is positions ``r + W*j`` for ``j`` in ``[kB, (k+1)B)``,
  so the union of the ranks' ``k``-th batches is exactly positions ``[kWB, (k+1)WB)``: the single
  process's ``k``-th batch of ``WB`` (also the short last one, when the training set size is a multiple
  of W; otherwise the sampler repeats at most W-1 samples an epoch, as DDP always does).
* Every loss is a per-sample mean and every rank holds the same number of samples in a step, so
  DDP's gradient average ``1/W sum_r 1/B sum_i grad l_i`` is the gradient of the mean over the global
  batch: the single process's gradient. Adam, the cosine schedule and weight decay then act alike.
* BatchNorm in training mode normalises over the **global** batch: :class:`torch.nn.SyncBatchNorm` on
  GPUs, and on CPU (which SyncBatchNorm refuses) :class:`GlooSyncBatchNorm`: the same statistics
  (two-pass mean and biased variance over all ranks, unbiased running variance) through differentiable
  all-reduces, whose backward all-reduces the gradients of the shared statistics, so the gradient is
  that of the global-batch BatchNorm. Both are reverted to ``BatchNorm2d`` after training.
* Random training transforms (imagefolder) run under a torch seed drawn from (seed, epoch, sample
  index), so a sample is augmented alike whichever rank or DataLoader worker decodes it; each epoch
  also reseeds the global RNG from (seed, epoch, rank) (dropout), which makes resuming deterministic.
* Per-epoch accuracies are computed on a shard of the test set per rank and summed; epoch losses are
  summed over ranks. Final metrics are computed by rank 0 alone.

"Up to float rounding" has one catch: the fixed-point head is a step function of its float weights, so a
rounding difference (another world size, or another thread count per process) that carries a weight
across a rounding tie moves its code by one step, and from there the runs part by more than rounding.
Equal threads per process (torchrun sets ``OMP_NUM_THREADS=1``; ``train.threads``) make that rare, not
impossible.

Single-task (:mod:`~aeforge.edge.split.train`) and multi-task (:mod:`~aeforge.edge.split.multitask`) training
both run their stages through :class:`StageRun`. Rank 0 alone writes (the run directory and the resume
checkpoints); the others never touch the disk.
A checkpoint (``RUN.resume/latest.pt``) is written after every epoch of every stage, with the models,
optimizer and schedule states and the history; rank 0 reads it and broadcasts it, so nodes need no
shared file system.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from aeforge.errors import AeforgeError, ArtifactError, ConfigError

BACKENDS = ("auto", "gloo", "nccl")
CHECKPOINT_FORMAT = 1
STAGES = ("teacher", "head_distillation", "finetune")
_LAUNCH = ("launch with torchrun, which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, e.g. "
           "`torchrun --nproc-per-node 2 -m aeforge train CONFIG.yaml --out RUN`")
_IGNORED_KEYS = ("train.progress", "train.threads")  # may change on resume


class DistributedError(AeforgeError):
    """The process world (torchrun environment, backend, devices) is misconfigured."""


# ------------------------------------------------------------------------------------ the world
@dataclass(frozen=True)
class DistContext:
    """This process's place in the world; the default is a single process on the CPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Each rank's share of the global ``batch_size``."""
        if batch_size % self.world_size:
            raise ConfigError(f"train.batch_size: {batch_size} is the global batch and must be a multiple of the "
                              f"world size {self.world_size} (each process takes batch_size / world size)")
        return batch_size // self.world_size


def _env_int(env: dict[str, str] | os._Environ[str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer; {_LAUNCH}") from None


def context_from_env(backend: str = "auto", env: dict[str, str] | None = None) -> DistContext:
    """The :class:`DistContext` that torchrun's environment describes (checked; nothing is initialised)."""
    env = os.environ if env is None else env
    if backend not in BACKENDS:
        raise DistributedError(f"--dist-backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    world, rank, local = (_env_int(env, name) for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    if world is None:
        if rank not in (None, 0):
            raise DistributedError(f"RANK={rank} is set but WORLD_SIZE is not; {_LAUNCH}")
        world, rank, local = 1, 0, local or 0
    if world < 1:
        raise DistributedError(f"WORLD_SIZE={world}: must be >= 1")
    if rank is None or local is None:
        missing = [name for name, value in (("RANK", rank), ("LOCAL_RANK", local)) if value is None]
        raise DistributedError(f"WORLD_SIZE={world} is set but {' and '.join(missing)} not; {_LAUNCH}")
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is outside the world of WORLD_SIZE={world} processes (0..{world - 1})")
    if local < 0 or local > rank:
        raise DistributedError(f"LOCAL_RANK={local} is not possible for RANK={rank}; {_LAUNCH}")
    if world > 1:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
        if missing:
            raise DistributedError(f"WORLD_SIZE={world} but {' and '.join(missing)} not set; {_LAUNCH}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    chosen = ("nccl" if gpus else "gloo") if backend == "auto" else backend
    if chosen == "nccl":
        if not gpus:
            raise DistributedError("--dist-backend nccl needs CUDA GPUs and none is visible; use gloo (CPU)")
        if local >= gpus:
            raise DistributedError(f"LOCAL_RANK={local} but this node sees {gpus} GPU(s): --nproc-per-node must not "
                                   f"exceed the GPUs per node (CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')})")
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world, local, chosen if world > 1 else None, device)


def init_distributed(backend: str = "auto", timeout_s: float = 3600.0) -> DistContext:
    """Check the environment and, for more than one process, join the process group."""
    from datetime import timedelta

    ctx = context_from_env(backend)
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if ctx.distributed and not dist.is_initialized():
        try:
            dist.init_process_group(ctx.backend, rank=ctx.rank, world_size=ctx.world_size,
                                    timeout=timedelta(seconds=timeout_s),
                                    device_id=ctx.device if ctx.device.type == "cuda" else None)
        except (RuntimeError, ValueError) as error:
            raise DistributedError(f"rank {ctx.rank}/{ctx.world_size}: cannot join the {ctx.backend} process group "
                                   f"at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: "
                                   f"{str(error).splitlines()[0]}") from None
    return ctx


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(backend: str = "auto") -> Iterator[DistContext]:
    """``with distributed_session() as ctx:`` joins the world for the block and always leaves it."""
    ctx = init_distributed(backend)
    try:
        yield ctx
    finally:
        shutdown(ctx)


def main_first(ctx: DistContext, action: Callable[[], Any]) -> Any:
    """Run ``action`` on rank 0 only; an :class:`AeforgeError` there is raised on every rank (no hang)."""
    message, result = None, None
    if ctx.is_main:
        try:
            result = action()
        except AeforgeError as error:
            message = f"{type(error).__name__}\0{error}"
    if ctx.distributed:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if message is not None:
        kind, text = message.split("\0", 1)
        error_type = {cls.__name__: cls for cls in (ConfigError, ArtifactError, DistributedError)}.get(kind,
                                                                                                      AeforgeError)
        raise error_type(text if ctx.is_main else f"(on rank 0) {text}")
    return result


def check_same_everywhere(ctx: DistContext, what: dict[str, Any]) -> None:
    """Raise on every rank unless all ranks pass equal ``what`` (config, data sizes), naming what differs."""
    if not ctx.distributed:
        return
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, what)
    for rank, other in enumerate(gathered):
        differing = sorted(key for key in set(what) | set(other) if what.get(key) != other.get(key))
        if differing:
            raise DistributedError(f"rank {rank} differs from rank {ctx.rank} in {', '.join(differing)}: every "
                                   "process must run the same config on the same data")


def all_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64)."""
    if not ctx.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]


# ------------------------------------------------------------------------------------ BatchNorm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the backward all-reduces the incoming gradients, since every
    rank's loss depends on the summed value."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        summed = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        summed = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed)
        return summed


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks, differentiable (see :class:`_AllReduceSum`)."""
    return _AllReduceSum.apply(tensor)


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch for CPU processes (gloo), where ``nn.SyncBatchNorm`` is refused.

    Training mode: per-channel sums (and the sample count) are all-reduced, then the sums of squared
    deviations from the global mean, through a differentiable all-reduce whose backward
    all-reduces the incoming gradients: the forward and the gradients are those of one BatchNorm on the
    concatenated batch. Eval mode, or a single process, is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local_count = input.new_tensor([input.numel() / max(1, input.size(1))])
        sums = all_reduce_sum(torch.cat([input.sum(dims), local_count]))
        count = sums[-1].detach()
        if float(count) <= 1:
            raise ValueError(f"expected more than 1 value per channel over all ranks when training, got {int(count)}")
        mean = sums[:-1] / count
        centred = input - mean.view(shape)
        var = all_reduce_sum((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (count / (count - 1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out


def _swap_batchnorm(module: nn.Module, make: Callable[[_BatchNorm], nn.Module | None]) -> nn.Module:
    replaced = make(module) if isinstance(module, _BatchNorm) else None
    if replaced is not None:
        return replaced
    for name, child in module.named_children():
        new = _swap_batchnorm(child, make)
        if new is not child:
            setattr(module, name, new)
    return module


def _moved_batchnorm(old: _BatchNorm, cls: type[_BatchNorm]) -> _BatchNorm:
    new = cls(old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats)
    if old.affine:
        new.weight, new.bias = old.weight, old.bias  # the same Parameters (requires_grad kept)
    new.running_mean, new.running_var = old.running_mean, old.running_var
    new.num_batches_tracked = old.num_batches_tracked
    new.train(old.training)
    return new


def convert_batchnorm(module: nn.Module, ctx: DistContext) -> nn.Module:
    """For several processes: every ``BatchNorm2d`` of ``module`` (in place) -> a synchronised one
    (``nn.SyncBatchNorm`` on GPUs, :class:`GlooSyncBatchNorm` on CPU); unchanged for one process."""
    if not ctx.distributed:
        return module
    cls: type[_BatchNorm] = nn.SyncBatchNorm if ctx.device.type == "cuda" else GlooSyncBatchNorm
    return _swap_batchnorm(module, lambda bn: _moved_batchnorm(bn, cls) if type(bn) is nn.BatchNorm2d else None)


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_batchnorm` (synchronised BatchNorms -> ``BatchNorm2d``, same tensors)."""
    synced = (nn.SyncBatchNorm, GlooSyncBatchNorm)
    return _swap_batchnorm(module, lambda bn: _moved_batchnorm(bn, nn.BatchNorm2d) if isinstance(bn, synced)
                           else None)


class _Method(nn.Module):
    """``forward`` calls ``module.<method>`` (so DDP can wrap a method such as ``decoded_features``), or
    ``method(module, ...)`` when ``method`` is a function."""

    def __init__(self, module: nn.Module, method: str | Callable[..., Any]) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args: Any) -> Any:
        if callable(self.method):
            return self.method(self.module, *args)
        return getattr(self.module, self.method)(*args)


@contextmanager
def data_parallel(module: nn.Module, ctx: DistContext,
                  method: str | Callable[..., Any] = "forward") -> Iterator[Callable[..., Any]]:
    """``module.<method>`` (or ``method(module, ...)``) for one stage: DDP-wrapped for several processes
    (gradients averaged over ranks in backward), the plain call for one. Only parameters that require
    grad are synced."""
    if not ctx.distributed:
        yield (lambda *args: method(module, *args)) if callable(method) else getattr(module, method)
        return
    from torch.nn.parallel import DistributedDataParallel

    # static_graph: each stage uses the same parameters every step; it also tolerates trainable parameters
    # that the loss never reaches (e.g. CompressAI's EntropyBottleneck quantiles, trained by no loss here)
    wrapped = DistributedDataParallel(_Method(module, method), static_graph=True,
                                      device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    handle = _Handle(wrapped)
    del wrapped
    try:
        yield handle
    finally:
        handle.target = None  # frees the DDP (its reducer, buckets and gradient hooks) even if the stage's
        # closures outlive the block: the next stage wraps afresh


class _Handle:
    """A callable that forwards to ``target`` until it is cleared (closures may keep the handle)."""

    def __init__(self, target: Callable[..., Any]) -> None:
        self.target: Callable[..., Any] | None = target

    def __call__(self, *args: Any) -> Any:
        if self.target is None:
            raise RuntimeError("this stage's DistributedDataParallel wrapper was released")
        return self.target(*args)


# ------------------------------------------------------------------------------------ data
def _mix(*values: int) -> int:
    digest = hashlib.sha256(",".join(str(int(v)) for v in values).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class SeededItems(torch.utils.data.Dataset):
    """``dataset[i]`` decoded under the torch seed (seed, epoch, i): augmentation independent of rank/worker."""

    def __init__(self, dataset: Any, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, index))
            return self.dataset[index]


def epoch_sampler(size: int, seed: int, epoch: int, ctx: DistContext) -> torch.utils.data.DistributedSampler:
    """This rank's :class:`DistributedSampler` of an epoch (shuffled with ``seed``, ``set_epoch(epoch)``)."""
    sampler = torch.utils.data.DistributedSampler(range(size), num_replicas=ctx.world_size, rank=ctx.rank,
                                                  shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return sampler


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


def train_batches(data: Any, batch_size: int, seed: int, epoch: int, ctx: DistContext,
                  targets: Callable[[torch.Tensor], Any] | None = None) -> Iterator[tuple[torch.Tensor, Any]]:
    """This rank's training batches of ``epoch`` (``batch_size`` is global), on ``ctx.device``: images
    and labels, or images and ``targets(index)`` (tensor data; e.g. the boxes and masks of multi-task data)."""
    local = ctx.local_batch(batch_size)
    sampler = epoch_sampler(len(data.x_train), seed, epoch, ctx)
    if isinstance(data.x_train, torch.Tensor):
        order = torch.tensor(list(sampler), dtype=torch.int64)
        for start in range(0, len(order), local):
            index = order[start:start + local]
            found = data.y_train[index] if targets is None else targets(index)
            yield data.x_train[index].to(ctx.device), to_device(found, ctx.device)
        return
    if targets is not None:
        raise ConfigError(f"data.source {getattr(data, 'source', None)!r}: per-sample targets need in-memory "
                          "training images")
    items = SeededItems(data.x_train.subset(range(len(data.x_train))), seed, epoch)
    loader = torch.utils.data.DataLoader(items, batch_size=local, sampler=sampler, num_workers=data.workers,
                                         pin_memory=ctx.device.type == "cuda")
    for x, y in loader:
        yield x.to(ctx.device), y.to(torch.int64).to(ctx.device)


def batches_per_epoch(size: int, batch_size: int, ctx: DistContext) -> int:
    """Optimizer steps per epoch (the same on every rank)."""
    per_rank = -(-size // ctx.world_size)
    return -(-per_rank // ctx.local_batch(batch_size))


def seed_epoch(seed: int, epoch: int, ctx: DistContext) -> None:
    """Reseed the global RNG for an epoch (dropout): deterministic per (seed, epoch, rank), also on resume."""
    torch.manual_seed(_mix(seed, epoch, ctx.rank, 7))


@torch.no_grad()
def sharded_accuracy(model: nn.Module, data: Any, ctx: DistContext) -> float:
    """Top-1 accuracy on the test set; each rank scores positions ``rank::world`` and the counts are summed."""
    total = len(data.y_test)
    positions = list(range(ctx.rank, total, ctx.world_size))
    was_training = model.training
    model.eval()
    correct = 0
    try:
        size = data.eval_batch_size
        if isinstance(data.x_test, torch.Tensor):
            index = torch.tensor(positions, dtype=torch.int64)
            batches: Any = ((data.x_test[index[i:i + size]], data.y_test[index[i:i + size]])
                            for i in range(0, len(index), size))
        else:
            batches = torch.utils.data.DataLoader(data.x_test.subset(positions), batch_size=size,
                                                  num_workers=data.workers)
        for x, y in batches:
            correct += int((model(x.to(ctx.device)).argmax(1).cpu() == y.to(torch.int64)).sum())
    finally:
        model.train(was_training)
    return all_sum(ctx, [float(correct)])[0] / max(1, total)


# ------------------------------------------------------------------------------------ checkpoints
def config_fingerprint(config: Any) -> dict[str, Any]:
    """The config as a flat ``{dotted key: value}`` dict, without keys that may change on resume."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif prefix not in _IGNORED_KEYS:
            flat[prefix] = json.loads(json.dumps(value, default=str))

    walk("", dataclasses.asdict(config))
    return flat


def resume_dir(out: str | Path) -> Path:
    """Where the resume checkpoints of run directory ``out`` live: ``OUT.resume`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


class Checkpointer:
    """Per-epoch training checkpoints in ``directory`` (``latest.pt``, replaced atomically, rank 0 only).

    ``resume=True`` continues from ``latest.pt`` when there is one (a fresh start otherwise, so a launcher
    that restarts the same command line works); ``resume=False`` refuses an existing one. ``on_saved``
    (stage, epochs done) is called after every save (tests use it to interrupt a run).
    """

    def __init__(self, directory: str | Path, resume: bool = False,
                 on_saved: Callable[[str, int], None] | None = None) -> None:
        self.directory = Path(directory)
        self.resume = resume
        self.on_saved = on_saved
        self.ctx = DistContext()
        self.fingerprint: dict[str, Any] = {}
        self.loaded: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.directory / "latest.pt"

    def check(self) -> None:
        """Refuse old checkpoints unless resuming (call on rank 0 before training)."""
        if self.path.exists() and not self.resume:
            raise ArtifactError(f"{self.directory}: holds the checkpoint of an interrupted run; pass --resume to "
                                f"continue it, or --force to discard it")

    def start(self, ctx: DistContext, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        """Bind to the world and load the checkpoint to resume from (rank 0 reads, every rank receives it)."""
        self.ctx, self.fingerprint = ctx, fingerprint
        self.loaded = main_first(ctx, self._read) if self.resume else None
        if ctx.distributed and self.resume:
            box = [self.loaded]
            dist.broadcast_object_list(box, src=0)
            self.loaded = box[0]
        return self.loaded

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ArtifactError(f"{self.path}: unreadable checkpoint: {type(error).__name__}: {error}") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ArtifactError(f"{self.path}: not an aeforge split training checkpoint (format {CHECKPOINT_FORMAT})")
        old = payload.get("fingerprint", {})
        differing = sorted(key for key in set(old) | set(self.fingerprint) if old.get(key) != self.fingerprint.get(key))
        if differing:
            shown = ", ".join(f"{key} ({old.get(key)!r} -> {self.fingerprint.get(key)!r})" for key in differing[:5])
            raise ConfigError(f"{self.path}: was written with another config: {shown}; resume with the same "
                              f"config, or --force to start over")
        return payload

    def save(self, stage: str, epochs_done: int, modules: dict[str, nn.Module], optimizer: Any, schedule: Any,
             history: dict[str, list[dict[str, float]]], extra: dict[str, Any]) -> None:
        """Write the state after ``epochs_done`` epochs of ``stage`` (rank 0; others do nothing)."""
        if self.ctx.is_main:
            payload = {
                "format": CHECKPOINT_FORMAT, "stage": stage, "epochs_done": epochs_done,
                "fingerprint": self.fingerprint, "world_size": self.ctx.world_size,
                "modules": {name: {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                                   for k, v in module.state_dict().items()} for name, module in modules.items()},
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "history": history, "extra": extra,
            }
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".pt.partial")
            torch.save(payload, partial)
            os.replace(partial, self.path)
        if self.on_saved is not None:
            self.on_saved(stage, epochs_done)

    def discard(self) -> None:
        """Remove the checkpoints (rank 0, after the run was published)."""
        if self.ctx.is_main and self.directory.is_dir():
            shutil.rmtree(self.directory)


@dataclass
class StageRun:
    """What :func:`aeforge.edge.split.train.run_epochs` needs to run one stage on this world, resumably.

    ``stages`` orders the run's stages (a checkpoint of a later stage means this one is done);
    ``targets(index)`` replaces the labels of a batch (multi-task data)."""

    stage: str
    ctx: DistContext = field(default_factory=DistContext)
    checkpointer: Checkpointer | None = None
    modules: dict[str, nn.Module] = field(default_factory=dict)  # saved in every checkpoint
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # of all stages so far
    extra: dict[str, Any] = field(default_factory=dict)
    stages: tuple[str, ...] = STAGES
    targets: Callable[[torch.Tensor], Any] | None = None

    def restore(self, optimizer: Any, schedule: Any) -> tuple[int, list[dict[str, float]]]:
        """(epochs already done, their history) from the checkpoint; optimizer and schedule states loaded."""
        loaded = self.checkpointer.loaded if self.checkpointer is not None else None
        if loaded is None:
            return 0, []
        done_stage = self.stages.index(loaded["stage"])
        here = self.stages.index(self.stage)
        if done_stage < here:
            return 0, []
        history = list(loaded["history"].get(self.stage, []))
        if done_stage > here:
            return len(history), history
        optimizer.load_state_dict(loaded["optimizer"])
        schedule.load_state_dict(loaded["schedule"])
        return int(loaded["epochs_done"]), history

    def batches(self, data: Any, batch_size: int, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, Any]]:
        seed_epoch(seed, epoch, self.ctx)
        return train_batches(data, batch_size, seed, epoch, self.ctx, self.targets)

    def end_epoch(self, epochs_done: int, optimizer: Any, schedule: Any, history: list[dict[str, float]]) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(self.stage, epochs_done, self.modules, optimizer, schedule,
                                   {**self.history, self.stage: history}, self.extra)


def resumed_state(checkpointer: Checkpointer | None, name: str) -> dict[str, Any] | None:
    """The state dict of module ``name`` in the checkpoint being resumed (None: none)."""
    loaded = checkpointer.loaded if checkpointer is not None else None
    return None if loaded is None else loaded["modules"].get(name)
