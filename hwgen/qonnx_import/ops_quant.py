"""Quantizers for :class:`~.convert.Converter`: a layer's exact map closes into integer
thresholds (:mod:`hwgen.threshold_rule`); the input quantizer and input binarization."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..model import Conv2d, Dense, MaxPool2d
from ..threshold_rule import exact, float_tie, threshold_rule
from .ops_arith import check_computed_size
from .graph import ImportError_
from .values import (MAX_INPUT_BITS, Accum, Binary, Const, InputMapping, Pixels, channel_count,
                     describe, pooled_shape, scalar_value)


class QuantizerOps:
    """BipolarQuant, MultiThreshold, Quant (and ReLU, refused): where layers close."""

    def op_BipolarQuant(self, node):
        value = self.take(node, 0)
        scale_const = self.take(node, 1, Const)
        if isinstance(value, Const):  # weights: the scale may differ per channel
            check_computed_size(self, node, "BipolarQuant", value.array, scale_const.array)
            signs = np.where(value.array >= 0, 1, -1)
            try:  # +-1 times a float32 scale is exact in float32: no separate ideal value
                array = signs.astype(np.float32) * scale_const.array.astype(np.float32)
            except ValueError:
                self.fail(node, "the scale does not broadcast to the tensor")
            return Const(array)
        self._check_keeps_shape(node, value, scale_const)
        scale = scalar_value(scale_const)
        if scale is None or scale == 0:
            self.fail(node, "needs one nonzero scale for the whole tensor")
        return self._binarize(node, value, Fraction(0), scale)

    def op_MultiThreshold(self, node):
        value = self.take(node, 0, (Pixels, Accum))
        thresholds = self.take(node, 1, Const)
        if node.attrs.get("data_layout", "NCHW") not in ("NCHW", "NC"):
            self.fail(node, "only the NCHW / NC data layout is supported")
        if thresholds.array.ndim != 2 or thresholds.array.shape[1] != 1:
            self.fail(node, f"has {thresholds.array.shape[-1]} thresholds per channel: "
                            f"multi-bit activations; one threshold (binary) is supported")
        for name in ("out_scale", "out_bias"):   # qonnx reads them as FLOAT attributes
            if not isinstance(node.attrs.get(name, 0.0), float):
                self.fail(node, f"attribute {name} is not a FLOAT attribute (QONNX would read "
                                f"another value than it declares)")
        out_scale = exact(node.attrs.get("out_scale", 1.0))
        out_bias = exact(node.attrs.get("out_bias", 0.0))
        if out_bias == 0 or out_scale != -2 * out_bias:
            self.fail(node, f"outputs {{{float(out_bias)}, {float(out_bias + out_scale)}}}, "
                            f"not a bipolar pair {{-s, +s}} (use out_scale=2, out_bias=-1)")
        shape = value.shape
        per = [t[0] for t in thresholds.fractions().tolist()]
        per = per * channel_count(shape) if len(per) == 1 else per
        if len(per) != channel_count(shape):
            self.fail(node, f"has {len(per)} thresholds for {channel_count(shape)} channels")
        return self._binarize(node, value, per, -out_bias)

    def _binarize(self, node, value, threshold, scale) -> Binary:
        """+scale where ``value >= threshold`` (one or one per channel), else -scale."""
        shape = value.shape
        per = threshold if isinstance(threshold, list) else [threshold] * channel_count(shape)
        if isinstance(value, Binary):
            if any(t != 0 for t in per) or value.scale < 0:
                self.fail(node, "re-binarizes binary activations with a threshold or a "
                                "negative scale")
            return Binary(shape, scale)
        if isinstance(value, Pixels):
            return self._binarize_input(node, value, per, scale)
        layer = value.layer
        if layer not in self.open_layers:
            self.fail(node, "quantizes a tensor that is not a layer's output")
        if value.pools and scale < 0:
            self.fail(node, "a max-pool before a quantizer with a negative scale is a "
                            "min-pool of the binary values, which the format cannot hold")
        self.open_layers.discard(layer)
        q = [x - t for x, t in zip(value.q, per)]
        rules = []
        for channel, (p1, p0, qq, v, (lo, hi)) in enumerate(
                zip(value.p1, value.p0, q, value.v, layer.ranges())):
            rules.append(threshold_rule(p1, p0, qq, v, lo, hi))
            acc = float_tie(p1, p0, qq, v, rules[-1], lo, hi)
            if acc is not None:
                self.float_ties.append(f"{node.describe()} channel {channel} at accumulator "
                                       f"{acc}")
        sign = np.array([r[0] for r in rules], dtype=np.int8)
        thr = np.array([r[1] for r in rules], dtype=np.int64)
        if layer.weight.ndim == 2:
            self.layers.append(Dense(weight=layer.weight, threshold=thr, sign=sign))
        else:
            self.layers.append(Conv2d(weight=layer.weight, threshold=thr, sign=sign,
                                      stride=layer.stride, padding=layer.padding,
                                      pad_value=layer.pad_value))
        for kernel, stride in value.pools:
            self.layers.append(MaxPool2d(kernel, stride))
        return Binary(pooled_shape(shape, value.pools), scale)

    def _binarize_input(self, node, value, per, scale) -> Binary:
        if self.layers or self.open_layers or self.binarize_at is not None:
            self.fail(node, "binarizes the raw input after a layer")
        cuts = set()
        for b, t in zip(value.channel_b(len(per)), per):
            if value.a <= 0:
                self.fail(node, "binarizes the input with a non-positive scale; only 'x >= "
                                "c' input binarization is supported")
            cuts.add(math.ceil((t - b) / value.a))
        if len(cuts) != 1:
            self.fail(node, "binarizes input channels at different levels; the format has "
                            "one binarize_at")
        top = (1 << self.input_bits)
        self.binarize_at = min(max(cuts.pop(), 0), top)
        return Binary(value.shape, scale)

    def op_Quant(self, node):
        value = self.take(node, 0)
        scale, zero, bits = (self.take(node, i, Const) for i in (1, 2, 3))
        for name in ("signed", "narrow"):   # qonnx reads them as INT attributes, as flags
            if not isinstance(node.attrs.get(name, 0), int):
                self.fail(node, f"attribute {name} is not an INT attribute (QONNX would read "
                                f"another value than it declares)")
        signed = 1 if node.attrs.get("signed", 1) else 0
        narrow = 1 if node.attrs.get("narrow", 0) else 0   # any nonzero value: narrow range
        b = scalar_value(bits)
        if b is None or b.denominator != 1 or not 1 <= b <= 64:
            self.fail(node, "needs one whole bit width")
        b = int(b)
        qmin = -(1 << (b - 1)) + narrow if signed else 0
        qmax = (1 << (b - 1)) - 1 if signed else (1 << b) - 1 - narrow
        if isinstance(value, Const):
            check_computed_size(self, node, "Quant", value.array, scale.array, zero.array)
            return quant_constant(node, value, scale, zero, qmin, qmax, bipolar=b == 1 and
                                bool(signed))
        self._check_keeps_shape(node, value, scale, zero, bits)
        if b == 1 and signed:  # qonnx runs a 1-bit signed Quant as bipolar (sign at 0)
            return self._bipolar_quant(node, value, scale, zero)
        if not isinstance(value, Pixels):
            self.fail(node, f"a {b}-bit Quant on {describe(value)}: only 1-bit (bipolar) "
                            f"activations, and an input quantizer on the graph's input, are "
                            f"supported")
        if value.quantized or value.a != self.mapping.scale or any(x != 0 for x in value.b):
            self.fail(node, "an input quantizer after arithmetic on the image (such as "
                            "2x - 1): the model's input integers must be the quantizer's, so "
                            "it must take the graph's input directly")
        if self.input_bits_given:
            self.fail(node, "--input-bits is for graphs without an input quantizer; this "
                            "graph's quantizer defines the input's bits")
        if self.input_scale is not None:
            self.fail(node, "--input-scale is for graphs without an input quantizer; this "
                            "graph's quantizer defines the input integers")
        s, z = scalar_value(scale), scalar_value(zero)
        if s is None or s <= 0 or z is None or z.denominator != 1:
            self.fail(node, "the input quantizer needs one positive scale and one integer "
                            "zero point")
        if narrow or b > MAX_INPUT_BITS:
            self.fail(node, f"input quantizer: {'narrow range' if narrow else f'{b} bits'} "
                            f"is not supported (unsigned or signed, up to "
                            f"{MAX_INPUT_BITS} bits, full range)")
        self.input_bits = b
        # the model's input integer p is the quantizer's integer q - qmin
        self.mapping = InputMapping(scale=s, shift=Fraction(qmin) - z)
        return Pixels(value.shape, s, (s * (qmin - z),), quantized=True)

    def _check_keeps_shape(self, node, value, *parameters: Const) -> None:
        """Refuse a quantizer parameter that would broadcast the tensor to a larger one
        (a [K, 1, 1] zero point of equal values reads as one value here, but QONNX's
        execution grows [B, N] to [K, B, N]: 4.9 GB for K = 2048)."""
        shape = tuple(value.shape)
        for parameter in parameters:
            theirs = tuple(np.shape(parameter.array))
            try:
                grown = tuple(np.broadcast_shapes(shape, theirs))
            except (ValueError, RuntimeError):  # RuntimeError: over NumPy's 32 dimensions
                grown = None
            if grown != shape:
                shown = str(list(theirs)) if len(theirs) <= 8 else f"of {len(theirs)} dimensions"
                self.fail(node, f"a parameter of shape {shown} does not fit the tensor's "
                                f"shape {list(shape)} (it would broadcast it)")

    def _bipolar_quant(self, node, value, scale: Const, zero: Const) -> Binary:
        """qonnx's 1-bit signed Quant: ``s * (+1 if x / s + z >= 0 else -1) - z * s``."""
        s, z = scalar_value(scale), scalar_value(zero)
        if s is None or s == 0 or z != 0:
            self.fail(node, "a 1-bit Quant needs one nonzero scale and a zero point of 0 "
                            "(else its two levels are not +-s)")
        if s < 0:  # x / s >= 0 <=> -x >= 0
            value = self._scale(node, value, [Fraction(-1)] * channel_count(value.shape))
        return self._binarize(node, value, Fraction(0), s)

    def op_Relu(self, node):
        self.fail(node, "a ReLU (e.g. QuantReLU) gives unsigned or multi-bit activations; only "
                        "bipolar +-1 activations (BipolarQuant, a 1-bit signed Quant, or a "
                        "bipolar MultiThreshold) are supported")



