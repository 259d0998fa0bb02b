"""Generated Verilog without its power-on values, for the X-randomized Verilator build
(:class:`sim.verilated.VerilatedCore` with ``x_random=True``): a design that relies on a
register's initial value or on a written memory's initial contents then shows it as a
mismatch, since Verilator starts those from random state."""

from __future__ import annotations

import re

__all__ = ["without_power_on_values"]

_REG_INIT = re.compile(r"^(\s*reg\s+(?:signed\s+)?(?:\[[^\]]*\]\s*)?)(\\\S+\s|\w+)\s*"
                       r"=\s*[^;]+;", re.M)
_MEMORY_WRITE = re.compile(r"^\s*(\\\S+\s|\w+)\s*\[.*\]\s*<=", re.M)
_INITIAL_BLOCK = re.compile(r"^[ \t]*initial begin\n((?:(?![ \t]*end\n)[^\n]*\n)*)[ \t]*end\n",
                            re.M)
_INITIAL_TARGET = re.compile(r"^\s*(\\\S+\s|\w+)\s*\[", re.M)


def without_power_on_values(verilog: str) -> tuple[str, int]:
    """``verilog`` (as Yosys's Verilog writer emits it) without its power-on values: each
    ``reg x = value;`` becomes ``reg x;`` and each ``initial`` block that fills a memory the
    design writes (``mem[...] <= ...``) goes; ROMs keep their contents, and Yosys's own
    ``$auto$verilog_backend`` trigger registers their initializer. Returns the text and the
    number of initializers and blocks dropped."""
    dropped = 0

    def register(match: re.Match) -> str:
        nonlocal dropped
        if "verilog_backend" in match.group(2):
            return match.group(0)
        dropped += 1
        return f"{match.group(1)}{match.group(2)};"  # an escaped name keeps its space

    text = _REG_INIT.sub(register, verilog)
    written = {name.strip() for name in _MEMORY_WRITE.findall(text)}

    def block(match: re.Match) -> str:
        nonlocal dropped
        targets = {name.strip() for name in _INITIAL_TARGET.findall(match.group(1))}
        if not targets or not targets <= written:
            return match.group(0)
        dropped += 1
        return ""

    return _INITIAL_BLOCK.sub(block, text), dropped
