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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .model import Dense, Model, accumulator_range, signed_width

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


class FoldError(UserError):
    """A fold that does not fit the model (zero, too wide, not applicable, malformed)."""


def where(index: int, layer) -> str:
    return f"layer {index} ({getattr(layer, 'op', type(layer).__name__)})"


def check_supported(model: Model) -> None:
    """Raise a one-line :class:`~hwgen.errors.UserError` for layers the generator cannot build."""
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, Dense):
            raise UserError(f"{where(index, layer)}: not supported by the generator yet "
                            f"(only dense layers are)")


@dataclass(frozen=True)
class Fold:
    pe: int
    simd: int

    def __str__(self):
        return f"{self.pe}x{self.simd}"


@dataclass(frozen=True)
class Budget:
    """Resources the default fold may spend (defaults: a Lattice iCE40 UP5K with headroom)."""

    luts: int = 4000
    brams: int = 30


# ----------------------------------------------------------------------------- parsing


def parse_fold(text: str, model: Model) -> list[Fold]:
    """A fold for every layer of ``model`` from ``text``.

    ``text`` is ``PExSIMD`` per layer separated by commas (``"64x32,32x16,10x8"``), or JSON:
    a list with ``[PE, SIMD]`` or ``{"pe": PE, "simd": SIMD}`` per layer, or a path to a
    ``.json`` file holding such a list. Raises :class:`FoldError` naming the layer at fault.
    """
    check_supported(model)
    text = text.strip()
    if text.endswith(".json") and Path(text).is_file():
        try:
            text = Path(text).read_text()
        except OSError as err:
            raise FoldError(f"--fold {text}: cannot read ({err.strerror})") from None
    if text[:1] in "[{":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise FoldError(f"--fold is not valid JSON ({err.msg} at column {err.colno})") \
                from None
        if not isinstance(items, list):
            raise FoldError("--fold JSON must be a list with one entry per layer")
        entries = [_json_entry(i, item) for i, item in enumerate(items)]
    else:
        entries = [_text_entry(i, part) for i, part in enumerate(text.split(","))]
    if len(entries) != len(model.layers):
        raise FoldError(f"--fold gives {len(entries)} layer folds but the model has "
                        f"{len(model.layers)} layers")
    folds = []
    for index, ((pe, simd), layer) in enumerate(zip(entries, model.layers)):
        folds.append(check_fold(index, layer, pe, simd))
    return folds


def _text_entry(index: int, part: str) -> tuple[int, int]:
    pieces = part.strip().lower().split("x")
    if len(pieces) != 2 or not all(p.strip().lstrip("-").isdigit() for p in pieces):
        raise FoldError(f"layer {index}: fold {part.strip()!r} is not PExSIMD (e.g. 16x32)")
    return int(pieces[0]), int(pieces[1])


