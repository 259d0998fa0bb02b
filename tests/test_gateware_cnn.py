"""Whole convolutional networks (conv2d, maxpool2d, dense) in the Amaranth simulator.

Every case compares all scores of every image with the integer reference, under random input
gaps and output backpressure, and the steady-state interval and latency with the plan. The
models' thresholds are calibrated on the test images (``calibrate_thresholds``), so that
activations are not constant and a wrong unit changes the scores. Plus folds with pools,
interface order, the fold table and the default fold of an iCE40UP5K-sized CNN.
"""

import json

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.errors import UserError
from hwgen.fold import Budget, Fold, default_fold, format_fold_table, parse_fold, plan
from hwgen.gateware.testing import simulate_network
from hwgen.random_models import (calibrate_thresholds, conv, dense, pool, random_images,
                                 random_model)
from hwgen.reference import Reference

# name: (input shape, layers, bits, binarize_at, folds or None for the default, lanes)
CNNS = {
    # raw 8-bit pixels, odd sizes, window SIMD a multiple of the one channel
    "raw-1ch-odd": ((1, 9, 7), [conv(4, 3, 1, 1, pad_value=0), pool(2), dense(6)], 8, None,
                    None, None),
    # raw 3-channel input (HWC order), stride 2, raw pad value; SIMD 7 on 3 channels and 4
    # on 5 channels (repack inside the window unit); a 2x2 kernel without padding
    "raw-3ch-stride2": ((3, 7, 6), [conv(5, 3, 2, 1, pad_value=3), conv(6, 2, 1, 0), dense(7)],
                        4, None, [Fold(2, 7), Fold(4, 4), Fold(3, 5), Fold(2, 3)], 2),
    # binarized input, two conv/pool stacks, +1 and -1 padding, PE/SIMD dividing nothing
    "binarized-two-stacks": ((2, 8, 8), [conv(5, 3, 1, 1), pool(2),
                                         conv(7, 3, 1, 1, pad_value=1), pool(2), dense(6)],
                             4, 7, [Fold(2, 4), None, Fold(3, 7), None, Fold(4, 5), Fold(2, 3)],
                             None),
    # overlapping 3x3/2 pool, a dense layer, then a 1x1 conv on its [5, 1, 1] map
    "overlapping-pool-conv-after-dense": ((3, 11, 9), [conv(6, 3, 2, 1, pad_value=3),
                                                       pool(3, 2), dense(5), conv(4, 1, 1, 0)],
                                          4, None, None, None),
    # padding 2 (wider than needed), stride (1, 2), a whole-window SIMD and full PE
    "binarized-pad2-wide": ((1, 6, 9), [conv(3, 3, (1, 2), 2, pad_value=1), pool((2, 1)),
                                        dense(5)],
                            8, 100, [Fold(3, 9), None, Fold(5, 18), Fold(1, 5)], 3),
    # a max-pool straight on the binarized 2-channel input (HWC order), then a conv
    "binarized-pool-first": ((2, 6, 7), [pool(2), conv(3, 3, 1, 1), dense(4)], 8, 210, None,
                             None),
    # SIMD smaller than the channels (a divisor and a non-divisor), default fold elsewhere
    "simd-below-channels": ((1, 10, 10), [conv(8, 3, 1, 1), pool(2), conv(6, 3, 1, 0), dense(4)],
                            8, 60, [Fold(4, 9), None, Fold(2, 4), Fold(2, 6), Fold(3, 2)], None),
}


def _case(name, images=6):
    shape, layers, bits, binarize_at, folds, lanes = CNNS[name]
    rng = np.random.default_rng(sorted(CNNS).index(name))
    model = random_model(rng, shape, layers, classes=5, bits=bits, binarize_at=binarize_at)
    x = random_images(rng, model.input, images)
    model = calibrate_thresholds(model, x)
    return rng, model, plan(model, folds, lanes), x


@pytest.mark.parametrize("name", sorted(CNNS))
def test_cnn_scores_match_reference_under_gaps_and_backpressure(name):
    rng, model, net, images = _case(name)
    want = Reference(model).run(images)
    assert len({tuple(row) for row in want}) > 1, "degenerate case: scores do not vary"
    got, _, _ = simulate_network(net, images, rng, valid_prob=0.7, ready_prob=0.5, scores=True)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", sorted(CNNS))
