"""Shared fixtures: the reference data beside the repository (never copied into it).

In CI (``CI`` set to true/1/yes), what ``.ci/run`` installs must work: a test skipped because
``pytest.importorskip`` could not import a package that the ``all``/``test`` extras install (or whose
distribution is installed but broken) fails instead, and :func:`ci_skip` fails where it would skip.
"""

from __future__ import annotations

import functools
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

#: Distribution names whose import name is not the distribution name with ``-`` as ``_``.
_IMPORT_NAMES = {"pyyaml": "yaml", "pot": "ot", "pyzmq": "zmq", "scikit-learn": "sklearn", "pillow": "PIL",
                 "grpcio": "grpc", "nvidia-ml-py": "pynvml", "protobuf": "google", "setuptools": "setuptools"}
_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'")
#: Installed by ``.ci/run`` outside the extras (CompressAI declares numpy<2, so it is installed with --no-deps).
_CI_EXTRA_MODULES = frozenset({"compressai"})


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``, as GitHub Actions, GitLab and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def ci_skip(reason: str) -> NoReturn:
    """``pytest.skip`` here, ``pytest.fail`` in CI (where the tool is installed and must work)."""
    if in_ci():
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@functools.lru_cache(maxsize=1)
def ci_installed_modules() -> frozenset[str]:
    """Top-level import names of what ``pip install -e '.[all,test]'`` (``.ci/run``) installs."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: only what is installed counts (see must_import_in_ci)
        return frozenset()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    wanted, seen, requirements = ["all", "test"], set(), list(project.get("dependencies", []))
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in extras.get(extra, []):
            match = re.match(r"\s*aeforge\[([^\]]+)\]", requirement)
            if match:
                wanted.extend(name.strip() for name in match.group(1).split(","))
            else:
                requirements.append(requirement)
    names = set()
    for requirement in requirements:
        dist = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower()
        names.add(_IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return frozenset(names) | _CI_EXTRA_MODULES


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    try:
        return dict(metadata.packages_distributions())
    except Exception:  # broken metadata: treat as not installed
        return {}


def _distribution_installed(module: str) -> bool:
    return bool(_distributions().get(module))


def must_import_in_ci(module: str) -> bool:
    """Whether a failed import of ``module`` is a broken install (in CI) rather than an absent extra."""
    top = module.split(".")[0]
    return top in ci_installed_modules() or _distribution_installed(top)


def _fail_import_skip(report: Any) -> None:
    if not (report.skipped and in_ci()):
        return
    longrepr = report.longrepr
    message = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    match = _IMPORT_SKIP.search(message)
    if match and must_import_in_ci(match.group(1)):
        report.outcome = "failed"
        report.longrepr = (f"CI: {message.removeprefix('Skipped: ')} -- .ci/run installs {match.group(1)!r}, so "
                           "this import must work; a broken install fails instead of skipping")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    _fail_import_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    _fail_import_skip(outcome.get_result())


@pytest.fixture(scope="session")
def hgcal_csv() -> Path:
    """The real HGCAL CALQ readouts in ../shared/data (skips when absent)."""
    path = SHARED_DATA / "hgcal" / "CALQ_output.csv"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    return path
