"""How feature maps travel between the hardware units, and the weight orders that follow.

Pure NumPy (no Amaranth), shared by :mod:`hwgen.fold`, the gateware and the tests.

Between units a feature map ``[C, H, W]`` is a sequence of positions in row-major (H, W)
order, every channel of a position together ((H, W, C) order). The model format flattens
(C, H, W) and the reference builds conv windows in (C, KH, KW) order, so the generator
permutes weights instead of data: :func:`conv_weight_matrix` (a conv layer's weights in the
window order (KH, KW, C) of :class:`~hwgen.gateware.window.SlidingWindow`) and
:func:`hwc_dense_matrix` (a dense layer after a feature map). Dot products are unchanged,
only the order of their terms.
"""

from __future__ import annotations

import numpy as np

from .model import Conv2d, Dense

__all__ = ["pair", "grouped_window", "conv_weight_matrix", "conv_dense_view", "hwc_dense_matrix",
           "window_vectors", "hwc_images", "in_stream_order", "weight_rows", "pack_weights"]


def pair(name: str, value, minimum: int) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, each at least ``minimum``) as a pair; TypeError or
    ValueError naming ``name`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be an integer or a pair of integers, not {value!r}")
    for v in value:
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name} must be an integer, not {v!r}")
        if v < minimum:
            raise ValueError(f"{name} must be at least {minimum}, not {v}")
    return int(value[0]), int(value[1])


def grouped_window(width: int, kernel, stride, padding, groups: int) -> dict:
    """A window over a ``[C, H, W]`` map whose positions arrive as ``groups`` beats of ``C /
    groups`` channels, as a window over the ``[C / groups, H, W * groups]`` map: ``width``,
    ``kernel``, ``stride`` and ``padding`` with their widths times ``groups``. It has the
    same output positions and padding, and its taps ``(ky, kx * groups + g)`` list each
    window in the same (KH, KW, C) order."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return {"width": width * groups, "kernel": (kh, kw * groups),
            "stride": (sh, sw * groups), "padding": (ph, pw * groups)}


def conv_weight_matrix(weight) -> np.ndarray:
    """The ``[Cout, KH*KW*Cin]`` matrix of a conv weight ``[Cout, Cin, KH, KW]`` whose
    columns follow the window order of :class:`SlidingWindow` (KH, KW, C): column
    ``(ky*KW + kx)*Cin + c`` is ``weight[:, c, ky, kx]``."""
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D [Cout, Cin, KH, KW], not shape {weight.shape}")
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1))


def conv_dense_view(layer: Conv2d) -> Dense:
    """The dense layer an :class:`~hwgen.gateware.mvtu.MVTU` computes for each window of
    ``layer``: weight :func:`conv_weight_matrix`, the same thresholds and signs. Its fan-in
    ``N = Cin*KH*KW`` and accumulator range equal the convolution's (padded taps count,
    as in the reference), so :func:`~hwgen.fold.dense_plan` and the comparators apply as is."""
    if not isinstance(layer, Conv2d):
        raise TypeError(f"layer must be a Conv2d layer, not {type(layer).__name__}")
    return Dense(conv_weight_matrix(layer.weight), layer.threshold, layer.sign)


def hwc_dense_matrix(weight, shape) -> np.ndarray:
    """A dense weight ``[M, C*H*W]`` over a (C, H, W)-flattened input (the model's order)
    permuted to the order the stream delivers a ``[C, H, W]`` map in: positions row-major,
    channels within a position, i.e. column ``(y*W + x)*C + c`` is ``weight[:, (c*H + y)*W
    + x]``. The identity for a ``[N, 1, 1]`` (dense) input."""
    weight = np.asarray(weight)
    c, h, w = (int(v) for v in shape)
    if weight.ndim != 2 or weight.shape[1] != c * h * w:
        raise ValueError(f"weight of shape {weight.shape} does not flatten a {c}x{h}x{w} map")
    m = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(m, c, h, w).transpose(0, 2, 3, 1).reshape(m, -1))


def window_vectors(x, kernel, stride=1, padding=0, pad_value=-1) -> np.ndarray:
    """Software model of :class:`SlidingWindow`: ``x [K, C, H, W]`` (any integers) to the
    window vectors ``[K*Ho*Wo, KH*KW*C]`` in (KH, KW, C) order, output positions row-major."""
    x = np.asarray(x)
    (kh, kw), (sh, sw), (ph, pw) = (pair("kernel", kernel, 1), pair("stride", stride, 1),
                                    pair("padding", padding, 0))
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    k, c, ho, wo = win.shape[:4]
    # [K, C, Ho, Wo, KH, KW] -> [K, Ho, Wo, KH, KW, C]
    return win.transpose(0, 2, 3, 4, 5, 1).reshape(k * ho * wo, kh * kw * c)


def hwc_images(images) -> np.ndarray:
    """``images [K, C, H, W]`` in the (H, W, C) stream order: ``[K, H, W, C]``."""
    return np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1))


def in_stream_order(images, order: str) -> np.ndarray:
    """``images`` with each image's values in a core's input ``order``
    (``NetworkPlan.input_order``): ``"CHW"`` as they are (any ``[K, ...]``), ``"HWC"``
    :func:`hwc_images` of ``[K, C, H, W]``. ValueError for any other order."""
    if order == "HWC":
        return hwc_images(images)
    if order != "CHW":
        raise ValueError(f"order must be 'CHW' or 'HWC', not {order!r}")
    return np.asarray(images)


def weight_rows(weight, pe: int, simd: int) -> np.ndarray:
    """The weight ROM of a +-1 ``weight [M, N]`` folded ``pe x simd`` as bits: ``uint8
    [NF*SF, PE*SIMD]``, row ``nf * SF + sf`` the word at that address, column ``p*SIMD + i``
    its bit for output channel ``nf*PE + p`` and input ``sf*SIMD + i`` (1 for +1, 0 for
    -1). Padding inputs (``>= N``) hold 1; a padded channel (``>= M``) repeats channel 0's
    weights, so its sum stays inside the accumulator range."""
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D [M, N], not shape {weight.shape}")
    m, n = weight.shape
    nf, sf = -(-m // pe), -(-n // simd)
    bits = np.ones((nf * pe, sf * simd), dtype=np.uint8)
    bits[:m, :n] = weight > 0
    bits[m:, :n] = bits[0, :n]  # padded channels copy channel 0: their sums stay in range
    # [nf, pe, sf, simd] -> [nf, sf, pe, simd]: one row of pe*simd bits per address.
    return bits.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(nf * sf, pe * simd)


def pack_weights(weight, pe: int, simd: int) -> list[int]:
    """The ROM words (integers, bit ``k`` column ``k``) of :func:`weight_rows`."""
    return [int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")
            for row in weight_rows(weight, pe, simd)]