def test_cnn_steady_state_and_latency(name):
    """Back-to-back images leave every ``cycles_per_image`` cycles; the first one within the
    latency bound."""
    _, model, net, images = _case(name, images=6)
    predictions, driver, monitor = simulate_network(net, images)
    np.testing.assert_array_equal(predictions, Reference(model).predict(images))
    first = monitor.valid_cycles[0] - driver.cycles[0]
    assert 0 < first <= net.latency_cycles
    steady = np.diff(monitor.cycles[2:])
    assert set(steady) == {net.cycles_per_image}


def test_small_map_interval_is_only_a_lower_bound(capsys):
    """A 5x5 kernel over a 5x5 map: the next image's rows can only be stored once the last
    window has been read, so images leave further apart than the layers' cycles; the plan
    says its interval is a lower bound, and the reports say "at least"."""
    rng = np.random.default_rng(5)
    model = random_model(rng, (2, 5, 5), [conv(3, 5, 1, 0, pad_value=7)], classes=3,
                         binarize_at=None)
    images = random_images(rng, model.input, 6)
    net = plan(model, [Fold(3, 1), Fold(3, 1)])
    predictions, _, monitor = simulate_network(net, images)
    np.testing.assert_array_equal(predictions, Reference(model).predict(images))
    steady = np.diff(monitor.cycles[2:])
    assert net.interval_is_bound and steady.min() > net.cycles_per_image
    assert f"II     at least {net.cycles_per_image} cycles per image" in format_fold_table(net)
    dense_net = plan(random_model(rng, (1, 4, 4), [dense(6)], classes=3), None)
    assert not dense_net.interval_is_bound
    assert f"II     {dense_net.cycles_per_image} cycles" in format_fold_table(dense_net)


def _narrowest_words(net):
    """``net`` with every window and pool reading one channel per beat (``word`` 1)."""
    from dataclasses import replace

    from hwgen.fold import PoolPlan

    layers = []
    for lp in net.layers:
        if isinstance(lp, PoolPlan):
            lp = replace(lp, word=1)
        elif lp.window is not None:
            lp = lp.with_window_word(1)
        layers.append(lp)
    return replace(net, layers=layers)


@pytest.mark.parametrize("name", ["binarized-two-stacks", "raw-3ch-stride2",
                                  "overlapping-pool-conv-after-dense", "binarized-pool-first"])
def test_cnn_with_one_channel_words(name):
    """Every line buffer one channel wide (``G = C`` beats per position): the same scores,
    under gaps and backpressure; the streams between units repacked to match."""
    rng, model, net, images = _case(name)
    net = _narrowest_words(net)
    assert any(r.s == 1 for before in net.repacks()[1:] for r in before) or name.startswith(
        "raw"), "no unit read single-channel beats"
    got, _, _ = simulate_network(net, images, rng, valid_prob=0.7, ready_prob=0.5, scores=True)
    np.testing.assert_array_equal(got, Reference(model).run(images))


def test_narrow_line_buffers_save_block_ram():
    """A 32-channel 14x14 map's 3x3 window needs 2 block RAMs with whole positions per word,
    1 with words of 8 (as deep as a block), without slowing the layer; the pool likewise."""
    from hwgen.fold import PoolPlan, narrowest_buffers

    rng = np.random.default_rng(0)
    model = random_model(rng, (1, 28, 28), [conv(32, 3, 1, 1, pad_value=0), pool(2),
                                            conv(32, 3, 1, 1), pool(2)],
                         classes=10, bits=8, binarize_at=None)
    net = plan(model, [Fold(1, 1), None, Fold(1, 8), None, Fold(1, 2)])
    conv2, pool1 = net.layers[2], net.layers[1]
    assert conv2.window.word < 32 and conv2.window.brams == 1
    whole = conv2.with_window_word(32)
    assert whole.window.brams == 2 and conv2.cycles == whole.cycles
    assert isinstance(pool1, PoolPlan) and pool1.word < 32 and pool1.brams == 1
    assert pool1.cycles <= net.cycles_per_image
    # nothing narrower is taken when it would slow the network down
    assert narrowest_buffers(whole, whole.cycles - 1).window.word == 32


