"""Regroup the elements of a vector between stream beat widths."""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import ceil_div

__all__ = ["Repack", "SkidBuffer"]


class Repack(wiring.Component):
    """Regroups a vector of ``n`` elements from beats of ``c`` elements into words of ``s``.

    Each element is ``element_bits`` wide; element ``k`` of a beat sits in bits
    ``[k*element_bits, (k+1)*element_bits)``. A vector arrives as ``ceil(n / c)`` beats on
    ``i`` (the last one's elements past ``n`` are ignored, whatever they hold) and leaves as
    ``ceil(n / s)`` words on ``o``, the first word starting with the vector's first element
    and the elements past ``n`` in the last word zero. Vectors follow each other without gaps.

    When ``c == s`` the unit is combinational (it only masks the last beat). When the vector
    is one output word (``s == n``, e.g. regrouping an MVTU's ``PE``-channel beats into one
    whole position) it gathers the beats into the output register: ``i.ready`` while the
    register is free or leaving, the word valid the cycle after its last beat. When a beat
    splits into whole words (``c`` a multiple of ``s``) it holds one beat and shifts a word
    out per cycle: the first word valid the cycle after the beat was accepted, the next beat
    accepted in the cycle its last word leaves. Otherwise it is a shift buffer of
    ``roundup(2s + 2c, s)`` elements: a word is valid the cycle after the beat completing it
    was accepted, ``i.ready`` and ``o.valid`` are register bits (the fill level is a
    thermometer code),
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
        last = Signal()  # beat == beats - 1, kept in a register (no compare on the paths)
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        if beats == 1:
            m.d.comb += last.eq(1)
        else:
            last_r = Signal(name="last")
            m.d.comb += last.eq(last_r)
            with m.If(take):
                m.d.sync += [beat.eq(Mux(last, 0, beat + 1)),
                             last_r.eq(~last & (beat == beats - 2))]
        data = Signal(c * e)
        if rem == c:
            m.d.comb += data.eq(self.i.payload)
        else:
            m.d.comb += data.eq(Mux(last, self.i.payload & ((1 << (rem * e)) - 1),
                                    self.i.payload))

        if c == s:
            m.d.comb += [
                self.o.payload.eq(data),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m

        if s == n:
            # Gather: beat k fills elements [k*c, min((k+1)*c, n)) of the output register,
            # selected by a one-hot beat register.
            slot = Signal(beats, init=1, name="slot")
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(take):
                m.d.sync += slot.eq(slot.rotate_left(1))
                for k in range(beats):
                    lo, hi = k * c, min(n, (k + 1) * c)
                    with m.If(slot[k]):
                        m.d.sync += self.o.payload[lo * e:hi * e].eq(data[:(hi - lo) * e])
                with m.If(last):
                    m.d.sync += self.o.valid.eq(1)
            return m

        if c % s == 0:
            # Split: the beat sits in a register and leaves s elements per cycle; `left`
            # counts the words still to send (ceil(rem / s) for the vector's last beat).
            per_beat, last_words = c // s, ceil_div(rem, s)
            held = Signal(c * e, name="held")
            left = Signal(range(per_beat + 1), name="left")
            emit = Signal()
            m.d.comb += [
                self.o.valid.eq(left != 0),
                self.o.payload.eq(held[:s * e]),
                emit.eq(self.o.valid & self.o.ready),
                self.i.ready.eq((left == 0) | ((left == 1) & self.o.ready)),
            ]
            with m.If(take):
                m.d.sync += [held.eq(data),
                             left.eq(Mux(last, last_words, per_beat))]
            with m.Elif(emit):
                m.d.sync += [held.eq(held >> (s * e)), left.eq(left - 1)]
            return m

        size = ceil_div(2 * s + 2 * c, s) * s  # buffer capacity in elements
        buf = Signal(size * e, name="buf")
        # The fill level (elements held) is always a multiple of g = gcd(c, s): it moves by c
        # and -s, and rounds up to a multiple of s. It is kept as a thermometer code in units
        # of g, ``therm[k - 1] = fill >= k*g`` for k in 1..size/g, so that every compare and
        # update is a few LUTs of wiring-like logic instead of a carry chain.
        g = math.gcd(c, s)
        units, cu, su = size // g, c // g, s // g
        therm = Signal(units, name="fill")
        emit = Signal()

        def at_least(code, k):  # fill >= k*g from a thermometer code
            return Const(1) if k <= 0 else (code[k - 1] if k <= units else Const(0))

        m.d.comb += [
            self.o.valid.eq(therm[su - 1]),             # fill >= s
            self.o.payload.eq(buf[:s * e]),
            self.i.ready.eq(~therm[units - cu]),        # fill <= size - c
            emit.eq(self.o.valid & self.o.ready),
        ]
        after = Signal(units)  # the fill once this cycle's word (if any) left
        buf_after = Signal(size * e)
        m.d.comb += [
            after.eq(Mux(emit, therm >> su, therm)),
            buf_after.eq(Mux(emit, buf >> (s * e), buf)),
        ]
        # Insertion offsets are multiples of g and at most size - c (i.ready): decode them
        # one-hot from the thermometer, then each buffer element ORs in the (few) input
        # elements that can land on it.
        offsets = range(0, size - c + 1, g)
        select = {}
        for fa in offsets:
            j = fa // g
            sel = Signal(name=f"at{fa}")
            m.d.comb += sel.eq(take & at_least(after, j) & ~at_least(after, j + 1))
            select[fa] = sel
        elements = []
        for b in range(size):
            value = buf_after[b * e:(b + 1) * e]
            for fa in offsets:
                if 0 <= b - fa < c:
                    value = value | Mux(select[fa], data[(b - fa) * e:(b - fa + 1) * e], 0)
            elements.append(value)
        m.d.sync += buf.eq(Cat(*elements))
        # The next fill: fill_after + c, or for the last beat roundup(fill_after + rem, s);
        # roundup(F, s) >= K exactly when F >= roundup(K, s) - s + 1.
        added = Cat(at_least(after, k - cu) for k in range(1, units + 1))
        rounded = Cat(at_least(after, ceil_div(ceil_div(k * g, s) * s - s + 1 - rem, g))
                      for k in range(1, units + 1))
        with m.If(take):
            m.d.sync += therm.eq(Mux(last, rounded, added))
        with m.Else():
            m.d.sync += therm.eq(after)
        return m


class SkidBuffer(wiring.Component):
    """A stream register slice whose ``i.ready`` is a register (no combinational path from
    ``o.ready`` to ``i.ready``), at full throughput: ``o`` comes from a register one cycle
    after ``i``; a beat that arrives while ``o`` is stalled waits in a second register.

    ``width``: payload bits.
    """

    @checked_init
    def __init__(self, width: int):
        check_int("width", width, 1)
        self.width = width
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        held = Signal(self.width, name="held")
        held_valid = Signal(name="held_valid")
        m.d.comb += self.i.ready.eq(~held_valid)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(held_valid):
                m.d.sync += [self.o.payload.eq(held), self.o.valid.eq(1),
                             held_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~held_valid):
            m.d.sync += [held.eq(self.i.payload), held_valid.eq(1)]
        return m
