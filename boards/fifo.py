"""A small block-RAM byte FIFO for slow streams (UART receive buffering).

``ByteFIFO(depth)``: ``i`` (stream in) and ``o`` (stream out), 8-bit payloads, ``depth`` a power
of two (one iCE40 ``SB_RAM40_4K`` holds 512). Built for Fmax rather than throughput: it takes
at most one byte every three cycles and moves one out every two, every handshake signal it
drives (``i.ready``, ``o.valid``) is a register, so it adds no combinational path between its
neighbours, and its empty and full flags are registered comparisons of the pointers (a
cycle late; the handshakes allow for it), so no wide compare sits in front of an enable.
Latency: a byte written into an empty FIFO is valid at ``o`` 4 cycles later.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import checking, integer


class ByteFIFO(wiring.Component):
    def __init__(self, depth: int):
        with checking(self):
            self.depth = integer("depth", depth, 2)
            if depth & (depth - 1):
                raise ValueError(f"depth must be a power of two, not {depth}")
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        bits = self.depth.bit_length() - 1
        m.submodules.mem = mem = Memory(shape=8, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())

        wp = Signal(bits + 1)    # one extra bit tells full from empty
        rp = Signal(bits + 1)
        # the pointers' comparisons, a cycle late: `empty` may say empty a cycle after a write
        # (a read waits), and no read can follow another within two cycles (fetching, then
        # o.valid), so a stale "not empty" is never seen; `full` is used only two cycles
        # after the last write (below), when it is current
        empty = Signal(init=1)
        full = Signal()
        m.d.sync += [
            empty.eq(wp == rp),
            full.eq((wp[:bits] == rp[:bits]) & (wp[bits] != rp[bits])),
        ]
        m.d.comb += self.level.eq(wp - rp)

        # input side: i.ready is a register (not full, and no write this cycle that fills it)
        m.d.comb += [wr.addr.eq(wp[:bits]), wr.data.eq(self.i.payload)]
        ready = Signal()
        m.d.comb += self.i.ready.eq(ready)
        write = Signal()
        wrote = Signal()         # a write in the previous cycle: `full` is not current yet
        m.d.comb += [write.eq(self.i.valid & ready), wr.en.eq(write)]
        m.d.sync += wrote.eq(write)
        with m.If(write):
            m.d.sync += [wp.eq(wp + 1), ready.eq(0)]
        with m.Else():
            m.d.sync += ready.eq(~full & ~wrote)

        # output side: read into the output register when it is empty
        fetching = Signal()
        m.d.comb += rd.addr.eq(rp[:bits])
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(fetching):
            m.d.sync += [self.o.payload.eq(rd.data), self.o.valid.eq(1), fetching.eq(0)]
        with m.Elif(~empty & ~self.o.valid & ~fetching):
            m.d.comb += rd.en.eq(1)
            m.d.sync += [rp.eq(rp + 1), fetching.eq(1)]
        return m
