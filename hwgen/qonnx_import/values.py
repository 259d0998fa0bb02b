"""What the importer knows about each tensor of a binary network's graph, exactly.

A tensor is one of:

- :class:`Const`: a constant array (initializer, ``Constant``, or computed from those).
  ``ideal`` is its value in exact arithmetic where that differs from the stored floats: a
  ``Quant`` node's output is ``q * scale`` for integers ``q``, not the float32 product.
- :class:`Pixels`: the image, ``a * x + b`` for the model's unsigned input integers ``x``
  (``a`` one rational; ``b`` one rational per channel).
- :class:`Binary`: ``scale * y`` for a map ``y`` of +-1 values (the format's activations).
- :class:`Accum`: a binary layer's output before its quantizer: per channel ``j``,
  ``(p1[j] * acc[j] + p0[j]) / sqrt(v[j]) + q[j]`` with ``acc`` the layer's integer
  accumulator and rationals ``p1, p0, q, v`` (``v`` is 1 until a batch norm).

Shapes are the graph's, batch first (``[1, C, H, W]`` or ``[1, N]``); channels are axis 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from ..threshold_rule import exact

MAX_INPUT_BITS = 16  # the widest input quantizer the importer takes


@dataclass
class InputMapping:
    """How the model's input integers ``p`` reach the graph: ``x = scale * (p + shift)``."""

    scale: Fraction = Fraction(1)
    shift: Fraction = Fraction(0)

    def graph_input(self, pixels: np.ndarray) -> np.ndarray:
        """The graph's float32 input for integer ``pixels``; ValueError when a value is
        beyond float32's range (a hostile input quantizer's scale)."""
        with np.errstate(over="ignore", invalid="ignore"):
            values = (float(self.scale) * (pixels.astype(np.float64) + float(self.shift))
                      ).astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"the input quantizer maps pixels to values beyond float32 "
                             f"(scale {float(self.scale):.3g})")
        return values


@dataclass
class Const:
    array: np.ndarray
    ideal: np.ndarray | None = None  # object array of Fractions, same shape, when exact differs

    def fractions(self) -> np.ndarray:
        """The exact values as an object array of Fractions (``ideal`` when known)."""
        if self.ideal is not None:
            return self.ideal
        return fraction_array(self.array)


def fraction_array(values) -> np.ndarray:
    """An object array of the exact rationals of ``values`` (floats or ints), same shape."""
    values = np.asarray(values)
    out = np.empty(values.size, dtype=object)
    out[:] = [exact(x) for x in values.reshape(-1).tolist()]
    return out.reshape(values.shape)


@dataclass
class Pixels:
    shape: tuple[int, ...]
    a: Fraction = Fraction(1)
    b: tuple[Fraction, ...] = (Fraction(0),)  # one per channel, or one for all
    quantized: bool = False  # an input quantizer has been applied

    def channel_b(self, channels: int) -> list[Fraction]:
        return list(self.b) * channels if len(self.b) == 1 else list(self.b)


@dataclass
class Binary:
    shape: tuple[int, ...]
    scale: Fraction


@dataclass
class Accum:
    shape: tuple[int, ...]
    p1: list[Fraction]
    p0: list[Fraction]
    q: list[Fraction] = field(default_factory=list)
    v: list[Fraction] = field(default_factory=list)
    pools: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    layer: object = None  # the layer (ops_layers.OpenLayer) whose output this is

    def __post_init__(self):
        m = len(self.p1)
        self.q = self.q or [Fraction(0)] * m
        self.v = self.v or [Fraction(1)] * m

    @property
    def normalized(self) -> bool:
        """Whether a batch norm (the one square root) has been applied."""
        return any(v != 1 for v in self.v)


def channel_values(const: Const, shape: tuple[int, ...]) -> list[Fraction] | None:
    """``const`` as one exact value per channel of a tensor of ``shape`` (axis 1), when it
    broadcasts to ``shape`` without growing it and is constant over every other axis; a
    scalar gives ``[value] * C``. None otherwise (a value that varies over positions)."""
    numeric = np.asarray(const.array)
    if numeric.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - numeric.ndim) + numeric.shape
    if any(d not in (1, s) for d, s in zip(full, shape)):
        return None   # checked before any exact value is made: the array may be huge
    channels = channel_count(shape)
    if const.ideal is None:
        # floats: equal floats are equal exact values, so the check is numeric and only one
        # value per channel is made exact (every value of a 2**21-value constant, for each
        # of 100 nodes, took 13 minutes)
        values = numeric.reshape(full)
        first = values[(0, slice(None)) + (0,) * (len(full) - 2)] if len(full) > 1 else values
        if len(full) > 1:
            expected = first.reshape((1, full[1]) + (1,) * (len(full) - 2))
            with np.errstate(all="ignore"):
                if not np.array_equal(np.broadcast_to(expected, full), values,
                                      equal_nan=True):
                    return None   # varies over positions
        exact_first = [exact(x) for x in np.asarray(first).reshape(-1).tolist()]
        return [exact_first[min(c, len(exact_first) - 1)] for c in range(channels)]
    array = const.fractions().reshape(full)
    out = []
    for c in range(channels):
        index = tuple(min(c, full[1] - 1) if axis == 1 else slice(None)
                      for axis in range(len(full)))
        values = set(np.asarray(array[index], dtype=object).reshape(-1).tolist())
        if len(values) != 1:
            return None
        out.append(values.pop())
    return out


def scalar_value(const: Const) -> Fraction | None:
    """The one exact value of ``const`` when all its entries are equal, else None."""
    numeric = np.asarray(const.array)
    if numeric.size > 1 and not (numeric == numeric.reshape(-1)[0]).all():
        return None   # different floats round different exact values
    values = set(const.fractions().reshape(-1).tolist())
    return values.pop() if len(values) == 1 else None


def derive(old: Accum, **changes) -> Accum:
    """A copy of ``old`` (its layer included) with ``changes``."""
    return replace(old, **changes)


def check_pool_order(converter, node, value: Accum, factors) -> None:
    """Refuse (``converter.fail``) a negative per-channel factor on an accumulator value that
    was max-pooled before its quantizer: the quantizer's bits would then be a min-pool of
    the binary values, which the format cannot hold (the pool is kept as an OR of bits)."""
    if value.pools and any(f < 0 for f in factors):
        converter.fail(node, "scales a max-pooled value by a negative factor: a max-pool "
                             "before a negative scale is a min-pool of the binary values, "
                             "which the format cannot hold")


def channel_count(shape) -> int:
    return shape[1] if len(shape) > 1 else 1


def pooled_shape(shape, pools):
    for (kh, kw), (sh, sw) in pools:
        shape = (shape[0], shape[1], (shape[2] - kh) // sh + 1, (shape[3] - kw) // sw + 1)
    return tuple(shape)


KIND_WORDS = {Const: "a constant", Pixels: "the image", Binary: "binary activations",
              Accum: "a layer's unquantized output"}


def describe(value) -> str:
    return KIND_WORDS.get(type(value), type(value).__name__)
