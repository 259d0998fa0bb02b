"""Sliding-window (conv2d front end) and max-pool units against the integer reference.

Amaranth simulator; random maps with odd sizes, channel counts that are not powers of two,
stride 2, padding with +1, -1 and raw pad values, overlapping and non-overlapping pools,
several images back to back, random valid gaps and ready backpressure; SlidingWindow ->
MVTU chains whose outputs equal the reference conv2d layer, and whole conv -> pool -> dense
chains (the integration recipe of docs/conv-hardware.md) whose scores equal the reference.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from hwgen.fold import ceil_div
from hwgen.gateware.maxpool import MaxPool
from hwgen.gateware.mvtu import MVTU
from hwgen.gateware.repack import Repack
from hwgen.gateware.testing import StreamDriver, StreamMonitor, pack, simulate, unpack
from hwgen.gateware.window import (SlidingWindow, WindowTaps, conv_dense_view,
                                   conv_weight_matrix, hwc_dense_matrix, window_vectors)
from hwgen.model import Conv2d, Dense, MaxPool2d
from hwgen.random_models import conv, pool, random_model
from hwgen.reference import Reference, conv_patches, maxpool


def position_beats(images, bits: int, word: int | None = None) -> list[int]:
    """``images [K, C, H, W]`` of unsigned fields as beats of ``word`` channels (default
    all: one beat per position), positions row-major, a position's channels in order."""
    images = np.asarray(images)
    k, c, h, w = images.shape
    word = c if word is None else word
    return [pack(images[i, g:g + word, y, x], bits) for i in range(k) for y in range(h)
            for x in range(w) for g in range(0, c, word)]


def chunk_beats(vectors, simd: int, bits: int) -> list[int]:
    """Each row of ``vectors`` as ``ceil(N / simd)`` beats, the last zero-padded."""
    beats = []
    for vec in np.asarray(vectors):
        vec = [int(v) for v in vec]
        count = ceil_div(len(vec), simd)
        vec += [0] * (count * simd - len(vec))
        beats += [pack(vec[j * simd:(j + 1) * simd], bits) for j in range(count)]
    return beats


def reference_windows(x, kernel, stride, padding, pad_value) -> np.ndarray:
    """The reference's im2col rows (C, KH, KW order) permuted to the hardware's (KH, KW, C)."""
    c = x.shape[1]
    dummy = np.ones((1, c) + tuple(kernel), dtype=np.int8)
    layer = Conv2d(dummy, np.zeros(1, np.int32), np.ones(1, np.int8), tuple(stride),
                   tuple(padding), pad_value)
    rows, _ = conv_patches(x, layer)
    kh, kw = kernel
    return rows.reshape(-1, c, kh, kw).transpose(0, 2, 3, 1).reshape(rows.shape[0], -1)


class Chain(wiring.Component):
    """Units connected in series (each one's ``o`` to the next one's ``i``)."""

    def __init__(self, *units):
        self.units = units
        super().__init__({"i": wiring.In(units[0].i.signature.flip()),
                          "o": wiring.Out(units[-1].o.signature)})

    def elaborate(self, platform):
        m = Module()
        for k, unit in enumerate(self.units):
            m.submodules[f"u{k}"] = unit
        wiring.connect(m, wiring.flipped(self.i), self.units[0].i)
        for a, b in zip(self.units, self.units[1:]):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, self.units[-1].o, wiring.flipped(self.o))
        return m


def run_window(dut, images, bits, rng, valid_prob=0.7, ready_prob=0.6):
    ho, wo = dut.out_shape
    expected_count = len(images) * ho * wo * dut.beats_per_window
    drv = StreamDriver(dut.i, position_beats(images, bits), rng, valid_prob)
    mon = StreamMonitor(dut.o, expected_count, rng, ready_prob)
    simulate(dut, drv, mon)
    return drv, mon


# ----------------------------------------------------------------------------- window order


def test_weight_matrix_matches_reference_dot_products():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(2, 3, 5, 6)) * 2 - 1
    weight = (rng.integers(0, 2, size=(4, 3, 2, 3)) * 2 - 1).astype(np.int8)
    layer = Conv2d(weight, np.zeros(4, np.int32), np.ones(4, np.int8), (2, 1), (1, 2), 1)
    rows, _ = conv_patches(x, layer)
    expected = rows @ weight.reshape(4, -1).T
    windows = window_vectors(x, (2, 3), (2, 1), (1, 2), 1)
    assert np.array_equal(windows @ conv_weight_matrix(weight).T, expected)
    assert np.array_equal(windows, reference_windows(x, (2, 3), (2, 1), (1, 2), 1))


