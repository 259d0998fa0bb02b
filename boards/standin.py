"""A stand-in streaming core with the generator's stream contract, for board tests and smoke
builds before (or without) a generated network.

:class:`SumCore` predicts ``sum(values) mod 2**class_bits``: it adds the ``lanes`` values of
every beat and, after ``beats_per_image`` beats, emits the low ``class_bits`` bits of the sum.
``stall=True`` makes its input ready only every other cycle (a pseudo-random pattern), to
exercise back-pressure. Latency: the class is valid 1 cycle after the last beat is accepted;
it is held until taken, and the next image's beats are accepted meanwhile.

With ``shape.weight_words`` = N it also has the weight port ``w``: after reset it takes N
16-bit words (input ready low until then; ``w.ready`` low afterwards) and adds their
order-sensitive digest (``d = 3 * d + word`` over the words, from 0) to every class.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import checking
from .core import CoreShape


def weight_digest(shape: CoreShape, words) -> int:
    """The digest :class:`SumCore` adds to its classes after loading ``words``."""
    digest = 0
    for word in words:
        digest = (3 * digest + int(word)) % (1 << shape.class_bits)
    return digest


def predict(shape: CoreShape, values, words=()) -> int:
    """What :class:`SumCore` answers for one image (after loading ``words``, if it takes
    weights)."""
    return (sum(int(v) for v in values) + weight_digest(shape, words)) \
        % (1 << shape.class_bits)


class SumCore(wiring.Component):
    """``i``: beats (``lanes*bits``), ``o``: class (``class_bits``)."""

    def __init__(self, shape: CoreShape, *, stall: bool = False):
        with checking(self):
            if not isinstance(shape, CoreShape):
                raise TypeError(f"shape must be a CoreShape, not {shape!r}")
        self.shape = shape
        self.stall = bool(stall)
        members = {
            "i": In(stream.Signature(shape.beat_bits)),
            "o": Out(stream.Signature(shape.class_bits)),
        }
        if shape.weight_words:
            members["w"] = In(stream.Signature(16))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        s = self.shape
        acc = Signal(s.class_bits)
        beat = Signal(range(s.beats_per_image))
        lane_sum = sum(self.i.payload[k * s.bits:(k + 1) * s.bits] for k in range(s.lanes))
        ready = Signal()
        if self.stall:
            lfsr = Signal(7, init=1)
            m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[6] ^ lfsr[5]))
            m.d.comb += ready.eq(lfsr[0])
        else:
            m.d.comb += ready.eq(1)
        if s.weight_words:   # the weights first: input held until they are all in
            left = Signal(range(s.weight_words + 1), init=s.weight_words)
            digest = Signal(s.class_bits)
            m.d.comb += self.w.ready.eq(left != 0)
            with m.If(self.w.valid & self.w.ready):
                m.d.sync += [left.eq(left - 1),
                             digest.eq(digest + (digest << 1) + self.w.payload)]
            m.d.comb += self.i.ready.eq((left == 0) & ready & (~self.o.valid | self.o.ready))
            result = acc + lane_sum + digest
        else:
            result = acc + lane_sum
            # accept while the output register is free or being emptied
            m.d.comb += self.i.ready.eq(ready & (~self.o.valid | self.o.ready))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(beat == s.beats_per_image - 1):
                m.d.sync += [beat.eq(0), acc.eq(0),
                             self.o.payload.eq(result), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), acc.eq(acc + lane_sum)]
        return m