def _json_entry(index: int, item) -> tuple[int, int]:
    if isinstance(item, dict) and set(item) == {"pe", "simd"}:
        item = [item["pe"], item["simd"]]
    if (not isinstance(item, list) or len(item) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
        raise FoldError(f"layer {index}: fold {json.dumps(item)} is not [PE, SIMD] or "
                        f'{{"pe": PE, "simd": SIMD}} with integers')
    return item[0], item[1]


def check_fold(index: int, layer, pe: int, simd: int) -> Fold:
    """Check one layer's fold: PE in ``[1, M]``, SIMD in ``[1, N]``."""
    if not isinstance(layer, Dense):
        raise FoldError(f"{where(index, layer)}: a fold is not applicable "
                        f"(not supported by the generator yet)")
    m, n = layer.weight.shape
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
    luts: int

    @property
    def nf(self) -> int:
        return ceil_div(self.m, self.pe)

    @property
    def sf(self) -> int:
        return ceil_div(self.n, self.simd)

    @property
    def cycles(self) -> int:
        return self.nf * self.sf

    @property
    def brams(self) -> int:
        return self.weight_brams + self.param_brams + self.buffer_brams

    @property
    def tree_levels_per_stage(self) -> int:
        return TREE_LEVELS_PER_STAGE if self.binary_input else RAW_TREE_LEVELS_PER_STAGE

    @property
    def tree_stages(self) -> int:
        return tree_register_stages(self.simd, self.tree_levels_per_stage)

    @property
    def extra_stages(self) -> int:
        """Raw input: the registered terms and the registered tree root."""
        return 0 if self.binary_input else 2

    @property
    def pipeline_latency(self) -> int:
        """Cycles from issuing a neuron fold's last synapse fold to its output beat being valid:
        one for the ROM/buffer read, the tree's registers (raw input: also the terms and the
        root), the accumulator, the output register."""
        return 3 + self.tree_stages + self.extra_stages

    @property
    def out_element_bits(self) -> int:
        return self.score_width if self.is_output else 1

    @property
    def fold(self) -> Fold:
        return Fold(self.pe, self.simd)


@dataclass(frozen=True)
class NetworkPlan:
    model: Model
    layers: list[LayerPlan]
    lanes: int  # input values per beat
    bits: int  # bits per input value

    @property
    def input_size(self) -> int:
        return self.model.input.size

    @property
    def beats_per_image(self) -> int:
        return ceil_div(self.input_size, self.lanes)

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
        return latency(self)

    @property
    def brams(self) -> int:
        return sum(lp.brams for lp in self.layers)

    @property
    def luts(self) -> int:
        glue = repack_luts(self.lanes, self.layers[0].simd, self.layers[0].element_bits)
        glue += sum(repack_luts(a.pe, b.simd, 1) for a, b in zip(self.layers, self.layers[1:]))
        return sum(lp.luts for lp in self.layers) + glue + argmax_luts(self.layers[-1])


def layer_plan(model: Model, index: int, fold: Fold) -> LayerPlan:
    binary = model.binary_inputs()[index]
    return dense_plan(model.layers[index], fold, None if binary else model.input.bits, index)


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


def repack_luts(c: int, s: int, element_bits: int) -> int:
    """LUT estimate of a :class:`~hwgen.gateware.repack.Repack` from ``c`` to ``s`` elements."""
    if c == s:
        return 0
    size = ceil_div(2 * s + 2 * c, s) * s
    g = math.gcd(c, s)
    sources = min(ceil_div(size - c + 1, g), ceil_div(c, g))  # inputs landing on one element
    return size * element_bits * (1 + sources) + 2 * ((size - c) // g) + 20


def argmax_stages(lanes: int) -> int:
    """Pipeline registers of :class:`~hwgen.gateware.argmax.Argmax`'s compare tree over
    ``lanes`` scores per beat (one per level)."""
    return (lanes - 1).bit_length()


def argmax_luts(last: LayerPlan) -> int:
    return last.pe * (2 * last.score_width + 4) + 2 * last.score_width


def plan(model: Model, folds: list[Fold] | None = None, lanes: int | None = None,
         budget: Budget | None = None) -> NetworkPlan:
    """The folded network; ``folds`` None picks :func:`default_fold`, ``lanes`` None picks
    the fewest input lanes that keep the input from being the bottleneck."""
    check_supported(model)
    if folds is None:
        folds = default_fold(model, budget)
    if len(folds) != len(model.layers):
        raise FoldError(f"the fold has {len(folds)} entries but the model has "
                        f"{len(model.layers)} layers")
    layers = [layer_plan(model, i, check_fold(i, model.layers[i], f.pe, f.simd))
              for i, f in enumerate(folds)]
    size = model.input.size
    if lanes is None:
        # The fewest lanes that keep up, rounded up to a divisor of the first SIMD so that
        # the input repack only ever inserts at a few offsets (it is cheapest then).
        need = ceil_div(size, max(lp.cycles for lp in layers))
        simd = layers[0].simd
        lanes = min(d for d in range(need, simd + 1) if simd % d == 0)
    if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= size:
        raise UserError(f"--lanes must be an integer in [1, {size}] (the input size), "
                        f"got {lanes}")
    return NetworkPlan(model, layers, lanes, model.input.bits)


def default_fold(model: Model, budget: Budget | None = None) -> list[Fold]:
    """The smallest initiation interval whose cheapest per-layer folds fit ``budget``.

    For a target interval ``T`` every layer takes the fold with the fewest estimated LUTs
    among those with ``NF * SF <= T`` (so cycle counts are balanced near ``T``); ``T`` is
    found by bisection, since the cost only falls as ``T`` grows. When even the cheapest
    design exceeds the budget, the budget is raised to what that design needs.
    """
    check_supported(model)
    budget = budget or Budget()
    sizes = [layer.weight.shape for layer in model.layers]

    def cheapest(target: int) -> list[LayerPlan] | None:
        chosen = []
        for index, (m, n) in enumerate(sizes):
            best = None
            for nf in _fold_counts(m):
                sf_max = target // nf
                if sf_max < 1:
                    continue
                pe = ceil_div(m, nf)
                simd_min = ceil_div(n, min(sf_max, n))
                # Wider words can fill block RAM better, so try a few.
                for simd in sorted({min(n, simd_min * k) for k in (1, 2, 4, 8, 16)}):
                    lp = layer_plan(model, index, Fold(pe, simd))
                    key = (lp.luts + 400 * lp.brams, lp.cycles)
                    if best is None or key < best[0]:
                        best = (key, lp)
            if best is None:
                return None
            chosen.append(best[1])
        return chosen

    hi = max(m * n for m, n in sizes)
    lo = 1
    # A model too big for the budget relaxes it to what its cheapest design needs.
    least = plan(model, [lp.fold for lp in cheapest(hi)])
    least_luts, least_brams = least.luts, least.brams
    max_luts, max_brams = max(budget.luts, least_luts), max(budget.brams, least_brams)

    def fits(chosen) -> bool:
        if chosen is None:
            return False
        net = plan(model, [lp.fold for lp in chosen])  # adds repacks and argmax
        return net.luts <= max_luts and net.brams <= max_brams

    while lo < hi:
        mid = (lo + hi) // 2
        if fits(cheapest(mid)):
            hi = mid
        else:
            lo = mid + 1
    return [lp.fold for lp in cheapest(hi)]


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
            return base[-1] + 1 + argmax_stages(lp.pe)
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- report


def format_fold_table(net: NetworkPlan) -> str:
    """The per-layer folding/performance table that ``info --fold`` appends."""
    lines = [f"{'#':>2}  {'op':<9} {'PE':>5} {'SIMD':>5} {'NF':>5} {'SF':>5} {'cycles':>8} "
             f"{'BRAMs':>6} {'~LUTs':>7}  weight ROM"]
    for lp in net.layers:
        rom = (f"{lp.pe * lp.simd}x{lp.cycles} " + ("logic" if lp.weight_logic else "bram"))
        lines.append(f"{lp.index:>2}  {lp.op:<9} {lp.pe:>5} {lp.simd:>5} {lp.nf:>5} "
                     f"{lp.sf:>5} {lp.cycles:>8} {lp.brams:>6} {lp.luts:>7}  {rom}")
    fold = ",".join(str(lp.fold) for lp in net.layers)
    lines.append(f"fold   {fold}; input {net.lanes} x {net.bits}-bit values per beat, "
                 f"{net.beats_per_image} beats per image")
    lines.append(f"II     {net.cycles_per_image} cycles per image; latency "
                 f"{net.latency_cycles} cycles; {net.brams} block RAMs; ~{net.luts} LUTs "
                 f"(estimate)")
    return "\n".join(lines)