# ----------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("c, h, w, kernel, stride, padding, pad_value, simd", [
    (3, 5, 7, (3, 3), (1, 1), (1, 1), -1, None),   # whole window per beat
    (5, 7, 5, (3, 3), (2, 2), (1, 1), 1, 4),       # stride 2, +1 padding, SIMD < C
    (3, 6, 5, (2, 3), (2, 1), (0, 2), -1, 7),      # 2x3 kernel, SIMD not dividing N
    (6, 3, 4, (1, 1), (1, 1), (0, 0), 1, 6),       # 1x1: the taps are the positions
    (2, 4, 3, (3, 3), (1, 2), (2, 1), 1, 3),       # padding wider than half the kernel
    (1, 1, 1, (1, 1), (1, 1), (0, 0), -1, None),   # a single position
])
def test_sliding_window_binary(c, h, w, kernel, stride, padding, pad_value, simd):
    rng = np.random.default_rng(c * 1000 + h * 100 + w * 10 + kernel[1])
    x = (rng.integers(0, 2, size=(3, c, h, w)) * 2 - 1).astype(np.int8)
    dut = SlidingWindow(c, h, w, kernel, stride, padding, pad_value, simd=simd)
    _, mon = run_window(dut, (x > 0).astype(np.int64), 1, rng)
    windows = reference_windows(x, kernel, stride, padding, pad_value)
    assert mon.payloads == chunk_beats(windows > 0, dut.simd, 1)


@pytest.mark.parametrize("c, h, w, kernel, stride, padding, bits, pad_value, simd", [
    (1, 5, 6, (3, 3), (1, 1), (1, 1), 8, 0, 9),     # a first layer on raw grey pixels
    (3, 5, 5, (3, 2), (2, 2), (1, 0), 4, 9, 4),     # 3 channels, pad value 9
])
def test_sliding_window_raw(c, h, w, kernel, stride, padding, bits, pad_value, simd):
    rng = np.random.default_rng(bits * 10 + c)
    x = rng.integers(0, 1 << bits, size=(2, c, h, w))
    dut = SlidingWindow(c, h, w, kernel, stride, padding, pad_value, element_bits=bits,
                        simd=simd)
    _, mon = run_window(dut, x, bits, rng)
    windows = reference_windows(x, kernel, stride, padding, pad_value)
    assert mon.payloads == chunk_beats(windows, simd, bits)


@pytest.mark.parametrize("c, h, w, kernel, stride, padding, simd", [
    (3, 5, 7, (3, 3), (1, 1), (1, 1), 3),
    (4, 7, 7, (3, 3), (2, 2), (1, 1), 4),
    (3, 6, 6, (1, 1), (2, 2), (0, 0), 3),   # input-bound: most positions are skipped
    (2, 5, 5, (3, 3), (1, 1), (1, 1), 6),   # chunks of 3 whole taps
    (1, 6, 5, (3, 3), (1, 1), (1, 1), 9),   # a whole 1-channel window per beat
    (3, 5, 4, (2, 2), (1, 1), (0, 0), 5),   # SIMD not a multiple of C (Repack)
    (3, 5, 4, (2, 2), (1, 1), (0, 0), 2),   # SIMD < C: the chunks are the bottleneck
])
def test_sliding_window_throughput(c, h, w, kernel, stride, padding, simd):
    """No gaps, no backpressure: within each output row the windows follow each other every
    :attr:`SlidingWindow.cycles_per_window` cycles, and the interval between images stays
    within :attr:`SlidingWindow.cycles_per_image`."""
    images = 4
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2, size=(images, c, h, w))
    dut = SlidingWindow(c, h, w, kernel, stride, padding, 1, simd=simd)
    _, mon = run_window(dut, x, 1, None)
    ho, wo = dut.out_shape
    cycles = np.array(mon.cycles).reshape(images * ho, wo, dut.beats_per_window)
    if wo > 1:
        assert np.all(np.diff(cycles[:, :, 0], axis=1) == dut.cycles_per_window)
    if dut.simd < dut.channels:  # the chunks are the bottleneck: bursts
        assert np.all(np.diff(cycles, axis=2) == 1)
    starts = cycles[::ho, 0, 0]
    intervals = np.diff(starts)
    assert np.all(intervals <= dut.cycles_per_image)
    assert np.all(intervals >= ho * wo * dut.cycles_per_window)


