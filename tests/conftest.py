"""Shared fixtures: the reference data beside the repository (never copied into it)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def hgcal_csv() -> Path:
    """The real HGCAL CALQ readouts in ../shared/data (skips when absent)."""
    path = SHARED_DATA / "hgcal" / "CALQ_output.csv"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    return path
