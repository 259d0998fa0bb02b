"""Streaming max-pool of binary activations: the OR of the bits of each window."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..layout import grouped_window, pair
from .repack import SkidBuffer
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
    (ints or ``(h, w)`` pairs, at least 1; the kernel must fit in the map); ``word`` (a
    divisor of C, default C): the channels per beat, so that a position is ``G = C // word``
    beats.

    ``i``: ``H * W * G`` beats per image of ``word`` bits (beat ``g`` of a position holds
    channels ``g*word .. g*word + word - 1``, bit ``j`` = channel ``g*word + j``), positions
    in row-major order. ``o``: ``Ho * Wo * G`` beats per image in the same form, ``Ho = (H -
    KH) // sh + 1``, ``Wo = (W - KW) // sw + 1``. Images follow each other without gaps.

    Structure: a :class:`~.window.WindowTaps` line buffer (``min(KH, H) + sh`` rows of
    ``W * G`` words of ``word`` bits: the map seen as ``[word, H, W*G]`` with kernel ``(KH,
    KW*G)`` and stride ``(sh, sw*G)``) reads each window's ``KH * KW * G`` taps one per
    cycle, in (ky, kx, g) order; a shift register of ``G`` partial ORs (``C`` bits in all)
    folds tap ``(ky, kx, g)`` into partial ``g`` and emits it at ``(KH-1, KW-1, g)``.
    ``KH * KW * G`` cycles per output position: ``Ho * Wo * KH * KW * G`` cycles per image
    (about ``H * W * G`` for 2x2 stride 2), plus waits for input rows
    (:attr:`cycles_per_image` bounds the steady-state interval). The result register feeds
    a :class:`~.repack.SkidBuffer` (``i.ready`` of the next unit never reaches the reader
    combinationally). Latency: an output beat is valid 2 cycles after its last tap left
    the line buffer.
    """

    @checked_init
    def __init__(self, channels: int, height: int, width: int, kernel, stride=None,
                 word: int | None = None):
        check_int("channels", channels, 1)
        word = channels if word is None else word
        check_int("word", word, 1)
        if channels % word:
            raise ValueError(f"word {word} does not divide {channels} channels")
        kh, kw = pair("kernel", kernel, 1)
        sh, sw = pair("stride", kernel if stride is None else stride, 1)
        if kw > width:
            raise ValueError(f"kernel {kh}x{kw} is larger than the {height}x{width} input")
        g = channels // word
        self.taps = WindowTaps(word, height,
                               **grouped_window(width, (kh, kw), (sh, sw), (0, 0), g))
        self.channels, self.height, self.width, self.word = channels, height, width, word
        self.groups = g
        self.kernel, self.stride = (kh, kw), (sh, sw)
        self.out_shape = self.taps.out_shape
        super().__init__({
            "i": In(stream.Signature(word)),
            "o": Out(stream.Signature(word)),
        })

    @property
    def cycles_per_image(self) -> int:
        """Upper bound of the steady-state interval between images arriving without gaps."""
        (kh, kw), (ho, wo), g = self.kernel, self.out_shape, self.groups
        return g * max(self.height * self.width, ho * wo * kh * kw + kh * self.width)

    def elaborate(self, platform):
        m = Module()
        m.submodules.taps = taps = self.taps
        wiring.connect(m, wiring.flipped(self.i), taps.i)
        g, word = self.groups, self.word
        n = self.kernel[0] * self.kernel[1] * g  # taps per window
        partial = [Signal(word, name=f"partial{k}") for k in range(g)]
        count = Signal(range(n), name="tap")
        tap = taps.o.payload
        value = Signal(word)
        # The result register feeds a skid buffer, whose registered ready cuts the
        # combinational ready path from the next unit into the line-buffer reader.
        m.submodules.skid = skid = SkidBuffer(word)
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        m.d.comb += [
            value.eq(tap.data | Mux(count < g, 0, partial[0])),
            taps.o.ready.eq(~skid.i.valid | skid.i.ready),
        ]
        with m.If(skid.i.valid & skid.i.ready):
            m.d.sync += skid.i.valid.eq(0)
        with m.If(taps.o.valid & taps.o.ready):
            m.d.sync += [partial[k].eq(partial[k + 1]) for k in range(g - 1)]
            m.d.sync += [partial[g - 1].eq(value), count.eq(Mux(tap.last, 0, count + 1))]
            with m.If(count >= n - g):
                m.d.sync += [skid.i.valid.eq(1), skid.i.payload.eq(value)]
        return m
