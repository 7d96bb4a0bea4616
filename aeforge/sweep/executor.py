"""Where trials run: one fresh local process per trial (default), or Ray tasks on a cluster.

Both executors take :class:`~aeforge.sweep.trial.TrialTask` objects and report :class:`Outcome` objects:
``result`` (the trial's own report, done or failed) or ``lost`` (the process running it died without
reporting: killed, out of memory, node gone). Retrying a lost trial is the driver's decision. Ray tasks are
submitted with ``max_retries=0`` so that every retry goes through the driver and is written to the journal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aeforge.errors import ConfigError, ToolUnavailableError
from aeforge.proc import kill_tree
from aeforge.sweep.space import ResourceSpec
from aeforge.sweep.trial import TrialTask


@dataclass
class Outcome:
    task: TrialTask
    kind: str  # "result" | "lost" | "timeout"
    result: dict[str, Any] | None = None
    reason: str | None = None


def _child_main(task: TrialTask, connection: Any) -> None:
    """Entry point of a local trial process: run the trial and send its report back."""
    from aeforge.sweep.trial import run_trial

    try:
        result = run_trial(task)
    except BaseException as error:
        result = {"trial": task.trial_id, "attempt": task.attempt, "status": "failed", "metrics": {},
                  "error": f"worker: {type(error).__name__}: {error}", "pid": os.getpid()}
    try:
        connection.send(result)
    finally:
        connection.close()


@dataclass
class _Running:
    task: TrialTask
    process: Any
    connection: Any
    started: float
    result: dict[str, Any] | None = None


@dataclass
class LocalExecutor:
    """Each trial in its own freshly spawned process (a crash or leak cannot touch the next trial)."""

    workers: int
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    kind: str = "local"

    def __post_init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._running: dict[int, _Running] = {}

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "workers": self.workers, "start_method": "spawn"}

    @property
    def capacity(self) -> int:
        return self.workers

    def in_flight(self) -> int:
        return len(self._running)

    def submit(self, task: TrialTask) -> int | None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_child_main, args=(task, sender),
                                        name=f"aeforge-trial-{task.trial_id:04d}")
        process.start()
        sender.close()
        self._running[task.trial_id] = _Running(task, process, receiver, time.monotonic())
        return process.pid

    def poll(self, timeout_s: float) -> list[Outcome]:
        if not self._running:
            return []
        handles = [r.connection for r in self._running.values() if r.result is None]
        handles += [r.process.sentinel for r in self._running.values()]
        multiprocessing.connection.wait(handles, timeout=timeout_s)
        outcomes = []
        for trial_id, running in list(self._running.items()):
            if running.result is None and running.connection.poll():
                with contextlib.suppress(EOFError, OSError):
                    running.result = running.connection.recv()
            limit = self.resources.timeout_s
            if running.process.is_alive():
                if limit is not None and time.monotonic() - running.started > limit:
                    kill_tree(running.process.pid)  # the trial and its tools (yosys, nextpnr, verilator)
                    running.process.join()
                    self._forget(trial_id)
                    outcomes.append(Outcome(running.task, "timeout", reason=f"timed out after {limit:g} s"))
                continue
            running.process.join()
            self._forget(trial_id)
            if running.result is not None:
                outcomes.append(Outcome(running.task, "result", running.result))
            else:
                outcomes.append(Outcome(running.task, "lost", reason=_exit_reason(running.process.exitcode)))
        return outcomes

    def _forget(self, trial_id: int) -> None:
        running = self._running.pop(trial_id)
        running.connection.close()

    def shutdown(self) -> None:
        """Kill every trial still running, with the tools it started (their journal entries stay 'running':
        a resume retries them)."""
        for running in self._running.values():
            if running.process.is_alive():
                kill_tree(running.process.pid)
        for trial_id in list(self._running):
            self._running[trial_id].process.join(timeout=10)
            self._forget(trial_id)


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the trial process was killed ({name})"
    return f"the trial process exited with code {exitcode} without a result"


class RayExecutor:
    """Trials as Ray tasks with the sweep's resource requests; ``address`` as for ``ray.init``.

    ``"local"`` starts a private single-node Ray (``ray.init(num_cpus=workers)``) for this sweep.
    """

    kind = "ray"

    def __init__(self, address: str, workers: int | None, resources: ResourceSpec) -> None:
        try:
            import ray
        except ImportError:
            raise ToolUnavailableError("--ray needs Ray: pip install 'aeforge[sweep]'") from None
        self._ray = ray
        self.address = address
        self.resources = resources
        self._owned = not ray.is_initialized()
        if self._owned:
            try:
                if address == "local":
                    cpus = max(1, int(workers or os.cpu_count() or 1) * max(1, int(resources.num_cpus or 1)))
                    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    _check_reachable(address)
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except ToolUnavailableError:
                raise
            except Exception as error:
                hint = ""
                if address != "local" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
                    hint = ("; if the cluster uses token authentication (`ray start` turns it on when "
                            "~/.ray/auth_token exists), set RAY_AUTH_MODE=token: Ray sends the token to an "
                            "explicit address only then")
                raise ToolUnavailableError(f"--ray {address}: cannot connect: {type(error).__name__}: {error}{hint}") \
                    from None
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        per_trial = resources.num_cpus if resources.num_cpus > 0 else 1.0
        self.workers = workers or max(1, int(cluster_cpus // per_trial))
        if resources.num_cpus > cluster_cpus:
            raise ConfigError(f"resources.num_cpus = {resources.num_cpus:g} but the Ray cluster has only "
                              f"{cluster_cpus:g} CPUs; no trial could be scheduled")
        options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                                   "max_retries": 0, "retry_exceptions": False}
        if resources.memory_mb:
            options["memory"] = int(resources.memory_mb) * 1024 * 1024
        from aeforge.sweep.trial import run_trial

        self._remote = ray.remote(**options)(run_trial)
        self._refs: dict[Any, tuple[TrialTask, float]] = {}
        self.cluster_cpus = cluster_cpus

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.address, "workers": self.workers, "cluster_cpus": self.cluster_cpus,
                "ray": self._ray.__version__}

    @property
    def capacity(self) -> int:
        return self.workers

    def in_flight(self) -> int:
        return len(self._refs)

    def submit(self, task: TrialTask) -> int | None:
        self._refs[self._remote.remote(task)] = (task, time.monotonic())
        return None

    def poll(self, timeout_s: float) -> list[Outcome]:
        if not self._refs:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout_s)
        if ready:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        outcomes = []
        for ref in ready:
            task, _started = self._refs.pop(ref)
            try:
                outcomes.append(Outcome(task, "result", ray.get(ref)))
            except ray.exceptions.TaskCancelledError:
                outcomes.append(Outcome(task, "timeout", reason="cancelled (timeout)"))
            except ray.exceptions.RayTaskError as error:  # run_trial raised (it catches Exception itself)
                outcomes.append(Outcome(task, "result", {"trial": task.trial_id, "status": "failed", "metrics": {},
                                                         "error": f"worker: {error}"}))
            except ray.exceptions.RayError as error:  # worker crashed, node died, object lost ...
                outcomes.append(Outcome(task, "lost", reason=f"{type(error).__name__}: {_first_line(error)}"))
        limit = self.resources.timeout_s
        if limit is not None:
            for ref, (task, started) in list(self._refs.items()):
                if time.monotonic() - started > limit:
                    ray.cancel(ref, force=True)
                    self._refs.pop(ref)
                    outcomes.append(Outcome(task, "timeout", reason=f"timed out after {limit:g} s"))
        return outcomes

    def shutdown(self) -> None:
        for ref in list(self._refs):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owned:
            self._ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast when a ``host:port`` / ``ray://host:port`` address does not accept connections
    (``ray.init`` waits minutes for an absent cluster). Other forms (``auto``) are left to Ray."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise ToolUnavailableError(f"--ray {address}: no Ray cluster answers there ({error}); start one with "
                                   "`ray start --head`, or use --ray local for a private one") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
