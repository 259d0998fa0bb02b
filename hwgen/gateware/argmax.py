"""Argmax over a stream of score beats: the predicted class index."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import ceil_div

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """The index of the largest of ``classes`` signed ``score_width``-bit scores; ties go to
    the lowest index.

    ``i``: ``ceil(classes / lanes)`` beats per image of ``lanes`` scores (score ``k*lanes +
    p`` in field ``p`` of beat ``k``; fields past ``classes`` in the last beat are ignored).
    ``o``: one beat per image, the index in ``class_bits = max(1, ceil(log2(classes)))``
    bits, valid the cycle after the image's last beat was accepted. ``i.ready`` is
    ``~o.valid | o.ready``.
    """

    @checked_init
    def __init__(self, classes: int, lanes: int, score_width: int):
        for name, value in (("classes", classes), ("lanes", lanes), ("score_width", score_width)):
            check_int(name, value, 1)
        if lanes > classes:
            raise ValueError(f"lanes ({lanes}) must not exceed classes ({classes})")
        self.classes, self.lanes, self.score_width = classes, lanes, score_width
        self.class_bits = max(1, (classes - 1).bit_length())
        super().__init__({
            "i": In(stream.Signature(lanes * score_width)),
            "o": Out(stream.Signature(self.class_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, sw, cb = self.lanes, self.score_width, self.class_bits
        beats = ceil_div(self.classes, lanes)
        rem = self.classes - (beats - 1) * lanes
        beat = Signal(range(beats))
        last = Signal()
        m.d.comb += last.eq(beat == beats - 1)
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~self.o.valid | self.o.ready),
            take.eq(self.i.valid & self.i.ready),
        ]
        # Within a beat: a tree of comparators, each keeping its left (lower) candidate
        # unless the right one is strictly larger or the left one is padding.
        cands = []
        for p in range(lanes):
            score = self.i.payload[p * sw:(p + 1) * sw].as_signed()
            live = Const(1) if p < rem else ~last
            cands.append((score, Const(p, range(lanes)), live))
        while len(cands) > 1:
            nxt = []
            for a, b in zip(cands[0::2], cands[1::2]):
                pick_b = b[2] & (~a[2] | (b[0] > a[0]))
                nxt.append((Mux(pick_b, b[0], a[0]), Mux(pick_b, b[1], a[1]), a[2] | b[2]))
            if len(cands) % 2:
                nxt.append(cands[-1])
            cands = nxt
        beat_score, beat_lane, _ = cands[0]
        best = Signal(signed(sw))
        best_index = Signal(cb)
        index = Signal(cb)
        m.d.comb += index.eq(beat * lanes + beat_lane)
        replace = Signal()
        m.d.comb += replace.eq((beat == 0) | (beat_score > best))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            with m.If(replace):
                m.d.sync += [best.eq(beat_score), best_index.eq(index)]
            with m.If(last):
                m.d.sync += [self.o.valid.eq(1),
                             self.o.payload.eq(Mux(replace, index, best_index))]
        return m
