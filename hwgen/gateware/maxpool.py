"""Streaming max-pool of binary activations: the OR of the bits of each window."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from .window import WindowTaps, line_buffer_brams

__all__ = ["MaxPool", "maxpool_brams"]


def maxpool_brams(channels: int, height: int, width: int, kernel_h: int, stride_h: int) -> int:
    """iCE40 block RAMs of a :class:`MaxPool`'s line buffer (0 when it stays in logic)."""
    return line_buffer_brams(channels, height, width, kernel_h, stride_h)


class MaxPool(wiring.Component):
    """``maxpool2d`` on binary activations: ``out[c, oy, ox] = OR`` of ``in[c, oy*sh + ky,
    ox*sw + kx]`` over ``ky < KH``, ``kx < KW`` (bit 1 = +1, so OR is the max). Windows may
    overlap (stride smaller than the kernel) or skip positions (stride larger); no padding.

    Parameters: ``channels`` C, ``height`` H, ``width`` W; ``kernel`` and ``stride``
    (ints or ``(h, w)`` pairs, at least 1; the kernel must fit in the map).

    ``i``: ``H * W`` beats per image of ``C`` bits (bit ``c`` = channel ``c``), positions in
    row-major order. ``o``: ``Ho * Wo`` beats per image of ``C`` bits, ``Ho = (H - KH) // sh
    + 1``, ``Wo = (W - KW) // sw + 1``, positions in row-major order. Images follow each other
    without gaps.

    Structure: a :class:`~.window.WindowTaps` line buffer (``min(KH, H) + sh`` rows of ``W``
    words of ``C`` bits) reads each window's ``KH * KW`` taps one per cycle; an OR
    accumulator folds them and presents the result in a register. One output position per
    ``KH * KW`` cycles: ``Ho * Wo * KH * KW`` cycles per image (about ``H * W`` for 2x2 stride
    2), plus waits for input rows (:attr:`cycles_per_image` bounds the steady-state interval).
    Latency: a position's output is valid 1 cycle after its last tap left the line buffer.
    """

    @checked_init
    def __init__(self, channels: int, height: int, width: int, kernel, stride=None):
        check_int("channels", channels, 1)
        self.taps = WindowTaps(channels, height, width, kernel,
                               kernel if stride is None else stride)
        self.channels, self.height, self.width = channels, height, width
        self.kernel, self.stride = self.taps.kernel, self.taps.stride
        self.out_shape = self.taps.out_shape
        super().__init__({
            "i": In(stream.Signature(channels)),
            "o": Out(stream.Signature(channels)),
        })

    @property
    def cycles_per_image(self) -> int:
        """Upper bound of the steady-state interval between images arriving without gaps."""
        (kh, kw), (ho, wo) = self.kernel, self.out_shape
        return max(self.height * self.width, ho * wo * kh * kw + kh * self.width)

    def elaborate(self, platform):
        m = Module()
        m.submodules.taps = taps = self.taps
        wiring.connect(m, wiring.flipped(self.i), taps.i)
        acc = Signal(self.channels)
        tap = taps.o.payload
        value = Signal(self.channels)
        m.d.comb += [
            value.eq(tap.data | (acc & ~tap.first.replicate(self.channels))),
            taps.o.ready.eq(~self.o.valid | self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(taps.o.valid & taps.o.ready):
            m.d.sync += acc.eq(value)
            with m.If(tap.last):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(value)]
        return m
