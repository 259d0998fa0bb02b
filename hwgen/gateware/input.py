"""The network input: binarization of raw pixel values."""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

__all__ = ["Binarize"]


class Binarize(wiring.Component):
    """Turns ``lanes`` unsigned ``bits``-bit values per beat into ``lanes`` bits:
    bit ``k`` is 1 (+1) when value ``k`` is ``>= threshold``, else 0 (-1).

    Combinational: ``o`` is ``i`` with the payload mapped, ``i.ready`` is ``o.ready``.
    """

    @checked_init
    def __init__(self, lanes: int, bits: int, threshold: int):
        check_int("lanes", lanes, 1)
        check_int("bits", bits, 1)
        check_int("threshold", threshold)
        if not 0 <= threshold <= 1 << bits:
            raise ValueError(f"threshold must lie in [0, {1 << bits}], not {threshold}")
        self.lanes, self.bits, self.threshold = lanes, bits, threshold
        super().__init__({
            "i": In(stream.Signature(lanes * bits)),
            "o": Out(stream.Signature(lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        b = self.bits
        values = [self.i.payload[k * b:(k + 1) * b] for k in range(self.lanes)]
        m.d.comb += [
            self.o.payload.eq(Cat(v >= self.threshold for v in values)),
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
        ]
        return m
