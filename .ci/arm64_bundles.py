#!/usr/bin/env python3
"""Run aeforge Raspberry Pi bundles on an emulated aarch64 Debian userland and check them bit for bit.

    python .ci/arm64_bundles.py BUNDLE [BUNDLE ...] [--json OUT.json] [--bench-seconds 2]
                                [--root DIR] [--rebuild] [--full-debootstrap]

For every bundle made by ``aeforge deploy RUN --device rpi``:

1. a fresh venv in the aarch64 root receives exactly the bundle's ``requirements.txt``: the aarch64 wheels
   (CPython 3.11, manylinux aarch64) are downloaded here by pip, then the aarch64 pip installs them with
   ``--no-index`` (so a dependency missing from the list, or one with no aarch64 wheel, fails the check);
2. ``run.py --self-check`` on the recorded vectors (``check.npz`` when the bundle has one): the outputs must
   equal the bundle's expected (Brevitas) outputs bit for bit where the manifest says so, else be within its
   tolerance;
3. a short ``run.py --bench``: numbers labelled ``emulated``, never Raspberry Pi latency.

Exit codes: 0 every bundle matched; 1 a mismatch, an incomplete requirements list or a failing run.py;
2 emulation cannot be set up here (the reason is printed: not root, no binfmt_misc, no debootstrap or
qemu-user-static); 3 bad arguments (not an rpi bundle).

The root is Debian 12 bookworm arm64, the base of Raspberry Pi OS 64-bit Bookworm (Python 3.11.2, glibc 2.36),
from Debian's ``debootstrap`` and ``qemu-user-static`` (``apt-get install debootstrap qemu-user-static
binfmt-support``). By default only debootstrap's first stage runs (``--foreign``: download and unpack on the
host, no emulation); the Python packages it fetched are unpacked the same way and ``ldconfig`` runs under
emulation; no maintainer scripts run (Python does not need them). ``--full-debootstrap`` runs the complete
debootstrap instead (its second stage under emulation: minutes more). The root is cached in
``$AEFORGE_ARM64_ROOT`` (default ``~/.cache/aeforge/arm64-root``), venvs inside it keyed by the requirements'
sha256; nothing is mounted into it (with ``/sys`` mounted, onnxruntime's cpuinfo crashes under emulation).
As root, binfmt_misc is mounted and ``update-binfmts --enable qemu-aarch64`` run when needed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_MISMATCH, EXIT_UNAVAILABLE, EXIT_INVALID = 0, 1, 2, 3
SUITE = "bookworm"
PYTHON_VERSION = "3.11"  # bookworm's python3 (3.11.2), as on Raspberry Pi OS Bookworm
MIRROR = os.environ.get("AEFORGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
MARKER = ".aeforge-arm64-root.json"
GUEST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8",
             "TMPDIR": "/tmp"}
MANYLINUX = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]
BENCH_LABEL = "emulated"
BENCH_NOTE = ("qemu-user emulation of aarch64 on an x86-64 host: these timings measure the emulator, "
              "not a Raspberry Pi; no Raspberry Pi latency or energy was measured")


class Unavailable(Exception):
    """Emulation cannot be set up here (the message says why)."""


def log(message: str) -> None:
    print(f"[arm64] {message}", file=sys.stderr, flush=True)


def default_root() -> Path:
    """``$AEFORGE_ARM64_ROOT``, else ``$XDG_CACHE_HOME/aeforge/arm64-root`` (``~/.cache`` by default)."""
    if os.environ.get("AEFORGE_ARM64_ROOT"):
        return Path(os.environ["AEFORGE_ARM64_ROOT"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "aeforge" / "arm64-root"


def native() -> bool:
    """True on an aarch64 host (a Pi, an ARM server): the root runs without emulation."""
    return platform.machine().lower() in ("aarch64", "arm64")


def _tool(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d, name)).is_file()),
                                      None)


def _binfmt_entry() -> dict[str, str] | None:
    try:
        lines = (BINFMT / "qemu-aarch64").read_text().splitlines()
    except OSError:
        return None
    entry = {"state": lines[0].strip() if lines else ""}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        entry[key.rstrip(":")] = value.strip()
    return entry


def ensure_binfmt() -> dict[str, str]:
    """The enabled qemu-aarch64 binfmt_misc entry (mounting binfmt_misc and enabling the entry when needed)."""
    if not (BINFMT / "register").exists():
        result = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                                text=True)
        if result.returncode != 0 or not (BINFMT / "register").exists():
            raise Unavailable(f"binfmt_misc is not mounted at {BINFMT} and mounting it failed "
                              f"({(result.stderr or result.stdout).strip() or 'no register file'}); "
                              "a privileged container or a host with binfmt_misc is needed")
        log(f"mounted binfmt_misc at {BINFMT}")
    entry = _binfmt_entry()
    if entry is None or entry["state"] != "enabled":
        tool = _tool("update-binfmts")
        if tool is None:
            raise Unavailable("no enabled qemu-aarch64 binfmt_misc entry and no update-binfmts to enable it "
                              "(apt-get install qemu-user-static binfmt-support)")
        result = subprocess.run([tool, "--enable", "qemu-aarch64"], capture_output=True, text=True)
        entry = _binfmt_entry()
        if entry is None or entry["state"] != "enabled":
            raise Unavailable(f"update-binfmts --enable qemu-aarch64 did not register the emulator "
                              f"({(result.stderr or result.stdout).strip() or 'no entry'}); "
                              "is qemu-user-static installed?")
        log("enabled the qemu-aarch64 binfmt_misc entry")
    if "F" not in entry.get("flags", ""):
        raise Unavailable(f"the qemu-aarch64 binfmt_misc entry lacks the F (fix binary) flag "
                          f"(flags {entry.get('flags', '')!r}): the emulator would have to be inside the root")
    return entry


def emulation_problem(setup: bool = True) -> str | None:
    """Why the emulated aarch64 check cannot run here, or None. ``setup`` mounts binfmt_misc and enables
    the qemu-aarch64 entry when they are missing (root only)."""
    if sys.platform != "linux":
        return f"needs Linux (chroot, binfmt_misc); this is {sys.platform}"
    if os.geteuid() != 0:
        return f"needs root (chroot into the aarch64 root, binfmt_misc registration); running as uid {os.geteuid()}"
    for tool, package in (("debootstrap", "debootstrap"), ("dpkg-deb", "dpkg"), ("chroot", "coreutils")):
        if _tool(tool) is None:
            return f"{tool} not found (apt-get install {package})"
    if native():
        return None
    if _tool("qemu-aarch64-static") is None:
        return "qemu-aarch64-static not found (apt-get install qemu-user-static binfmt-support)"
    if not setup:
        entry = _binfmt_entry()
        return None if entry and entry["state"] == "enabled" else "no enabled qemu-aarch64 binfmt_misc entry"
    try:
        ensure_binfmt()
    except Unavailable as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------------ the root
def _guest(root: Path, *argv: str, timeout: float = 900.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the root (chroot; the aarch64 binaries through qemu-user's binfmt entry)."""
    return subprocess.run([_tool("chroot") or "chroot", str(root), *argv], capture_output=True, text=True,
                          timeout=timeout, env=GUEST_ENV)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts", encoding="utf-8") as handle:
        points = [line.split()[1].replace("\\040", " ") for line in handle]
    return sorted((p for p in points if p.startswith(prefix) or p == prefix[:-1]), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a (partial) root, unmounting what debootstrap may have left mounted in it first."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(path):
        raise RuntimeError(f"{path}: still has mounts ({', '.join(_mounts_under(path))}); not deleting it")
    shutil.rmtree(path)


def _unpack(deb: Path, root: Path) -> None:
    """``dpkg-deb -x`` that keeps the root's merged-/usr symlinks (/lib -> usr/lib) intact."""
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)], stdin=dpkg.stdout,
                         capture_output=True)
    assert dpkg.stdout is not None
    dpkg.stdout.close()
    if dpkg.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"unpacking {deb.name} failed: {tar.stderr.decode(errors='replace').strip()}")


