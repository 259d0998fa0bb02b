"""Reset after a PLL: hold a domain in reset until lock, then for a fixed number of cycles."""

from __future__ import annotations

from amaranth import ClockDomain, ClockSignal, Module, Signal
from amaranth.lib.cdc import FFSynchronizer


def hold_reset_until_lock(m: Module, cd: ClockDomain, lock, cycles: int):
    """Drive ``cd.rst`` high until ``lock`` (asynchronous, synchronized here) has been high
    for ``cycles`` cycles of ``cd.clk``; a loss of lock asserts it again. Uses a reset-less
    local domain whose flip-flops power up as 0 (true on iCE40 and ECP5)."""
    por = ClockDomain(f"{cd.name}_por", reset_less=True, local=True)
    m.domains += por
    m.d.comb += ClockSignal(por.name).eq(cd.clk)
    locked = Signal()
    m.submodules[f"{cd.name}_lock_sync"] = FFSynchronizer(lock, locked, o_domain=por.name)
    timer = Signal(range(cycles + 1))
    ready = Signal()
    with m.If(~locked):
        m.d[por.name] += [timer.eq(0), ready.eq(0)]
    with m.Elif(timer == cycles):
        m.d[por.name] += ready.eq(1)
    with m.Else():
        m.d[por.name] += timer.eq(timer + 1)
    m.d.comb += cd.rst.eq(~ready)