def test_dense_after_conv_uses_stream_order():
    """The dense layer after a feature map must see it in the stream's (H, W, C) order: a
    model whose dense weights were not permuted gives other scores (so the test above would
    catch a missing permutation)."""
    from hwgen.fold import unit_layer

    _, model, net, _ = _case("binarized-two-stacks")
    index = 4
    assert not np.array_equal(unit_layer(model, index).weight, model.layers[index].weight)
    assert unit_layer(model, 0) is not model.layers[0]  # conv: window order
    _, dense_model, _, _ = _case("raw-1ch-odd")
    assert unit_layer(dense_model, 3) is dense_model.layers[3]  # after a 1x1 map: unchanged


# ----------------------------------------------------------------------------- folds


def test_parse_fold_with_pools():
    _, model, _, _ = _case("binarized-two-stacks")
    full = parse_fold("2x4,-,3x7,-,4x5,2x3", model)
    assert full == [Fold(2, 4), None, Fold(3, 7), None, Fold(4, 5), Fold(2, 3)]
    assert parse_fold("2x4,3x7,4x5,2x3", model) == full
    assert parse_fold("[[2, 4], null, [3, 7], null, [4, 5], [2, 3]]", model) == full
    assert plan(model, full).folds == full


@pytest.mark.parametrize("text, message", [
    ("2x4,1x1,3x7,-,4x5,2x3", "layer 1 (maxpool2d): has no fold (give '-' or leave it out)"),
    ("-,-,3x7,-,4x5,2x3", "layer 0 (conv2d): needs a fold PExSIMD, got '-'"),
    ("2x4,3x7,4x5", "--fold gives 3 layer folds but the model has 6 layers (4 without its "
                    "2 max-pool layers)"),
    ("6x4,3x7,4x5,2x3", "layer 0 (conv2d): PE 6 is wider than its 5 output channels"),
    ("2x19,3x7,4x5,2x3", "layer 0 (conv2d): SIMD 19 is wider than its 18 inputs"),
])
def test_bad_cnn_folds(text, message):
    _, model, _, _ = _case("binarized-two-stacks")
    with pytest.raises(UserError) as info:
        parse_fold(text, model)
    assert str(info.value) == message


def test_default_fold_of_an_up5k_cnn_fits_the_budget():
    """A Fashion-MNIST-sized CNN (raw 28x28 pixels, three conv/pool stacks): the default
    fold stays within the iCE40UP5K budget and balances the layers."""
    rng = np.random.default_rng(3)
    model = random_model(rng, (1, 28, 28), [conv(16, 3, 1, 1, pad_value=0), pool(2),
                                            conv(32, 3, 1, 1), pool(2), conv(64, 3, 1, 1),
                                            pool(2)], classes=10, binarize_at=None)
    budget = Budget()
    net = plan(model, None)
    assert net.luts <= budget.luts and net.brams <= budget.brams
    slowest = plan(model, [Fold(1, 1) if f else None for f in net.folds])
    assert net.cycles_per_image < slowest.cycles_per_image / 10
    table = format_fold_table(net)
    assert "maxpool2d" in table and "28x28 positions" in table and "14x14 positions" in table


def test_interface_order_and_fold_table(tmp_path, capsys):
    _, model, net, _ = _case("raw-3ch-stride2")
    assert net.input_order == "HWC"
    path = tmp_path / "cnn.npz"
    model_io.save(model, path)
    assert main(["info", str(path), "--fold", "2x7,4x4,3x5,2x3"]) == 0
    out = capsys.readouterr().out
    assert "conv2d" in out and "in HWC order" in out and "latency at most" in out
    assert main(["verilog", str(path), "-o", str(tmp_path / "v"), "--fold", "2x7,4x4,3x5,2x3",
                 "--lanes", "2"]) == 0
    iface = json.loads((tmp_path / "v" / "interface.json").read_text())
    assert iface["input"]["order"] == "HWC" and iface["input"]["shape"] == [3, 7, 6]
    assert iface["cycles_per_image"] == net.cycles_per_image
    _, dense_first, _, _ = _case("raw-1ch-odd")
    assert plan(dense_first).input_order == "CHW"  # one channel: both orders agree
