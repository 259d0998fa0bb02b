"""The fastest fold that fits a budget: ``--fold fastest``.

:func:`fastest_fold` searches per-layer folds for the smallest initiation interval whose
whole-network estimate (:class:`~hwgen.fold.NetworkPlan`: layers, the repacks between them,
the argmax) fits a :class:`~hwgen.fold.Budget`'s LUTs and block RAMs, and, when the budget
has SPRAM blocks, their number: every layer then also tries each of its folds with the
weights in SPRAM (``PExSIMDs``), and a design with any pays the board's weight loader
(``budget.weight_loader_luts``). Unlike
:func:`~hwgen.fold.default_fold`, which sizes each layer alone, it charges the repacks a
pair of neighbouring folds needs, so folds whose widths match win when they pay off.

For a target interval ``T`` it runs a dynamic program over the layer chain: the state is
the last layer's option (its fold and, for a line-buffer unit, the buffer word
:func:`~hwgen.fold.narrowest_buffers` picks at ``T``) and whether some layer takes exactly
``T`` cycles; each state keeps the Pareto front of (LUTs, block RAMs). With that flag the
input lanes and buffer words are exactly those :func:`~hwgen.fold.plan` picks for the
result, so a fold the search accepts is one ``plan`` fits. Layers of at most
:data:`ALL_FOLDS_LIMIT` weights try every ``PExSIMD``; larger ones the cheapest ``SIMD`` for
each neuron-fold count and a few wider ones (see :func:`layer_options`). ``T`` is scanned upwards
from the smallest any layer allows (after a bisection when there are many candidates).
"""

from __future__ import annotations

from dataclasses import replace

from .fold import (DEFAULT_MAX_ROM_DEPTH, Budget, Fold, _fold_counts, argmax_luts, ceil_div,
                   check_supported, default_fold, default_lanes, has_fold, layer_plan,
                   narrowest_buffers, plan, repacks_before, stream_after)
from .model import Conv2d, Model

__all__ = ["ALL_FOLDS_LIMIT", "BISECT_ABOVE", "fastest_fold", "layer_options"]

#: Layers with at most this many weights (``M * N``) try every fold.
ALL_FOLDS_LIMIT = 256
#: With more candidate intervals than this, a bisection on the relaxed test (some layer at
#: most ``T``) narrows the exact upward scan to start this many/2 below its answer.
BISECT_ABOVE = 256


def layer_options(model: Model, index: int, spram: bool = False) -> list[Fold | None]:
    """The folds the search tries for layer ``index`` (``[None]`` for a max-pool); with
    ``spram`` each also with its weights in SPRAM."""
    folds = _rom_options(model, index)
    if spram and folds != [None]:
        folds = folds + [replace(f, spram=True) for f in folds]
    return folds


def _rom_options(model: Model, index: int) -> list[Fold | None]:
    layer = model.layers[index]
    if not has_fold(layer):
        return [None]
    m, n = layer.out_channels, layer.fan_in
    if m * n <= ALL_FOLDS_LIMIT:
        return [Fold(pe, simd) for pe in range(1, m + 1) for simd in range(1, n + 1)]
    c = model.shapes()[index][0]
    channels = c if isinstance(layer, Conv2d) or model.shapes()[index][1:] != (1, 1) else None
    folds = set()
    for nf in _fold_counts(m):
        pe = ceil_div(m, nf)
        for sf in _fold_counts(n):
            simd = ceil_div(n, sf)
            simds = {simd, min(n, 2 * simd)}
            if channels is not None:
                simds |= {min(n, ceil_div(simd, channels) * channels)}
                simds |= {d for d in (simd, simd + 1) if d <= channels and channels % d == 0}
            folds |= {Fold(pe, s) for s in simds
                      if nf * ceil_div(n, s) <= DEFAULT_MAX_ROM_DEPTH}
    return sorted(folds, key=lambda f: (f.pe, f.simd))


