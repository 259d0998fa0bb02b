"""The default fold (``--fold auto``): balanced layer cycle counts within a :class:`Budget`.

:func:`default_fold` picks, for each dense or conv layer, the cheapest fold (estimated LUTs,
block RAMs weighted) whose layer keeps within a target initiation interval, and bisects on
that interval for the fastest design whose :func:`~hwgen.fold.plans.plan` fits the budget
(or the cheapest that keeps up with :attr:`Budget.min_interval`). Weight ROMs deeper than
:data:`DEFAULT_MAX_ROM_DEPTH` words are avoided. :mod:`hwgen.fold_search` (``--fold
fastest``) searches the same space charging repacks as well. Builds on
:mod:`~hwgen.fold.plans`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..model import Conv2d, Model
from .geometry import ceil_div
from .parse import Fold, FoldError, check_supported, has_fold
from .plans import layer_plan, plan
from .storage import SPRAM_WIDTH, UP5K_SPRAM_BLOCKS, spram_blocks

#: The default fold avoids weight ROMs deeper than this many words: a deeper ROM is a cascade
#: of block RAMs behind an output multiplexer, the slowest path of a design (a 39200-deep
#: 2-bit ROM in 20 blocks closed timing at 45 MHz on the iCE40UP5K).
DEFAULT_MAX_ROM_DEPTH = 4096


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
    #: SPRAM blocks (16K x 16, the iCE40UP5K has 4) the weights of the largest layers may
    #: take when the design does not fit ``brams`` without them. 0 (the default, so that a
    #: budget made for any other device never gets SPRAM): none.
    spram_blocks: int = 0
    #: Logic the board adds beside a core with SPRAM layers (its weight loader): taken off
    #: ``luts`` when the default fold puts weights in SPRAM.
    weight_loader_luts: int = 0


#: The logic the iCEBreaker's flash loader and image gate add to a core with SPRAM weights
#: (``boards.targets``: its ``flash_loader_luts``).
UP5K_FLASH_LOADER_LUTS = 300


def up5k_budget() -> Budget:
    """The whole iCEBreaker budget of ``build --board icebreaker`` (a 3 Mbaud UART aside):
    :class:`Budget`'s defaults with the UP5K's SPRAM blocks and the flash loader their
    weights need. ``--fold fastest`` without a board (``info``, ``verilog``, ``sim``)
    searches it, so that it finds the fold the board build finds."""
    return Budget(spram_blocks=UP5K_SPRAM_BLOCKS, weight_loader_luts=UP5K_FLASH_LOADER_LUTS)


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

    SPRAM (``budget.spram_blocks > 0``): only when the cheapest design without it needs more
    than ``budget.brams``, the layers with the most weights go to SPRAM, one after another
    (a layer whose smallest SPRAM layout does not fit the blocks left is skipped) until the
    cheapest design fits the block RAMs or no blocks are left. Such a layer's candidate
    folds have ``PE*SIMD`` a multiple of 16 (:func:`spram_folds`); the blocks left over
    are headroom for any of them, the network's total is checked.
    """
    check_supported(model)
    budget = budget or Budget()
    shapes = model.shapes()
    candidates_cache: dict = {}
    spram: dict[int, int] = {}  # layer index -> the most SPRAM blocks its weights may take

    def candidates(index: int, target: int) -> list[Fold]:
        if index in spram:
            return spram_folds(model, index, target, spram[index])
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
            folds += [Fold(pe, simd) for simd in sorted(simds)]
        shallow = [f for f in folds
                   if ceil_div(m, f.pe) * ceil_div(n, f.simd) <= DEFAULT_MAX_ROM_DEPTH]
        # a layer so wide that every fold's ROM is deeper keeps them all (never none)
        return shallow or folds

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
    least = plan(model, cheapest(hi), lanes=None, spram_limit=budget.spram_blocks)
    if budget.spram_blocks > 0 and least.brams > budget.brams:
        left = budget.spram_blocks
        for index in sorted((i for i, layer in enumerate(model.layers) if has_fold(layer)),
                            key=lambda i: -model.layers[i].weight.size):
            need = min((layer_cost(index, f)[1].spram_blocks
                        for f in spram_folds(model, index, hi, left)), default=None)
            if need is None:
                continue
            spram[index], left = need, left - need
            least = plan(model, cheapest(hi), lanes=None, spram_limit=budget.spram_blocks)
            if least.brams <= budget.brams or not left:
                break
        for index in spram:
            spram[index] += left
    luts = budget.luts - (budget.weight_loader_luts if spram else 0)
    # A model too big for the budget relaxes it to what its cheapest design needs.
    max_luts, max_brams = max(luts, least.luts), max(budget.brams, least.brams)

    def fits(chosen) -> bool:
        if chosen is None:
            return False
        try:  # adds repacks and argmax
            net = plan(model, chosen, spram_limit=budget.spram_blocks)
        except FoldError:  # SPRAM layers that together need more blocks than the budget's
            return False
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


def spram_folds(model: Model, index: int, target: int, blocks: int) -> list[Fold]:
    """The SPRAM folds (``PExSIMDs``) of layer ``index`` whose weights take at most ``blocks``
    SPRAM blocks and that may keep within ``target`` cycles per image: every ``PE x SIMD``
    of ``16 * k`` bits (``k`` blocks wide, at most ``blocks``)."""
    layer = model.layers[index]
    m, n = layer.out_channels, layer.fan_in
    positions = 1
    if isinstance(layer, Conv2d):
        ho, wo = model.shapes()[index + 1][1:]
        positions = ho * wo
    folds = []
    for wide in range(1, blocks + 1):
        width = SPRAM_WIDTH * wide
        for pe in range(1, min(m, width) + 1):
            simd = width // pe
            if width % pe or simd > n:
                continue
            depth = ceil_div(m, pe) * ceil_div(n, simd)
            if depth * positions <= target and spram_blocks(width, depth) <= blocks:
                folds.append(Fold(pe, simd, True))
    return folds


def _fold_counts(m: int) -> list[int]:
    """The distinct values of ``ceil(m / pe)`` for ``pe`` in ``1..m``, ascending (about
    ``2 * sqrt(m)`` of them, found in as many steps)."""
    k = math.isqrt(m) + 1
    counts = {ceil_div(m, pe) for pe in range(1, min(m, k) + 1)}
    # below ceil(m / k) a count v is reached iff by the smallest pe with m / pe <= v
    counts |= {v for v in range(1, ceil_div(m, k) + 1) if ceil_div(m, ceil_div(m, v)) == v}
    return sorted(counts)
