"""Raspberry Pi bundles on an emulated aarch64 Debian userland (.ci/arm64_bundles.py): bit for bit on 10k vectors.

ECON-T (default, int8 and 4-bit types) and a split head (MobileNetV2 cut after ``features.1``) are
trained tiny, deployed with ``aeforge deploy --device rpi --check-vectors 10000``, then each bundle's
``requirements.txt`` is installed by the aarch64 pip into a bare venv of the cached aarch64 root and its
``run.py --self-check`` / ``--bench`` run there under qemu-user. Skipped, with the reason, where the
emulation cannot be set up (not root, no binfmt_misc, no debootstrap or qemu-user-static); CI runs it as root.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from aeforge.cli import main
from aeforge.edge.deploy import CHECK_FILE, MANIFEST, REQUIREMENTS_FILE, RPI_REQUIREMENTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "arm64_bundles.py"
N_CHECK = 10_000
TINY = "name: {name}\ndata:\n  synthetic: {{n_events: 3000, seed: 3}}\ntrain:\n  float_epochs: 1\n  qat_epochs: 1\n"
RND = "AP_RND_CONV,AP_SAT"
ECONT_QUANT = {
    "econt-default": "",  # the published ECON-T types (aeforge/configs/econt.yaml)
    "econt-int8": (f"quant:\n  input: ap_fixed<8,2,{RND}>\n  weight: ap_fixed<8,2,{RND}>\n  bias: ap_fixed<8,2,{RND}>\n"
                   f"  conv_activation: ap_ufixed<7,3,{RND}>\n  latent: ap_ufixed<7,1,{RND}>\n"),
    "econt-4bit": (f"quant:\n  weight: ap_fixed<4,2,{RND}>\n  bias: ap_fixed<4,2,{RND}>\n"
                   f"  latent: ap_ufixed<4,1,{RND}>\n"),
}
SPLIT = """\
name: arm64-split
model: {family: split, backbone: mobilenet_v2, split_after: features.1, channels: 2, bits: 4, encoder_channels: 8}
data: {source: fake, image_size: 16, max_samples: 64, fake_size: 64, fake_classes: 4}
train: {batch_size: 32, teacher_epochs: 1, head_epochs: 1, finetune_epochs: 1, progress: false, seed: 1}
"""


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("arm64_bundles", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arm64 = _load_script()


@pytest.fixture(scope="module")
def emulation() -> None:
    """Skip (with the reason) unless the emulated aarch64 userland can be set up here."""
    problem = arm64.emulation_problem()
    if problem:
        pytest.skip(f"emulated aarch64 unavailable: {problem}")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """rpi bundles with 10k recorded vectors: three ECON-T variants and a split head."""
    pytest.importorskip("torchvision")
    root = tmp_path_factory.mktemp("arm64")
    made = {}
    configs = {name: TINY.format(name=name) + quant for name, quant in ECONT_QUANT.items()}
    configs["split-head"] = SPLIT
    for name, text in configs.items():
        (root / f"{name}.yaml").write_text(text)
        assert main(["train", str(root / f"{name}.yaml"), "--out", str(root / "runs" / name), "--quiet"]) == 0
        assert main(["deploy", str(root / "runs" / name), "--device", "rpi", "--out", str(root / name),
                     "--check-vectors", str(N_CHECK)]) == 0
        made[name] = root / name
    return made


def _script(*args: str | Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


# ------------------------------------------------------------------------------------ here (x86)
def test_rpi_bundles_pin_requirements_and_record_10k_vectors(bundles: dict[str, Path]) -> None:
    for name, bundle in bundles.items():
        manifest = json.loads((bundle / MANIFEST).read_text())
        pins = [line for line in (bundle / REQUIREMENTS_FILE).read_text().splitlines() if not line.startswith("#")]
        assert pins == list(RPI_REQUIREMENTS) and all("==" in pin for pin in pins)
        assert manifest["requirements"]["pins"] == list(RPI_REQUIREMENTS)
        assert manifest["check_set"]["n"] == N_CHECK and (bundle / CHECK_FILE).is_file()
        assert manifest["tolerance"] == {**manifest["tolerance"], "abs": 0.0, "exact": True}
        assert manifest["build_check"] == {**manifest["build_check"], "n": N_CHECK, "bit_exact": N_CHECK}
        with np.load(bundle / CHECK_FILE) as data:
            assert data["input_codes"].dtype.kind == "i" and data["output_codes"].dtype.kind == "i"
            assert len(data["input_codes"]) == len(data["output_codes"]) == N_CHECK
            first = data["output_codes"][: manifest["expected"]["n"]] * float(data["output_scale"])
        np.testing.assert_array_equal(first.reshape(len(first), -1),
                                      np.asarray(manifest["expected"]["outputs"]).reshape(len(first), -1))
        assert (manifest["model"]["file"] == "head.onnx") == (name == "split-head")


def test_split_head_bundle_runs_here_bit_for_bit(bundles: dict[str, Path]) -> None:
    bundle = bundles["split-head"]
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["source"]["module"] == "split head" and manifest["split"]["backbone"] == "mobilenet_v2"
    assert manifest["quantization"]["output_type"] == manifest["split"]["code"]["type"]
    result = subprocess.run([sys.executable, "-I", str(bundle / "run.py"), "--self-check", "--json",
                             str(bundle.parent / "split-native.json")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((bundle.parent / "split-native.json").read_text())
    assert report["n"] == report["exact"] == N_CHECK and report["vectors"] == CHECK_FILE


def test_emulation_problem_names_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert arm64.emulation_problem() == ("needs root (chroot into the aarch64 root, binfmt_misc registration); "
                                         "running as uid 1000")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(arm64, "native", lambda: False)
    monkeypatch.setattr(arm64, "_tool", lambda name: None if name == "qemu-aarch64-static" else f"/usr/bin/{name}")
    assert "qemu-aarch64-static not found" in arm64.emulation_problem()
    monkeypatch.setattr(arm64, "_tool", lambda name: None if name == "debootstrap" else f"/usr/bin/{name}")
    assert arm64.emulation_problem() == "debootstrap not found (apt-get install debootstrap)"


def test_jetson_bundles_are_refused_by_the_emulated_check(tmp_path: Path) -> None:
    bundle = tmp_path / "jetson"
    bundle.mkdir()
    (bundle / MANIFEST).write_text(json.dumps({"device": "jetson", "runtime": "tensorrt"}))
    result = _script(bundle, timeout=120)
    assert result.returncode == 3 and "only rpi (onnxruntime) bundles" in result.stderr


# ------------------------------------------------------------------------------------ emulated aarch64
@pytest.mark.arm64
@pytest.mark.timeout(2400)
def test_bundles_match_bit_for_bit_on_emulated_aarch64(emulation: None, bundles: dict[str, Path],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "arm64.json"
    result = _script(*bundles.values(), "--json", out, "--bench-seconds", "1")
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["passed"] and len(report["bundles"]) == len(bundles)
    assert report["root"]["machine"] == "aarch64" and report["root"]["python"].startswith("3.11.")
    onnxruntime = next(pin.split("==")[1] for pin in RPI_REQUIREMENTS if pin.startswith("onnxruntime=="))
    for entry in report["bundles"]:
        assert entry["machine"] == "aarch64" and entry["python"].startswith("3.11."), entry
        assert entry["n"] == entry["exact"] == N_CHECK and entry["max_abs_err"] == 0.0, entry
        assert entry["exact_required"] and entry["vectors"] == CHECK_FILE
        assert entry["runtime_version"] == onnxruntime and entry["providers"] == ["CPUExecutionProvider"]
        assert entry["requirements_complete"]  # the bundle's list is all a bare aarch64 Python needed
        assert sorted(entry["requirements_installed"]) == sorted(RPI_REQUIREMENTS)
        bench = entry["bench"]
        assert bench["machine"] == "aarch64" and bench["runs"] >= 20 and bench["latency_s"]["p50"] > 0
        if report["emulated"]:
            assert bench["label"] == "emulated" and "not a Raspberry Pi" in bench["note"]
    assert "all bundles match" in result.stdout


@pytest.mark.arm64
@pytest.mark.timeout(1200)
def test_a_mismatch_on_aarch64_exits_1(emulation: None, bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "tampered"
    shutil.copytree(bundles["econt-int8"], bundle)
    with np.load(bundle / CHECK_FILE) as data:
        arrays = {key: data[key] for key in data.files}
    flat = arrays["output_codes"].reshape(len(arrays["output_codes"]), -1)
    flat[4321, 3] += 1  # one LSB of one output of one vector
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (bundle / CHECK_FILE).write_bytes(buffer.getvalue())
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["check_set"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    out = tmp_path / "arm64.json"
    result = _script(bundle, "--json", out, "--bench-seconds", "0.5", timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr[-4000:]
    entry = json.loads(out.read_text())["bundles"][0]
    assert not entry["passed"] and entry["exact"] == N_CHECK - 1 and entry["mismatched_vectors"] == 1
    assert entry["first_mismatch"]["vector"] == 4321 and entry["first_mismatch"]["output"][-1] == 3
    assert "MISMATCH" in result.stdout and "self-check FAILED" in entry["problem"]
