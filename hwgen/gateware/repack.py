"""Regroup the elements of a vector between stream beat widths."""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import ceil_div

__all__ = ["Repack"]


class Repack(wiring.Component):
    """Regroups a vector of ``n`` elements from beats of ``c`` elements into words of ``s``.

    Each element is ``element_bits`` wide; element ``k`` of a beat sits in bits
    ``[k*element_bits, (k+1)*element_bits)``. A vector arrives as ``ceil(n / c)`` beats on
    ``i`` (the last one's elements past ``n`` are ignored, whatever they hold) and leaves as
    ``ceil(n / s)`` words on ``o``, the first word starting with the vector's first element
    and the elements past ``n`` in the last word zero. Vectors follow each other without gaps.

    When ``c == s`` the unit is combinational (it only masks the last beat). Otherwise it is a
    shift buffer of ``roundup(2s + 2c, s)`` elements: a word is valid the cycle after the
    beat completing it was accepted, ``i.ready`` and ``o.valid`` depend on registers only,
    and neither side stalls the other while the other keeps up (no bubbles between vectors).
    """

    @checked_init
    def __init__(self, n: int, c: int, s: int, element_bits: int = 1):
        for name, value in (("n", n), ("c", c), ("s", s), ("element_bits", element_bits)):
            check_int(name, value, 1)
        if c > n or s > n:
            raise ValueError(f"beat widths c={c} and s={s} must not exceed the vector size {n}")
        self.n, self.c, self.s, self.element_bits = n, c, s, element_bits
        super().__init__({
            "i": In(stream.Signature(c * element_bits)),
            "o": Out(stream.Signature(s * element_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        n, c, s, e = self.n, self.c, self.s, self.element_bits
        beats = ceil_div(n, c)
        rem = n - (beats - 1) * c  # elements in the last beat
        beat = Signal(range(beats), name="beat")
        last = Signal()
        m.d.comb += last.eq(beat == beats - 1)
        data = Signal(c * e)
        if rem == c:
            m.d.comb += data.eq(self.i.payload)
        else:
            m.d.comb += data.eq(Mux(last, self.i.payload & ((1 << (rem * e)) - 1),
                                    self.i.payload))
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        with m.If(take):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))

        if c == s:
            m.d.comb += [
                self.o.payload.eq(data),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m

        size = ceil_div(2 * s + 2 * c, s) * s  # buffer capacity in elements
        buf = Signal(size * e, name="buf")
        fill = Signal(range(size + 1), name="fill")
        emit = Signal()
        m.d.comb += [
            self.o.valid.eq(fill >= s),
            self.o.payload.eq(buf[:s * e]),
            self.i.ready.eq(fill <= size - c),
            emit.eq(self.o.valid & self.o.ready),
        ]
        fill_after = Signal(range(size + 1))
        buf_after = Signal(size * e)
        m.d.comb += [
            fill_after.eq(Mux(emit, fill - s, fill)),
            buf_after.eq(Mux(emit, buf >> (s * e), buf)),
        ]
        # Insertion offsets are multiples of g (fill moves by c and -s, and rounds up to
        # multiples of s) and at most size - c (i.ready): decode them one-hot, then each
        # buffer element ORs in the (few) input elements that can land on it.
        g = math.gcd(c, s)
        offsets = range(0, size - c + 1, g)
        select = {fa: Signal(name=f"at{fa}") for fa in offsets}
        m.d.comb += [sel.eq(take & (fill_after == fa)) for fa, sel in select.items()]
        elements = []
        for b in range(size):
            value = buf_after[b * e:(b + 1) * e]
            for fa in offsets:
                if 0 <= b - fa < c:
                    value = value | Mux(select[fa], data[(b - fa) * e:(b - fa + 1) * e], 0)
            elements.append(value)
        m.d.sync += buf.eq(Cat(*elements))
        with m.If(take):
            with m.Switch(fill_after):
                for fa in offsets:
                    with m.Case(fa):
                        m.d.sync += fill.eq(Mux(last, ceil_div(fa + rem, s) * s, fa + c))
        with m.Else():
            m.d.sync += fill.eq(fill_after)
        return m
