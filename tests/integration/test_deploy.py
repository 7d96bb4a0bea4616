"""Deploy bundles end to end: build from a trained run, run.py --self-check / --bench in a subprocess."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aeforge.cli import main
from aeforge.edge.deploy import MANIFEST, RPI_REQUIREMENTS, build_bundle
from aeforge.errors import ArtifactError, ConfigError

pytest.importorskip("onnxruntime")

TINY = "name: tiny\ndata:\n  synthetic: {n_events: 3000, seed: 3}\ntrain:\n  float_epochs: 1\n  qat_epochs: 1\n"
BUNDLE_RUNNER = Path(__file__).resolve().parents[2] / "aeforge" / "edge" / "bundle_runner.py"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy")
    (root / "exp.yaml").write_text(TINY)
    assert main(["train", str(root / "exp.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def rpi_bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(trained_run, "rpi", tmp_path_factory.mktemp("bundles") / "rpi", n_expected=8)


def _run(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode (no cwd/PYTHONPATH on sys.path); -X importtime lists every module imported
    return subprocess.run([sys.executable, "-I", "-X", "importtime", str(bundle / "run.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=bundle)


def _imported(stderr: str) -> set[str]:
    lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
    return {line.split("|")[-1].strip().split(".")[0] for line in lines}


def test_rpi_bundle_contents(rpi_bundle: Path, trained_run: Path) -> None:
    assert sorted(p.name for p in rpi_bundle.iterdir()) == ["README.txt", "manifest.json", "model.onnx",
                                                            "requirements.txt", "run.py"]
    manifest = json.loads((rpi_bundle / MANIFEST).read_text())
    assert manifest["device"] == "rpi" and manifest["runtime"] == "onnxruntime"
    assert manifest["inputs"] == [{"name": "input", "dtype": "float32", "shape": [None, 1, 8, 8], "layout": "NCHW"}]
    assert manifest["outputs"][0]["shape"] == [None, 16]
    assert manifest["expected"]["n"] == 8 and len(manifest["expected"]["outputs"]) == 8
    assert manifest["tolerance"]["abs"] == 0.0 and manifest["tolerance"]["exact"]  # fixed point: bit for bit
    assert "check_set" not in manifest  # only with --check-vectors
    assert manifest["build_check"]["bit_exact"] == 8
    assert manifest["quantization"]["output_type"] == "ap_ufixed<9,1,AP_RND_CONV,AP_SAT>"
    assert manifest["quantization"]["quantizers"]  # every quantizer with its scale
    assert manifest["source"]["module"] == "encoder" and manifest["source"]["kind"] == "train"
    assert manifest["aeforge_version"] and len(manifest["model"]["sha256"]) == 64
    assert (rpi_bundle / "run.py").read_text() == BUNDLE_RUNNER.read_text()
    readme = (rpi_bundle / "README.txt").read_text()
    assert "venv/bin/pip install -r requirements.txt" in readme
    assert "venv/bin/python run.py --self-check" in readme and "venv/bin/python run.py --bench" in readme
    requirements = (rpi_bundle / "requirements.txt").read_text().splitlines()
    assert [line for line in requirements if not line.startswith("#")] == list(RPI_REQUIREMENTS)
    assert not list(rpi_bundle.parent.glob(".rpi-*"))  # no staging folder left


def test_rpi_self_check_passes_without_aeforge_or_torch(rpi_bundle: Path) -> None:
    result = _run(rpi_bundle, "--self-check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check passed" in result.stdout and "bit-exact 8/8" in result.stdout
    imported = _imported(result.stderr)
    assert "onnxruntime" in imported and "numpy" in imported
    assert not imported & {"aeforge", "torch", "brevitas", "onnx"}


def test_tampered_expected_outputs_fail_the_self_check(rpi_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "tampered"
    shutil.copytree(rpi_bundle, bundle)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["expected"]["outputs"][3][5] += 0.25
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    result = _run(bundle, "--self-check")
    assert result.returncode == 1
    assert "self-check FAILED" in result.stdout and "vector 3 output[5]" in result.stdout


def test_modified_model_or_broken_manifest_is_exit_3(rpi_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "broken"
    shutil.copytree(rpi_bundle, bundle)
    with open(bundle / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    result = _run(bundle, "--self-check")
    assert result.returncode == 3 and "sha256 differs from the manifest" in result.stderr
    (bundle / MANIFEST).write_text("{broken")
    result = _run(bundle, "--self-check")
    assert result.returncode == 3 and "corrupted manifest" in result.stderr
    assert _run(bundle, "--bench", "--batch", "0").returncode == 3
    assert _run(bundle).returncode == 3  # no mode: usage error, not 2 (2 means runtime missing)


def test_rpi_bench_writes_json(rpi_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = _run(rpi_bundle, "--bench", "--seconds", "0.2", "--warmup-seconds", "0.05", "--batch", "4",
                  "--threads", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["batch"] == 4 and report["runs"] >= 20 and report["device"] == "rpi"
    assert 0 < report["latency_s"]["p50"] <= report["latency_s"]["p99"]
    assert report["throughput_per_s"] > 0


def test_energy_points_to_the_harness(rpi_bundle: Path) -> None:
    result = _run(rpi_bundle, "--energy")
    assert result.returncode == 2 and "aeforge bench" in result.stdout


def test_jetson_bundle_builds_and_says_tensorrt_is_missing(trained_run: Path, tmp_path: Path) -> None:
    bundle = build_bundle(trained_run, "jetson", tmp_path / "jetson", n_expected=4)
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["runtime"] == "tensorrt" and manifest["tensorrt"]["precision"] == "int8"
    assert manifest["tolerance"]["lsb"] == 1.0
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        result = _run(bundle, "--self-check")
        assert result.returncode == 2
        assert "tensorrt not available" in result.stderr
    else:  # pragma: no cover - machines with TensorRT run tests/hardware/test_trt_device.py
        pytest.skip("tensorrt is installed; the device test covers the Jetson bundle")


def test_existing_out_dir_is_refused_unless_force(trained_run: Path, rpi_bundle: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        build_bundle(trained_run, "rpi", mine)
    with pytest.raises(ArtifactError, match="not an aeforge bundle"):
        build_bundle(trained_run, "rpi", mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep"
    import shutil

    again = tmp_path / "again"
    shutil.copytree(rpi_bundle, again)
    (again / "stale.txt").write_text("old")
    build_bundle(trained_run, "rpi", again, force=True, n_expected=2)
    assert not (again / "stale.txt").exists()
    assert json.loads((again / MANIFEST).read_text())["expected"]["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]


def test_failed_swap_puts_the_old_bundle_back(trained_run: Path, rpi_bundle: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    from aeforge.edge import deploy

    target = tmp_path / "bundle"
    shutil.copytree(rpi_bundle, target)
    before = (target / MANIFEST).read_text()
    real_replace = os.replace

    def failing_replace(src, dst):  # the staged bundle cannot be renamed into place (e.g. disk error)
        if Path(dst) == target and "-old-" not in str(src):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(deploy.os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output error"):
        build_bundle(trained_run, "rpi", target, force=True, n_expected=2)
    assert (target / MANIFEST).read_text() == before  # the old bundle is back, unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging or backup left behind


def test_bad_device_and_runs_are_refused(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--device 'android'"):
        build_bundle(trained_run, "android", tmp_path / "b")
    with pytest.raises(ArtifactError):
        build_bundle(tmp_path / "no-run", "rpi", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_bundle_runner_imports_only_stdlib_and_numpy_at_top_level() -> None:
    tree = ast.parse(BUNDLE_RUNNER.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top - set(sys.stdlib_module_names) == {"numpy"}
