"""Names that end up in generated files or on a terminal: Verilog identifiers, class names.

- :func:`verilog_identifier_problem`: why a string cannot be a Verilog module name (``None``
  when it can): it must match ``[A-Za-z_][A-Za-z0-9_]*`` (Verilog also allows ``$`` after
  the first character, but Yosys then writes the name escaped, ``\\a$b``), be at most
  :data:`MAX_IDENTIFIER` characters, and not be a keyword of Verilog-2005 or SystemVerilog
  (IEEE 1800-2017, which includes every Verilog-2005 keyword) or of Icarus Verilog, nor
  the name of an iCE40 or ECP5 cell that Yosys's synthesis for the boards defines
  (:data:`CELL_NAMES`: a module of that name is a second definition there).
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
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

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
""".split()) | {"bool", "wreal"}  # Icarus Verilog 11 reserves these under -g2005 and -g2012

#: The cells of Yosys's iCE40 and ECP5 libraries (``share/ice40/cells_sim.v``,
#: ``share/ecp5/*.v``/``*.vh``), which synthesis for the boards reads beside the design.
CELL_NAMES = frozenset("""
ALU54B BB BBPD BBPU CCU2C CLKDIVF DCCA DCSC DCUA DDRDLLA DELAYF DELAYG DLLDELD DP16KD
DPR16X4C DQSBUFM DTR ECLKBRIDGECS ECLKSYNCB EHXPLLL EXTREFB FD1P3AX FD1P3AY FD1P3BX
FD1P3DX FD1P3IX FD1P3JX FD1S3AX FD1S3AY FD1S3BX FD1S3DX FD1S3IX FD1S3JX GSR IB IBPD
IBPU ICESTORM_LC ICESTORM_RAM IDDR71B IDDRX1F IDDRX2DQA IDDRX2F IFS1P3BX IFS1P3DX
IFS1P3IX IFS1P3JX ILVDS INV JTAGG L6MUX21 LUT2 LUT4 MULT18X18D OB OBCO OBZ OBZPD OBZPU
ODDR71B ODDRX1F ODDRX2DQA ODDRX2DQSB ODDRX2F OFS1P3BX OFS1P3DX OFS1P3IX OFS1P3JX OLVDS
OSCG OSHX2A PCSCLKDIV PDPW16KD PFUMX PUR SB_CARRY SB_DFF SB_DFFE SB_DFFER SB_DFFES
SB_DFFESR SB_DFFESS SB_DFFN SB_DFFNE SB_DFFNER SB_DFFNES SB_DFFNESR SB_DFFNESS SB_DFFNR
SB_DFFNS SB_DFFNSR SB_DFFNSS SB_DFFR SB_DFFS SB_DFFSR SB_DFFSS SB_FILTER_50NS SB_GB
SB_GB_IO SB_HFOSC SB_I2C SB_IO SB_IO_I3C SB_IO_OD SB_LEDDA_IP SB_LED_DRV_CUR SB_LFOSC
SB_LUT4 SB_MAC16 SB_PLL40_2F_CORE SB_PLL40_2F_PAD SB_PLL40_2_PAD SB_PLL40_CORE
SB_PLL40_PAD SB_RAM40_4K SB_RAM40_4KNR SB_RAM40_4KNRNW SB_RAM40_4KNW SB_RGBA_DRV
SB_RGB_DRV SB_SPI SB_SPRAM256KA SB_WARMBOOT SGSR TRELLIS_COMB TRELLIS_DPR16X4
TRELLIS_FF TRELLIS_IO TRELLIS_RAM16X2 TSHX2DQA TSHX2DQSA USRMCLK VHI VLO
""".split())


def verilog_identifier_problem(name: str) -> str | None:
    """Why ``name`` is not usable as a Verilog module name, or ``None`` when it is."""
    if len(name) > MAX_IDENTIFIER:
        return f"is {len(name)} characters, more than {MAX_IDENTIFIER}"
    if "$" in name and _IDENTIFIER.fullmatch(name.replace("$", "_")):
        return ("holds a '$': Yosys writes such a name escaped (\\name), which other tools "
                "read as another name; use letters, digits and _")
    if not _IDENTIFIER.fullmatch(name):
        return "is not a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*)"
    if name in KEYWORDS:
        return "is a Verilog/SystemVerilog keyword"
    if name in CELL_NAMES:
        return "is the name of an FPGA cell in the boards' synthesis libraries"
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
