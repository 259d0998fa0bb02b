"""QONNX graph -> model format v1, exactly: an interpreter over the values of :mod:`.values`.

Nodes run in topological order on symbolic tensors. A binary-weight ``Gemm``/``MatMul``/
``Conv`` opens a layer (its +-1 weights and, per channel, the exact affine map from its
integer accumulator to its float output); scales, biases, ``BatchNormalization`` and
``MaxPool`` extend that map; a ``BipolarQuant`` or one-threshold ``MultiThreshold`` closes
it into one integer threshold and one sign per channel (:mod:`hwgen.threshold_rule`). The
graph's output must be a layer that was never quantized: it becomes the output layer, with
an integer bias when the classes' scores differ by whole multiples of one common unit.

Every construct outside that (an unsupported op, multi-bit weights or activations, a
residual add, a scale that differs per position, ...) raises :class:`ImportError_` naming
the node. See ``docs/import.md`` for the supported graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..model import Conv2d, Dense, InputSpec, MaxPool2d, Model
from ..threshold_rule import exact, threshold_rule
from .graph import Graph, ImportError_, Node
from .values import Accum, Binary, Const, Pixels, channel_values, fraction_array, scalar_value

MAX_INPUT_BITS = 16


@dataclass
class InputMapping:
    """How the model's input integers ``p`` reach the graph: ``x = scale * (p + shift)``."""

    scale: Fraction = Fraction(1)
    shift: Fraction = Fraction(0)

    def graph_input(self, pixels: np.ndarray) -> np.ndarray:
        return (float(self.scale) * (pixels.astype(np.float64) + float(self.shift))).astype(
            np.float32)


@dataclass
class _OpenLayer:
    """A binary layer whose quantizer has not been seen yet."""

    node: Node
    weight: np.ndarray  # int8, [M, N] or [M, C, KH, KW]
    binary_input: bool
    input_max: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pad_value: int = -1

    def ranges(self) -> list[tuple[int, int]]:
        w = self.weight.reshape(self.weight.shape[0], -1).astype(np.int64)
        if self.binary_input:
            return [(-w.shape[1], w.shape[1])] * w.shape[0]
        m = self.input_max
        return [(-int((row < 0).sum()) * m, int((row > 0).sum()) * m) for row in w]


@dataclass
class Imported:
    model: Model
    mapping: InputMapping
    score_unit: Fraction  # graph score = unit * (model score) + a constant
    notes: list[str] = field(default_factory=list)


