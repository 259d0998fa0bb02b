"""Gateware components against the integer reference, in the Amaranth simulator.

Random weights, thresholds and signs; widths that are not powers of two; SIMD not dividing
N and PE not dividing M; one-output layers; random valid gaps and ready backpressure.
"""

import numpy as np
import pytest

from hwgen.fold import ceil_div, raw_negatives, raw_pair_columns, tree_register_stages
from hwgen.gateware.argmax import Argmax
from hwgen.gateware.input import Binarize
from hwgen.gateware.mvtu import MVTU
from hwgen.gateware.repack import Repack
from hwgen.gateware.testing import StreamDriver, StreamMonitor, pack, run_mvtu, simulate
from hwgen.model import Dense
from hwgen.random_models import dense, random_model

# ----------------------------------------------------------------------------- repack


@pytest.mark.parametrize("n, c, s, e", [
    (7, 3, 2, 1), (7, 2, 3, 1), (10, 4, 4, 5), (9, 9, 4, 1), (9, 2, 9, 3), (13, 5, 3, 2),
    (1, 1, 1, 1), (6, 3, 6, 1),
])
def test_repack_regroups_vectors(n, c, s, e):
    rng = np.random.default_rng(n * 100 + c * 10 + s)
    vectors = rng.integers(0, 1 << e, size=(5, n))
    beats = []
    for vec in vectors:
        padded = list(vec) + list(rng.integers(0, 1 << e, ceil_div(n, c) * c - n))  # junk
        beats += [pack(padded[k * c:(k + 1) * c], e) for k in range(ceil_div(n, c))]
    expected = []
    for vec in vectors:
        padded = list(vec) + [0] * (ceil_div(n, s) * s - n)
        expected += [pack(padded[k * s:(k + 1) * s], e) for k in range(ceil_div(n, s))]
    dut = Repack(n, c, s, e)
    drv = StreamDriver(dut.i, beats, rng, valid_prob=0.7)
    mon = StreamMonitor(dut.o, len(expected), rng, ready_prob=0.6)
    simulate(dut, drv, mon)
    assert mon.payloads == expected


@pytest.mark.parametrize("n, c, s", [(7, 3, 2), (7, 2, 3), (12, 5, 4), (4, 4, 1), (8, 1, 3)])
def test_repack_has_no_bubbles(n, c, s):
    """Back to back, the slower side moves every cycle: V vectors take V * max(beats, words)
    cycles plus a constant start-up."""
    vectors = 12
    beats, words = ceil_div(n, c), ceil_div(n, s)
    dut = Repack(n, c, s)
    drv = StreamDriver(dut.i, [0] * beats * vectors)
    mon = StreamMonitor(dut.o, words * vectors)
    simulate(dut, drv, mon)
    span = mon.cycles[-1] - mon.cycles[words * 2 - 1]
    assert span == (vectors - 2) * max(beats, words)


def test_repack_rejects_bad_arguments():
    with pytest.raises(TypeError):
        Repack(4.0, 1, 1)
    with pytest.raises(ValueError):
        Repack(4, 0, 1)
    with pytest.raises(ValueError):
        Repack(4, 5, 1)


# ----------------------------------------------------------------------------- binarize


def test_binarize():
    rng = np.random.default_rng(3)
    lanes, bits, threshold = 3, 5, 17
    values = rng.integers(0, 32, size=(20, lanes))
    dut = Binarize(lanes, bits, threshold)
    drv = StreamDriver(dut.i, [pack(v, bits) for v in values], rng, 0.5)
    mon = StreamMonitor(dut.o, len(values), rng, 0.5)
    simulate(dut, drv, mon)
    assert mon.payloads == [pack(v >= threshold, 1) for v in values]
    with pytest.raises(ValueError):
        Binarize(2, 4, 17)


# ----------------------------------------------------------------------------- MVTU


def _layer(rng, n, m, raw_bits=None, output=False, extreme=False):
    """A random dense layer with ``n`` inputs and ``m`` outputs (hidden or output, binary
    or raw input), as random_models makes them (including clamped thresholds)."""
    binarize_at = None if raw_bits else 1
    bits = raw_bits or 8
    if output:
        if raw_bits:
            model = random_model(rng, (n, 1, 1), [], classes=m, bits=bits, binarize_at=None)
            return model.layers[0]
        model = random_model(rng, (3, 1, 1), [dense(n)], classes=m, binarize_at=1)
        return model.layers[1]
    model = random_model(rng, (n, 1, 1), [dense(m)], classes=2, bits=bits,
                         binarize_at=binarize_at)
    layer = model.layers[0]
    if extreme:  # thresholds far outside the accumulator range, as int64 allows
        big = np.where(rng.random(m) < 0.5, -(1 << 40), 1 << 40)
        pick = rng.random(m) < 0.3
        layer.threshold = np.where(pick, big, layer.threshold).astype(np.int64)
    return layer


