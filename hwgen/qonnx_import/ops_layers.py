"""Binary-weight layers for :class:`~.convert.Converter`: +-s weights, the exact affine map
from each channel's integer accumulator, batch norm and max-pooling."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..model import MaxPool2d, channel_ranges
from ..threshold_rule import exact
from .graph import Node
from .values import (Accum, Binary, Const, Pixels, channel_count, channel_values,
                     check_pool_order, derive, describe, pooled_shape)


#: Output channels of one layer at most: each channel's threshold rule is exact Python
#: arithmetic (a 4 MB graph with a 2**21-channel layer took 956 MiB and 105 s; 65536
#: channels take about 110 MiB and 2 s).
MAX_LAYER_CHANNELS = 1 << 16


@dataclass(eq=False)
class OpenLayer:
    """A binary layer whose quantizer has not been seen yet (compared by identity)."""

    node: Node
    weight: np.ndarray  # int8, [M, N] or [M, C, KH, KW]
    binary_input: bool
    input_max: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pad_value: int = -1

    def ranges(self) -> list[tuple[int, int]]:
        lo, hi = channel_ranges(self.weight, self.binary_input, self.input_max)
        return list(zip(lo.tolist(), hi.tolist()))


class LayerOps:
    """Gemm/MatMul/Conv open a layer; BatchNormalization and MaxPool extend it."""

    def _weights(self, node, const: Const, axis: int):
        """Signs (int8) and one exact positive magnitude per output channel along ``axis``."""
        channels = np.shape(const.array)[axis]
        if channels > MAX_LAYER_CHANNELS:  # each channel's rule is exact Python arithmetic
            self.fail(node, f"has {channels} output channels; the importer takes at most "
                            f"{MAX_LAYER_CHANNELS} per layer")
        array = np.moveaxis(np.asarray(const.array, dtype=np.float64), axis, 0)
        flat = array.reshape(array.shape[0], -1)
        magnitude = np.abs(flat[:, :1])
        binary = np.isfinite(flat).all(axis=1) & (np.abs(flat) == magnitude).all(axis=1) & \
            (magnitude[:, 0] > 0)
        if not binary.all():
            j = int(np.flatnonzero(~binary)[0])
            kinds = np.unique(flat[j])
            self.fail(node, f"weights of output channel {j} take the values "
                            f"{[float(x) for x in kinds[:4]]}{' ...' if len(kinds) > 4 else ''}"
                            f": not binary (+-s); multi-bit weights are not supported")
        if const.ideal is not None:
            ideal = np.moveaxis(const.ideal, axis, 0).reshape(array.shape[0], -1)
            magnitudes = [abs(ideal[j, 0]) for j in range(array.shape[0])]
        else:
            magnitudes = [exact(x) for x in magnitude[:, 0].tolist()]
        signs = np.where(array >= 0, 1, -1).astype(np.int8)
        return signs, magnitudes

    def _open(self, node, source, weight, magnitudes, bias, extra, spatial=(),
              geometry=()) -> Accum:
        """A layer over ``source`` with int8 ``weight``: returns its Accum."""
        m = weight.shape[0]
        if isinstance(source, Binary):
            p1 = [source.scale * c for c in magnitudes]
            p0 = [Fraction(0)] * m
            binary, input_max = True, 1
        else:
            if self.layers or self.open_layers:
                self.fail(node, "takes raw (unbinarized) input after a layer")
            p1 = [source.a * c for c in magnitudes]
            p0 = [c * t for c, t in zip(magnitudes, extra)]
            binary, input_max = self.binarize_at is not None, (1 << self.input_bits) - 1
        if bias is not None:
            p0 = [x + y for x, y in zip(p0, bias)]
        layer = OpenLayer(node, weight, binary, input_max, *geometry)
        self.open_layers.add(layer)
        return Accum((1, m) + tuple(spatial), p1, p0, layer=layer)

    def _dense(self, node, source, const: Const, bias: Const | None, alpha=1, beta=1):
        if not isinstance(source, (Binary, Pixels)) or len(source.shape) != 2:
            self.fail(node, f"its input is {describe(source)} of shape "
                            f"{list(getattr(source, 'shape', []))}, expected a flat [1, N] "
                            f"binary map or the image")
        if const.array.ndim != 2 or const.array.shape[0] != source.shape[1]:
            self.fail(node, f"weight shape {list(const.array.shape)} does not match its input "
                            f"[1, {source.shape[1]}]")
        signs, magnitudes = self._weights(node, const, axis=1)
        magnitudes = [exact(alpha) * c for c in magnitudes]
        weight = signs  # [M, N]
        extra = None
        if isinstance(source, Pixels):
            extra = weighted_sums(weight, source.channel_b(source.shape[1]))
        bias_terms = None
        if bias is not None:
            bias_terms = channel_values(bias, (1, weight.shape[0]))
            if bias_terms is None:
                self.fail(node, "bias does not match the output channels")
            bias_terms = [exact(beta) * t for t in bias_terms]
        return self._open(node, source, weight, magnitudes, bias_terms, extra)

    def op_Gemm(self, node):
        source = self.take(node, 0)
        const = self.take(node, 1, Const)
        bias = self.optional(node, 2)
        if node.attrs.get("transA", 0):
            self.fail(node, "transA=1 is not supported")
        if node.attrs.get("transB", 0):
            const = Const(const.array.T, None if const.ideal is None else const.ideal.T)
        return self._dense(node, source, const, bias, node.attrs.get("alpha", 1.0),
                           node.attrs.get("beta", 1.0))

    def op_MatMul(self, node):
        source = self.take(node, 0)
        const = self.take(node, 1, Const)
        return self._dense(node, source, const, None)

    def op_Conv(self, node):
        source = self.take(node, 0, (Binary, Pixels))
        const = self.take(node, 1, Const)
        bias = self.optional(node, 2)
        if len(source.shape) != 4:
            self.fail(node, f"its input has shape {list(source.shape)}, expected [1, C, H, W]")
        w = const.array
        if w.ndim != 4 or w.shape[1] != source.shape[1]:
            self.fail(node, f"weight shape {list(w.shape)} does not match the input's "
                            f"{source.shape[1]} channels (groups are not supported)")
        a = node.attrs
        if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, "grouped or dilated convolutions are not supported")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            self.fail(node, f"auto_pad {a['auto_pad']} is not supported; give pads")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
            self.fail(node, f"pads {pads}: only symmetric padding is supported")
        stride = tuple(int(s) for s in a.get("strides", [1, 1]))
        padding = (int(pads[0]), int(pads[1]))
        kh, kw = w.shape[2:]
        _, c, h, wd = source.shape
        oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (wd + 2 * padding[1] - kw) // \
            stride[1] + 1
        if oh < 1 or ow < 1:
            self.fail(node, "the kernel is larger than its padded input")
        signs, magnitudes = self._weights(node, const, axis=0)
        pad_value, extra = -1, None
        if isinstance(source, Pixels):
            b = source.channel_b(c)
            pad_value = 0
            if any(padding):
                cuts = {-x / source.a for x in b}
                cut = cuts.pop() if len(cuts) == 1 else None
                if cut is None or cut.denominator != 1 or not 0 <= cut < (1 << self.input_bits):
                    self.fail(node, "pads the normalized image with 0, which is no input "
                                    "value (the format pads raw input with one integer)")
                pad_value = int(cut)
            extra = weighted_sums(signs.astype(np.int64).sum(axis=(2, 3)), b)
        elif any(padding):
            self.fail(node, "pads binary activations with 0, which is neither +1 nor -1: "
                            "use padding 0 on binary maps")
        bias_terms = None
        if bias is not None:
            # ONNX's Conv bias is 1-D, one value per output channel (a 4-D one broadcasts)
            shape = (1, signs.shape[0]) + ((1, 1) if np.ndim(bias.array) > 1 else ())
            bias_terms = channel_values(bias, shape)
            if bias_terms is None:
                self.fail(node, "bias does not match the output channels")
        return self._open(node, source, signs, magnitudes, bias_terms, extra, (oh, ow),
                          (stride, padding, pad_value))

    def op_BatchNormalization(self, node):
        value = self.take(node, 0, Accum)
        if len(node.outputs) > 1 and any(node.outputs[1:]):
            self.fail(node, "training-mode batch norm (extra outputs) is not supported")
        shape = (1, channel_count(value.shape))
        gamma, beta, mean, var = (channel_values(self.take(node, i, Const), shape)
                                  for i in (1, 2, 3, 4))
        if None in (gamma, beta, mean, var):
            self.fail(node, "parameters do not match the channels")
        if value.normalized:
            self.fail(node, "a second batch norm before a quantizer is not supported")
        eps = exact(node.attrs.get("epsilon", 1e-5))
        vs = [x + eps for x in var]
        if any(v <= 0 for v in vs):
            self.fail(node, "variance + epsilon is not positive")
        check_pool_order(self, node, value, gamma)
        return derive(value, p1=[g * p for g, p in zip(gamma, value.p1)],
                      p0=[g * (p0 + q - m) for g, p0, q, m in zip(gamma, value.p0, value.q,
                                                                  mean)],
                      q=list(beta), v=vs)

    def op_MaxPool(self, node):
        value = self.take(node, 0, (Binary, Accum))
        a = node.attrs
        kernel = tuple(int(k) for k in a.get("kernel_shape", []))
        stride = tuple(int(s) for s in a.get("strides", [1] * len(kernel)))
        if len(node.outputs) > 1 and node.outputs[1]:
            self.fail(node, "max-pool indices are not supported")
        if len(kernel) != 2 or len(value.shape) != 4:
            self.fail(node, "only 2-D max-pooling of a [1, C, H, W] map is supported")
        if any(p for p in a.get("pads", [0, 0, 0, 0])) or \
                any(d != 1 for d in a.get("dilations", [1, 1])) or \
                a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            self.fail(node, "padded or dilated max-pooling is not supported")
        _, c, h, w = value.shape
        if a.get("ceil_mode", 0) and ((h - kernel[0]) % stride[0] or (w - kernel[1]) %
                                      stride[1]):
            self.fail(node, "ceil_mode with a partial last window is not supported")
        if h < kernel[0] or w < kernel[1]:
            self.fail(node, "the window is larger than the map")
        if isinstance(value, Binary):
            if value.scale < 0:
                self.fail(node, "max-pools negatively scaled binary values (a min of the "
                                "bits), which the format cannot hold")
            self.layers.append(MaxPool2d(kernel, stride))
            return Binary(pooled_shape(value.shape, [(kernel, stride)]), value.scale)
        # before the quantizer: sign is monotone, so pooling after it gives the same bits
        return derive(value, pools=value.pools + [(kernel, stride)])

    def op_Pad(self, node):
        self.fail(node, "explicit padding is not supported; pad inside the convolution "
                        "(raw input) or use padding 0 on binary maps")




def weighted_sums(weights: np.ndarray, values: list[Fraction]) -> list[Fraction]:
    """``sum_i weights[j, i] * values[i]`` per row ``j``, exactly (integer ``weights``)."""
    weights = np.asarray(weights, dtype=np.int64)
    if len(set(values)) == 1:
        return [values[0] * int(total) for total in weights.sum(axis=1).tolist()]
    return [sum((v * int(w) for v, w in zip(values, row.tolist())), Fraction(0))
            for row in weights]
