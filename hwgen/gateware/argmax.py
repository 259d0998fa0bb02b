"""Argmax over a stream of score beats: the predicted class index."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import argmax_stages, ceil_div

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """The index of the largest of ``classes`` signed ``score_width``-bit scores; ties go to
    the lowest index.

    ``i``: ``ceil(classes / lanes)`` beats per image of ``lanes`` scores (score ``k*lanes +
    p`` in field ``p`` of beat ``k``; fields past ``classes`` in the last beat are ignored).
    ``o``: one beat per image, the index in ``class_bits = max(1, ceil(log2(classes)))``
    bits, valid :func:`hwgen.fold.argmax_latency` cycles after the image's last beat was
    accepted: one register per level of the compare tree inside a beat (at least one, so
    the running compare never waits on the upstream's ``valid``), then the running compare
    with the best of the earlier beats, in one cycle (``compare_cycles=1``) or, with its
    result registered before it updates the best, in two (``compare_cycles=2``: the
    comparator's carry chain and the best's enable then lie in different cycles, which is
    what keeps a slow output layer's argmax off the critical path; ``i.ready`` then drops
    for a cycle after every accepted beat, so that beats are at least two cycles apart).
    The pipeline stalls as a whole while ``o.valid`` is high and ``o.ready`` low;
    ``i.ready`` is ``~o.valid | o.ready`` (and, with ``compare_cycles=2``, no beat accepted
    in the previous cycle).
    """

    @checked_init
    def __init__(self, classes: int, lanes: int, score_width: int, compare_cycles: int = 1):
        for name, value in (("classes", classes), ("lanes", lanes), ("score_width", score_width)):
            check_int(name, value, 1)
        if lanes > classes:
            raise ValueError(f"lanes ({lanes}) must not exceed classes ({classes})")
        check_int("compare_cycles", compare_cycles, 1)
        if compare_cycles > 2:
            raise ValueError(f"compare_cycles must be 1 or 2, not {compare_cycles}")
        self.classes, self.lanes, self.score_width = classes, lanes, score_width
        self.compare_cycles = compare_cycles
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
        advance = Signal()
        take = Signal()
        two_cycle = self.compare_cycles == 2 and beats > 1
        gap = Signal()  # a beat was accepted in the last advancing cycle
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance & ~gap if two_cycle else advance),
            take.eq(self.i.valid & self.i.ready),
        ]
        if two_cycle:
            with m.If(advance):
                m.d.sync += gap.eq(take)
        # Beat counter and the index of the beat's first score (a register, so the leaves'
        # indices are small constant additions).
        beat = Signal(range(beats))
        base = Signal(cb)
        # beat == 0 and beat == beats - 1, kept in registers
        first, last = Signal(init=1), Signal(init=int(beats == 1))
        with m.If(take):
            m.d.sync += [beat.eq(Mux(last, 0, beat + 1)),
                         base.eq(Mux(last, 0, base + lanes)),
                         first.eq(last),
                         last.eq(Mux(last, int(beats == 1), beat == beats - 2))]
        # Within a beat: a tree of comparators, each keeping its left (lower) candidate
        # unless the right one is strictly larger or the left one is padding; a register
        # after every level (all stages advance together); one register level even for a
        # single lane.
        cands = []
        for p in range(lanes):
            score = self.i.payload[p * sw:(p + 1) * sw].as_signed()
            live = Const(1) if p < rem else ~last
            index = base if p == 0 else (base + p)[:cb]
            cands.append((score, index, live))
        flags = (take, first, last)
        level = 0
        while len(cands) > 1 or level == 0:
            nxt = []
            for j, (a, b) in enumerate(zip(cands[0::2], cands[1::2])):
                pick_b = b[2] & (~a[2] | (b[0] > a[0]))
                regs = (Signal(signed(sw), name=f"l{level}_score{j}"),
                        Signal(cb, name=f"l{level}_index{j}"),
                        Signal(name=f"l{level}_live{j}"))
                with m.If(advance):
                    m.d.sync += [regs[0].eq(Mux(pick_b, b[0], a[0])),
                                 regs[1].eq(Mux(pick_b, b[1], a[1])),
                                 regs[2].eq(a[2] | b[2])]
                nxt.append(regs)
            if len(cands) % 2:
                a = cands[-1]
                regs = (Signal(signed(sw), name=f"l{level}_score{len(nxt)}"),
                        Signal(cb, name=f"l{level}_index{len(nxt)}"),
                        Signal(name=f"l{level}_live{len(nxt)}"))
                with m.If(advance):
                    m.d.sync += [r.eq(v) for r, v in zip(regs, a)]
                nxt.append(regs)
            fregs = tuple(Signal(name=f"l{level}_{n}") for n in ("valid", "first", "last"))
            with m.If(advance):
                m.d.sync += [r.eq(v) for r, v in zip(fregs, flags)]
            flags = fregs
            cands = nxt
            level += 1
        assert level == argmax_stages(lanes)
        beat_score, beat_index, _ = cands[0]  # lane 0 is always live, so the winner is
        valid, is_first, is_last = flags
        if beats == 1:  # one beat per image: its winner is the class
            with m.If(advance):
                m.d.sync += self.o.valid.eq(valid)
                with m.If(valid):
                    m.d.sync += self.o.payload.eq(beat_index)
            return m
        # The running compare with the best of the earlier beats. ``best`` follows the beat
        # in the last stage even while the pipeline stalls (updating it again with the same
        # beat changes nothing), so the compare reaches only its own enable and the output
        # register's data, not the stall logic.
        # Scores are compared as unsigned numbers with the sign bit flipped (offset binary:
        # the same order, and no signed-overflow logic after the carry chain).
        flip = 1 << (sw - 1)
        score_u = Signal(sw)
        m.d.comb += score_u.eq(beat_score.as_unsigned() ^ flip)
        best = Signal(sw)  # offset binary
        best_index = Signal(cb)
        replace = Signal()
        update = Signal()
        if two_cycle:
            # One more stage: the beat and its compare with ``best`` registered. Beats are
            # two advancing cycles apart, so ``best`` holds every earlier beat when the next
            # one is compared.
            greater = Signal()
            c_score, c_index = Signal(sw), Signal(cb)
            c_valid, c_first, c_last = Signal(), Signal(), Signal()
            with m.If(advance):
                m.d.sync += [greater.eq(score_u > best), c_score.eq(score_u),
                             c_index.eq(beat_index), c_valid.eq(valid), c_first.eq(is_first),
                             c_last.eq(is_last)]
            score_u, beat_index, valid, is_first, is_last = (c_score, c_index, c_valid,
                                                             c_first, c_last)
            m.d.comb += replace.eq(is_first | greater)
        else:
            m.d.comb += replace.eq(is_first | (score_u > best))
        m.d.comb += update.eq(valid & replace)
        with m.If(update):
            m.d.sync += [best.eq(score_u), best_index.eq(beat_index)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid & is_last)
            with m.If(valid & is_last):
                m.d.sync += self.o.payload.eq(Mux(replace, beat_index, best_index))
        return m
