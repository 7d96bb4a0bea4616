"""Run directories are written atomically, never clobber foreign files, and record hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aeforge.artifact import CARD_NAME, RunWriter, load_run, sha256_file
from aeforge.errors import ArtifactError


def _write_run(target: Path, text: str = "hello", **kwargs) -> None:
    with RunWriter(target, kind="test", config={"a": 1}, **kwargs) as run:
        run.path("sub/file.txt").write_text(text)
        run.metrics["x"] = 1.5


def test_card_records_files_tools_and_metrics(tmp_path: Path) -> None:
    target = tmp_path / "run"
    _write_run(target)
    card = json.loads((target / CARD_NAME).read_text())
    assert card["kind"] == "test" and card["config"] == {"a": 1} and card["metrics"] == {"x": 1.5}
    assert card["files"]["sub/file.txt"]["sha256"] == sha256_file(target / "sub/file.txt")
    assert card["tools"]["numpy"] and card["tools"]["python"]
    assert load_run(target).kind == "test"


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with pytest.raises(RuntimeError), RunWriter(target, kind="test") as run:
        run.path("partial.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_run_needs_overwrite_and_failure_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "run"
    _write_run(target, "old")
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        _write_run(target, "new")
    with pytest.raises(RuntimeError), RunWriter(target, kind="test", overwrite=True):
        raise RuntimeError("boom")
    assert (target / "sub/file.txt").read_text() == "old"
    _write_run(target, "new", overwrite=True)
    assert (target / "sub/file.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_foreign_directory_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(ArtifactError, match="not an aeforge run"):
        _write_run(target, overwrite=True)
    assert (target / "thesis.tex").read_text() == "precious"


def test_tampered_file_is_detected(tmp_path: Path) -> None:
    target = tmp_path / "run"
    _write_run(target)
    (target / "sub/file.txt").write_text("edited")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_run(target)
    (target / "sub/file.txt").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_run(target)


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        load_run(tmp_path / "none")
    with pytest.raises(ArtifactError, match=r"card\.json missing"):
        load_run(tmp_path)
    (tmp_path / CARD_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable card"):
        load_run(tmp_path)