@pytest.mark.parametrize("cin, h, w, k, stride, padding, pad_value, pe, simd", [
    (3, 5, 6, 3, 2, 1, 1, 2, 5),
    (2, 4, 5, 2, 1, 1, -1, 3, 8),
])
def test_sliding_window_feeds_mvtu(cin, h, w, k, stride, padding, pad_value, pe, simd):
    """SlidingWindow -> MVTU over conv_weight_matrix equals the reference conv2d layer."""
    rng = np.random.default_rng(cin * 10 + k)
    model = random_model(rng, (cin, h, w),
                         [conv(5, k, stride=stride, padding=padding, pad_value=pad_value)],
                         classes=3, binarize_at=100)
    layer = model.layers[0]
    images = rng.integers(0, 256, size=(2, cin, h, w))
    x = np.where(images >= 100, 1, -1).astype(np.int8)
    ref = Reference(model).forward(images, trace=True)[1][0].output  # [K, Cout, Ho, Wo]

    window = SlidingWindow(cin, h, w, k, stride, padding, pad_value, simd=simd)
    mvtu = MVTU(conv_dense_view(layer), pe, simd)
    dut = Chain(window, mvtu)
    ho, wo = window.out_shape
    nf = ceil_div(5, pe)
    drv = StreamDriver(dut.i, position_beats((x > 0).astype(np.int64), 1), rng, 0.8)
    mon = StreamMonitor(dut.o, len(images) * ho * wo * nf, rng, 0.7)
    simulate(dut, drv, mon)
    got = []
    for j in range(0, len(mon.payloads), nf):
        bits = sum((unpack(p, 1, pe) for p in mon.payloads[j:j + nf]), [])[:5]
        got.append(bits)
    got = np.array(got).reshape(len(images), ho, wo, 5).transpose(0, 3, 1, 2)
    assert np.array_equal(got * 2 - 1, ref)


def test_hwc_dense_matrix_matches_reference_flatten():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(3, 4, 3, 5)) * 2 - 1  # [K, C, H, W]
    weight = rng.integers(0, 2, size=(6, 60)) * 2 - 1
    stream_order = x.transpose(0, 2, 3, 1).reshape(3, -1)  # positions, then channels
    assert np.array_equal(stream_order @ hwc_dense_matrix(weight, (4, 3, 5)).T,
                          x.reshape(3, -1) @ weight.T)
    assert np.array_equal(hwc_dense_matrix(weight, (60, 1, 1)), weight)


@pytest.mark.parametrize("shape, layers, binarize_at, folds", [
    # binary input: conv stride 2 with +1 padding, 2x2 pool, output dense
    ((2, 7, 6), [conv(3, 3, stride=2, padding=1, pad_value=1), pool(2)], 100,
     [(2, 5), (2, 4)]),
    # raw 4-bit input: conv with pad value 5, overlapping 3x3/2 pool, output dense
    ((1, 7, 7), [conv(4, (2, 3), stride=1, padding=(1, 0), pad_value=5), pool(3, 2)], None,
     [(3, 3), (2, 7)]),
])
def test_conv_pool_dense_chain_matches_reference(shape, layers, binarize_at, folds):
    """The integration recipe of docs/conv-hardware.md: window -> MVTU -> repack -> pool ->
    repack -> output MVTU over the HWC-permuted dense weight; scores equal the reference."""
    rng = np.random.default_rng(len(layers) + shape[0])
    bits = 8 if binarize_at is not None else 4
    model = random_model(rng, shape, layers, classes=3, bits=bits, binarize_at=binarize_at)
    cv, pl, out = model.layers
    cin, h, w = shape
    images = rng.integers(0, 1 << bits, size=(3,) + shape)
    scores = Reference(model).run(images)
    if binarize_at is None:
        ebits, x, pad = bits, images, cv.pad_value
    else:
        ebits, x, pad = None, (images >= binarize_at).astype(np.int64), cv.pad_value
    (pe0, s0), (pe1, s1) = folds
    window = SlidingWindow(cin, h, w, cv.kernel, cv.stride, cv.padding, pad,
                           element_bits=ebits, simd=s0)
    cout = cv.out_channels
    ho, wo = window.out_shape
    pool_unit = MaxPool(cout, ho, wo, pl.kernel, pl.stride)
    hp, wp = pool_unit.out_shape
    dense = Dense(hwc_dense_matrix(out.weight, (cout, hp, wp)), bias=out.bias)
    head = MVTU(dense, pe1, s1)
    dut = Chain(window, MVTU(conv_dense_view(cv), pe0, s0, ebits), Repack(cout, pe0, cout),
                pool_unit, Repack(cout * hp * wp, cout, s1), head)
    nf = ceil_div(3, pe1)
    drv = StreamDriver(dut.i, position_beats(x, ebits or 1), rng, 0.8)
    mon = StreamMonitor(dut.o, len(images) * nf, rng, 0.7)
    simulate(dut, drv, mon)
    width = head.plan.score_width
    got = [sum((unpack(p, width, pe1, signed=True) for p in mon.payloads[j:j + nf]), [])[:3]
           for j in range(0, len(mon.payloads), nf)]
    assert np.array_equal(np.array(got), scores)


# ----------------------------------------------------------------------------- max-pool