def fastest_fold(model: Model, budget: Budget | None = None) -> list[Fold | None]:
    """The folds (one per layer, None for a max-pool) of the smallest initiation interval
    whose estimate fits ``budget`` (``min_interval`` ignored). When nothing fits:
    :func:`~hwgen.fold.default_fold`'s answer (the cheapest design, whose estimate the
    caller then refuses), found after one search at the slowest interval. Intervals slower
    than a default fold that fits are not scanned: that fold is the answer then."""
    check_supported(model)
    budget = budget or Budget()
    search = _Search(model, budget)
    targets = search.targets()
    fallback = default_fold(model, replace(budget, min_interval=1))
    if search.solve(targets[-1], exact=False) is None:  # nothing of the search's fits
        return fallback
    fallback_net = plan(model, fallback)
    if _fits(fallback_net, budget):  # no slower design than the default fold is worth it
        targets = [t for t in targets if t <= fallback_net.cycles_per_image] or targets[:1]
    lo = 0
    if len(targets) > BISECT_ABOVE:  # narrow the scan on the relaxed, nearly monotone test
        lo, hi = 0, len(targets) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if search.solve(targets[mid], exact=False) is not None:
                hi = mid
            else:
                lo = mid + 1
        lo = max(0, lo - BISECT_ABOVE // 2)
    for t in targets[lo:]:
        folds = search.solve(t, exact=True)
        if folds is not None and _fits(plan(model, folds), budget):
            return folds
    return fallback


def _fits(net, budget: Budget) -> bool:
    loader = budget.weight_loader_luts if net.spram_blocks else 0
    return (net.luts + loader <= budget.luts and net.brams <= budget.brams
            and net.spram_blocks <= budget.spram_blocks)


class _Search:
    def __init__(self, model: Model, budget: Budget):
        self.model, self.budget = model, budget
        self.shapes = model.shapes()
        self.binary = model.binary_inputs()
        self.options = [layer_options(model, i, budget.spram_blocks > 0)
                        for i in range(len(model.layers))]
        self.plans = {}  # (index, fold) -> plan before buffer choice

    def _plan(self, index: int, fold):
        key = (index, fold)
        if key not in self.plans:
            self.plans[key] = layer_plan(self.model, index, fold)
        return self.plans[key]

    def targets(self) -> list[int]:
        """Every interval the slowest layer can take, ascending."""
        values = set()
        for i, folds in enumerate(self.options):
            values |= {self._plan(i, f).cycles for f in folds}
        floor = max(min(self._plan(i, f).cycles for f in folds)
                    for i, folds in enumerate(self.options))
        return sorted(v for v in values if v >= floor)

    def solve(self, t: int, exact: bool):
        """Folds whose slowest layer takes ``t`` cycles (``exact``) or at most ``t`` whose
        estimate fits, or None."""
        budget = self.budget
        # states: (kind, width) -> list of (luts, brams, sprams, folds, hit) on the Pareto
        # front of (luts, brams, sprams) for each hit
        states = None
        for i, folds in enumerate(self.options):
            units = []
            for fold in folds:
                lp = self._plan(i, fold)
                if lp.cycles > t:
                    continue
                unit = narrowest_buffers(lp, t)
                units.append((fold, unit, lp.cycles == t))
            if not units:
                return None
            nxt = {}
            ebits = 1 if self.binary[i] else self.model.input.bits
            for fold, unit, hit in units:
                after = stream_after(unit, self.shapes[i])
                sources = ([(("input", default_lanes(self.model, unit, t)),
                             [(0, 0, 0, (), False)])] if states is None else states.items())
                blocks = getattr(unit, "spram_blocks", 0)
                for (kind, width), entries in sources:
                    repack = sum(r.luts for r in repacks_before(i, unit, self.shapes[i],
                                                                 ebits, kind, width))
                    for luts, brams, sprams, chosen, was_hit in entries:
                        # the weight loader is paid once, with the first SPRAM layer
                        loader = budget.weight_loader_luts if blocks and not sprams else 0
                        total = (luts + unit.luts + repack + loader, brams + unit.brams,
                                 sprams + blocks)
                        if i == len(self.options) - 1:
                            total = (total[0] + argmax_luts(unit), *total[1:])
                        if (total[0] > budget.luts or total[1] > budget.brams
                                or total[2] > budget.spram_blocks):
                            continue
                        _add(nxt, (after, hit or was_hit), (*total, chosen + (fold,)))
            states = {}
            for (after, hit), entries in nxt.items():
                states.setdefault(after, []).extend(
                    (luts, brams, sprams, chosen, hit) for luts, brams, sprams, chosen in entries)
            if not states:
                return None
        for entries in states.values():
            for luts, brams, sprams, chosen, hit in entries:
                if hit or not exact:
                    return list(chosen)
        return None


def _add(states: dict, key, entry) -> None:
    """Add ``entry`` (luts, brams, sprams, folds) to the Pareto front ``states[key]``."""
    front = states.setdefault(key, [])
    cost = entry[:3]
    if any(all(a <= b for a, b in zip(e[:3], cost)) for e in front):
        return
    front[:] = [e for e in front if not all(a <= b for a, b in zip(cost, e[:3]))] + [entry]
