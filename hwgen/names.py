"""Names that end up in generated files or on a terminal: Verilog identifiers, class names.

- :func:`verilog_identifier_problem`: why a string cannot be a Verilog module name (``None``
  when it can): it must match ``[A-Za-z_][A-Za-z0-9_$]*``, be at most
  :data:`MAX_IDENTIFIER` characters, and not be a keyword of Verilog-2005 or SystemVerilog
  (IEEE 1800-2017, which includes every Verilog-2005 keyword).
- :func:`default_module`: the module name for a model file when none is given.
- :func:`class_name_problem`: why a class name cannot be printed as one line of text
  (``None`` when it can): a non-empty string of at most :data:`MAX_CLASS_NAME` printable
  characters, with no lone surrogates.
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_IDENTIFIER = 64
MAX_CLASS_NAME = 256
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

#: IEEE 1800-2017 Annex B reserved keywords (a superset of IEEE 1364-2005's).
KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume
automatic before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez
cell chandle checker class clocking cmos config const constraint context continue cover
covergroup coverpoint cross deassign default defparam design disable dist do edge else end
endcase endchecker endclass endclocking endconfig endfunction endgenerate endgroup
endinterface endmodule endpackage endprimitive endprogram endproperty endspecify
endsequence endtable endtask enum event eventually expect export extends extern final
first_match for force foreach forever fork forkjoin function generate genvar global highz0
highz1 if iff ifnone ignore_bins illegal_bins implements implies import incdir include
initial inout input inside instance int integer interconnect interface intersect join
join_any join_none large let liblist library local localparam logic longint macromodule
matches medium modport module nand negedge nettype new nexttime nmos nor noshowcancelled
not notif0 notif1 null or output package packed parameter pmos posedge primitive priority
program property protected pull0 pull1 pulldown pullup pulsestyle_ondetect
pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref reg
reject_on release repeat restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always
s_eventually s_nexttime s_until s_until_with scalared sequence shortint shortreal
showcancelled signed small soft solve specify specparam static string strong strong0
strong1 struct super supply0 supply1 sync_accept_on sync_reject_on table tagged task this
throughout time timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior
trireg type typedef union unique unique0 unsigned until until_with untyped use uwire var
vectored virtual void wait wait_order wand weak weak0 weak1 while wildcard wire with within
wor xnor xor
""".split())


def verilog_identifier_problem(name: str) -> str | None:
    """Why ``name`` is not usable as a Verilog module name, or ``None`` when it is."""
    if len(name) > MAX_IDENTIFIER:
        return f"is {len(name)} characters, more than {MAX_IDENTIFIER}"
    if not _IDENTIFIER.fullmatch(name):
        return "is not a Verilog identifier ([A-Za-z_][A-Za-z0-9_$]*)"
    if name in KEYWORDS:
        return "is a Verilog/SystemVerilog keyword"
    return None


def default_module(model_path: str | Path) -> str:
    """``sbn_<stem>`` with every character outside ``[0-9A-Za-z_]`` made ``_``, cut to
    :data:`MAX_IDENTIFIER` characters (never a keyword: it starts with ``sbn_``)."""
    stem = re.sub(r"[^0-9A-Za-z_]", "_", Path(model_path).stem)
    return f"sbn_{stem}"[:MAX_IDENTIFIER]


def class_name_problem(name) -> str | None:
    """Why ``name`` cannot be a class name, or ``None`` when it can.

    Meant for model validation (``hwgen.model``: each entry of ``classes``), so that a
    file whose class names hold control characters, lone surrogates or megabytes of text
    is refused on load, naming the class's index."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if len(name) > MAX_CLASS_NAME:
        return f"is {len(name)} characters, more than {MAX_CLASS_NAME}"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return "holds a lone surrogate (not valid Unicode text)"
    if not name.isprintable():
        return "holds a control or other non-printable character"
    return None
