"""Cost and geometry of the hardware units on the iCE40: block RAMs, ROMs, buffers, LUTs.

Pure arithmetic on sizes (no model, no plan objects at run time): which weight ROMs and
buffers stay in logic (:func:`rom_in_logic`, :func:`buffer_in_logic`,
:func:`line_buffer_in_logic`), how many SB_RAM40_4K blocks a memory takes
(:func:`bram_blocks`, :func:`line_buffer_brams`), the LUT estimates of the units between
the matrix-vector-threshold units (:func:`window_luts`, :func:`pool_luts`,
:func:`repack_luts`, :func:`argmax_luts`), and the pipeline depths the RTL in
:mod:`hwgen.gateware` builds (:func:`tree_register_stages`, :func:`argmax_stages`,
:func:`argmax_latency`). The constants here are what the generator and the estimates share;
the ``argmax_*`` helpers take the output layer's :class:`~hwgen.fold.plans.LayerPlan` (they
read its ``pe``, ``nf``, ``sf`` and ``score_width``).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plans import LayerPlan


#: iCE40 SB_RAM40_4K read configurations (depth, width).
ICE40_BRAM_CONFIGS = ((256, 16), (512, 8), (1024, 4), (2048, 2))
BRAM_BITS = 4096
#: Popcount trees (binary input) get a pipeline register after every this many levels.
TREE_LEVELS_PER_STAGE = 2
#: Signed sums of raw (multi-bit) terms are wider, so they get one after every level.
RAW_TREE_LEVELS_PER_STAGE = 1
#: Weight ROMs smaller than this many bits, or filling block RAM this poorly, stay in logic.
LOGIC_ROM_MAX_BITS = 2048
MIN_BRAM_EFFICIENCY = 0.25
#: ... and only up to this many words: a deeper ROM in logic is a slow tree of LUTs.
LOGIC_ROM_MAX_DEPTH = 64
#: Input double buffers stay in flip-flops only up to this many bits and this depth (a deeper
#: one is a slow multiplexer in logic).
LOGIC_BUFFER_MAX_BITS = 2048
LOGIC_BUFFER_MAX_DEPTH = 8
#: Line buffers of at most this many bits are kept in flip-flops (``ram_style "logic"``);
#: larger ones go to block RAM. A writable buffer in logic costs a flip-flop per bit plus
#: its read multiplexer, unlike a ROM, hence a much lower bound than the ROMs' rule.
LINE_BUFFER_LOGIC_BITS = 64


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=1024)
def _divisors(n: int) -> tuple[int, ...]:
    """The divisors of ``n >= 1``, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(small + [n // d for d in reversed(small) if d * d != n])


def tree_register_stages(terms: int, levels_per_stage: int = TREE_LEVELS_PER_STAGE) -> int:
    """Pipeline registers inside an adder tree over ``terms`` leaves (none after the root)."""
    levels = max(0, (terms - 1).bit_length())
    return 0 if levels == 0 else (levels - 1) // levels_per_stage


def bram_blocks(width: int, depth: int) -> int:
    """Fewest iCE40 SB_RAM40_4K blocks holding a ``depth x width`` ROM (one read per cycle)."""
    return min(ceil_div(width, w) * ceil_div(depth, d) for d, w in ICE40_BRAM_CONFIGS)


def rom_in_logic(width: int, depth: int) -> bool:
    """Whether a ``depth x width`` ROM is cheaper in logic than in block RAM (our rule)."""
    bits = width * depth
    if depth > LOGIC_ROM_MAX_DEPTH:
        return False
    return bits < LOGIC_ROM_MAX_BITS or bits < MIN_BRAM_EFFICIENCY * bram_blocks(
        width, depth) * BRAM_BITS


def buffer_in_logic(width: int, depth: int) -> bool:
    """Whether an input double buffer of ``depth x width`` stays in flip-flops."""
    return width * depth <= LOGIC_BUFFER_MAX_BITS and depth <= LOGIC_BUFFER_MAX_DEPTH


def logic_rom_luts(width: int, depth: int) -> int:
    """LUT4s of a ROM in logic (measured: about 2 per bit per 16 entries; constants if 1)."""
    return 0 if depth <= 1 else 2 * width * ceil_div(depth, 16)


def line_buffer_rows(height: int, kernel_h: int, stride_h: int) -> int:
    """Row slots of the line buffer: the rows one window row spans plus ``stride_h`` rows
    the writer may fill ahead (so the next output row is ready when this one ends)."""
    return min(kernel_h, height) + stride_h


def line_buffer_bits(channels: int, height: int, width: int, kernel_h: int, stride_h: int,
                     element_bits: int = 1) -> int:
    """Bits of the line buffer: ``R * W`` words of ``C * element_bits``."""
    return channels * element_bits * line_buffer_rows(height, kernel_h, stride_h) * width


def line_buffer_in_logic(channels: int, height: int, width: int, kernel_h: int,
                         stride_h: int, element_bits: int = 1) -> bool:
    """Whether the line buffer stays in flip-flops (at most :data:`LINE_BUFFER_LOGIC_BITS`)."""
    return line_buffer_bits(channels, height, width, kernel_h, stride_h,
                            element_bits) <= LINE_BUFFER_LOGIC_BITS


def line_buffer_logic_bits(channels: int, height: int, width: int, kernel_h: int,
                           stride_h: int, element_bits: int = 1) -> int:
    """Flip-flops of a line buffer kept in logic, 0 when it is in block RAM."""
    bits = line_buffer_bits(channels, height, width, kernel_h, stride_h, element_bits)
    return bits if bits <= LINE_BUFFER_LOGIC_BITS else 0


def line_buffer_brams(channels: int, height: int, width: int, kernel_h: int, stride_h: int,
                      element_bits: int = 1) -> int:
    """iCE40 SB_RAM40_4K blocks of the line buffer (``R * W`` words of ``C * element_bits``
    bits, one write and one read port), 0 when it stays in logic."""
    if line_buffer_in_logic(channels, height, width, kernel_h, stride_h, element_bits):
        return 0
    depth = line_buffer_rows(height, kernel_h, stride_h) * width
    return bram_blocks(channels * element_bits, depth)


#: Logic cells of a sliding window's and a max-pool's control (row/column counters, the
#: per-row registers, the read pipeline) in a placed design. Yosys alone counts about 150 and
#: 120 LUT4s for them; whole builds pack their flip-flops poorly: the shipped UP5K CNN
#: (3 windows, 3 pools) took 3862 logic cells where 150/120 predicted 2796.
WINDOW_BASE_LCS = 300
POOL_BASE_LCS = 200


def window_luts(channels: int, simd: int, element_bits: int, buffer_logic_bits: int) -> int:
    """LUT estimate of a :class:`~hwgen.gateware.window.SlidingWindow` (docs/conv-hardware.md,
    see :data:`WINDOW_BASE_LCS`): the control; a chunk register of ``SIMD`` elements
    when ``SIMD`` is a larger multiple of ``C``; an internal repack of each tap's ``C``
    elements into ``SIMD``-element words for any other ``SIMD`` (a cheap split when ``SIMD``
    divides ``C``); a line buffer in logic costs about 2 per bit."""
    luts = WINDOW_BASE_LCS + 2 * buffer_logic_bits
    if simd == channels:
        return luts
    if simd % channels == 0:
        return luts + simd * element_bits
    return luts + repack_luts(channels, simd, element_bits)


def pool_luts(channels: int, buffer_logic_bits: int) -> int:
    """LUT estimate of a :class:`~hwgen.gateware.maxpool.MaxPool` (see :data:`POOL_BASE_LCS`)."""
    return POOL_BASE_LCS + 2 * channels + 2 * buffer_logic_bits


def repack_luts(c: int, s: int, element_bits: int, n: int | None = None) -> int:
    """LUT estimate of a :class:`~hwgen.gateware.repack.Repack` of ``n`` elements from ``c`` to
    ``s`` elements per beat (``n`` None: a vector of several words)."""
    if c == s:
        return 0
    if n == s and c < s:  # gathered into the output register
        return s * element_bits + ceil_div(n, c) + 10
    if c > s and c % s == 0:  # each beat split into words by a shift register
        return c * element_bits + 2 * (c // s).bit_length() + 10
    size = ceil_div(2 * s + 2 * c, s) * s
    g = math.gcd(c, s)
    sources = min(ceil_div(size - c + 1, g), ceil_div(c, g))  # inputs landing on one element
    return size * element_bits * (1 + sources) + 2 * ((size - c) // g) + 20


def argmax_stages(lanes: int) -> int:
    """Pipeline registers of :class:`~hwgen.gateware.argmax.Argmax`'s compare tree over
    ``lanes`` scores per beat (one per level, at least one)."""
    return max(1, (lanes - 1).bit_length())


def argmax_compare_cycles(last: LayerPlan) -> int:
    """The :class:`~hwgen.gateware.argmax.Argmax` compare mode for the output layer ``last``:
    2 (the compare registered, at most one beat every two cycles) when its beats are at
    least two cycles apart anyway (``SF >= 2``), else 1."""
    return 2 if last.sf >= 2 else 1


def argmax_latency(last: LayerPlan) -> int:
    """Cycles from the argmax accepting an image's last beat to its class being valid: the
    compare tree's registers, the registered compare (two-cycle mode with several beats),
    the output register."""
    two_cycle = argmax_compare_cycles(last) == 2 and last.nf > 1
    return argmax_stages(last.pe) + int(two_cycle) + 1


def argmax_luts(last: LayerPlan) -> int:
    return last.pe * (2 * last.score_width + 4) + 2 * last.score_width
