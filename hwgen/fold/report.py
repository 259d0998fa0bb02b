"""The per-layer folding/performance table that ``python -m hwgen info --fold`` prints.

:func:`format_fold_table` renders a :class:`~hwgen.fold.plans.NetworkPlan`: per layer its
fold, cycles, block RAMs, LUT estimate and memories (where the weights live: ``logic``,
``bram`` or ``spram (k blocks)``); then the fold, the input stream, the initiation interval
and latency, the SPRAM blocks and words to load when some layer uses them, and the
read-port bound of a :class:`~hwgen.fold.default.Budget`'s device (its block RAMs, and
its SPRAM blocks, or those the fold uses). Builds on :mod:`~hwgen.fold.plans` and
:mod:`~hwgen.fold.default`.
"""

from __future__ import annotations

from .default import Budget
from .line_buffers import PoolPlan
from .plans import NetworkPlan


def _buffer_note(unit, brams: int) -> str:
    where = f"{brams} BRAM" if brams else "logic"
    words = f", {unit.groups} words of {unit.word} per position" if unit.groups > 1 else ""
    return f", line buffer {where}{words}"


def format_fold_table(net: NetworkPlan, budget: Budget | None = None) -> str:
    """The per-layer folding/performance table that ``info --fold`` appends, with the
    block-RAM read-port bound of ``budget``'s device (default :class:`Budget`)."""
    budget = budget or Budget()
    lines = [f"{'#':>2}  {'op':<9} {'PE':>5} {'SIMD':>5} {'NF':>5} {'SF':>5} {'cycles':>8} "
             f"{'BRAMs':>6} {'~LUTs':>7}  weight ROM / window"]
    for lp in net.layers:
        if isinstance(lp, PoolPlan):
            (kh, kw), (ho, wo) = lp.kernel, lp.out_shape
            note = f"{ho}x{wo} positions, {kh * kw} taps each" + _buffer_note(lp, lp.brams)
            lines.append(f"{lp.index:>2}  {lp.op:<9} {'-':>5} {'-':>5} {'-':>5} {'-':>5} "
                         f"{lp.cycles:>8} {lp.brams:>6} {lp.luts:>7}  {note}")
            continue
        depth = lp.nf * lp.sf
        store = lp.weight_store
        if lp.spram:
            store += f" ({lp.spram_blocks} block{'s' if lp.spram_blocks > 1 else ''})"
        note = f"{lp.pe * lp.simd}x{depth} {store}"
        if lp.window is not None:
            ho, wo = lp.window.out_shape
            note += (f"; {ho}x{wo} positions, {lp.window.cycles_per_window} cycles/window "
                     f"min" + _buffer_note(lp.window, lp.window.brams))
        lines.append(f"{lp.index:>2}  {lp.op:<9} {lp.pe:>5} {lp.simd:>5} {lp.nf:>5} "
                     f"{lp.sf:>5} {lp.cycles:>8} {lp.brams:>6} {lp.luts:>7}  {note}")
    fold = net.fold_text
    order = "" if net.input_order == "CHW" else f" in {net.input_order} order"
    lines.append(f"fold   {fold}; input {net.lanes} x {net.bits}-bit values per beat{order}, "
                 f"{net.beats_per_image} beats per image")
    bound = "at most " if net.has_windows else ""
    spram = (f"; {net.spram_blocks} SPRAM blocks ({net.spram_words} words to load)"
             if net.spram_blocks else "")
    over = (f", more than the {budget.luts} of the budget: it will not fit the device"
            if net.luts > budget.luts else "")
    lines.append(f"II     {net.interval_text} cycles per image; latency {bound}"
                 f"{net.latency_cycles} cycles; {net.brams} block RAMs{spram}; ~{net.luts} "
                 f"LUTs (estimate{over})")
    sprams = max(budget.spram_blocks, net.spram_blocks)
    port = net.read_port_bound(budget.bram_blocks, budget.bram_port_bits, sprams)
    also = f" and {sprams} SPRAMs 16" if sprams else ""
    # a fold beyond the budget's block RAMs can beat their bound: a fraction means nothing then
    # and so can a fold whose small layers keep their weights in logic, not block RAM
    reach = (f"this fold needs {net.brams} block RAMs, more than the {budget.brams} of the "
             f"budget" if net.brams > budget.brams else
             f"this fold reaches {port / net.cycles_per_image:.1%} of it"
             if port <= net.cycles_per_image else
             "this fold is faster: it keeps weights in logic too, not only in block RAM")
    lines.append(f"bound  {port} cycles per image if all {budget.bram_blocks} block RAMs "
                 f"delivered {budget.bram_port_bits}{also} weight bits every cycle "
                 f"({net.synapse_reads} per image); {reach}")
    return "\n".join(lines)
