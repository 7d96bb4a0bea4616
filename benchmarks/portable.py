"""Paths in benchmark results: relative to the repository (``../shared/...`` for shared data), scratch
folders as ``<scratch>/...``, so a result file names no folder of the machine it ran on."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def portable(value: Any, repo: Path = REPO) -> Any:
    """``value`` with every absolute path string rewritten (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {key: portable(item, repo) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item, repo) for item in value]
    if isinstance(value, str) and value.startswith("/"):
        path = Path(value)
        for base, prefix in ((repo, ""), (repo.parent, "../")):
            if path.is_relative_to(base):
                return prefix + path.relative_to(base).as_posix()
        scratch = Path(tempfile.gettempdir())
        if path.is_relative_to(scratch):
            return "<scratch>/" + path.relative_to(scratch).as_posix()
        return "<elsewhere>/" + os.path.basename(value)
    return value
