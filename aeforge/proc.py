"""Subprocesses that cannot outlive their welcome: a timeout, and the whole process group killed.

Simulators and synthesis tools start children of their own (``make`` runs ``g++``, the yowasp
wrappers run WebAssembly workers); killing only the direct child would leave them running.
:func:`run_tool` starts the tool in a new session (its own process group) and kills that group on
a timeout, on Ctrl-C, or on any other exception; :func:`kill_tree` kills a process and every
descendant, even those that started sessions of their own (a timed-out sweep trial).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TOOL_TIMEOUT_S = 3600.0


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group ``process`` leads (or the process alone where groups do not exist)."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, OSError):
        process.kill()


def run_tool(
    command: Sequence[str],
    *,
    timeout_s: float | None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    text: bool = True,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` for external tools: own process group, killed with all its children when
    ``timeout_s`` passes (then :class:`subprocess.TimeoutExpired` is raised) or the caller is interrupted."""
    process = subprocess.Popen(
        list(command), cwd=cwd, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
        stdout=stdout, stderr=stderr, text=text, errors="replace" if text else None, start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(process)
        out, err = _drain(process)
        raise subprocess.TimeoutExpired(list(command), timeout_s or 0.0, output=out, stderr=err) from None
    except BaseException:
        kill_group(process)
        _drain(process)
        raise
    kill_group(process)  # the tool is done: whatever it left running in its group goes with it
    return subprocess.CompletedProcess(list(command), process.returncode, out, err)


def _drain(process: subprocess.Popen[Any]) -> tuple[Any, Any]:
    try:
        return process.communicate(timeout=10)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        return None, None


def _children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, from ``/proc`` (empty where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return children
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    tree = _children_map()
    found: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        if child not in found:
            found.append(child)
            stack.extend(tree.get(child, []))
    return found


def kill_tree(pid: int, rounds: int = 5) -> None:
    """SIGKILL ``pid``, its process group and every descendant (in other sessions too).

    The processes are stopped first, so none can start a new child between the look-up and the
    kill; where there is no ``/proc``, the process group is the best that can be done.
    """
    stopped: set[int] = set()
    for _ in range(rounds):
        fresh = [p for p in [pid, *descendants(pid)] if p not in stopped]
        if not fresh:
            break
        for target in fresh:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGSTOP)
            stopped.add(target)
        time.sleep(0.01)
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for target in stopped | {pid}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
