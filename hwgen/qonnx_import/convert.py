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

This module is the driver; the ops are mixins, one module per kind: :mod:`.ops_shape`,
:mod:`.ops_arith`, :mod:`.ops_quant` (where layers close), :mod:`.ops_layers` (where they
open), and :mod:`.output` (the output layer's bias). An op ``X`` is a method ``op_X``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..model import Dense, InputSpec, Model
from .graph import Graph, ImportError_, Node
from .ops_arith import ArithmeticOps
from .ops_layers import LayerOps, OpenLayer
from .ops_quant import QuantizerOps
from .ops_shape import ShapeOps
from .output import output_layer
from .values import KIND_WORDS, Accum, Const, InputMapping, Pixels, describe


@dataclass
class Imported:
    model: Model
    mapping: InputMapping
    score_unit: Fraction  # graph score = unit * (model score) + a constant
    #: channels whose exact rule and a float32 evaluation of the graph may disagree at one
    #: accumulator value (:func:`hwgen.threshold_rule.float_tie`), described
    float_ties: list[str] = field(default_factory=list)


class Converter(ShapeOps, ArithmeticOps, QuantizerOps, LayerOps):
    """Runs :meth:`convert` once over a :class:`Graph`."""

    def __init__(self, graph: Graph, input_bits: int | None = None,
                 input_scale: Fraction | None = None):
        self.graph = graph
        self.input_bits = 8 if input_bits is None else input_bits
        self.input_bits_given = input_bits is not None
        self.input_scale = input_scale
        self.values: dict[str, object] = {k: Const(v) for k, v in graph.constants.items()}
        self.layers: list = []
        self.open_layers: set[OpenLayer] = set()  # opened, not yet quantized
        self.mapping = InputMapping()
        self.binarize_at: int | None = None
        self.used: set[str] = set()
        self.float_ties: list[str] = []
        self.computed_values = 0  # values of the constants computed so far (check_computed_size)

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
        self._check_input_size()
        scale = Fraction(1) if self.input_scale is None else self.input_scale
        self.mapping = InputMapping(scale=scale)
        self.values[self.graph.input_name] = Pixels(shape, a=scale)
        for node in self.graph.nodes:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None or node.domain not in _DOMAINS.get(node.op, _ONNX):
                raise ImportError_(f"{node.describe()}: unsupported op {node.op!r}"
                                   + (f" (domain {node.domain!r})" if node.domain else "")
                                   + "; see docs/import.md for what is supported")
            try:
                with np.errstate(all="ignore"):
                    results = handler(node)
            except (ValueError, ArithmeticError, IndexError, KeyError, TypeError) as err:
                # a malformed node (NaN/inf constants, wrong ranks or types, bad attributes)
                # that no check above caught: still one line naming the node
                text = str(err).splitlines()[0][:200] if str(err) else ""
                raise ImportError_(f"{node.describe()}: cannot convert "
                                   f"({type(err).__name__}: {text})") from None
            if not isinstance(results, tuple):
                results = (results,)
            for name, value in zip(node.outputs, results):
                if name:
                    self.values[name] = value
        try:
            with np.errstate(all="ignore"):
                return self._finish()
        except (ValueError, ArithmeticError, IndexError, KeyError, TypeError) as err:
            # an output layer's exact scales beyond what floats hold (OverflowError), ...
            text = str(err).splitlines()[0][:200] if str(err) else ""
            raise ImportError_(f"the output layer cannot be converted ({type(err).__name__}: "
                               f"{text})") from None

    def _check_input_size(self) -> None:
        """The model format's limits on the input (:mod:`hwgen.model.limits`), before any
        per-channel work: a 1 KB graph declaring [1, 2**28] took 4 GB and never ended."""
        from ..model import limits

        c, h, w = self._input_chw()
        name = self.graph.input_name
        if c > limits.MAX_INPUT_CHANNELS:
            what = "values" if len(self.input_shape) == 2 else "channels"
            raise ImportError_(f"the input {name!r} has {c} {what}; a model takes at most "
                               f"{limits.MAX_INPUT_CHANNELS} input channels (a flat input's "
                               f"values are its channels)")
        if max(h, w) > limits.MAX_SPATIAL or c * h * w > limits.MAX_ACTIVATION:
            raise ImportError_(f"the input {name!r} is {c}x{h}x{w}; a model's input is at "
                               f"most {limits.MAX_SPATIAL} high and wide and "
                               f"{limits.MAX_ACTIVATION} values")

    def _input_chw(self) -> tuple[int, int, int]:
        shape = self.input_shape
        c, h, w = (shape[1], 1, 1) if len(shape) == 2 else shape[1:]
        return int(c), int(h), int(w)

    def _finish(self) -> Imported:
        out = self.values.get(self.graph.output_name)
        if not isinstance(out, Accum) or out.layer not in self.open_layers:
            kind = type(out).__name__
            raise ImportError_(f"the graph's output {self.graph.output_name!r} is {kind}, not "
                               f"the scores of a binary-weight layer (the output layer)")
        if out.pools:
            raise ImportError_("the output layer is max-pooled; the scores must come "
                               "straight from a dense or convolution layer")
        layer = out.layer
        self.open_layers.discard(layer)
        if layer.weight.ndim != 2:
            raise ImportError_(f"{layer.node.describe()}: the output layer must be dense "
                               f"(Gemm/MatMul), not a convolution")
        if self.open_layers:
            raise ImportError_("a binary-weight layer's result is never quantized nor used "
                               "as the output")
        weight, bias, unit = output_layer(out, layer)
        self.layers.append(Dense(weight=weight, bias=bias))
        spec = InputSpec(self._input_chw(), self.input_bits, self.binarize_at)
        classes = [str(i) for i in range(weight.shape[0])]
        model = Model(spec, self.layers, classes, {})
        return Imported(model, self.mapping, unit, self.float_ties)

    # ---- helpers -------------------------------------------------------------------------
    def take(self, node: Node, index: int, kinds=None):
        """Input ``index`` of ``node``; symbolic tensors may be used once only."""
        if index >= len(node.inputs) or not node.inputs[index]:
            raise ImportError_(f"{node.describe()}: input {index} is missing")
        name = node.inputs[index]
        if name in self.used:
            raise ImportError_(f"{node.describe()}: tensor {name!r} feeds more than one "
                               f"node (a branch or residual connection); only a chain "
                               f"of layers is supported")
        value = self.values[name]
        if not isinstance(value, Const):
            # used once: dropped, so a long chain keeps one node's exact values, not all
            self.used.add(name)
            del self.values[name]
        if kinds is not None and not isinstance(value, kinds):
            expected = " or ".join(KIND_WORDS[k] for k in
                                   (kinds if isinstance(kinds, tuple) else (kinds,)))
            raise ImportError_(f"{node.describe()}: input {index} ({name!r}) is "
                               f"{describe(value)}, expected {expected}")
        return value

    def optional(self, node: Node, index: int):
        if index < len(node.inputs) and node.inputs[index]:
            return self.take(node, index, Const)
        return None

    def fail(self, node: Node, message: str):
        raise ImportError_(f"{node.describe()}: {message}")


_QONNX = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas",
          "finn", "qonnx")
_ONNX = ("", "ai.onnx")
_DOMAINS = {"BipolarQuant": _QONNX, "Quant": _QONNX, "MultiThreshold": _QONNX}

