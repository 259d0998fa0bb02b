"""Plans: a model and its folds turned into the sizes, widths, costs and cycles of every unit.

:func:`plan` turns a model and a fold into a :class:`NetworkPlan`: per layer (a
:class:`LayerPlan` for dense and conv layers, a :class:`PoolPlan` for max-pools) the folded
sizes, derived widths, weight ROM geometry, block RAMs, estimated LUTs and cycles; for the
network the input lanes and order, the repacks between the layers (:class:`RepackPlan`), the
initiation interval and the latency (an exact cycle model of the RTL in
:mod:`hwgen.gateware`, :mod:`hwgen.fold.cycles`, checked against simulation by the tests).
A conv layer's :class:`WindowPlan` and a :class:`PoolPlan` read their line buffers in
``word``-channel beats; :func:`narrowest_buffers` picks the word. See
:mod:`hwgen.fold.parse` for what a fold means.

Builds on :mod:`~hwgen.fold.parse`, :mod:`~hwgen.fold.geometry`,
:mod:`~hwgen.fold.storage`, :mod:`~hwgen.fold.line_buffers` (the window and pool plans) and
:mod:`~hwgen.fold.channel_constants` (raw-input and output-layer constants). :func:`plan`
without folds asks :func:`~hwgen.fold.default.default_fold`, and
:attr:`NetworkPlan.latency_cycles` :mod:`hwgen.fold.cycles`: both modules build on this one,
so those two calls import them when run.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import UserError
from ..layout import conv_dense_view, hwc_dense_matrix
from ..model import Conv2d, Dense, MaxPool2d, Model, signed_width
from .channel_constants import _raw_range, output_offsets, raw_negatives
from .geometry import (RAW_TREE_LEVELS_PER_STAGE, TREE_LEVELS_PER_STAGE, _divisors,
                       argmax_luts, bram_blocks, buffer_in_logic, ceil_div, logic_rom_luts,
                       repack_luts, rom_in_logic, tree_register_stages)
from .line_buffers import PoolPlan, WindowPlan
from .parse import Fold, FoldError, check_fold, check_supported, has_fold, where
from .storage import UP5K_SPRAM_BLOCKS, SpramLayer, SpramNetwork, check_spram, spram_luts

if TYPE_CHECKING:
    from .default import Budget


@dataclass(frozen=True)
class LayerPlan(SpramLayer):
    """Everything the generator and ``info`` need to know about one folded dense layer
    (``spram``: its weights in SPRAM, see :mod:`hwgen.fold.storage`)."""

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
    spram: bool = False  # weights in SPRAM (weight_logic False, weight_brams 0)
    # the input is computed on as it arrives, without a double buffer (one neuron fold)
    streaming: bool = False

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
    def paired(self) -> bool:
        """Raw input folded at least two wide: the unit adds one term per pair of inputs
        (:func:`raw_pair_columns`), from their sum and difference computed once for all
        ``PE`` lanes."""
        return not self.binary_input and self.simd >= 2

    @property
    def terms(self) -> int:
        """Leaves of each lane's adder tree: ``SIMD`` (binary, or raw one wide), or one per
        pair of inputs plus a single for an odd ``SIMD``."""
        return ceil_div(self.simd, 2) if self.paired else self.simd

    @property
    def tree_levels_per_stage(self) -> int:
        return TREE_LEVELS_PER_STAGE if self.binary_input else RAW_TREE_LEVELS_PER_STAGE

    @property
    def tree_stages(self) -> int:
        return tree_register_stages(self.terms, self.tree_levels_per_stage)

    @property
    def root_registered(self) -> bool:
        """Raw input with more than one term: the tree's root is registered before the
        accumulator adds it (a single term is already a register)."""
        return not self.binary_input and self.terms > 1

    @property
    def preloaded(self) -> bool:
        """A hidden layer with one neuron fold (``PE >= M``): each lane's threshold is a
        constant, so its accumulator starts at minus the threshold (the flip-flops' reset
        values, restored as the image's last sum is taken) and the output bit is that sum's
        sign, taken straight into the output register: no comparator, no parameter ROM."""
        return self.nf == 1 and not self.is_output

    @property
    def centered(self) -> bool:
        """A :attr:`preloaded` raw layer whose ``SIMD`` divides its inputs (no padding):
        its inputs are taken less half their range (``x - 2^(bits-1)``, the top bit
        inverted), one bit narrower, and the lanes' constants make up for it."""
        return self.preloaded and not self.binary_input and self.n % self.simd == 0

    @property
    def extra_stages(self) -> int:
        """The registered terms (XNORs, or raw XORs), for raw input with several terms the
        registered tree root, and for paired raw input the registered pair sums and
        differences."""
        return 1 + int(self.paired) + int(self.root_registered)

    @property
    def pipeline_latency(self) -> int:
        """Cycles from issuing a neuron fold's last synapse fold to its output beat being valid:
        one for the ROM/buffer read, the registered pair sums (paired raw input), the
        registered terms, the tree's registers (raw input with several terms: also the
        root), the accumulator, the output register (a :attr:`preloaded` layer takes its
        output in the accumulator's cycle)."""
        return 3 + self.tree_stages + self.extra_stages - int(self.preloaded)

    @property
    def out_element_bits(self) -> int:
        return self.score_width if self.is_output else 1

    @property
    def fold(self) -> Fold:
        return Fold(self.pe, self.simd, self.spram)

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
class NetworkPlan(SpramNetwork):
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
    def fold_text(self) -> str:
        """The folds as ``--fold`` takes them: ``PExSIMD[s]`` per layer, ``-`` for a pool."""
        return ",".join("-" if fold is None else str(fold) for fold in self.folds)

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
        """The initiation interval: the slowest of the input and every layer. Exact for dense
        networks; with conv or pool layers a lower bound (:attr:`interval_is_bound`)."""
        return max([self.beats_per_image] + [lp.cycles for lp in self.layers])

    @property
    def interval_is_bound(self) -> bool:
        """Whether :attr:`cycles_per_image` is only a lower bound of the initiation interval:
        with conv or pool layers, whose line buffers can wait at each image's start for rows
        that they could not store ahead (a few cycles on 28x28 maps, up to about twice the
        bound on maps hardly larger than the kernel); ``hwgen sim`` measures it."""
        return self.has_windows

    @property
    def interval_text(self) -> str:
        """``cycles_per_image`` as the reports print it: ``N`` or ``at least N``."""
        return f"{'at least ' if self.interval_is_bound else ''}{self.cycles_per_image}"

    @property
    def latency_cycles(self) -> int:
        """Cycles from an idle network's first input beat to the class: exact for dense
        networks; with conv/pool layers an upper bound (see :func:`latency_bound`)."""
        from .cycles import latency, latency_bound  # cycles builds on this module

        return latency_bound(self) if self.has_windows else latency(self)

    @property
    def brams(self) -> int:
        return sum(lp.brams for lp in self.layers)

    @property
    def synapse_reads(self) -> int:
        """Weight bits read per image: every dense layer's weights once, every conv layer's
        once per output position."""
        return sum(lp.m * lp.n * (lp.positions or 1) for lp in self.mvtu_layers)

    def read_port_bound(self, blocks: int, port_bits: int, sprams: int = 0) -> int:
        """Cycles per image if ``blocks`` block RAMs delivered ``port_bits`` weight bits every
        cycle, and ``sprams`` SPRAM blocks 16 each: no fold that keeps its weights in those
        memories is faster."""
        return max(1, ceil_div(self.synapse_reads, blocks * port_bits + 16 * sprams))

    @property
    def luts(self) -> int:
        glue = sum(r.luts for before in self.repacks() for r in before)
        return (sum(lp.luts for lp in self.layers) + glue + argmax_luts(self.layers[-1])
                + self.spram_loader_luts)

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
    # The first layer, dense and with one neuron fold, reads each input word once, in order
    # of arrival: it computes as the input streams in, with no buffer.
    streaming = index == 0 and ceil_div(layer.weight.shape[0], fold.pe) == 1
    return replace(dense_plan(layer, fold, bits, index, streaming), in_shape=shape)


def dense_plan(layer: Dense, fold: Fold, input_bits: int | None = None,
               index: int = 0, streaming: bool = False) -> LayerPlan:
    """Folded sizes, widths and costs of ``layer``; ``input_bits`` None means +-1 inputs,
    an integer means raw unsigned inputs of that many bits; ``streaming`` (only with one
    neuron fold): the unit computes on its input as it arrives, without a double buffer."""
    binary = input_bits is None
    m, n = layer.weight.shape
    pe, simd = fold.pe, fold.simd
    ebits = 1 if binary else input_bits
    pairs = 0 if binary or simd < 2 else simd // 2
    if binary:
        lo, hi = 0, n  # popcount of the XNORs
        acc_width, acc_signed = max(1, n.bit_length()), False
    else:
        lo, hi = _raw_range(layer, input_bits)
        # The unit adds ``x`` or ``~x = -x - 1`` (no negation), i.e. the sum less the
        # channel's count of -1 weights (at most n), which the parameters compensate.
        acc_width, acc_signed = signed_width(lo - n, hi), True
    if layer.is_output:
        offsets = output_offsets(layer, binary, simd)
        param_width = signed_width(min(0, int(offsets.min())), max(0, int(offsets.max())))
        scale = 2 if binary else 1
        true_offsets = offsets if binary else offsets - raw_negatives(layer, simd)
        score_width = signed_width(scale * lo + int(true_offsets.min()),
                                   scale * hi + int(true_offsets.max()))
    else:
        t_lo, t_hi = (lo, hi + 1) if binary else (lo - n, hi + 1)
        param_width = (signed_width(t_lo, t_hi) if acc_signed
                       else max(1, t_hi.bit_length())) + 1
        score_width = 0
    nf, sf = ceil_div(m, pe), ceil_div(n, simd)
    w_width, w_depth = pe * simd, nf * sf
    logic = rom_in_logic(w_width, w_depth) and not fold.spram
    weight_brams = 0 if logic or fold.spram else bram_blocks(w_width, w_depth)
    if streaming and nf != 1:
        raise ValueError(f"a streaming unit has one neuron fold, not {nf}")
    buf_width, buf_depth = simd * ebits, 2 * sf
    buf_bits = buf_width * buf_depth
    buffer_brams = 0 if streaming or buffer_in_logic(buf_width, buf_depth) else bram_blocks(
        buf_width, buf_depth)
    # Logic-cell estimate (iCE40 LCs: a LUT4, its carry and a flip-flop), calibrated on
    # nextpnr's ICESTORM_LC counts of whole builds (docs/hardware.md): about 3 per XNOR and
    # popcount input bit (2.5 when the weights are constants, a one-word ROM), 2*bits+6 per
    # raw term (XOR, its register and the adder tree), 2*bits+13 per lane and pair of raw
    # inputs plus 2*bits+3 per pair for the shared sum and difference (fmnist-mlp-up5k at
    # 10x8,2x10,1x2: 3771 LCs with single terms, 3252 in pairs; the estimate's difference
    # is 524), 3 per accumulator/comparator bit; ROMs in logic; input buffers in flip-flops
    # cost a cell per bit (nothing to pack them with) plus their read multiplexer. A
    # preloaded lane (one neuron fold) has its accumulator and one output bit, no
    # comparator; a lone raw term has no root register; a streaming unit registers its
    # input word instead of buffering it.
    # (fmnist-mlp-up5k's first layer at 100x2, streaming and preloaded, alone through
    # synth_ice40: 3153 LUT4s, 3070 flip-flops, 1830 carries: 31 cells a lane.)
    preloaded = nf == 1 and not layer.is_output
    centered = preloaded and not binary and n % simd == 0
    lane_acc = acc_width + 1 if preloaded else 3 * acc_width
    if binary:
        per_bit = 3 if w_depth > 1 else 2.5
        datapath = math.ceil(pe * simd * per_bit) + pe * lane_acc
    else:
        singles = simd - 2 * pairs
        if preloaded and pairs + singles == 1:  # a lone term's register feeds the accumulator
            lane_terms = (ebits + 2 if pairs else ebits + 1) - int(centered)
        else:  # (a lone term in other layers is counted as before: slightly high)
            lane_terms = pairs * (2 * ebits + 13) + singles * (2 * ebits + 6)
        datapath = pe * (lane_terms + lane_acc) + pairs * (2 * ebits + 3)
    if preloaded:
        # Preloaded lanes are one long carry chain each: on the UP5K, fmnist-mlp-up5k at
        # 100x2,3x10s,1x3(s) (100 of them) failed placement at an estimated 4913 and 4710
        # LUTs of 5280 (nextpnr: 4871 logic cells in the first), so they count a quarter
        # more than the cells they take.
        datapath = math.ceil(datapath * PRELOADED_PLACEMENT_FACTOR)
    luts = datapath + (pe if preloaded else pe * param_width) + 40
    if logic:
        luts += logic_rom_luts(w_width, w_depth)
    if fold.spram:
        luts += spram_luts(w_width, w_depth)
    if streaming:
        luts += buf_width
    elif not buffer_brams:
        luts += buf_bits + buf_width * max(1, buf_depth // 2)
    param_logic = preloaded or rom_in_logic(pe * param_width, nf)
    param_brams = 0 if param_logic else bram_blocks(pe * param_width, nf)
    if param_logic:
        luts += logic_rom_luts(pe * param_width, nf)
    return LayerPlan(index, layer.op, n, m, pe, simd, binary, ebits, layer.is_output,
                     (lo, hi), acc_width, acc_signed, param_width, score_width, logic,
                     weight_brams, param_logic, param_brams, buffer_brams, luts,
                     spram=fold.spram, streaming=streaming)


#: How much more than its logic cells a preloaded layer's datapath counts in the LUT estimate
#: (see :func:`dense_plan`).
PRELOADED_PLACEMENT_FACTOR = 1.25

#: The widest input beat (``lanes`` times the input's bits) hardware is generated for.
MAX_INPUT_BEAT_BITS = 8192


def plan(model: Model, folds: list[Fold | None] | None = None, lanes: int | None = None,
         budget: Budget | None = None, spram_limit: int | None = None) -> NetworkPlan:
    """The folded network; ``folds`` (one per layer, None for a max-pool) None picks
    :func:`default_fold`, ``lanes`` None picks the fewest input lanes that keep the input
    from being the bottleneck. A FoldError when the SPRAM layers (``PExSIMDs``) need more
    blocks than ``spram_limit`` (None: ``budget.spram_blocks``, without a budget the
    iCE40UP5K's :data:`~hwgen.fold.storage.UP5K_SPRAM_BLOCKS`)."""
    check_supported(model)
    if folds is None:
        from .default import default_fold  # default builds on this module

        folds = default_fold(model, budget)
    if len(folds) != len(model.layers):
        raise FoldError(f"the fold has {len(folds)} entries but the model has "
                        f"{len(model.layers)} layers")
    layers = []
    for i, (f, layer) in enumerate(zip(folds, model.layers)):
        if has_fold(layer):
            if f is None:
                raise FoldError(f"{where(i, layer)}: needs a fold PExSIMD")
            f = check_fold(i, layer, f.pe, f.simd, f.spram)
        elif f is not None:
            check_fold(i, layer, f.pe, f.simd, f.spram)  # raises: a pool has no fold
        layers.append(layer_plan(model, i, f))
    if spram_limit is None:
        spram_limit = UP5K_SPRAM_BLOCKS if budget is None else budget.spram_blocks
    check_spram(layers, spram_limit)
    size = model.input.size
    if lanes is None:
        lanes = default_lanes(model, layers[0], max(lp.cycles for lp in layers))
    if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= size:
        raise UserError(f"--lanes must be an integer in [1, {size}] (the input size), "
                        f"got {lanes}")
    if lanes * model.input.bits > MAX_INPUT_BEAT_BITS:
        raise UserError(f"--lanes {lanes} makes input beats of {lanes * model.input.bits} "
                        f"bits, more than the {MAX_INPUT_BEAT_BITS} hardware is generated "
                        f"for")
    interval = max([ceil_div(size, lanes)] + [lp.cycles for lp in layers])
    return NetworkPlan(model, [narrowest_buffers(lp, interval) for lp in layers], lanes,
                       model.input.bits)


def default_lanes(model: Model, first, slowest: int) -> int:
    """The input lanes :func:`plan` picks when the slowest layer takes ``slowest`` cycles per
    image and ``first`` is the first layer's plan: the fewest that keep up, rounded up to a
    divisor of the first layer's input word (a dense layer's SIMD, a conv/pool's channels)
    so that the input repack only ever inserts at a few offsets (it is cheapest then)."""
    need = ceil_div(model.input.size, slowest)
    word = first.simd if isinstance(first, LayerPlan) and first.window is None \
        else model.input.shape[0]
    return min((d for d in _divisors(word) if d >= need), default=need)


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