def quant_constant(node, value: Const, scale: Const, zero: Const, qmin: int, qmax: int,
                 bipolar: bool = False) -> Const:
    """qonnx's Quant on a constant: ``q = clip(round(x / s + z))`` (``bipolar``, a 1-bit
    signed Quant: ``q = +1 if x / s + z >= 0 else -1``); ideal value ``(q - z) * s``
    exactly (the stored value is its float32 rounding)."""
    x = np.asarray(value.array, dtype=np.float32)
    s = np.asarray(scale.array, dtype=np.float32)
    z = np.asarray(zero.array, dtype=np.float32)
    from qonnx.custom_op.general.intquant import resolve_rounding_mode  # the same rounding

    mode = str(node.attrs.get("rounding_mode", "ROUND"))
    try:
        rounder = resolve_rounding_mode(mode)
    except Exception:  # qonnx raises a bare ValueError for unknown modes
        raise ImportError_(f"{node.describe()}: rounding mode {mode!r} is unknown") from None
    with np.errstate(all="ignore"):
        q = np.where(x / s + z >= 0, 1.0, -1.0).astype(np.float32) if bipolar else \
            np.clip(rounder(x / s + z), qmin, qmax)
    if not np.all(np.isfinite(q)):
        raise ImportError_(f"{node.describe()}: the quantized constant is not finite")
    shape = np.broadcast_shapes(x.shape, s.shape, z.shape)
    q = np.broadcast_to(q, shape)
    # one exact value per distinct (q, z, s): a few hundred for a whole weight tensor, where
    # one Fraction per element took 2.2 GB and minutes for a 2**21-value constant
    triples = np.stack([np.broadcast_to(a, shape).reshape(-1).astype(np.float64)
                        for a in (q, z, s)], axis=1)
    distinct, inverse = np.unique(triples, axis=0, return_inverse=True)
    if len(distinct) > MAX_DISTINCT_EXACT:
        raise ImportError_(f"{node.describe()}: the quantized constant has {len(distinct)} "
                           f"distinct levels and scales, more than the {MAX_DISTINCT_EXACT} "
                           f"the importer makes exact")
    levels = np.empty(len(distinct), dtype=object)
    levels[:] = [(exact(a) - exact(b)) * exact(c) for a, b, c in distinct.tolist()]
    ideal = levels[inverse.reshape(-1)].reshape(shape)
    array = ((q - z) * s).astype(np.float32)
    return Const(np.broadcast_to(array, shape).copy(), ideal)


#: Distinct exact values one quantized constant may have (a per-element scale could make
#: one Fraction per value, about 130 bytes each).
MAX_DISTINCT_EXACT = 1 << 18
