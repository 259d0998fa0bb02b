"""The line-buffer units' plans: a conv layer's sliding window (:class:`WindowPlan`) and a
max-pool (:class:`PoolPlan`), each reading its line buffer in ``word``-channel beats.

Pure arithmetic on top of :mod:`~hwgen.fold.geometry`; :mod:`~hwgen.fold.plans` puts them in
layer and network plans (and picks their words, :func:`~hwgen.fold.plans.narrowest_buffers`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layout import grouped_window
from .geometry import (ceil_div, line_buffer_bits, line_buffer_brams, line_buffer_logic_bits,
                       pool_luts, window_luts)


class _LineBufferUnit:
    """What a window and a pool plan share: a line buffer over the unit's ``[channels,
    height, width]`` input read ``word`` channels per beat (None: all), ``G = channels //
    word`` beats per position."""

    def __post_init__(self):
        if self.word is None:
            object.__setattr__(self, "word", self.channels)
        if self.channels % self.word:
            raise ValueError(f"word {self.word} does not divide {self.channels} channels")

    @property
    def groups(self) -> int:
        return self.channels // self.word

    def _line_buffer(self, element_bits: int = 1) -> tuple:
        """The line buffer's arguments for :func:`line_buffer_brams` and friends: ``R`` rows
        of ``W * G`` words of ``word`` elements."""
        return (self.word, self.height, self.width * self.groups, self.kernel[0],
                self.stride[0], element_bits)

    @property
    def line_buffer_bits(self) -> int:
        """Bits the unit's line buffer holds (a window's elements are ``element_bits`` wide,
        a pool's 1)."""
        return line_buffer_bits(*self._line_buffer(getattr(self, "element_bits", 1)))


@dataclass(frozen=True)
class WindowPlan(_LineBufferUnit):
    """The sliding-window front end of a conv2d layer: input map ``[C, H, W]``, kernel,
    stride, padding, and the ``SIMD`` it chunks windows into (``element_bits`` 1 for +-1
    activations, else the raw input width).

    ``word`` (a divisor of ``channels``; None: all of them) is how many channels one beat
    and one line-buffer word carry: a position arrives as ``G = channels // word`` beats.
    The unit is then a window over the ``[word, H, W*G]`` map with kernel ``(KH, KW*G)``,
    stride ``(SH, SW*G)`` and padding ``(PH, PW*G)`` (:attr:`unit_geometry`), which reads
    the same window vectors in the same (KH, KW, C) order from a narrower, deeper line
    buffer (fewer block RAMs) at ``G`` taps per position."""

    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    pad_value: int
    element_bits: int
    binary: bool
    simd: int
    word: int | None = None

    @property
    def unit_geometry(self) -> dict:
        """The :class:`~hwgen.gateware.window.SlidingWindow` arguments (channels, height,
        width, kernel, stride, padding) of the unit that reads ``word``-channel beats."""
        return {"channels": self.word, "height": self.height,
                **grouped_window(self.width, self.kernel, self.stride, self.padding,
                                 self.groups)}

    @property
    def out_shape(self) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return ((self.height + 2 * ph - kh) // sh + 1, (self.width + 2 * pw - kw) // sw + 1)

    @property
    def n(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.channels

    @property
    def cycles_per_window(self) -> int:
        """One tap (``word`` channels) per cycle, one beat per cycle:
        ``max(KH*KW*G, ceil(N/SIMD))``."""
        return max(self.kernel[0] * self.kernel[1] * self.groups, ceil_div(self.n, self.simd))

    @property
    def buffer_logic_bits(self) -> int:
        return line_buffer_logic_bits(*self._line_buffer(self.element_bits))

    @property
    def brams(self) -> int:
        return line_buffer_brams(*self._line_buffer(self.element_bits))

    @property
    def cycles_bound(self) -> int:
        """Upper bound of the unit's steady-state interval (as
        :attr:`~hwgen.gateware.window.SlidingWindow.cycles_per_image`): every window's taps
        plus the rows it may wait for at an image's start."""
        ho, wo = self.out_shape
        return ho * wo * self.cycles_per_window + self.kernel[0] * self.width * self.groups

    @property
    def luts(self) -> int:
        return window_luts(self.word, self.simd, self.element_bits, self.buffer_logic_bits)


@dataclass(frozen=True)
class PoolPlan(_LineBufferUnit):
    """A maxpool2d layer: a line buffer and an OR over each ``KH x KW`` window, one output
    position every ``KH*KW*G`` cycles. It has no fold. ``word`` (a divisor of ``channels``;
    None: all of them) is the channels per beat and per line-buffer word, ``G = channels //
    word`` beats per position in and out (see :class:`~hwgen.gateware.maxpool.MaxPool`)."""

    index: int
    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    op: str = "maxpool2d"
    is_output: bool = False
    fold: None = None
    word: int | None = None

    @property
    def out_shape(self) -> tuple[int, int]:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return ((self.height - kh) // sh + 1, (self.width - kw) // sw + 1)

    @property
    def positions(self) -> int:
        return self.out_shape[0] * self.out_shape[1]

    @property
    def cycles(self) -> int:
        """Cycles per image: every window's taps, or the input beats if those take longer."""
        return self.groups * max(self.height * self.width,
                                 self.positions * self.kernel[0] * self.kernel[1])

    @property
    def buffer_logic_bits(self) -> int:
        return line_buffer_logic_bits(*self._line_buffer())

    @property
    def brams(self) -> int:
        return line_buffer_brams(*self._line_buffer())

    @property
    def cycles_bound(self) -> int:
        """Upper bound of the steady-state interval (as
        :attr:`~hwgen.gateware.maxpool.MaxPool.cycles_per_image`): every window's taps plus
        the rows it may wait for at an image's start, or the input beats."""
        (kh, kw), (ho, wo) = self.kernel, self.out_shape
        return self.groups * max(self.height * self.width, ho * wo * kh * kw + kh * self.width)

    @property
    def luts(self) -> int:
        return pool_luts(self.channels, self.buffer_logic_bits)

    @property
    def pipeline_latency(self) -> int:
        """Cycles from a window's rows being complete to its output: the row counter, the
        read, the taps, the result register and the skid buffer."""
        return 5 + self.kernel[0] * self.kernel[1] * self.groups