def _debootstrap(target: Path, full: bool, logfile: Path) -> None:
    argv = [_tool("debootstrap") or "debootstrap", "--arch=arm64", "--variant=minbase",
            f"--include={','.join(PACKAGES)}", *(() if full else ("--foreign",)), SUITE, str(target), MIRROR]
    log(f"{' '.join(argv)}  (log: {logfile})")
    with open(logfile, "w", encoding="utf-8") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
    if result.returncode != 0:
        tail = logfile.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError("debootstrap failed (exit {}):\n{}".format(result.returncode, "\n".join(tail)))
    if full:
        return
    meta = target / "debootstrap"
    paths = dict(line.split(" ", 1) for line in (meta / "debpaths").read_text().split("\n") if " " in line)
    for name in (meta / "base").read_text().split():  # required ones are unpacked by the first stage already
        _unpack(target / paths[name].lstrip("/"), target)
    result = _guest(target, "/sbin/ldconfig")
    if result.returncode != 0:
        raise RuntimeError(f"ldconfig in the aarch64 root failed: {result.stderr.strip()}")
    for deb in (target / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def ensure_root(root: Path, rebuild: bool = False, full: bool = False) -> dict[str, Any]:
    """Build the cached aarch64 root unless a complete one is there; returns its record (+ setup facts)."""
    started = time.monotonic()
    marker = root / MARKER
    wanted = {"suite": SUITE, "arch": "arm64", "packages": list(PACKAGES), "method": "full" if full else "foreign"}
    if marker.is_file() and not rebuild:
        record = json.loads(marker.read_text(encoding="utf-8"))
        if all(record.get(k) == v for k, v in wanted.items() if k != "method") and (record["method"] == "full"
                                                                                  or not full):
            probe = _guest(root, "/usr/bin/python3", "-c", "import platform; print(platform.machine())", timeout=120)
            if probe.returncode == 0 and probe.stdout.strip() == "aarch64":
                return {**record, "path": str(root), "cached": True, "setup_s": time.monotonic() - started}
            log(f"cached root {root} does not run ({probe.stderr.strip()[-200:]}); rebuilding")
        else:
            log(f"cached root {root} was built differently ({record}); rebuilding")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
    try:
        _debootstrap(staging, full, root.parent / f"{root.name}.debootstrap.log")
        probe = _guest(staging, "/usr/bin/python3", "-c",
                       "import platform, sys; print(platform.machine(), platform.python_version(), "
                       "platform.libc_ver()[1])", timeout=300)
        if probe.returncode != 0 or not probe.stdout.startswith("aarch64 "):
            raise RuntimeError(f"python3 in the new aarch64 root does not run: {probe.stdout}{probe.stderr}")
        machine, python, glibc = probe.stdout.split()
        record = {**wanted, "mirror": MIRROR, "machine": machine, "python": python, "glibc": glibc,
                  "built_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "build_s": round(time.monotonic() - started, 1)}
        (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _remove_tree(root)
        os.replace(staging, root)
    except BaseException:
        _remove_tree(staging)
        raise
    log(f"aarch64 root ready in {record['build_s']} s: {root}")
    return {**record, "path": str(root), "cached": False, "setup_s": time.monotonic() - started}


# ------------------------------------------------------------------------------------ venvs
def _pins(text: str) -> list[str]:
    return sorted(line.split("#")[0].strip().lower().replace("_", "-") for line in text.splitlines()
                  if line.split("#")[0].strip())


def ensure_venv(root: Path, requirements: str) -> dict[str, Any]:
    """A venv with exactly ``requirements`` (installed by the aarch64 pip from host-downloaded wheels)."""
    started = time.monotonic()
    key = hashlib.sha256(requirements.encode()).hexdigest()[:16]
    guest = f"/opt/aeforge/venvs/{key}"
    venv, done = root / guest.lstrip("/"), root / guest.lstrip("/") / ".aeforge-ok.json"
    if done.is_file():
        return {**json.loads(done.read_text(encoding="utf-8")), "cached": True, "setup_s": time.monotonic() - started}
    _remove_tree(venv)
    wheels = root / "opt" / "aeforge" / "wheels" / key
    wheels.mkdir(parents=True, exist_ok=True)
    requirements_file = root / "opt" / "aeforge" / "venvs" / f"{key}.requirements.txt"
    requirements_file.parent.mkdir(parents=True, exist_ok=True)
    requirements_file.write_text(requirements, encoding="utf-8")
    download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
                *(arg for tag in MANYLINUX for arg in ("--platform", tag)), "--python-version", PYTHON_VERSION,
                "--implementation", "cp", "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "--abi", "abi3",
                "--abi", "none", "-r", str(requirements_file), "-d", str(wheels)]
    log(f"downloading aarch64 wheels: {' '.join(_pins(requirements))}")
    result = subprocess.run(download, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"pip download of the aarch64 wheels failed: {result.stderr.strip()[-1500:]}")
    pip_wheels = sorted((root / "usr" / "share" / "python-wheels").glob("pip-*.whl"))
    if not pip_wheels:
        raise RuntimeError(f"{root}: no pip wheel in /usr/share/python-wheels (python3-venv missing?)")
    pip = f"/usr/share/python-wheels/{pip_wheels[-1].name}/pip"
    log(f"creating {guest} and installing the requirements with the aarch64 pip")
    steps = [("/usr/bin/python3", "-m", "venv", "--without-pip", guest),
             (f"{guest}/bin/python", pip, "install", "--no-index", "--find-links", f"/opt/aeforge/wheels/{key}",
              "--no-compile", "--no-cache-dir", "--disable-pip-version-check", "-r",
              f"/opt/aeforge/venvs/{key}.requirements.txt")]
    for step in steps:
        result = _guest(root, *step, timeout=1800)
        if result.returncode != 0:
            _remove_tree(venv)
            return {"ok": False, "venv": guest, "error": f"{' '.join(step[-3:])} failed on aarch64: "
                                                        f"{(result.stderr or result.stdout).strip()[-1500:]}"}
    freeze = _guest(root, f"{guest}/bin/python", pip, "freeze", "--disable-pip-version-check", timeout=600)
    installed = _pins(freeze.stdout)
    facts = {"ok": True, "venv": guest, "requirements_sha256": hashlib.sha256(requirements.encode()).hexdigest(),
             "installed": installed, "complete": installed == _pins(requirements),
             "build_s": round(time.monotonic() - started, 1)}
    done.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return {**facts, "cached": False, "setup_s": time.monotonic() - started}


# ------------------------------------------------------------------------------------ bundles
def read_bundle(bundle: Path) -> tuple[dict[str, Any], str]:
    """The manifest and requirements.txt of an rpi bundle (ValueError when it is not one)."""
    try:
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{bundle}: not an aeforge bundle ({exc})") from None
    if manifest.get("runtime") != "onnxruntime" or manifest.get("device") != "rpi":
        raise ValueError(f"{bundle}: a {manifest.get('device')} bundle; only rpi (onnxruntime) bundles run here")
    requirements = bundle / "requirements.txt"
    if not requirements.is_file():
        raise ValueError(f"{bundle}: no requirements.txt (made by an older aeforge deploy?)")
    return manifest, requirements.read_text(encoding="utf-8")


def check_bundle(root: Path, venv: dict[str, Any], bundle: Path, manifest: dict[str, Any],
                 bench_seconds: float) -> dict[str, Any]:
    """``run.py --self-check`` and ``--bench`` of ``bundle`` in ``venv`` inside the root."""
    result: dict[str, Any] = {"bundle": str(bundle), "name": bundle.name, "model": manifest["model"]["file"],
                              "module": manifest.get("source", {}).get("module"),
                              "requirements_installed": venv.get("installed"),
                              "requirements_complete": bool(venv.get("complete"))}
    if not venv.get("ok"):
        return {**result, "passed": False, "problem": venv["error"]}
    work = Path(tempfile.mkdtemp(prefix="aeforge-arm64-", dir=root / "tmp"))
    guest_dir = f"/tmp/{work.name}/{bundle.name}"
    python = f"{venv['venv']}/bin/python"
    try:
        shutil.copytree(bundle, work / bundle.name)
        started = time.monotonic()
        run = _guest(root, python, "-I", f"{guest_dir}/run.py", "--self-check", "--json",
                     f"{guest_dir}/self_check.json", timeout=3600)
        result["self_check_process_s"] = round(time.monotonic() - started, 2)
        result["self_check_stdout"] = run.stdout.strip()
        report = work / bundle.name / "self_check.json"
        if run.returncode not in (0, 1) or not report.is_file():
            return {**result, "passed": False, "problem": f"run.py --self-check exited {run.returncode}: "
                                                         f"{(run.stderr or run.stdout).strip()[-1500:]}"}
        check = json.loads(report.read_text(encoding="utf-8"))
        result.update({key: check.get(key) for key in (
            "n", "exact", "mismatched_vectors", "max_abs_err", "max_err_lsb", "exact_required", "tolerance_abs",
            "first_mismatch", "vectors", "runtime_version", "providers", "available_providers", "machine",
            "python", "numpy", "platform", "infer_s", "wall_s")})
        result["passed"] = run.returncode == 0 and bool(check.get("passed")) and result["requirements_complete"]
        if run.returncode != 0:
            result["problem"] = run.stdout.strip()[-1500:]
        elif not result["requirements_complete"]:
            result["problem"] = (f"requirements.txt is not the complete list: the aarch64 pip installed "
                                 f"{venv.get('installed')}")
        started = time.monotonic()
        bench = _guest(root, python, "-I", f"{guest_dir}/run.py", "--bench", "--seconds", str(bench_seconds),
                       "--warmup-seconds", "0.2", "--batch", "1", "--threads", "1", "--label", BENCH_LABEL,
                       "--json", f"{guest_dir}/bench.json", timeout=600)
        bench_file = work / bundle.name / "bench.json"
        if bench.returncode != 0 or not bench_file.is_file():
            result["passed"] = False
            result["problem"] = f"run.py --bench exited {bench.returncode}: {bench.stderr.strip()[-1500:]}"
        else:
            result["bench"] = {**json.loads(bench_file.read_text(encoding="utf-8")), "label": BENCH_LABEL,
                               "note": BENCH_NOTE, "process_s": round(time.monotonic() - started, 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _qemu_version() -> str | None:
    tool = _tool("qemu-aarch64-static")
    if tool is None:
        return None
    result = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return result.stdout.splitlines()[0].strip() if result.stdout else None


def run_checks(bundles: list[Path], root: Path, bench_seconds: float = 2.0, rebuild: bool = False,
               full: bool = False) -> dict[str, Any]:
    """Set up (or reuse) the root and check every bundle; raises :class:`Unavailable` when emulation can't run."""
    problem = emulation_problem()
    if problem:
        raise Unavailable(problem)
    started = time.monotonic()
    read = [(bundle, *read_bundle(bundle)) for bundle in bundles]
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder / user of the cached root at a time
        record = ensure_root(root, rebuild=rebuild, full=full)
        venvs: dict[str, dict[str, Any]] = {}
        results = []
        for bundle, manifest, requirements in read:
            if requirements not in venvs:
                venvs[requirements] = ensure_venv(root, requirements)
            log(f"checking {bundle.name} ({manifest['model']['file']})")
            results.append(check_bundle(root, venvs[requirements], bundle, manifest, bench_seconds))
            log(f"{bundle.name}: {results[-1].get('self_check_stdout') or results[-1].get('problem')}")
    return {
        "emulated": not native(), "host_machine": platform.machine(), "emulator": None if native() else _qemu_version(),
        "root": record, "venvs": list(venvs.values()), "bundles": results,
        "passed": all(r["passed"] for r in results), "wall_s": round(time.monotonic() - started, 1),
        "bench_note": BENCH_NOTE if not native() else "native aarch64 host (not necessarily a Raspberry Pi)",
    }


def _table(report: dict[str, Any]) -> str:
    rows = [f"{'bundle':<24} {'n':>7} {'exact':>7} {'max err':>8} {'emul. s':>8}  onnxruntime / providers  result"]
    for r in report["bundles"]:
        exact, err = (str(r[k]) if r.get(k) is not None else "-" for k in ("exact", "max_abs_err"))
        rows.append(f"{r['name']:<24} {r.get('n') or '-':>7} {exact:>7} {err:>8} "
                    f"{r.get('self_check_process_s', '-'):>8}  {r.get('runtime_version')} {r.get('providers')}  "
                    f"{'ok' if r['passed'] else 'FAILED: ' + str(r.get('problem', ''))[:200]}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arm64_bundles.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundles made by aeforge deploy --device rpi")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--bench-seconds", type=float, default=2.0, help="run.py --bench duration (default 2)")
    parser.add_argument("--root", type=Path, default=None, help="the cached aarch64 root (default "
                        "$AEFORGE_ARM64_ROOT or ~/.cache/aeforge/arm64-root)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached root")
    parser.add_argument("--full-debootstrap", action="store_true", help="complete debootstrap (second stage "
                        "under emulation: a configured Debian, minutes slower)")
    args = parser.parse_args(argv)
    try:
        for bundle in args.bundles:
            read_bundle(bundle)
        report = run_checks(args.bundles, args.root or default_root(), args.bench_seconds, args.rebuild,
                            args.full_debootstrap)
    except ValueError as exc:
        print(f"arm64_bundles: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except Unavailable as exc:
        print(f"arm64_bundles: emulated aarch64 unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"arm64_bundles: setting up the aarch64 root failed: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    root = report["root"]
    print(f"aarch64 root: Debian {root['suite']} ({root['method']}), Python {root['python']}, glibc {root['glibc']}, "
          f"{'cached' if root['cached'] else 'built'} in {root['setup_s']:.1f} s; emulator: {report['emulator']}")
    print(_table(report))
    print(f"{'all bundles match' if report['passed'] else 'MISMATCH'} ({report['wall_s']} s)")
    return EXIT_OK if report["passed"] else EXIT_MISMATCH


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