@pytest.mark.parametrize("c, h, w, kernel, stride", [
    (3, 7, 9, (3, 3), (2, 2)),   # overlapping windows
    (5, 6, 7, (2, 2), (2, 2)),   # non-overlapping, odd width leaves a column
    (2, 5, 6, (2, 3), (1, 2)),
    (6, 4, 4, (1, 1), (3, 2)),   # positions skipped
    (4, 6, 1, (1, 1), (1, 1)),   # one-wide rows: a row released at every tap (stalls)
])
def test_maxpool(c, h, w, kernel, stride):
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    x = (rng.integers(0, 2, size=(3, c, h, w)) * 2 - 1).astype(np.int8)
    x[rng.random(x.shape) < 0.3] = -1  # more -1 so that windows of all -1 occur
    dut = MaxPool(c, h, w, kernel, stride)
    expected = maxpool(x, MaxPool2d(kernel, stride))
    assert expected.shape[2:] == dut.out_shape
    drv = StreamDriver(dut.i, position_beats((x > 0).astype(np.int64), 1), rng, 0.7)
    mon = StreamMonitor(dut.o, expected.size // c, rng, 0.6)
    simulate(dut, drv, mon)
    assert mon.payloads == position_beats((expected > 0).astype(np.int64), 1)


@pytest.mark.parametrize("c, word, h, w, kernel, stride", [
    (6, 2, 5, 7, (2, 2), (2, 2)),   # 3 words per position, odd width
    (6, 3, 7, 6, (3, 3), (2, 2)),   # overlapping windows
    (4, 1, 4, 5, (2, 3), (1, 2)),   # one channel per word
    (8, 4, 6, 1, (1, 1), (1, 1)),   # one-wide rows
])
def test_maxpool_words(c, word, h, w, kernel, stride):
    """A pool reading ``C / word`` beats per position equals the reference, with gaps and
    backpressure, and emits the same beats form."""
    rng = np.random.default_rng(c * 1000 + word * 100 + h * 10 + w)
    x = (rng.integers(0, 2, size=(3, c, h, w)) * 2 - 1).astype(np.int8)
    x[rng.random(x.shape) < 0.3] = -1
    dut = MaxPool(c, h, w, kernel, stride, word=word)
    expected = maxpool(x, MaxPool2d(kernel, stride))
    assert expected.shape[2:] == dut.out_shape
    drv = StreamDriver(dut.i, position_beats((x > 0).astype(np.int64), 1, word), rng, 0.7)
    mon = StreamMonitor(dut.o, expected.size // word, rng, 0.6)
    simulate(dut, drv, mon)
    assert mon.payloads == position_beats((expected > 0).astype(np.int64), 1, word)


def test_maxpool_throughput():
    c, h, w, images = 3, 6, 6, 4
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, size=(images, c, h, w))
    dut = MaxPool(c, h, w, 2)
    drv = StreamDriver(dut.i, position_beats(x, 1))
    mon = StreamMonitor(dut.o, images * 9)
    simulate(dut, drv, mon)
    starts = np.array(mon.cycles[::9])
    assert np.all(np.diff(starts) <= dut.cycles_per_image)
    assert np.all(np.diff(np.array(mon.cycles).reshape(images, 9), axis=1) >= 4)
    # the input never waits for more than the rows of one window
    assert drv.cycles[-1] - drv.cycles[0] <= images * dut.cycles_per_image


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("make, error", [
    (lambda: SlidingWindow(0, 4, 4, 3), ValueError),
    (lambda: SlidingWindow(2, 4, 4, 5), ValueError),           # kernel larger than the map
    (lambda: SlidingWindow(2, 4, 4, 3, pad_value=0), ValueError),
    (lambda: SlidingWindow(2, 4, 4, 3, pad_value=16, element_bits=4), ValueError),
    (lambda: SlidingWindow(2, 4, 4, 3, simd=19), ValueError),
    (lambda: SlidingWindow(2, 4, 4, 3, stride=0), ValueError),
    (lambda: SlidingWindow(2, 4, 4, 3, padding=-1), ValueError),
    (lambda: SlidingWindow(2, 4, 4, "3"), TypeError),
    (lambda: SlidingWindow(2.0, 4, 4, 3), TypeError),
    (lambda: SlidingWindow(2, 4, 4, (3, 3, 3)), TypeError),
    (lambda: WindowTaps(2, 4, 4, 3, pad_word=4), ValueError),
    (lambda: MaxPool(2, 4, 4, 5), ValueError),
    (lambda: MaxPool(6, 4, 4, 2, word=4), ValueError),         # word does not divide C
    (lambda: MaxPool(6, 4, 4, 2, word=0), ValueError),
    (lambda: MaxPool(2, 4, 4, 2, stride=True), TypeError),
])
def test_bad_arguments(make, error):
    with pytest.raises(error):
        make()
