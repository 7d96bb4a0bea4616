"""Artifacts and state: durable writes, all-or-nothing amendments, confinement, validate before destroying."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import aeforge.artifact as artifact
from aeforge.artifact import (
    AMEND_DIR,
    CARD_NAME,
    RunAmendment,
    RunWriter,
    confined_path,
    load_run,
    sha256_file,
    write_json_atomic,
)
from aeforge.errors import ArtifactError, ConfigError, ToolUnavailableError


def _run(tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    with RunWriter(target, kind="test") as run:
        run.path("a.txt").write_text("old a")
        run.metrics["x"] = 1
    return target


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name != artifact.LOCK_NAME)


def test_write_json_atomic_fsyncs_the_file_and_its_directory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}") if Path("/proc/self/fd").is_dir() else "?")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert len(synced) >= 2  # the temporary file before the rename, the directory after it
    if Path("/proc/self/fd").is_dir():
        assert str(tmp_path) in synced and any(".x.json." in name for name in synced)


def test_amendment_adds_files_and_metrics_and_replaces(tmp_path: Path) -> None:
    run = _run(tmp_path)
    with RunAmendment(run) as amendment:
        amendment.path("a.txt").write_text("new a")
        amendment.path("sub/b.txt").write_text("b")
        amendment.metrics["y"] = 2
    card = load_run(run)
    assert (run / "a.txt").read_text() == "new a" and (run / "sub/b.txt").read_text() == "b"
    assert card.files["sub/b.txt"]["sha256"] == sha256_file(run / "sub/b.txt")
    assert card.metrics == {"x": 1, "y": 2}
    assert _leftovers(run) == []


def test_failed_block_leaves_the_run_as_it_was(tmp_path: Path) -> None:
    run = _run(tmp_path)
    before = (run / CARD_NAME).read_bytes()
    with pytest.raises(RuntimeError), RunAmendment(run) as amendment:
        amendment.path("a.txt").write_text("new a")
        raise RuntimeError("boom")
    assert (run / CARD_NAME).read_bytes() == before and (run / "a.txt").read_text() == "old a"
    assert _leftovers(run) == []


def test_amendment_refuses_paths_outside_the_run(tmp_path: Path) -> None:
    run = _run(tmp_path)
    with pytest.raises(ArtifactError, match=r"contains '\.\.'"), RunAmendment(run) as amendment:
        amendment.path("../escape.txt")
    with pytest.raises(ArtifactError, match="absolute"), RunAmendment(run) as amendment:
        amendment.path("/tmp/escape.txt")


def _crash_on_card_commit(monkeypatch: pytest.MonkeyPatch, card_path: Path, after: bool) -> None:
    """Make the amendment die just before (or just after) its new card is renamed over card.json."""
    real_replace, real_rmtree = os.replace, artifact.shutil.rmtree

    def replace(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> None:
        if Path(destination) == card_path and not after:
            raise KeyboardInterrupt("power loss before the commit")
        real_replace(source, destination)

    def rmtree(path: str | os.PathLike[str], ignore_errors: bool = False) -> None:
        if after and Path(path).name == AMEND_DIR:
            raise KeyboardInterrupt("power loss after the commit")
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(artifact.os, "replace", replace)
    monkeypatch.setattr(artifact.shutil, "rmtree", rmtree)


@pytest.mark.parametrize("after_commit", [False, True])
def test_interrupted_amendment_is_rolled_back_or_forward_by_load_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_commit: bool) -> None:
    run = _run(tmp_path)
    with monkeypatch.context() as patch:
        _crash_on_card_commit(patch, run / CARD_NAME, after=after_commit)
        with pytest.raises(KeyboardInterrupt), RunAmendment(run) as amendment:
            amendment.path("a.txt").write_text("new a")
            amendment.path("b.txt").write_text("b")
            amendment.metrics["y"] = 2
    assert (run / AMEND_DIR / artifact.AMEND_JOURNAL).is_file()  # the journal survived the "crash"
    card = load_run(run)  # recovers, then verifies every hash
    assert not (run / AMEND_DIR).exists()
    if after_commit:
        assert (run / "a.txt").read_text() == "new a" and (run / "b.txt").read_text() == "b"
        assert card.metrics == {"x": 1, "y": 2}
    else:
        assert (run / "a.txt").read_text() == "old a" and not (run / "b.txt").exists()
        assert card.metrics == {"x": 1} and "b.txt" not in card.files


def test_concurrent_amendments_lose_no_update(tmp_path: Path) -> None:
    run = _run(tmp_path)
    errors: list[BaseException] = []

    def amend(index: int) -> None:
        try:
            with RunAmendment(run) as amendment:
                amendment.path(f"f{index}.txt").write_text(str(index))
                amendment.metrics[f"m{index}"] = index
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=amend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    card = load_run(run)
    assert {f"f{i}.txt" for i in range(8)} <= set(card.files)
    assert all(card.metrics[f"m{i}"] == i for i in range(8))


def test_confined_path_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link").symlink_to(tmp_path)
    assert confined_path(tmp_path / "inside", "a/b.txt") == tmp_path / "inside" / "a/b.txt"
    for bad, message in (("../x", r"'\.\.'"), ("/etc/passwd", "absolute"), ("a/../../x", r"'\.\.'"),
                         ("link/x", "outside"), ("", "absolute")):
        with pytest.raises(ArtifactError, match=message):
            confined_path(tmp_path / "inside", bad)


def test_card_listing_a_file_outside_the_run_is_refused(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (tmp_path / "secret.txt").write_text("s")
    card = json.loads((run / CARD_NAME).read_text())
    card["files"]["../secret.txt"] = {"sha256": sha256_file(tmp_path / "secret.txt"), "bytes": 1}
    (run / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=r"contains '\.\.'"):
        load_run(run)


def test_hls_card_project_must_stay_inside_the_run(tmp_path: Path) -> None:
    from aeforge.stages.hls import hls_project_dir

    run = _run(tmp_path)
    (run / "hls").mkdir()
    assert hls_project_dir(run) is None
    for recorded, expected in (("hls/project", run / "hls/project"),
                               (str((run / "hls/project").resolve()), run / "hls/project")):
        write_json_atomic(run / "hls" / CARD_NAME, {"kind": "hls", "project": recorded})
        assert hls_project_dir(run) == expected
    for recorded in ("../elsewhere", str(tmp_path / "elsewhere")):
        write_json_atomic(run / "hls" / CARD_NAME, {"kind": "hls", "project": recorded})
        with pytest.raises(ArtifactError, match=r"outside|'\.\.'"):
            hls_project_dir(run)


def test_csim_manifest_library_must_stay_inside_the_project(tmp_path: Path) -> None:
    from aeforge.hls.csim import MANIFEST_NAME, MANIFEST_SCHEMA, check_project_location

    project = tmp_path / "project"
    project.mkdir()
    write_json_atomic(project / MANIFEST_NAME, {"schema": MANIFEST_SCHEMA, "compiled_at": str(project.resolve()),
                                                "library": "../evil.so", "library_sha256": "0" * 64})
    with pytest.raises(ArtifactError, match=r"contains '\.\.'"):
        check_project_location(project)


def _hls_run(tmp_path: Path) -> Path:
    run = _run(tmp_path)
    (run / "hls" / "project").mkdir(parents=True)
    (run / "hls" / "project" / "old.txt").write_text("old project")
    write_json_atomic(run / "hls" / CARD_NAME, {"kind": "hls", "project": "hls/project"})
    return run


def test_hls_force_checks_options_and_tools_before_removing_the_old_project(tmp_path: Path) -> None:
    pytest.importorskip("hls4ml", reason="hls4ml not installed (pip install 'aeforge[hls]')")
    from aeforge.stages.hls import HlsOptions, hls_stage

    run = _hls_run(tmp_path)
    with pytest.raises(ConfigError, match="need --build"):
        hls_stage(run, HlsOptions(), force=True, cosim=True)
    with pytest.raises(ConfigError, match="reuse-factor"):
        hls_stage(run, HlsOptions(reuse_factor=0), force=True)
    with pytest.raises(ToolUnavailableError, match="--build"):
        hls_stage(run, HlsOptions(backend="Catapult"), force=True, build=True)
    assert (run / "hls" / "project" / "old.txt").read_text() == "old project"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".hls")) == []


def test_rtl_force_checks_options_before_removing_the_old_project(tmp_path: Path) -> None:
    from aeforge.stages.rtl import rtl_stage

    run = _run(tmp_path)
    (run / "rtl").mkdir()
    (run / "rtl" / "old.v").write_text("module old; endmodule")
    with pytest.raises(ConfigError, match="pipeline-stages"):
        rtl_stage(run, pipeline_stages=-1, force=True)
    with pytest.raises(ConfigError, match="not both"):
        rtl_stage(run, pipeline_stages=2, target_mhz=40.0, force=True)
    with pytest.raises(ArtifactError, match="not an aeforge RTL project"):
        rtl_stage(run, force=True)
    assert (run / "rtl" / "old.v").is_file()


def test_replacing_directory_restores_the_old_artifact_on_failure(tmp_path: Path) -> None:
    from aeforge.artifact import replacing_directory

    target = tmp_path / "hls"
    target.mkdir()
    (target / "card.json").write_text("old")
    with pytest.raises(RuntimeError, match="build failed"), replacing_directory(target):
        target.mkdir()
        (target / "half.txt").write_text("partial")
        raise RuntimeError("build failed")
    assert sorted(p.name for p in target.iterdir()) == ["card.json"] and (target / "card.json").read_text() == "old"
    with replacing_directory(target):
        target.mkdir()
        (target / "card.json").write_text("new")
    assert (target / "card.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hls"]  # nothing moved aside is left behind