def _expected(layer: Dense, xs: np.ndarray) -> np.ndarray:
    acc = xs.astype(np.int64) @ layer.weight.astype(np.int64).T
    if layer.is_output:
        bias = 0 if layer.bias is None else layer.bias.astype(np.int64)
        return acc + bias
    return (acc * layer.sign.astype(np.int64) >= layer.threshold.astype(np.int64)).astype(int)


MVTU_CASES = [
    # n, m, pe, simd, raw bits (None: binary input), output layer
    (13, 7, 3, 5, None, False),
    (16, 8, 4, 4, None, False),
    (11, 1, 1, 4, None, False),  # one output
    (9, 10, 10, 9, None, False),  # fully parallel
    (7, 5, 1, 1, None, False),  # fully folded
    (12, 6, 4, 5, 5, False),  # raw 5-bit
    (10, 3, 2, 3, 8, False),
    (6, 4, 3, 4, 3, False),
    (13, 7, 3, 5, None, True),
    (11, 1, 1, 3, None, True),
    (10, 5, 2, 4, 7, True),
    (9, 6, 4, 9, 6, True),
    (7, 5, 2, 1, 4, False),  # raw one wide: single terms, no pairs
    (8, 3, 3, 2, 8, True),  # raw, one pair per beat
    (11, 4, 2, 7, 1, False),  # raw 1-bit, three pairs and a single, padded
    (10, 6, 6, 2, 8, False),  # one neuron fold (preloaded accumulators), raw, one pair
    (7, 4, 4, 1, 4, False),  # one neuron fold, raw one wide
    (9, 5, 5, 3, None, False),  # one neuron fold, binary
    (12, 5, 5, 4, 3, False),  # one neuron fold, raw, two pairs
]
# every case buffered, and those with one neuron fold also streaming (a first layer's unit)
MVTU_RUNS = [c + (False,) for c in MVTU_CASES] + [
    c + (True,) for c in MVTU_CASES if -(-c[1] // c[2]) == 1]


@pytest.mark.parametrize("n, m, pe, simd, raw_bits, output, streaming", MVTU_RUNS)
def test_mvtu_matches_reference(n, m, pe, simd, raw_bits, output, streaming):
    rng = np.random.default_rng(n * 1000 + m * 10 + pe + simd)
    layer = _layer(rng, n, m, raw_bits, output)
    count = 6
    if raw_bits is None:
        xs = (rng.integers(0, 2, size=(count, n)) * 2 - 1)
    else:
        xs = rng.integers(0, 1 << raw_bits, size=(count, n))
        xs[0] = (1 << raw_bits) - 1  # extremes of the accumulator range
        xs[1] = np.where(layer.weight[0] > 0, 0, (1 << raw_bits) - 1)
    out, _, p = run_mvtu(layer, pe, simd, raw_bits, xs, rng, valid_prob=0.6, ready_prob=0.5,
                         streaming=streaming)
    assert p.streaming == streaming and p.preloaded == (p.nf == 1 and not output)
    np.testing.assert_array_equal(out, _expected(layer, xs))


@pytest.mark.parametrize("raw_bits, pe, simd", [(None, 3, 4), (4, 3, 4), (None, 8, 4),
                                                (4, 8, 3), (4, 8, 9)])
def test_mvtu_thresholds_far_out_of_range(raw_bits, pe, simd):
    """Thresholds of +-2^40 (clamped; PE 8: preloaded lanes, centred raw input when SIMD
    divides the 9 inputs)."""
    rng = np.random.default_rng(7)
    layer = _layer(rng, 9, 8, raw_bits, extreme=True)
    xs = (rng.integers(0, 2, size=(8, 9)) * 2 - 1) if raw_bits is None else \
        rng.integers(0, 16, size=(8, 9))
    out, _, _ = run_mvtu(layer, pe, simd, raw_bits, xs, rng)
    np.testing.assert_array_equal(out, _expected(layer, xs))


@pytest.mark.parametrize("raw_bits, simd, pe, streaming", [
    (None, 5, 4, False), (8, 5, 4, False), (8, 1, 4, False), (8, 2, 4, False),
    (None, 5, 9, False), (8, 2, 9, False), (None, 5, 9, True), (8, 2, 9, True),
    (8, 1, 9, True), (8, 5, 9, True)])
def test_mvtu_initiation_interval_and_latency(raw_bits, simd, pe, streaming):
    """Back to back, one image per NF*SF cycles; the first output beat arrives
    pipeline_latency cycles after its last synapse fold was issued (binary, raw in pairs,
    raw one wide; PE 9: one neuron fold, preloaded accumulators; streaming: no buffer)."""
    rng = np.random.default_rng(11)
    layer = _layer(rng, 14, 9, raw_bits)
    xs = (rng.integers(0, 2, size=(8, 14)) * 2 - 1 if raw_bits is None
          else rng.integers(0, 256, size=(8, 14)))
    out, mon, p = run_mvtu(layer, pe, simd, raw_bits, xs, rng, streaming=streaming)
    assert p.paired == (raw_bits is not None and simd > 1)
    assert p.preloaded == (pe == 9)
    np.testing.assert_array_equal(out, _expected(layer, xs))
    firsts = mon.cycles[::p.nf]
    assert all(b - a == p.cycles for a, b in zip(firsts[1:], firsts[2:]))
    # Input words at cycles 0..SF-1. Buffered: issue from SF, beat 0 done at SF + SF - 1.
    # Streaming: each word issued as it is taken, the last at SF - 1.
    last_issue = p.sf - 1 if streaming else p.sf + p.sf - 1
    assert mon.valid_cycles[0] == last_issue + p.pipeline_latency


def test_raw_terms_lead_with_even_positions_of_each_synapse_fold():
    assert raw_pair_columns(7, 1).tolist() == list(range(7))
    assert raw_pair_columns(11, 5).tolist() == [0, 2, 4, 5, 7, 9, 10]
    assert raw_pair_columns(8, 4).tolist() == [0, 2, 4, 6]
    weight = np.array([[-1, -1, 1, -1, -1], [1, -1, -1, 1, -1]], np.int8)
    layer = Dense(weight, np.zeros(2, np.int64), np.ones(2, np.int8))
    assert raw_negatives(layer).tolist() == [4, 3]
    assert raw_negatives(layer, 2).tolist() == [2, 2]   # columns 0, 2, 4
    assert raw_negatives(layer, 3).tolist() == [2, 1]   # columns 0, 2, 3


def test_mvtu_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    layer = _layer(rng, 5, 3)
    with pytest.raises(ValueError, match="streaming unit computes all 3 outputs"):
        MVTU(layer, 2, 2, streaming=True)
    with pytest.raises(TypeError, match="streaming must be True or False"):
        MVTU(layer, 3, 2, streaming=1)
    with pytest.raises(ValueError, match="PE 4 is wider"):
        MVTU(layer, 4, 2)
    with pytest.raises(ValueError, match="at least 1"):
        MVTU(layer, 1, 0)
    with pytest.raises(TypeError):
        MVTU("dense", 1, 1)
    with pytest.raises(TypeError):
        MVTU(layer, 1.5, 1)


@pytest.mark.parametrize("terms, stages", [(1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (16, 1),
                                           (17, 2), (64, 2), (65, 3)])
def test_tree_register_stages(terms, stages):
    assert tree_register_stages(terms) == stages


# ----------------------------------------------------------------------------- argmax


@pytest.mark.parametrize("compare_cycles", [1, 2])
@pytest.mark.parametrize("classes, lanes, width", [(10, 3, 5), (1, 1, 3), (7, 7, 4),
                                                   (5, 1, 6), (9, 4, 2)])
def test_argmax_ties_to_lowest(classes, lanes, width, compare_cycles):
    rng = np.random.default_rng(classes * 10 + lanes)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    count = 30
    scores = rng.integers(lo, hi + 1, size=(count, classes))
    scores[::3] = rng.integers(hi - 1, hi + 1, size=(len(scores[::3]), classes))  # ties
    scores[1] = lo
    scores[2] = hi
    beats = []
    for row in scores:
        padded = list(row) + list(rng.integers(lo, hi + 1, ceil_div(classes, lanes) * lanes -
                                               classes))  # junk in padding lanes
        beats += [pack(padded[k * lanes:(k + 1) * lanes], width)
                  for k in range(ceil_div(classes, lanes))]
    dut = Argmax(classes, lanes, width, compare_cycles)
    expected = [int(np.argmax(row)) for row in scores]
    for valid_prob, ready_prob in ((0.6, 0.4), (1.0, 1.0), (1.0, 0.3)):
        drv = StreamDriver(dut.i, beats, rng, valid_prob)
        mon = StreamMonitor(dut.o, count, rng, ready_prob)
        simulate(dut, drv, mon)
        assert mon.payloads == expected


def test_argmax_rejects_bad_arguments():
    with pytest.raises(ValueError):
        Argmax(3, 4, 5)
    with pytest.raises(ValueError):
        Argmax(0, 1, 5)
    with pytest.raises(ValueError):
        Argmax(3, 1, 5, compare_cycles=3)


def test_skid_buffer_passes_every_beat_in_order_with_registered_ready():
    from hwgen.gateware.repack import SkidBuffer
    from hwgen.gateware.testing import StreamDriver, StreamMonitor, simulate

    rng = np.random.default_rng(4)
    payloads = [int(v) for v in rng.integers(0, 256, 200)]
    for valid_prob, ready_prob in ((1.0, 1.0), (0.7, 0.5), (1.0, 0.3)):
        dut = SkidBuffer(8)
        driver = StreamDriver(dut.i, payloads, rng, valid_prob)
        monitor = StreamMonitor(dut.o, len(payloads), rng, ready_prob)
        simulate(dut, driver, monitor)
        assert monitor.payloads == payloads
        if valid_prob == ready_prob == 1.0:  # full throughput: one beat per cycle
            assert set(np.diff(monitor.cycles)) == {1}
