"""``--fold fastest``: the search against exhaustive enumeration, and where it is offered."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from hwgen.fold import Budget, Fold, default_fold, has_fold, plan, resolve_fold, up5k_budget
from hwgen.fold_search import fastest_fold, layer_options
from hwgen.random_models import conv, dense, pool, random_model

ROOT = Path(__file__).resolve().parent.parent


def _every_fold(model, index):
    layer = model.layers[index]
    if not has_fold(layer):
        return [None]
    return [Fold(pe, simd) for pe in range(1, layer.out_channels + 1)
            for simd in range(1, layer.fan_in + 1)]


def _every_net(model):
    """(cycles per image, LUTs, block RAMs) of every fold of ``model``."""
    combos = itertools.product(*(_every_fold(model, i) for i in range(len(model.layers))))
    return [(net.cycles_per_image, net.luts, net.brams)
            for net in (plan(model, list(combo)) for combo in combos)]


SMALL_MODELS = [
    ((1, 4, 4), [dense(5)], 3, 128),
    ((1, 4, 4), [dense(7)], 4, None),
    ((2, 3, 3), [conv(2, 2), dense(3)], 2, 128),
    ((1, 4, 4), [dense(4), dense(3)], 2, None),
    ((1, 5, 5), [conv(2, 2), pool(2), dense(3)], 3, 100),
]


@pytest.mark.parametrize("index", range(len(SMALL_MODELS)))
def test_fastest_fold_matches_exhaustive_search(index):
    """On small models (every fold tried, ``M * N`` within the search's all-folds limit) the
    search's fold fits and no fold that fits is faster, at budgets from tight to loose."""
    shape, layers, classes, binarize_at = SMALL_MODELS[index]
    model = random_model(np.random.default_rng(index), shape, layers, classes=classes,
                         binarize_at=binarize_at)
    assert all(len(layer_options(model, i)) == len(_every_fold(model, i))
               for i in range(len(model.layers)))
    every = _every_net(model)
    found_any = False
    for luts in (250, 350, 450, 600, 900):
        budget = Budget(luts=luts, brams=2)
        fitting = [cycles for cycles, used, brams in every if used <= luts and brams <= 2]
        net = plan(model, fastest_fold(model, budget))
        if not fitting:
            continue
        found_any = True
        assert net.luts <= luts and net.brams <= 2
        assert net.cycles_per_image == min(fitting)
    assert found_any


def test_fastest_fold_with_spram_matches_exhaustive_search():
    """With SPRAM blocks in the budget every fold is also tried with its weights in SPRAM
    (a design with any pays the weight loader once): the search's fold fits LUTs, block
    RAMs and SPRAM blocks, and no fold that fits, SPRAM or not, is faster."""
    from hwgen.fold import FoldError

    model = random_model(np.random.default_rng(3), (1, 4, 4), [dense(4), dense(3)],
                         classes=2)
    assert all(len(layer_options(model, i, spram=True)) == 2 * len(_every_fold(model, i))
               for i in range(len(model.layers)))
    choices = [_every_fold(model, i) + [Fold(f.pe, f.simd, True) for f in _every_fold(model, i)]
               for i in range(len(model.layers))]
    every = []
    for combo in itertools.product(*choices):
        try:
            net = plan(model, list(combo), spram_limit=2)
        except FoldError:  # more SPRAM blocks than the two
            continue
        every.append(net)
    for luts, brams, loader_luts in itertools.product((100, 150, 300, 600), (0, 1), (0, 40)):
        budget = Budget(luts=luts, brams=brams, spram_blocks=2, weight_loader_luts=loader_luts)

        def fits(net):
            loader = loader_luts if net.spram_blocks else 0
            return net.luts + loader <= luts and net.brams <= brams and net.spram_blocks <= 2

        fitting = [net.cycles_per_image for net in every if fits(net)]
        folds = fastest_fold(model, budget)
        if not fitting:
            continue
        net = plan(model, folds, spram_limit=2)
        assert fits(net), (luts, brams, folds)
        assert net.cycles_per_image == min(fitting), (luts, brams, folds)


def test_fastest_fold_moves_weights_to_spram_when_block_rams_bind():
    """The shipped MLP: its first layer's weights take most of the block RAMs at the
    fastest folds, so with SPRAM the search goes faster than without."""
    from dataclasses import replace

    from hwgen import model as model_io

    model = model_io.load(ROOT / "models" / "fmnist-mlp-up5k.npz")
    budget = up5k_budget()
    with_spram = plan(model, fastest_fold(model, budget))
    without = plan(model, fastest_fold(model, replace(budget, spram_blocks=0)))
    assert with_spram.spram_blocks > 0 and without.spram_blocks == 0
    assert with_spram.cycles_per_image < without.cycles_per_image
    assert with_spram.brams <= budget.brams
    assert with_spram.luts + budget.weight_loader_luts <= budget.luts


def test_fastest_is_never_slower_than_the_default_fold():
    rng = np.random.default_rng(7)
    model = random_model(rng, (1, 12, 12), [conv(8, 3, pad_value=0), pool(2), conv(16, 3),
                                                 dense(20)], classes=10, binarize_at=None)
    for luts in (1500, 3000, 6000):
        budget = Budget(luts=luts, brams=30)
        default = plan(model, default_fold(model, budget))
        fastest = plan(model, fastest_fold(model, budget))
        assert fastest.luts <= luts and fastest.brams <= 30
        assert fastest.cycles_per_image <= default.cycles_per_image


def test_resolve_fold_words():
    model = random_model(np.random.default_rng(1), (1, 4, 4), [dense(6)], classes=3)
    assert resolve_fold(None, model) is None and resolve_fold("auto", model) is None
    assert resolve_fold("fastest", model) == fastest_fold(model, up5k_budget())
    assert resolve_fold("2x4,1x2", model) == [Fold(2, 4), Fold(1, 2)]


def test_default_budget_is_the_icebreakers():
    """``hwgen sim/verilog --fold fastest`` reproduces ``build --board icebreaker --fold
    fastest``: the planner's default budget is the board's."""
    from boards.commands import _budget
    from boards.targets import get_board

    from hwgen.model import InputSpec

    board = _budget(get_board("icebreaker"), InputSpec((1, 28, 28), 8, None), 48, 3_000_000)
    default = Budget()
    for field in ("luts", "brams", "bram_port_bits", "bram_blocks"):
        assert getattr(board, field) == getattr(default, field), field
    fastest = up5k_budget()  # what --fold fastest searches without a board: SPRAM too
    for field in ("luts", "brams", "bram_port_bits", "bram_blocks", "spram_blocks",
                  "weight_loader_luts"):
        assert getattr(board, field) == getattr(fastest, field), field


def test_fastest_candidates_for_a_build_get_slower_in_turn():
    from boards.commands import fold_candidates
    from boards.targets import get_board

    model, nets, _ = fold_candidates(ROOT / "models" / "fmnist-mlp-up5k.npz",
                                     get_board("icebreaker"), "fastest", None)
    cycles = [net.cycles_per_image for net in nets]
    assert len(nets) >= 2 and cycles == sorted(set(cycles))
    assert nets[0].folds == fastest_fold(model, _icebreaker_budget(model))
    default = fold_candidates(ROOT / "models" / "fmnist-mlp-up5k.npz",
                              get_board("icebreaker"), None, None)[1]
    assert len(default) == 1 and default[0].cycles_per_image > cycles[0]


def _icebreaker_budget(model):
    from boards.commands import _budget
    from boards.targets import get_board

    return _budget(get_board("icebreaker"), model.input, 48, 3_000_000)


def test_info_prints_the_read_port_bound(capsys):
    from hwgen.cli import main

    assert main(["info", str(ROOT / "models" / "fmnist-mlp-up5k.npz"), "--fold",
                 "fastest"]) == 0
    out = capsys.readouterr().out
    bound = [line for line in out.splitlines() if line.startswith("bound")]
    ii_line = next(line for line in out.splitlines() if line.startswith("II"))
    found = re.search(r"(\d+) SPRAM blocks", ii_line)
    sprams = int(found.group(1)) if found else 0
    # 89400 weight bits per image through 30 block RAMs (and the fold's SPRAMs) of 16 bits
    cycles = -(-89400 // (16 * (30 + sprams)))
    assert len(bound) == 1 and bound[0].startswith(f"bound  {cycles} cycles per image")
    ii = int(ii_line.split()[1])
    assert f"reaches {cycles / ii:.1%}" in bound[0]


def test_info_of_a_fold_beyond_the_block_rams_gives_no_fraction(capsys):
    from hwgen.cli import main

    # 512x784 + 512x512 weights: the cheapest fold needs more than the UP5K's 30 block RAMs
    assert main(["info", str(ROOT / "models" / "fmnist-mlp-best.npz"), "--fold",
                 "8x8,8x8,1x2"]) == 0
    out = capsys.readouterr().out
    bound = next(line for line in out.splitlines() if line.startswith("bound"))
    brams = int(next(line for line in out.splitlines() if line.startswith("II"))
                .split(";")[2].split()[0])
    assert brams > 30
    assert bound.endswith(f"; this fold needs {brams} block RAMs, more than the 30 of the "
                          f"budget")


def test_default_fold_of_a_layer_too_wide_for_a_shallow_rom():
    """At the slowest target every fold of a 262144-input layer has a ROM deeper than
    DEFAULT_MAX_ROM_DEPTH: the default fold still starts from one (it found none and
    recursed until RecursionError) and bisects to a faster fold with a shallow ROM."""
    from hwgen.fold import plan
    from hwgen.fold.default import DEFAULT_MAX_ROM_DEPTH
    from hwgen.random_models import random_model

    model = random_model(np.random.default_rng(0), (1, 512, 512), [], classes=2,
                         binarize_at=128)
    net = plan(model)
    (lp,) = net.layers
    assert lp.n == 512 * 512 and lp.nf * lp.sf <= DEFAULT_MAX_ROM_DEPTH


# ----------------------------------------------------------------------------- bounded work


def test_fold_counts_and_divisors_match_brute_force():
    from hwgen.fold.default import _fold_counts
    from hwgen.fold.geometry import _divisors, ceil_div

    for m in range(1, 1200):
        assert _fold_counts(m) == sorted({ceil_div(m, pe) for pe in range(1, m + 1)}), m
        assert list(_divisors(m)) == [d for d in range(1, m + 1) if m % d == 0], m
    assert len(_fold_counts(1 << 24)) == 8191


def test_a_layer_is_counted_once_per_search(monkeypatch):
    """The signs of a raw-input layer are counted once, not once per fold tried (a 2**26-
    weight layer took minutes in the default and fastest searches)."""
    import hwgen.fold.channel_constants as constants

    model = random_model(np.random.default_rng(171), (1, 12, 12), [dense(40), dense(20)],
                         classes=4, binarize_at=None)
    counted = []
    real = constants.accumulator_range
    monkeypatch.setattr(constants, "accumulator_range",
                        lambda layer, *args: counted.append(id(layer)) or real(layer, *args))
    default_fold(model)
    fastest_fold(model)
    assert counted == [id(model.layers[0])]


def test_fastest_stops_at_once_when_nothing_fits(monkeypatch):
    import hwgen.fold_search as search

    model = random_model(np.random.default_rng(172), (1, 12, 12), [dense(40)], classes=4,
                         binarize_at=None)
    calls = []
    real = search._Search.solve
    monkeypatch.setattr(search._Search, "solve",
                        lambda self, t, exact: calls.append((t, exact)) or real(self, t, exact))
    tiny = Budget(luts=10, brams=0)
    assert fastest_fold(model, tiny) == default_fold(model, tiny)
    assert len(calls) == 1 and calls[0][1] is False


def test_a_fold_faster_than_the_port_bound_gives_no_fraction(tmp_path, capsys):
    """Fuzz round 25: many small dense layers keep their weights in logic, so the fold beats
    the block-RAM bound (info printed 'this fold reaches 846.9% of it'), and far more LUTs
    than the budget went unmentioned."""
    from hwgen import model as model_io
    from hwgen.cli import main
    from hwgen.random_models import dense, random_model

    model = random_model(np.random.default_rng(4), (1, 1, 32), [dense(32)] * 200, classes=2)
    model_io.save(model, tmp_path / "m.npz")
    assert main(["info", str(tmp_path / "m.npz"), "--fold", "auto"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bound = next(line for line in lines if line.startswith("bound"))
    ii = next(line for line in lines if line.startswith("II"))
    assert int(bound.split()[1]) > int(ii.split()[1])
    assert bound.endswith("this fold is faster: it keeps weights in logic too, not only in "
                          "block RAM")
    assert "more than the 4002 of the budget: it will not fit the device" in ii