class Converter:
    """Runs :meth:`convert` once over a :class:`Graph`."""

    def __init__(self, graph: Graph, input_bits: int = 8, input_scale: Fraction | None = None):
        self.graph = graph
        self.input_bits = input_bits
        self.input_scale = input_scale
        self.values: dict[str, object] = {k: Const(v) for k, v in graph.constants.items()}
        self.layers: list = []
        self.open: dict[int, _OpenLayer] = {}  # id(Accum) -> its layer
        self.mapping = InputMapping()
        self.binarize_at: int | None = None
        self.used: set[str] = set()
        self.notes: list[str] = []

    # ---- driver -------------------------------------------------------------------------
    def convert(self) -> Imported:
        shape = self.graph.input_shape
        if shape[0] not in (1, -1):
            raise ImportError_(f"the input {self.graph.input_name!r} has batch size "
                               f"{shape[0]}; export with batch size 1")
        shape = (1,) + tuple(shape[1:])
        if len(shape) not in (2, 4):
            raise ImportError_(f"the input {self.graph.input_name!r} has shape "
                               f"{list(self.graph.input_shape)}; [1, C, H, W] or [1, N] "
                               f"is supported")
        self.input_shape = shape
        scale = Fraction(1) if self.input_scale is None else self.input_scale
        self.mapping = InputMapping(scale=scale)
        self.values[self.graph.input_name] = Pixels(shape, a=scale)
        for node in self.graph.nodes:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None or node.domain not in _DOMAINS.get(node.op, _ONNX):
                raise ImportError_(f"{node.describe()}: unsupported op {node.op!r}"
                                   + (f" (domain {node.domain!r})" if node.domain else "")
                                   + "; see docs/import.md for what is supported")
            results = handler(node)
            if not isinstance(results, tuple):
                results = (results,)
            for name, value in zip(node.outputs, results):
                if name:
                    self.values[name] = value
        return self._finish()

    def _finish(self) -> Imported:
        out = self.values.get(self.graph.output_name)
        if not isinstance(out, Accum) or id(out) not in self.open:
            kind = type(out).__name__
            raise ImportError_(f"the graph's output {self.graph.output_name!r} is {kind}, not "
                               f"the scores of a binary-weight layer (the output layer)")
        if out.pools:
            raise ImportError_("the output layer is max-pooled; the scores must come "
                               "straight from a dense or convolution layer")
        layer = self.open.pop(id(out))
        if layer.weight.ndim != 2:
            raise ImportError_(f"{layer.node.describe()}: the output layer must be dense "
                               f"(Gemm/MatMul), not a convolution")
        if self.open:
            raise ImportError_("a binary-weight layer's result is never quantized nor used "
                               "as the output")
        weight, bias, unit = _output_bias(out, layer)
        self.layers.append(Dense(weight=weight, bias=bias))
        c, h, w = (self.input_shape[1], 1, 1) if len(self.input_shape) == 2 else \
            self.input_shape[1:]
        spec = InputSpec((int(c), int(h), int(w)), self.input_bits, self.binarize_at)
        classes = [str(i) for i in range(weight.shape[0])]
        model = Model(spec, self.layers, classes, {})
        return Imported(model, self.mapping, unit, self.notes)

    # ---- helpers -------------------------------------------------------------------------
    def take(self, node: Node, index: int, kinds=None):
        """Input ``index`` of ``node``; symbolic tensors may be used once only."""
        if index >= len(node.inputs) or not node.inputs[index]:
            raise ImportError_(f"{node.describe()}: input {index} is missing")
        name = node.inputs[index]
        value = self.values[name]
        if not isinstance(value, Const):
            if name in self.used:
                raise ImportError_(f"{node.describe()}: tensor {name!r} feeds more than one "
                                   f"node (a branch or residual connection); only a chain "
                                   f"of layers is supported")
            self.used.add(name)
        if kinds is not None and not isinstance(value, kinds):
            names = "/".join(k.__name__ for k in kinds) if isinstance(kinds, tuple) \
                else kinds.__name__
            raise ImportError_(f"{node.describe()}: input {index} ({name!r}) is "
                               f"{_describe(value)}, expected {_KIND_WORDS.get(names, names)}")
        return value

    def optional(self, node: Node, index: int):
        if index < len(node.inputs) and node.inputs[index]:
            return self.take(node, index, Const)
        return None

    def fail(self, node: Node, message: str):
        raise ImportError_(f"{node.describe()}: {message}")

    # ---- pass-through and shape ops --------------------------------------------------------
    def op_Identity(self, node):
        return self.take(node, 0)

    op_Dropout = op_Identity

    def _reshape(self, node, value, shape):
        shape = tuple(int(s) for s in shape)
        if isinstance(value, Const):
            try:
                return Const(value.array.reshape(shape),
                             None if value.ideal is None else value.ideal.reshape(shape))
            except ValueError:
                self.fail(node, f"cannot reshape a constant of shape "
                                f"{list(value.array.shape)} to {list(shape)}")
        size = math.prod(value.shape)
        if shape == tuple(value.shape):
            return value
        flat = (1, size)
        if shape not in (flat, (-1, size), (1, -1)):
            self.fail(node, f"reshapes {list(value.shape)} to {list(shape)}; only a flatten "
                            f"to [1, {size}] is supported")
        if isinstance(value, Binary):
            return Binary(flat, value.scale)
        if isinstance(value, Pixels):
            if len(value.b) == 1:
                return Pixels(flat, value.a, value.b, value.quantized)
            per = size // value.shape[1]
            return Pixels(flat, value.a, tuple(b for b in value.b for _ in range(per)),
                          value.quantized)
        self.fail(node, "flattens a layer's output before its quantizer; quantize first")

    def op_Reshape(self, node):
        value = self.take(node, 0)
        target = self.take(node, 1, Const).array.astype(np.int64).reshape(-1)
        if isinstance(value, Const):
            return self._reshape(node, value, target)
        if node.attrs.get("allowzero", 0) == 0:
            target = np.array([value.shape[i] if t == 0 and i < len(value.shape) else t
                               for i, t in enumerate(target)])
        return self._reshape(node, value, target)

    def op_Flatten(self, node):
        value = self.take(node, 0)
        axis = int(node.attrs.get("axis", 1))
        shape = value.array.shape if isinstance(value, Const) else value.shape
        axis = axis + len(shape) if axis < 0 else axis
        target = (math.prod(shape[:axis]), math.prod(shape[axis:]))
        return self._reshape(node, value, target)

    def op_Transpose(self, node):
        value = self.take(node, 0, Const)
        perm = node.attrs.get("perm")
        return Const(np.transpose(value.array, perm),
                     None if value.ideal is None else np.transpose(value.ideal, perm))

    def op_Squeeze(self, node):
        value = self.take(node, 0, Const)
        axes = self.optional(node, 1)
        axes = tuple(axes.array.astype(int).tolist()) if axes is not None else \
            node.attrs.get("axes")
        return Const(np.squeeze(value.array, axis=None if axes is None else tuple(axes)))

    def op_Unsqueeze(self, node):
        value = self.take(node, 0, Const)
        axes = self.optional(node, 1)
        axes = axes.array.astype(int).tolist() if axes is not None else node.attrs["axes"]
        return Const(np.expand_dims(value.array, tuple(axes)))

    def op_Cast(self, node):
        return Const(self.take(node, 0, Const).array.astype(np.float32))

    def op_Pow(self, node):
        base, exponent = self.take(node, 0, Const), self.take(node, 1, Const)
        with np.errstate(all="ignore"):
            return Const(np.power(base.array, exponent.array).astype(base.array.dtype))

    def op_Relu(self, node):
        self.fail(node, "a ReLU (e.g. QuantReLU) gives unsigned or multi-bit activations; only "
                        "bipolar +-1 activations (BipolarQuant, a 1-bit signed Quant, or a "
                        "bipolar MultiThreshold) are supported")

    def op_Sqrt(self, node):
        return Const(np.sqrt(self.take(node, 0, Const).array))

    # ---- elementwise arithmetic ------------------------------------------------------------
    def _arith(self, node, op):
        left, right = self.take(node, 0), self.take(node, 1)
        if isinstance(left, Const) and isinstance(right, Const):
            with np.errstate(all="ignore"):
                array = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                         "Div": np.divide}[op](left.array, right.array)
            return Const(array)
        if not isinstance(left, Const) and not isinstance(right, Const):
            self.fail(node, f"{op} of two computed tensors (a residual connection or a "
                            f"product of activations) is not supported")
        if isinstance(left, Const):  # c - x, c + x, c * x; c / x is not affine
            if op == "Div":
                self.fail(node, "divides a constant by a computed tensor")
            value, const = right, left
            if op == "Sub":
                return self._affine(node, self._affine(node, value, mul=-1), add=const)
        else:
            value, const = left, right
        if op == "Add":
            return self._affine(node, value, add=const)
        if op == "Sub":
            return self._affine(node, value, add=const, negate_add=True)
        if op == "Mul":
            return self._affine(node, value, mul=const)
        return self._affine(node, value, mul=const, invert=True)

    def op_Add(self, node):
        return self._arith(node, "Add")

    def op_Sub(self, node):
        return self._arith(node, "Sub")

    def op_Mul(self, node):
        return self._arith(node, "Mul")

    def op_Div(self, node):
        return self._arith(node, "Div")

    def op_Neg(self, node):
        value = self.take(node, 0)
        if isinstance(value, Const):
            return Const(-value.array)
        return self._affine(node, value, mul=-1)

    def _affine(self, node, value, mul=None, add=None, invert=False, negate_add=False):
        """``value * mul`` (or ``/ mul``) or ``value + add`` (or ``- add``), per channel."""
        shape = value.shape
        if mul is not None:
            factors = [Fraction(mul)] * _channels(shape) if isinstance(mul, int) else \
                channel_values(mul, shape)
            if factors is None:
                self.fail(node, "scales by a constant that varies over positions; only one "
                                "value per channel is supported")
            if invert:
                if any(f == 0 for f in factors):
                    self.fail(node, "divides by zero")
                factors = [1 / f for f in factors]
            return self._scale(node, value, factors)
        terms = channel_values(add, shape)
        if terms is None:
            self.fail(node, "adds a constant that varies over positions; only one value per "
                            "channel is supported")
        if negate_add:
            terms = [-t for t in terms]
        return self._shift(node, value, terms)

    def _scale(self, node, value, factors):
        if isinstance(value, Accum):
            return _accum(value, p1=[f * p for f, p in zip(factors, value.p1)],
                          p0=[f * p for f, p in zip(factors, value.p0)],
                          q=[f * q for f, q in zip(factors, value.q)], source=self)
        if len(set(factors)) != 1:
            self.fail(node, f"scales {_describe(value)} per channel; only the layers' outputs "
                            f"may be scaled per channel")
        f = factors[0]
        if isinstance(value, Binary):
            if f == 0:
                self.fail(node, "multiplies binary activations by 0")
            return Binary(value.shape, value.scale * f)
        return Pixels(value.shape, value.a * f, tuple(b * f for b in value.b), value.quantized)

    def _shift(self, node, value, terms):
        if isinstance(value, Accum):
            return _accum(value, q=[q + t for q, t in zip(value.q, terms)], source=self)
        if isinstance(value, Pixels):
            b = value.channel_b(len(terms))
            return Pixels(value.shape, value.a, tuple(x + t for x, t in zip(b, terms)),
                          value.quantized)
        self.fail(node, "adds a constant to binary activations (they are no longer +-s)")

    # ---- quantizers ------------------------------------------------------------------------
    def op_BipolarQuant(self, node):
        value = self.take(node, 0)
        scale_const = self.take(node, 1, Const)
        if isinstance(value, Const):  # weights: the scale may differ per channel
            signs = np.where(value.array >= 0, 1, -1)
            try:  # +-1 times a float32 scale is exact in float32: no separate ideal value
                array = signs.astype(np.float32) * scale_const.array.astype(np.float32)
            except ValueError:
                self.fail(node, "the scale does not broadcast to the tensor")
            return Const(array)
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
        out_scale = exact(node.attrs.get("out_scale", 1.0))
        out_bias = exact(node.attrs.get("out_bias", 0.0))
        if out_bias == 0 or out_scale != -2 * out_bias:
            self.fail(node, f"outputs {{{float(out_bias)}, {float(out_bias + out_scale)}}}, "
                            f"not a bipolar pair {{-s, +s}} (use out_scale=2, out_bias=-1)")
        shape = value.shape
        per = [t[0] for t in thresholds.fractions().tolist()]
        per = per * _channels(shape) if len(per) == 1 else per
        if len(per) != _channels(shape):
            self.fail(node, f"has {len(per)} thresholds for {_channels(shape)} channels")
        return self._binarize(node, value, per, -out_bias)

    def _binarize(self, node, value, threshold, scale) -> Binary:
        """+scale where ``value >= threshold`` (one or one per channel), else -scale."""
        shape = value.shape
        per = threshold if isinstance(threshold, list) else [threshold] * _channels(shape)
        if isinstance(value, Binary):
            if any(t != 0 for t in per) or value.scale < 0:
                self.fail(node, "re-binarizes binary activations with a threshold or a "
                                "negative scale")
            return Binary(shape, scale)
        if isinstance(value, Pixels):
            return self._binarize_input(node, value, per, scale)
        layer = self.open.pop(id(value), None)
        if layer is None:
            self.fail(node, "quantizes a tensor that is not a layer's output")
        q = [x - t for x, t in zip(value.q, per)]
        rules = [threshold_rule(p1, p0, qq, v, lo, hi) for p1, p0, qq, v, (lo, hi) in
                 zip(value.p1, value.p0, q, value.v, layer.ranges())]
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
        if value.pools and scale < 0:
            self.fail(node, "a max-pool before a quantizer with a negative scale is a "
                            "min-pool of the binary values, which the format cannot hold")
        return Binary(_pooled_shape(shape, value.pools), scale)

    def _binarize_input(self, node, value, per, scale) -> Binary:
        if self.layers or self.open or self.binarize_at is not None:
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
        signed = int(node.attrs.get("signed", 1))
        narrow = int(node.attrs.get("narrow", 0))
        b = scalar_value(bits)
        if b is None or b.denominator != 1 or not 1 <= b <= 64:
            self.fail(node, "needs one whole bit width")
        b = int(b)
        qmin = -(1 << (b - 1)) + narrow if signed else 0
        qmax = (1 << (b - 1)) - 1 if signed else (1 << b) - 1 - narrow
        if isinstance(value, Const):
            return _quant_const(node, value, scale, zero, qmin, qmax, bipolar=b == 1 and
                                bool(signed))
        if b == 1 and signed:  # qonnx runs a 1-bit signed Quant as bipolar (sign at 0)
            return self._bipolar_quant(node, value, scale, zero)
        if not isinstance(value, Pixels):
            self.fail(node, f"a {b}-bit Quant on {_describe(value)}: only 1-bit (bipolar) "
                            f"activations, and an input quantizer on the graph's input, are "
                            f"supported")
        if value.quantized or value.a != self.mapping.scale or any(x != 0 for x in value.b):
            self.fail(node, "an input quantizer after arithmetic on the image (such as "
                            "2x - 1): the model's input integers must be the quantizer's, so "
                            "it must take the graph's input directly")
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

    def _bipolar_quant(self, node, value, scale: Const, zero: Const) -> Binary:
        """qonnx's 1-bit signed Quant: ``s * (+1 if x / s + z >= 0 else -1) - z * s``."""
        s, z = scalar_value(scale), scalar_value(zero)
        if s is None or s == 0 or z != 0:
            self.fail(node, "a 1-bit Quant needs one nonzero scale and a zero point of 0 "
                            "(else its two levels are not +-s)")
        if s < 0:  # x / s >= 0 <=> -x >= 0
            value = self._scale(node, value, [Fraction(-1)] * _channels(value.shape))
        return self._binarize(node, value, Fraction(0), s)

    # ---- layers ----------------------------------------------------------------------------
    def _weights(self, node, const: Const, axis: int):
        """Signs (int8) and one exact positive magnitude per output channel along ``axis``."""
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
            if self.layers or self.open:
                self.fail(node, "takes raw (unbinarized) input after a layer")
            p1 = [source.a * c for c in magnitudes]
            p0 = [c * t for c, t in zip(magnitudes, extra)]
            binary, input_max = self.binarize_at is not None, (1 << self.input_bits) - 1
        if bias is not None:
            p0 = [x + y for x, y in zip(p0, bias)]
        accum = Accum((1, m) + tuple(spatial), p1, p0)
        self.open[id(accum)] = _OpenLayer(node, weight, binary, input_max, *geometry)
        return accum

    def _dense(self, node, source, const: Const, bias: Const | None, alpha=1, beta=1):
        if not isinstance(source, (Binary, Pixels)) or len(source.shape) != 2:
            self.fail(node, f"its input is {_describe(source)} of shape "
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
            extra = _weighted_sums(weight, source.channel_b(source.shape[1]))
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
            extra = _weighted_sums(signs.astype(np.int64).sum(axis=(2, 3)), b)
        elif any(padding):
            self.fail(node, "pads binary activations with 0, which is neither +1 nor -1: "
                            "use padding 0 on binary maps")
        bias_terms = None
        if bias is not None:
            bias_terms = channel_values(bias, (1, signs.shape[0], 1, 1))
            if bias_terms is None:
                self.fail(node, "bias does not match the output channels")
        return self._open(node, source, signs, magnitudes, bias_terms, extra, (oh, ow),
                          (stride, padding, pad_value))

    def op_BatchNormalization(self, node):
        value = self.take(node, 0, Accum)
        if len(node.outputs) > 1 and any(node.outputs[1:]):
            self.fail(node, "training-mode batch norm (extra outputs) is not supported")
        gamma, beta, mean, var = (channel_values(self.take(node, i, Const),
                                                 (1, _channels(value.shape))) for i in (1, 2, 3, 4))
        if None in (gamma, beta, mean, var):
            self.fail(node, "parameters do not match the channels")
        if value.normalized:
            self.fail(node, "a second batch norm before a quantizer is not supported")
        eps = exact(node.attrs.get("epsilon", 1e-5))
        vs = [x + eps for x in var]
        if any(v <= 0 for v in vs):
            self.fail(node, "variance + epsilon is not positive")
        return _accum(value, p1=[g * p for g, p in zip(gamma, value.p1)],
                      p0=[g * (p0 + q - m) for g, p0, q, m in zip(gamma, value.p0, value.q,
                                                                  mean)],
                      q=list(beta), v=vs, source=self)

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
            return Binary(_pooled_shape(value.shape, [(kernel, stride)]), value.scale)
        # before the quantizer: sign is monotone, so pooling after it gives the same bits
        return _accum(value, pools=value.pools + [(kernel, stride)], source=self)

    def op_Pad(self, node):
        self.fail(node, "explicit padding is not supported; pad inside the convolution "
                        "(raw input) or use padding 0 on binary maps")


def _quant_const(node, value: Const, scale: Const, zero: Const, qmin: int, qmax: int,
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
    ideal = (fraction_array(q) - np.broadcast_to(fraction_array(z), shape)) * \
        np.broadcast_to(fraction_array(s), shape)
    array = ((q - z) * s).astype(np.float32)
    return Const(np.broadcast_to(array, shape).copy(), ideal)


def _output_bias(out: Accum, layer: _OpenLayer):
    """The output layer's weights, int32 bias and score unit from its exact affine map."""
    node = layer.node
    if out.normalized:
        vs, p1s = set(out.v), set(out.p1)
        if len(vs) != 1 or len(p1s) != 1 or len(set(out.q)) != 1:
            raise ImportError_(f"{node.describe()}: the output layer's batch norm scales the "
                               f"classes differently; scores acc + integer bias cannot "
                               f"express it")
        terms = [Fraction(0)] * len(out.p1)  # common q and sqrt(v) drop out of the argmax
        offsets = out.p0
    else:
        terms, offsets = out.q, out.p0
    p1 = set(out.p1)
    if len(p1) != 1 or 0 in p1:
        raise ImportError_(f"{node.describe()}: the output layer's classes have different "
                           f"(or zero) score scales ({sorted(float(x) for x in p1)[:3]}...); "
                           f"scores acc + integer bias cannot express them")
    unit = p1.pop()
    weight = layer.weight.astype(np.int8)
    if unit < 0:
        weight, unit_abs = (-weight).astype(np.int8), -unit
    else:
        unit_abs = unit
    # score_j = unit * acc_j + D_j = unit_abs * (acc'_j + D_j / unit_abs)
    d = [(o + t) / unit_abs for o, t in zip(offsets, terms)]
    base = d[0] - math.floor(d[0])
    if any((x - base).denominator != 1 for x in d):
        bad = next(j for j, x in enumerate(d) if (x - base).denominator != 1)
        raise ImportError_(f"{node.describe()}: class {bad}'s bias is not a whole multiple of "
                           f"the score unit ({float(unit_abs):g} per accumulator step; its "
                           f"bias / unit = {float(d[bad]):.6g}); train without a bias or "
                           f"quantize it to the accumulator's scale (Brevitas Int32Bias)")
    bias = [int(x - base) for x in d]
    if any(abs(x) >= 1 << 31 for x in bias):
        raise ImportError_(f"{node.describe()}: the output bias does not fit in int32")
    return weight, np.array(bias, dtype=np.int32), unit_abs


def _weighted_sums(weights: np.ndarray, values: list[Fraction]) -> list[Fraction]:
    """``sum_i weights[j, i] * values[i]`` per row ``j``, exactly (integer ``weights``)."""
    weights = np.asarray(weights, dtype=np.int64)
    if len(set(values)) == 1:
        return [values[0] * int(total) for total in weights.sum(axis=1).tolist()]
    return [sum((v * int(w) for v, w in zip(values, row.tolist())), Fraction(0))
            for row in weights]


def _accum(old: Accum, source=None, **changes) -> Accum:
    """A copy of ``old`` with ``changes`` that keeps its open layer."""
    fields = dict(shape=old.shape, p1=old.p1, p0=old.p0, q=old.q, v=old.v, pools=old.pools)
    fields.update(changes)
    new = Accum(**fields)
    if source is not None and id(old) in source.open:
        source.open[id(new)] = source.open.pop(id(old))
    return new


def _channels(shape) -> int:
    return shape[1] if len(shape) > 1 else 1


def _pooled_shape(shape, pools):
    for (kh, kw), (sh, sw) in pools:
        shape = (shape[0], shape[1], (shape[2] - kh) // sh + 1, (shape[3] - kw) // sw + 1)
    return tuple(shape)


_KIND_WORDS = {"Const": "a constant", "Accum": "a layer's output",
               "Binary/Pixels": "binary activations or the image"}


def _describe(value) -> str:
    return {Const: "a constant", Pixels: "the image", Binary: "binary activations",
            Accum: "a layer's unquantized output"}.get(type(value), type(value).__name__)


_QONNX = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas",
          "finn", "qonnx")
_ONNX = ("", "ai.onnx")
_DOMAINS = {"BipolarQuant": _QONNX, "Quant": _QONNX, "MultiThreshold": _QONNX}
