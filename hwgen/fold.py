"""Folding: how many output channels (PE) and inputs (SIMD) each layer computes per cycle.

This module is pure Python (no Amaranth), so ``python -m hwgen info --fold`` stays fast. It
holds everything the generator and the CLI must agree on:

* :func:`parse_fold` reads a user's fold (``"64x32,32x16,10x8"`` or JSON) and checks it;
* :func:`default_fold` picks one that balances layer cycle counts within a :class:`Budget`;
* :func:`plan` turns a model and a fold into a :class:`NetworkPlan`: per layer the folded
  sizes, derived widths, weight ROM geometry, block RAMs, estimated LUTs and cycles, and for
  the network the initiation interval and the latency (an exact cycle model of the RTL in
  :mod:`hwgen.gateware`, checked against simulation by the tests).

Fold semantics for a dense layer with ``N`` inputs and ``M`` outputs: each cycle the
matrix-vector-threshold unit multiplies ``SIMD`` inputs with ``PE`` rows, so one image takes
``NF * SF`` cycles with ``NF = ceil(M / PE)`` neuron folds and ``SF = ceil(N / SIMD)``
synapse folds. ``PE`` need not divide ``M`` nor ``SIMD`` divide ``N``: the unit pads.

A conv2d layer is a sliding-window unit feeding the same unit over each window (``N =
Cin*KH*KW``, ``M = Cout``), so it takes ``NF * SF`` cycles per output position (at least the
window's ``KH*KW`` taps); a maxpool2d layer has no fold (one output per ``KH*KW`` cycles).
``docs/conv-hardware.md`` describes the units and the stream order between them.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, replace

import numpy as np

from .errors import UserError
from .layout import conv_dense_view, grouped_window, hwc_dense_matrix
from .model import Conv2d, Dense, MaxPool2d, Model, accumulator_range, signed_width

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
#: The default fold avoids weight ROMs deeper than this many words: a deeper ROM is a cascade
#: of block RAMs behind an output multiplexer, the slowest path of a design (a 39200-deep
#: 2-bit ROM in 20 blocks closed timing at 45 MHz on the iCE40UP5K).
DEFAULT_MAX_ROM_DEPTH = 4096
#: Input double buffers stay in flip-flops only up to this many bits and this depth (a deeper
#: one is a slow multiplexer in logic).
LOGIC_BUFFER_MAX_BITS = 2048
LOGIC_BUFFER_MAX_DEPTH = 8
#: Line buffers of at most this many bits are kept in flip-flops (``ram_style "logic"``);
#: larger ones go to block RAM. A writable buffer in logic costs a flip-flop per bit plus
#: its read multiplexer, unlike a ROM, hence a much lower bound than the ROMs' rule.
LINE_BUFFER_LOGIC_BITS = 64


class FoldError(UserError):
    """A fold that does not fit the model (zero, too wide, not applicable, malformed)."""


def where(index: int, layer) -> str:
    return f"layer {index} ({getattr(layer, 'op', type(layer).__name__)})"


def check_supported(model: Model) -> None:
    """Raise a one-line :class:`~hwgen.errors.UserError` for layers the generator cannot build."""
    for index, (layer, binary) in enumerate(zip(model.layers, model.binary_inputs())):
        if isinstance(layer, MaxPool2d) and not binary:
            raise UserError(f"{where(index, layer)}: max-pool on raw (non-binary) input is not "
                            f"supported by the generator (it pools binary activations)")
        if not isinstance(layer, (Dense, Conv2d, MaxPool2d)):
            raise UserError(f"{where(index, layer)}: not supported by the generator")


def has_fold(layer) -> bool:
    """Whether ``layer`` is computed by a folded matrix-vector-threshold unit (dense, conv)."""
    return isinstance(layer, (Dense, Conv2d))


@dataclass(frozen=True)
class Fold:
    pe: int
    simd: int

    def __str__(self):
        return f"{self.pe}x{self.simd}"


@dataclass(frozen=True)
class Budget:
    """Resources the default fold may spend (defaults: what ``hwgen build --board
    icebreaker`` gives the core on the Lattice iCE40 UP5K: 90% of its 5280 LUTs less the
    board logic's 750, and its 30 block RAMs, each read ``bram_port_bits`` a cycle)."""

    luts: int = 4002
    brams: int = 30
    #: No need to be faster than this many cycles per image (e.g. the rate at which a board's
    #: UART delivers images): the default fold then takes the cheapest design that keeps up.
    min_interval: int = 1
    #: Bits one block RAM delivers per cycle (its widest read port): for the read-port bound.
    bram_port_bits: int = 16
    #: Block RAMs for the read-port bound (physical blocks; ``brams`` counts 4-Kbit units).
    bram_blocks: int = 30


# ----------------------------------------------------------------------------- parsing


#: Limits on a --fold text or file: far more than any model's layer list needs.
MAX_FOLD_CHARS = 1 << 20
MAX_FOLD_DEPTH = 4
_TEXT_FOLD = re.compile(r"\s*([0-9]{1,12})\s*[xX]\s*([0-9]{1,12})\s*")


#: The ``--fold`` words that choose a fold instead of giving one.
FOLD_CHOICES = ("auto", "fastest")


def resolve_fold(text: str | None, model: Model, budget: Budget | None = None):
    """A ``--fold`` argument as :func:`plan` takes it: None (``text`` None or ``auto``: the
    default fold within ``budget``), the :func:`~hwgen.fold_search.fastest_fold` within
    ``budget`` (``fastest``), else :func:`parse_fold`'s folds."""
    if text in (None, "auto"):
        return None
    if text == "fastest":
        from .fold_search import fastest_fold  # it builds on this module

        return fastest_fold(model, budget)
    return parse_fold(text, model)


def parse_fold(text: str, model: Model) -> list[Fold]:
    """A fold for every layer of ``model`` from ``text``.

    ``text`` is ``PExSIMD`` per layer separated by commas (``"64x32,32x16,10x8"``, ASCII
    digits only), or JSON: a list with ``[PE, SIMD]`` or ``{"pe": PE, "simd": SIMD}`` per
    layer, or a path to a ``.json`` file holding such a list (a regular file of UTF-8 text;
    text and file at most :data:`MAX_FOLD_CHARS` characters, JSON at most
    :data:`MAX_FOLD_DEPTH` levels deep). Max-pool layers have no fold: either leave them out
    (one entry per dense/conv layer) or give ``-`` (JSON ``null``) in their place. Returns
    one entry per model layer, ``None`` for a pool. Raises :class:`FoldError` naming the
    layer at fault, or what is wrong with the text or file, in one line.
    """
    check_supported(model)
    text = text.strip()
    if text[:1] not in "[{" and text.lower().endswith(".json"):
        text = _read_fold_file(text)
    if len(text) > MAX_FOLD_CHARS:
        raise FoldError(f"--fold is {len(text)} characters, more than the limit of "
                        f"{MAX_FOLD_CHARS}")
    if text[:1] in "[{":
        from .jsontext import parse_json

        items = parse_json(text, "--fold", max_chars=MAX_FOLD_CHARS, max_depth=MAX_FOLD_DEPTH,
                           error=FoldError)
        if not isinstance(items, list):
            raise FoldError("--fold JSON must be a list with one entry per layer")
        entries = [_json_entry(i, item) for i, item in enumerate(items)]
    else:
        entries = [_text_entry(i, part) for i, part in enumerate(text.split(","))]
    folded = [i for i, layer in enumerate(model.layers) if has_fold(layer)]
    if len(entries) == len(folded) and len(folded) != len(model.layers):
        full = [None] * len(model.layers)
        for index, entry in zip(folded, entries):
            full[index] = entry
        entries = full
    elif len(entries) != len(model.layers):
        pools = len(model.layers) - len(folded)
        extra = f" ({len(folded)} without its {pools} max-pool layers)" if pools else ""
        raise FoldError(f"--fold gives {len(entries)} layer folds but the model has "
                        f"{len(model.layers)} layers{extra}")
    folds = []
    for index, (entry, layer) in enumerate(zip(entries, model.layers)):
        if entry is None:
            if has_fold(layer):
                raise FoldError(f"{where(index, layer)}: needs a fold PExSIMD, got '-'")
            folds.append(None)
        else:
            folds.append(check_fold(index, layer, *entry))
    return folds


def _read_fold_file(path: str) -> str:
    """The text of a ``--fold`` ``.json`` file: a regular file, bounded, strict UTF-8."""
    from .files import open_regular, read_upto

    with open_regular(path, FoldError, "fold file") as f:
        data = read_upto(f, MAX_FOLD_CHARS + 1)
    if len(data) > MAX_FOLD_CHARS:
        raise FoldError(f"--fold {path}: more than {MAX_FOLD_CHARS} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FoldError(f"--fold {path}: not UTF-8 text (byte {err.start})") from None


def _text_entry(index: int, part: str) -> tuple[int, int] | None:
    if part.strip() == "-":
        return None
    match = _TEXT_FOLD.fullmatch(part)
    if not match:
        raise FoldError(f"layer {index}: fold {part.strip()[:40]!r} is not PExSIMD "
                        f"(e.g. 16x32)")
    return int(match[1]), int(match[2])


def _json_entry(index: int, item) -> tuple[int, int] | None:
    if item is None:
        return None
    if isinstance(item, dict) and set(item) == {"pe", "simd"}:
        item = [item["pe"], item["simd"]]
    if (not isinstance(item, list) or len(item) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
        raise FoldError(f"layer {index}: fold {json.dumps(item)[:60]} is not [PE, SIMD] or "
                        f'{{"pe": PE, "simd": SIMD}} with integers')
    return item[0], item[1]


def check_fold(index: int, layer, pe: int, simd: int) -> Fold:
    """Check one layer's fold: PE in ``[1, M]``, SIMD in ``[1, N]`` (a conv's ``N`` is
    ``Cin*KH*KW``)."""
    if not has_fold(layer):
        raise FoldError(f"{where(index, layer)}: has no fold (give '-' or leave it out)")
    m, n = layer.out_channels, layer.fan_in
    if pe < 1 or simd < 1:
        raise FoldError(f"{where(index, layer)}: PE and SIMD must be at least 1, "
                        f"got {pe}x{simd}")
    if pe > m:
        raise FoldError(f"{where(index, layer)}: PE {pe} is wider than its {m} output channels")
    if simd > n:
        raise FoldError(f"{where(index, layer)}: SIMD {simd} is wider than its {n} inputs")
    return Fold(pe, simd)


# ----------------------------------------------------------------------------- geometry


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


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


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class LayerPlan:
    """Everything the generator and ``info`` need to know about one folded dense layer."""

    index: int
    op: str
    n: int  # inputs
    m: int  # outputs
    pe: int
    simd: int
    binary_input: bool
    element_bits: int  # bits per input element: 1 (binary) or the input bits (raw)
    is_output: bool
    acc_range: tuple[int, int]  # of the value the unit accumulates (popcount for binary)
    acc_width: int
    acc_signed: bool
    param_width: int  # threshold (hidden, plus one invert bit) or bias offset (output)
    score_width: int  # output layer: signed score width; hidden: 0
    weight_logic: bool
    weight_brams: int
    param_logic: bool
    param_brams: int
    buffer_brams: int
    luts: int  # including the sliding window's of a conv layer
    in_shape: tuple[int, int, int] | None = None  # the layer's input map [C, H, W]
    positions: int = 1  # output positions per image (conv: Ho*Wo)
    window: WindowPlan | None = None  # conv layers: the sliding-window front end

    @property
    def nf(self) -> int:
        return ceil_div(self.m, self.pe)

    @property
    def sf(self) -> int:
        return ceil_div(self.n, self.simd)

    @property
    def cycles(self) -> int:
        """Cycles per image: ``NF * SF`` for a dense layer; for a conv layer every output
        position's ``max(NF * SF, KH*KW)`` (the MVTU or the window's taps), or the input's
        ``H * W`` beats if those take longer."""
        if self.window is None:
            return self.nf * self.sf
        _, h, w = self.in_shape
        return max(h * w * self.window.groups,
                   self.positions * max(self.nf * self.sf, self.window.cycles_per_window))

    @property
    def brams(self) -> int:
        return (self.weight_brams + self.param_brams + self.buffer_brams
                + (self.window.brams if self.window else 0))

    @property
    def tree_levels_per_stage(self) -> int:
        return TREE_LEVELS_PER_STAGE if self.binary_input else RAW_TREE_LEVELS_PER_STAGE

    @property
    def tree_stages(self) -> int:
        return tree_register_stages(self.simd, self.tree_levels_per_stage)

    @property
    def extra_stages(self) -> int:
        """The registered terms (XNORs, or raw XORs), and for raw input the registered tree
        root."""
        return 1 if self.binary_input else 2

    @property
    def pipeline_latency(self) -> int:
        """Cycles from issuing a neuron fold's last synapse fold to its output beat being valid:
        one for the ROM/buffer read, the registered terms, the tree's registers (raw input:
        also the root), the accumulator, the output register."""
        return 3 + self.tree_stages + self.extra_stages

    @property
    def out_element_bits(self) -> int:
        return self.score_width if self.is_output else 1

    @property
    def fold(self) -> Fold:
        return Fold(self.pe, self.simd)

    def with_window_word(self, word: int) -> "LayerPlan":
        """This conv layer's plan with its window reading ``word`` channels per beat."""
        window = replace(self.window, word=word)
        return replace(self, window=window, luts=self.luts - self.window.luts + window.luts)


def input_order(model: Model) -> str:
    """The order of an image's values on the generated core's input stream: ``"CHW"`` (the
    model's flattening) or ``"HWC"`` (positions row-major, all channels of a position
    together) when a conv or pool layer reads a multi-channel input directly."""
    first = model.layers[0]
    return "HWC" if not isinstance(first, Dense) and model.input.shape[0] > 1 else "CHW"


@dataclass(frozen=True)
class RepackPlan:
    """A :class:`~hwgen.gateware.repack.Repack` in the stream before a layer: a vector of
    ``n`` elements of ``element_bits`` from beats of ``c`` into words of ``s``."""

    name: str
    n: int
    c: int
    s: int
    element_bits: int

    @property
    def luts(self) -> int:
        return repack_luts(self.c, self.s, self.element_bits, self.n)


@dataclass(frozen=True)
class NetworkPlan:
    model: Model
    layers: list  # LayerPlan (dense, conv) or PoolPlan (maxpool2d), one per model layer
    lanes: int  # input values per beat
    bits: int  # bits per input value

    @property
    def input_size(self) -> int:
        return self.model.input.size

    @property
    def input_order(self) -> str:
        """The order of an image's values on the input stream (:func:`input_order`)."""
        return input_order(self.model)

    @property
    def beats_per_image(self) -> int:
        return ceil_div(self.input_size, self.lanes)

    @property
    def mvtu_layers(self) -> list[LayerPlan]:
        """The dense and conv layers' plans (those with a fold)."""
        return [lp for lp in self.layers if isinstance(lp, LayerPlan)]

    @property
    def folds(self) -> list:
        """One :class:`Fold` per model layer, None for a max-pool."""
        return [lp.fold for lp in self.layers]

    @property
    def has_windows(self) -> bool:
        """Whether any conv or pool layer (a line-buffer unit) is in the chain."""
        return any(isinstance(lp, PoolPlan) or lp.window is not None for lp in self.layers)

    @property
    def classes(self) -> int:
        return self.layers[-1].m

    @property
    def class_bits(self) -> int:
        return max(1, (self.classes - 1).bit_length())

    @property
    def cycles_per_image(self) -> int:
        """The initiation interval: the slowest of the input and every layer."""
        return max([self.beats_per_image] + [lp.cycles for lp in self.layers])

    @property
    def latency_cycles(self) -> int:
        """Cycles from an idle network's first input beat to the class: exact for dense
        networks; with conv/pool layers an upper bound (see :func:`latency_bound`)."""
        return latency_bound(self) if self.has_windows else latency(self)

    @property
    def brams(self) -> int:
        return sum(lp.brams for lp in self.layers)

    @property
    def synapse_reads(self) -> int:
        """Weight bits read per image: every dense layer's weights once, every conv layer's
        once per output position."""
        return sum(lp.m * lp.n * (lp.positions or 1) for lp in self.mvtu_layers)

    def read_port_bound(self, blocks: int, port_bits: int) -> int:
        """Cycles per image if ``blocks`` block RAMs delivered ``port_bits`` weight bits every
        cycle: no fold that keeps its weights in block RAM is faster."""
        return max(1, ceil_div(self.synapse_reads, blocks * port_bits))

    @property
    def luts(self) -> int:
        glue = sum(r.luts for before in self.repacks() for r in before)
        return sum(lp.luts for lp in self.layers) + glue + argmax_luts(self.layers[-1])

    def repacks(self) -> list[list[RepackPlan]]:
        """For each layer, the repacks that turn the stream before it into its input.

        Streams: the input (``lanes`` values per beat, in :attr:`input_order`); an MVTU's
        output (``NF`` beats of ``PE`` channels per position, lanes past ``M`` zero); a
        pool's output (``G`` beats of ``word`` channels per position). A dense layer takes
        its whole input as ``SIMD``-element words; a conv or pool layer ``word`` channels
        per beat. After an MVTU whose ``PE`` does not divide ``C``, a map with several
        positions is first unpadded to one ``C``-element beat per position.
        """
        shapes = self.model.shapes()
        binary = self.model.binary_inputs()
        kind, width = "input", self.lanes
        out = []
        for i, lp in enumerate(self.layers):
            ebits = 1 if binary[i] else self.bits
            out.append(repacks_before(i, lp, shapes[i], ebits, kind, width))
            kind, width = stream_after(lp, shapes[i])
        return out


def repacks_before(index: int, lp, shape, element_bits: int, kind: str,
                   width: int) -> list[RepackPlan]:
    """The repacks that feed layer ``index`` (plan ``lp``, input map ``shape``) from a stream
    of ``kind`` ("input", "mvtu" or "positions") with ``width`` elements per beat."""
    c, h, w = shape
    name = "repack_in" if index == 0 else f"repack{index}"
    before = []
    if isinstance(lp, LayerPlan) and lp.window is None:
        if kind == "mvtu" and h * w > 1 and c % width:
            before.append(RepackPlan(f"unpad{index}", c, width, c, 1))
            width = c
        before.append(RepackPlan(name, c * h * w, width, lp.simd, element_bits))
        return before
    word = lp.word if isinstance(lp, PoolPlan) else lp.window.word
    if kind == "input":
        before.append(RepackPlan(name, c * h * w, width, word, element_bits))
    elif kind == "mvtu" and (width != word or c % width):
        before.append(RepackPlan(f"unpad{index}", c, width, word, 1))
    elif kind == "positions" and width != word:
        before.append(RepackPlan(name, c, width, word, 1))
    return before


def stream_after(lp, shape) -> tuple[str, int]:
    """The stream a layer emits: an MVTU's ``PE`` channels per beat, a pool's ``word``
    channels per beat (``G`` beats per position)."""
    if isinstance(lp, LayerPlan):
        return "mvtu", lp.pe
    return "positions", lp.word


@functools.lru_cache(maxsize=32)
def _conv_view(layer: Conv2d) -> Dense:
    return conv_dense_view(layer)


def unit_layer(model: Model, index: int) -> Dense:
    """The dense layer the MVTU of layer ``index`` computes: a conv layer's weights in window
    order (:func:`~hwgen.layout.conv_dense_view`), a dense layer after a feature map in the
    stream's (H, W, C) order (:func:`~hwgen.layout.hwc_dense_matrix`), else the layer."""
    layer = model.layers[index]
    if isinstance(layer, Conv2d):
        return _conv_view(layer)
    c, h, w = model.shapes()[index]
    if index == 0 or h * w == 1:
        return layer
    return Dense(hwc_dense_matrix(layer.weight, (c, h, w)), layer.threshold, layer.sign,
                 layer.bias)


def layer_plan(model: Model, index: int, fold: Fold | None):
    """The plan of layer ``index``: a :class:`LayerPlan` (dense, conv with its window) or a
    :class:`PoolPlan` (``fold`` None)."""
    layer = model.layers[index]
    binary = model.binary_inputs()[index]
    bits = None if binary else model.input.bits
    shape = model.shapes()[index]
    c, h, w = shape
    if isinstance(layer, MaxPool2d):
        return PoolPlan(index, c, h, w, tuple(layer.kernel), tuple(layer.stride))
    if isinstance(layer, Conv2d):
        dense = dense_plan(_conv_view(layer), fold, bits, index)
        win = WindowPlan(c, h, w, tuple(layer.kernel), tuple(layer.stride),
                         tuple(layer.padding), int(layer.pad_value), 1 if binary else bits,
                         binary, fold.simd)
        ho, wo = win.out_shape
        return replace(dense, op=layer.op, luts=dense.luts + win.luts, in_shape=shape,
                       positions=ho * wo, window=win)
    return replace(dense_plan(layer, fold, bits, index), in_shape=shape)


def dense_plan(layer: Dense, fold: Fold, input_bits: int | None = None,
               index: int = 0) -> LayerPlan:
    """Folded sizes, widths and costs of ``layer``; ``input_bits`` None means +-1 inputs,
    an integer means raw unsigned inputs of that many bits."""
    binary = input_bits is None
    m, n = layer.weight.shape
    pe, simd = fold.pe, fold.simd
    ebits = 1 if binary else input_bits
    if binary:
        lo, hi = 0, n  # popcount of the XNORs
        acc_width, acc_signed = max(1, n.bit_length()), False
    else:
        lo, hi = accumulator_range(layer, False, (1 << input_bits) - 1)
        # The unit adds ``x`` or ``~x = -x - 1`` (no negation), i.e. the sum less the
        # channel's count of -1 weights (at most n), which the parameters compensate.
        acc_width, acc_signed = signed_width(lo - n, hi), True
    if layer.is_output:
        offsets = output_offsets(layer, binary)
        param_width = signed_width(min(0, int(offsets.min())), max(0, int(offsets.max())))
        scale = 2 if binary else 1
        true_offsets = offsets if binary else offsets - raw_negatives(layer)
        score_width = signed_width(scale * lo + int(true_offsets.min()),
                                   scale * hi + int(true_offsets.max()))
    else:
        t_lo, t_hi = (lo, hi + 1) if binary else (lo - n, hi + 1)
        param_width = (signed_width(t_lo, t_hi) if acc_signed
                       else max(1, t_hi.bit_length())) + 1
        score_width = 0
    nf, sf = ceil_div(m, pe), ceil_div(n, simd)
    w_width, w_depth = pe * simd, nf * sf
    logic = rom_in_logic(w_width, w_depth)
    weight_brams = 0 if logic else bram_blocks(w_width, w_depth)
    buf_width, buf_depth = simd * ebits, 2 * sf
    buf_bits = buf_width * buf_depth
    buffer_brams = 0 if buffer_in_logic(buf_width, buf_depth) else bram_blocks(buf_width,
                                                                               buf_depth)
    # Logic-cell estimate (iCE40 LCs: a LUT4, its carry and a flip-flop), calibrated on
    # nextpnr's ICESTORM_LC counts of whole builds (docs/hardware.md): about 3 per XNOR and
    # popcount input bit (2.5 when the weights are constants, a one-word ROM), 2*bits+6 per
    # raw term (XOR, its register and the adder tree), 3 per accumulator/comparator bit;
    # ROMs in logic; input buffers in flip-flops cost a cell per bit (nothing to pack them
    # with) plus their read multiplexer.
    if binary:
        per_bit = 3 if w_depth > 1 else 2.5
        datapath = math.ceil(pe * simd * per_bit) + pe * 3 * acc_width
    else:
        datapath = pe * simd * (2 * ebits + 6) + pe * 3 * acc_width
    luts = datapath + pe * param_width + 40
    if logic:
        luts += logic_rom_luts(w_width, w_depth)
    if not buffer_brams:
        luts += buf_bits + buf_width * max(1, buf_depth // 2)
    param_logic = rom_in_logic(pe * param_width, nf)
    param_brams = 0 if param_logic else bram_blocks(pe * param_width, nf)
    if param_logic:
        luts += logic_rom_luts(pe * param_width, nf)
    return LayerPlan(index, layer.op, n, m, pe, simd, binary, ebits, layer.is_output,
                     (lo, hi), acc_width, acc_signed, param_width, score_width, logic,
                     weight_brams, param_logic, param_brams, buffer_brams, luts)


def raw_negatives(layer: Dense) -> np.ndarray:
    """Per channel, the count of -1 weights: what a raw-input unit's sum falls short by
    (it adds ``~x = -x - 1`` for a -1 weight; padding inputs are 0 with weight +1)."""
    return (np.asarray(layer.weight) <= 0).sum(axis=1).astype(np.int64)


def output_offsets(layer: Dense, binary: bool) -> np.ndarray:
    """Per-channel constant added to the accumulated value of an output layer.

    Binary input: ``score = 2 * popcount - N + bias``, so the offset is ``bias - N``.
    Raw input: ``score = acc + negatives + bias`` (``acc`` falls short by the count of -1
    weights, :func:`raw_negatives`).
    """
    m, n = layer.weight.shape
    bias = np.zeros(m, np.int64) if layer.bias is None else layer.bias.astype(np.int64)
    return bias - n if binary else bias + raw_negatives(layer)


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


def plan(model: Model, folds: list[Fold | None] | None = None, lanes: int | None = None,
         budget: Budget | None = None) -> NetworkPlan:
    """The folded network; ``folds`` (one per layer, None for a max-pool) None picks
    :func:`default_fold`, ``lanes`` None picks the fewest input lanes that keep the input
    from being the bottleneck."""
    check_supported(model)
    if folds is None:
        folds = default_fold(model, budget)
    if len(folds) != len(model.layers):
        raise FoldError(f"the fold has {len(folds)} entries but the model has "
                        f"{len(model.layers)} layers")
    layers = []
    for i, (f, layer) in enumerate(zip(folds, model.layers)):
        if has_fold(layer):
            if f is None:
                raise FoldError(f"{where(i, layer)}: needs a fold PExSIMD")
            f = check_fold(i, layer, f.pe, f.simd)
        elif f is not None:
            check_fold(i, layer, f.pe, f.simd)  # raises: a pool has no fold
        layers.append(layer_plan(model, i, f))
    size = model.input.size
    if lanes is None:
        # The fewest lanes that keep up, rounded up to a divisor of the first layer's input
        # word (a dense layer's SIMD, a conv/pool's channels) so that the input repack only
        # ever inserts at a few offsets (it is cheapest then).
        need = ceil_div(size, max(lp.cycles for lp in layers))
        first = layers[0]
        word = first.simd if isinstance(first, LayerPlan) and first.window is None \
            else model.input.shape[0]
        lanes = min((d for d in range(need, word + 1) if word % d == 0), default=need)
    if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= size:
        raise UserError(f"--lanes must be an integer in [1, {size}] (the input size), "
                        f"got {lanes}")
    interval = max([ceil_div(size, lanes)] + [lp.cycles for lp in layers])
    return NetworkPlan(model, [narrowest_buffers(lp, interval) for lp in layers], lanes,
                       model.input.bits)


def narrowest_buffers(lp, interval: int):
    """``lp`` with the line-buffer ``word`` (of a conv layer's window or a pool) that needs
    the fewest block RAMs (then the fewest LUTs, then the widest word) without the layer
    taking more than ``interval`` cycles per image; other layers unchanged.

    A line buffer holds ``R`` rows of ``W`` positions of ``C`` bits. Block RAMs are at least
    256 words deep, so rows of a small map fill them poorly: ``C`` bits a word need
    ``C/16`` blocks however short the rows. Words of fewer channels, ``G`` per position,
    fill them ``G`` times deeper, at ``G`` reads per window tap."""
    if isinstance(lp, PoolPlan):
        # Narrower words must keep the pool's bound within the interval.
        options = [o for o in (replace(lp, word=d) for d in _divisors(lp.channels))
                   if o.groups == 1 or o.cycles_bound <= interval]
        return min(options, key=lambda o: (o.brams, o.luts, -o.word))
    if not isinstance(lp, LayerPlan) or lp.window is None:
        return lp
    # Likewise the window's bound, when it reads slower.
    options = [o for o in (lp.with_window_word(d) for d in _divisors(lp.window.channels))
               if o.window.groups == 1 or max(lp.cycles, o.window.cycles_bound) <= interval]
    return min(options, key=lambda o: (o.brams, o.luts, -o.window.word))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def default_fold(model: Model, budget: Budget | None = None) -> list[Fold | None]:
    """The smallest initiation interval whose cheapest per-layer folds fit ``budget``.

    For a target interval ``T`` every dense or conv layer takes the fold with the fewest
    estimated LUTs (a block RAM counted as 200) among those whose layer takes at most ``T``
    cycles per image (so cycle counts are balanced near ``T``); ``T`` is found by bisection,
    since the cost only falls as ``T`` grows. A conv layer prefers ``SIMD`` a multiple or a
    divisor of its input channels (no repack inside its window unit). When even the
    cheapest design exceeds the budget, the budget is raised to what that design needs.
    When the fastest design that fits is faster than ``budget.min_interval``, the cheapest
    design within ``min_interval`` is taken instead. Max-pool layers get None.
    """
    check_supported(model)
    budget = budget or Budget()
    shapes = model.shapes()
    candidates_cache: dict = {}

    def candidates(index: int, target: int) -> list[Fold]:
        layer = model.layers[index]
        m, n = layer.out_channels, layer.fan_in
        c, h, w = shapes[index]
        positions = 1
        if isinstance(layer, Conv2d):
            ho, wo = shapes[index + 1][1:]
            positions = ho * wo
        # Words that are whole positions, or divide one, keep the repack before the layer
        # (or inside its window unit) cheap.
        channels = c if (isinstance(layer, Conv2d) or h * w > 1) else None
        # A window on raw multi-bit input chunks whole taps into a register of SIMD values
        # when SIMD is a larger multiple of C: many flip-flops behind one enable, which kept
        # the UP5K CNN below 48 MHz (44.6). Offered only when a layer needs that speed.
        raw_window = isinstance(layer, Conv2d) and not model.binary_inputs()[index]
        folds = []
        for nf in _fold_counts(m):
            sf_max = target // (nf * positions)
            if sf_max < 1:
                continue
            pe = ceil_div(m, nf)
            simd_min = ceil_div(n, min(sf_max, n))
            # Wider words can fill block RAM better, so try a few.
            simds = {min(n, simd_min * k) for k in (1, 2, 4, 8, 16)}
            if channels is not None:
                simds |= {min(n, ceil_div(simd_min, channels) * channels * k) for k in (1, 2)}
                simds |= {d for d in range(simd_min, channels + 1) if channels % d == 0}
            if raw_window and simd_min <= c:
                simds = {simd for simd in simds if simd <= c}
            folds += [Fold(pe, simd) for simd in sorted(simds)
                      if nf * ceil_div(n, simd) <= DEFAULT_MAX_ROM_DEPTH]
        return folds

    def layer_cost(index: int, fold: Fold):
        key = (index, fold)
        if key not in candidates_cache:
            lp = layer_plan(model, index, fold)
            candidates_cache[key] = (lp.luts + 400 * lp.brams, lp)
        return candidates_cache[key]

    def cheapest(target: int) -> list[Fold | None] | None:
        """Per layer, the cheapest fold within ``target`` cycles per image."""
        chosen = []
        for index, layer in enumerate(model.layers):
            if not has_fold(layer):
                chosen.append(None)
                continue
            best = None
            for fold in candidates(index, target):
                cost, lp = layer_cost(index, fold)
                if lp.cycles > target:
                    continue
                key = (cost, lp.cycles)
                if best is None or key < best[0]:
                    best = (key, fold)
            if best is None:
                return None
            chosen.append(best[1])
        return chosen

    # The slowest design (every layer at 1x1) bounds the search.
    hi = max(layer_plan(model, i, Fold(1, 1) if has_fold(layer) else None).cycles
             for i, layer in enumerate(model.layers))
    lo = 1
    # A model too big for the budget relaxes it to what its cheapest design needs.
    least = plan(model, cheapest(hi), lanes=None)
    max_luts, max_brams = max(budget.luts, least.luts), max(budget.brams, least.brams)

    def fits(chosen) -> bool:
        if chosen is None:
            return False
        net = plan(model, chosen)  # adds repacks and argmax
        return net.luts <= max_luts and net.brams <= max_brams

    slowest = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(cheapest(mid)):
            hi = mid
        else:
            lo = mid + 1
    relaxed = cheapest(max(hi, min(budget.min_interval, slowest)))
    return relaxed if fits(relaxed) else cheapest(hi)


def _fold_counts(m: int) -> list[int]:
    """The distinct values of ``ceil(m / pe)`` for ``pe`` in ``1..m``."""
    return sorted({ceil_div(m, pe) for pe in range(1, m + 1)})


# ----------------------------------------------------------------------------- cycle model


def repack_schedule(n: int, c: int, s: int, first_offer: int, gaps: list[int]):
    """Exact cycle model of :class:`hwgen.gateware.repack.Repack` for one vector.

    ``n`` elements arrive in beats of ``c`` and leave in words of ``s``; the downstream is
    always ready. Beat 0 is offered at ``first_offer``, beat ``k + 1`` ``gaps[k]`` cycles after
    beat ``k`` was accepted (an upstream that stalls whole while its output waits).
    Returns (accept cycle per beat, cycle per output word).
    """
    beats, words = ceil_div(n, c), ceil_div(n, s)
    if c == s:
        accepts = [first_offer]
        for k in range(beats - 1):
            accepts.append(accepts[-1] + gaps[k])
        return accepts, list(accepts)
    accepts, emits = [], []
    size = ceil_div(2 * s + 2 * c, s) * s
    fill, offer, t = 0, first_offer, first_offer
    while len(emits) < words:
        if fill < s and (len(accepts) == beats or offer > t):
            # Nothing to emit and no beat yet: skip the idle cycles.
            assert len(accepts) < beats, "repack model stuck"
            t = offer
            continue
        out_fire = fill >= s
        in_fire = len(accepts) < beats and offer <= t and fill <= size - c
        if out_fire:
            emits.append(t)
            fill -= s
        if in_fire:
            k = len(accepts)
            accepts.append(t)
            if k == beats - 1:
                fill = ceil_div(fill + n - k * c, s) * s
            else:
                fill += c
                offer = t + gaps[k]
        t += 1
    return accepts, emits


def latency(net: NetworkPlan) -> int:
    """Cycles from the first input beat's transfer (cycle 0) to the class output being valid,
    for an image entering an idle network with back-to-back input and an always-ready output."""
    n0 = net.input_size
    _, word_times = repack_schedule(n0, net.lanes, net.layers[0].simd, 0,
                                    [1] * net.beats_per_image)
    for i, lp in enumerate(net.layers):
        start = word_times[-1] + 1  # the reader sees the buffer full the cycle after
        base = [start + k * lp.sf + lp.sf - 1 + lp.pipeline_latency for k in range(lp.nf)]
        gaps = [lp.sf] * lp.nf
        if i + 1 < len(net.layers):
            nxt = net.layers[i + 1]
            _, word_times = repack_schedule(lp.m, lp.pe, nxt.simd, base[0], gaps)
        else:
            # Argmax takes a beat every cycle and shows the class after its compare tree's
            # registers and the running compare.
            return base[-1] + argmax_latency(lp)
    raise AssertionError("unreachable")


def latency_bound(net: NetworkPlan) -> int:
    """An upper bound of :func:`latency` for networks with conv or pool layers: the input's
    beats, then every unit's whole per-image cycles plus its pipeline delays as if each
    started only when the previous one had finished the image (in the hardware they
    overlap, so the real latency is lower; ``hwgen sim`` measures it), two cycles per
    repack, and the argmax."""
    t = net.beats_per_image
    for lp, before in zip(net.layers, net.repacks()):
        t += 2 * len(before) + lp.cycles + lp.pipeline_latency
        if isinstance(lp, LayerPlan):
            t += lp.sf + (4 + lp.window.cycles_per_window if lp.window else 0)
    last = net.layers[-1]
    return t + last.nf + argmax_latency(last)


# ----------------------------------------------------------------------------- report


def _buffer_note(unit, brams: int) -> str:
    where = f"{brams} BRAM" if brams else "logic"
    words = f", {unit.groups} words of {unit.word} per position" if unit.groups > 1 else ""
    return f", line buffer {where}{words}"


def format_fold_table(net: NetworkPlan, budget: Budget | None = None) -> str:
    """The per-layer folding/performance table that ``info --fold`` appends, with the
    block-RAM read-port bound of ``budget``'s device (default :class:`Budget`)."""
    budget = budget or Budget()
    lines = [f"{'#':>2}  {'op':<9} {'PE':>5} {'SIMD':>5} {'NF':>5} {'SF':>5} {'cycles':>8} "
             f"{'BRAMs':>6} {'~LUTs':>7}  weight ROM / window"]
    for lp in net.layers:
        if isinstance(lp, PoolPlan):
            (kh, kw), (ho, wo) = lp.kernel, lp.out_shape
            note = f"{ho}x{wo} positions, {kh * kw} taps each" + _buffer_note(lp, lp.brams)
            lines.append(f"{lp.index:>2}  {lp.op:<9} {'-':>5} {'-':>5} {'-':>5} {'-':>5} "
                         f"{lp.cycles:>8} {lp.brams:>6} {lp.luts:>7}  {note}")
            continue
        depth = lp.nf * lp.sf
        note = f"{lp.pe * lp.simd}x{depth} " + ("logic" if lp.weight_logic else "bram")
        if lp.window is not None:
            ho, wo = lp.window.out_shape
            note += (f"; {ho}x{wo} positions, {lp.window.cycles_per_window} cycles/window "
                     f"min" + _buffer_note(lp.window, lp.window.brams))
        lines.append(f"{lp.index:>2}  {lp.op:<9} {lp.pe:>5} {lp.simd:>5} {lp.nf:>5} "
                     f"{lp.sf:>5} {lp.cycles:>8} {lp.brams:>6} {lp.luts:>7}  {note}")
    fold = ",".join("-" if lp.fold is None else str(lp.fold) for lp in net.layers)
    order = "" if net.input_order == "CHW" else f" in {net.input_order} order"
    lines.append(f"fold   {fold}; input {net.lanes} x {net.bits}-bit values per beat{order}, "
                 f"{net.beats_per_image} beats per image")
    bound = "at most " if net.has_windows else ""
    lines.append(f"II     {net.cycles_per_image} cycles per image; latency {bound}"
                 f"{net.latency_cycles} cycles; {net.brams} block RAMs; ~{net.luts} LUTs "
                 f"(estimate)")
    port = net.read_port_bound(budget.bram_blocks, budget.bram_port_bits)
    lines.append(f"bound  {port} cycles per image if all {budget.bram_blocks} block RAMs "
                 f"delivered {budget.bram_port_bits} weight bits every cycle "
                 f"({net.synapse_reads} per image); this fold reaches "
                 f"{port / net.cycles_per_image:.1%} of it")
    return "\n".join(lines)
