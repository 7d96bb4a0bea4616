"""The integration top of a generated RTL project: valid-in/valid-out handshake around da4ml's core.

da4ml's IO wrapper (``<name>_wrapper``) has only the data buses. :func:`write_interface_top` adds
``<name>_top`` beside it (``src/<name>_top.v`` or ``.vhd``) with the port list a detector or FPGA
designer integrates::

    module <name>_top (
        input  clk,                    // pipelined designs only
        input  rst,                    // synchronous, active high: clears the valid pipeline
        input  valid_in,               // model_inp holds a vector this cycle
        input  [N*wi-1:0] model_inp,   // element j at [wi*j +: wi]
        output valid_out,              // model_out holds the result of a vector
        output [M*wo-1:0] model_out
    );

A pipelined core takes a vector on every rising edge (II = 1) and its result is on ``model_out``
``latency_cycles + 1`` edges later (the core's input register plus one register per stage); the
valid bit travels through a shift register of that length beside the data, so ``valid_out`` marks
exactly the cycles whose ``model_out`` belongs to an input presented with ``valid_in``. Data on
cycles without ``valid_in`` are computed and ignored: the datapath has no enable, which keeps it
free of clock-enable fan-out. A combinational design has no clock: ``valid_out = valid_in``.

:func:`write_testbench` writes a self-checking-ready Verilog testbench (``sim/tb_<name>_top.v``)
that reads vectors and a valid pattern from hex files, drives the top one cycle per pattern bit and
writes every ``model_out`` seen with ``valid_out`` together with its cycle number; it runs in any
Verilog simulator (:mod:`aeforge.hls.rtl.testbench` runs it with Verilator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TESTBENCH_INPUTS = "tb_inputs.hex"
TESTBENCH_VALID = "tb_valid.hex"
TESTBENCH_OUTPUTS = "tb_outputs.txt"


def interface_top_name(core_name: str) -> str:
    """Module name of the valid-in/valid-out top of the core ``core_name``."""
    return f"{core_name}_top"


def valid_delay(project: Any) -> int:
    """Rising edges from a vector presented with ``valid_in`` to its result with ``valid_out``."""
    return project.latency_cycles + 1 if project.pipelined else 0


def _verilog_top(project: Any, name: str) -> str:
    in_bits, out_bits = project.input.bus_bits, project.output.bus_bits
    delay = valid_delay(project)
    header = [
        "`timescale 1 ns / 1 ps",
        "",
        f"// {name}: valid-in/valid-out top written by aeforge around da4ml's {project.top}.",
        f"// model_inp: {project.input.elements} x {project.input.lane_type.ap_type()} "
        f"(element j at [{project.input.lane_bits}*j +: {project.input.lane_bits}], channels-last order)",
        f"// model_out: {project.output.elements} x {project.output.lane_type.ap_type()} "
        f"(element j at [{project.output.lane_bits}*j +: {project.output.lane_bits}])",
    ]
    if project.pipelined:
        header.append(f"// II = 1; a vector presented with valid_in on edge k is on model_out, with valid_out, "
                      f"after edge k+{delay - 1}.")
        ports = [
            "    input clk,",
            "    input rst,",
            "    input valid_in,",
            f"    input [{in_bits - 1}:0] model_inp,",
            "    output valid_out,",
            f"    output [{out_bits - 1}:0] model_out",
        ]
        body = [
            f"    {project.top} core (.clk(clk), .model_inp(model_inp), .model_out(model_out));",
            "",
            f"    reg [{delay - 1}:0] valid_pipe;",
            "    always @(posedge clk) begin",
            "        if (rst)",
            f"            valid_pipe <= {delay}'d0;",
            "        else",
            (f"            valid_pipe <= {{valid_pipe[{delay - 2}:0], valid_in}};" if delay > 1
             else "            valid_pipe <= valid_in;"),
            "    end",
            f"    assign valid_out = valid_pipe[{delay - 1}];",
        ]
    else:
        header.append("// Combinational: model_out follows model_inp; valid_out = valid_in.")
        ports = [
            "    input valid_in,",
            f"    input [{in_bits - 1}:0] model_inp,",
            "    output valid_out,",
            f"    output [{out_bits - 1}:0] model_out",
        ]
        body = [
            f"    {project.top} core (.model_inp(model_inp), .model_out(model_out));",
            "    assign valid_out = valid_in;",
        ]
    return "\n".join([*header, "", f"module {name} (", *ports, ");", *body, "endmodule", ""])


def _vhdl_top(project: Any, name: str) -> str:
    in_bits, out_bits = project.input.bus_bits, project.output.bus_bits
    delay = valid_delay(project)
    lines = [
        f"-- {name}: valid-in/valid-out top written by aeforge around da4ml's {project.top}.",
        f"-- model_inp: {project.input.elements} x {project.input.lane_type.ap_type()} "
        f"(element j at ({project.input.lane_bits}*j + {project.input.lane_bits - 1} downto "
        f"{project.input.lane_bits}*j))",
        f"-- model_out: {project.output.elements} x {project.output.lane_type.ap_type()}",
        "library ieee;",
        "use ieee.std_logic_1164.all;",
        f"entity {name} is port(",
    ]
    if project.pipelined:
        lines += ["    clk:in std_logic;", "    rst:in std_logic;"]
    lines += [
        "    valid_in:in std_logic;",
        f"    model_inp:in std_logic_vector({in_bits - 1} downto 0);",
        "    valid_out:out std_logic;",
        f"    model_out:out std_logic_vector({out_bits - 1} downto 0)",
        ");",
        f"end entity {name};",
        "",
        f"architecture rtl of {name} is",
    ]
    if project.pipelined:
        lines += [
            f"    signal valid_pipe:std_logic_vector({delay - 1} downto 0) := (others => '0');",
            "begin",
            f"    core:entity work.{project.top} port map(clk=>clk, model_inp=>model_inp, model_out=>model_out);",
            "    process(clk) begin",
            "        if rising_edge(clk) then",
            "            if rst = '1' then",
            "                valid_pipe <= (others => '0');",
            "            else",
            (f"                valid_pipe <= valid_pipe({delay - 2} downto 0) & valid_in;" if delay > 1
             else "                valid_pipe(0) <= valid_in;"),
            "            end if;",
            "        end if;",
            "    end process;",
            f"    valid_out <= valid_pipe({delay - 1});",
        ]
    else:
        lines += [
            "begin",
            f"    core:entity work.{project.top} port map(model_inp=>model_inp, model_out=>model_out);",
            "    valid_out <= valid_in;",
        ]
    lines += ["end architecture rtl;", ""]
    return "\n".join(lines)


def write_interface_top(project: Any, root: Path, name: str) -> str:
    """Write ``src/<name>`` (Verilog or VHDL, as the project) into ``root``; returns its relative path."""
    if project.language == "verilog":
        rel = f"src/{name}.v"
        text = _verilog_top(project, name)
    else:
        rel = f"src/{name}.vhd"
        text = _vhdl_top(project, name)
    (root / rel).write_text(text, encoding="utf-8")
    return rel


def write_testbench(project: Any, root: Path, top: str) -> str:
    """Write ``sim/tb_<top>.v``, the file-driven testbench of the Verilog interface top; returns its path."""
    in_bits, out_bits = project.input.bus_bits, project.output.bus_bits
    clocked = project.pipelined
    rel = f"sim/tb_{top}.v"
    connect = ".clk(clk), .rst(rst), " if clocked else ""
    text = f"""`timescale 1 ns / 1 ps

// tb_{top}: written by aeforge. Reads +vectors=N vectors ({TESTBENCH_INPUTS}, one hex bus per line) and
// +cycles=C valid bits ({TESTBENCH_VALID}, one per line); on cycle t drives valid_in = valid[t] and the
// next vector when it is 1 (a pseudo-random bus otherwise), and writes "<cycle> <hex model_out>" to
// {TESTBENCH_OUTPUTS} for every cycle with valid_out. Cycle t starts after rising edge t.
module tb_{top} #(parameter MAX_VECTORS = 65536, parameter MAX_CYCLES = 262144);
    reg clk = 1'b0;
    reg rst = 1'b1;
    reg valid_in = 1'b0;
    reg [{in_bits - 1}:0] model_inp = {in_bits}'d0;
    wire valid_out;
    wire [{out_bits - 1}:0] model_out;
    reg [{in_bits - 1}:0] vectors [0:MAX_VECTORS - 1];
    reg valid_bits [0:MAX_CYCLES - 1];
    integer n_vectors, n_cycles, cycle, next_vector, fd, word;

    {top} dut ({connect}.valid_in(valid_in), .model_inp(model_inp), .valid_out(valid_out), .model_out(model_out));

    initial begin
        if (!$value$plusargs("vectors=%d", n_vectors)) n_vectors = 0;
        if (!$value$plusargs("cycles=%d", n_cycles)) n_cycles = 0;
        $readmemh("{TESTBENCH_INPUTS}", vectors, 0, n_vectors - 1);
        $readmemh("{TESTBENCH_VALID}", valid_bits, 0, n_cycles - 1);
        fd = $fopen("{TESTBENCH_OUTPUTS}", "w");
        next_vector = 0;
        // two cycles of reset
        #5 clk = 1'b1; #5 clk = 1'b0;
        #5 clk = 1'b1; #5 clk = 1'b0;
        rst = 1'b0;
        for (cycle = 0; cycle < n_cycles + {valid_delay(project) + 2}; cycle = cycle + 1) begin
            if (cycle < n_cycles && valid_bits[cycle] && next_vector < n_vectors) begin
                valid_in = 1'b1;
                model_inp = vectors[next_vector];
                next_vector = next_vector + 1;
            end else begin
                valid_in = 1'b0;
                for (word = 0; word < {in_bits}; word = word + 32)
                    model_inp = (model_inp << 32) ^ $random;
            end
            #1;
            if (valid_out) $fwrite(fd, "%0d %h\\n", cycle, model_out);
            #4 clk = 1'b1;
            #5 clk = 1'b0;
        end
        $fclose(fd);
        $finish;
    end
endmodule
"""
    (root / rel).write_text(text, encoding="utf-8")
    return rel
