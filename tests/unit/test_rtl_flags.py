"""``aeforge rtl --abc9`` and ``--pnr-router`` (issue 15): the Yosys and nextpnr commands they produce."""

from __future__ import annotations

import pytest

from aeforge.errors import ConfigError
from aeforge.hls.rtl import pnr, yosys


def test_abc9_flag_reaches_the_synthesis_scripts() -> None:
    assert "synth_xilinx -flatten -top core -abc9\n" in yosys._script(["a.v"], "core", "xc7", True, abc9=True)
    assert "-abc9" not in yosys._script(["a.v"], "core", "xc7", True)
    assert "synth_ecp5 -top core -abc9\n" in pnr._synth_script(["a.v"], "core", True, abc9=True)


def test_abc9_and_router_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="--abc9: the generic target has no ABC9 flow"):
        yosys.synthesize(object(), "generic", abc9=True)
    with pytest.raises(ConfigError, match="--pnr-router must be router1 or router2, got 'router3'"):
        pnr._check_args("85k", "CABGA381", 6, 40.0, 1, "router3")
    pnr._check_args("85k", "CABGA381", 6, 40.0, 1, "router2")
