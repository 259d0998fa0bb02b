"""Elementwise arithmetic for :class:`~.convert.Converter`: exact per-channel affine maps."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .graph import MAX_CONSTANT_ELEMENTS
from .values import (Accum, Binary, Const, Pixels, channel_count, channel_values,
                     check_pool_order, derive, describe)

#: The most values an operation on constants may produce (the product of the broadcast
#: shape, checked before computing: two small constants can broadcast to gigabytes) ...
MAX_COMPUTED_CONSTANT = MAX_CONSTANT_ELEMENTS  # values of a constant computed from others
#: ... and all of them together (computed constants are kept while the graph is converted:
#: 400 unused Adds of [2048, 1] and [1, 1024] took 6.4 GB).
MAX_COMPUTED_TOTAL = 1 << 24
#: Bits of the numerator or denominator of one exact value (a scale or offset per channel):
#: each Mul/Div/Add on a layer's output grows them, and a chain of 480 took 2 GB and a
#: minute; real graphs stay under a few hundred bits.
MAX_EXACT_BITS = 4096


def check_computed_size(converter, node, op: str, *arrays: np.ndarray) -> None:
    """``converter.fail`` unless ``op`` of the constants ``arrays`` broadcasts to at most
    :data:`MAX_COMPUTED_CONSTANT` values, and all constants computed so far to at most
    :data:`MAX_COMPUTED_TOTAL` (checked before computing anything)."""
    shapes = [np.shape(a) for a in arrays]
    try:
        size = math.prod(np.broadcast_shapes(*shapes))
    except (ValueError, RuntimeError):  # RuntimeError: more than NumPy's 32 dimensions
        converter.fail(node, f"{op} of constants of shapes "
                             f"{' and '.join(str(list(s)) for s in shapes)}, which do not "
                             f"broadcast")
    if size > MAX_COMPUTED_CONSTANT:
        converter.fail(node, f"{op} of constants would make {size} values, more than the "
                             f"{MAX_COMPUTED_CONSTANT} the importer computes")
    converter.computed_values += size
    if converter.computed_values > MAX_COMPUTED_TOTAL:
        converter.fail(node, f"the constants computed so far hold "
                             f"{converter.computed_values} values, more than the "
                             f"{MAX_COMPUTED_TOTAL} the importer computes in all")


def check_exact_size(converter, node, values) -> None:
    """``converter.fail`` when an exact value of ``values`` (Fractions) has a numerator or
    denominator of more than :data:`MAX_EXACT_BITS` bits."""
    for v in values:
        if v.numerator.bit_length() > MAX_EXACT_BITS or \
                v.denominator.bit_length() > MAX_EXACT_BITS:
            converter.fail(node, f"an exact scale or offset grows beyond {MAX_EXACT_BITS} "
                                 f"bits (a long chain of arithmetic on one layer's output)")


class ArithmeticOps:
    """Add/Sub/Mul/Div/Neg with one constant operand: per-channel affine maps."""

    def _arith(self, node, op):
        left, right = self.take(node, 0), self.take(node, 1)
        if isinstance(left, Const) and isinstance(right, Const):
            check_computed_size(self, node, op, left.array, right.array)
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
            check_computed_size(self, node, "Neg", value.array)
            return Const(-value.array)
        return self._affine(node, value, mul=-1)

    def _affine(self, node, value, mul=None, add=None, invert=False, negate_add=False):
        """``value * mul`` (or ``/ mul``) or ``value + add`` (or ``- add``), per channel."""
        shape = value.shape
        if mul is not None:
            factors = [Fraction(mul)] * channel_count(shape) if isinstance(mul, int) else \
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
            check_pool_order(self, node, value, factors)
            result = derive(value, p1=[f * p for f, p in zip(factors, value.p1)],
                            p0=[f * p for f, p in zip(factors, value.p0)],
                            q=[f * q for f, q in zip(factors, value.q)])
            for values in (result.p1, result.p0, result.q):
                check_exact_size(self, node, values)
            return result
        if len(set(factors)) != 1:
            self.fail(node, f"scales {describe(value)} per channel; only the layers' outputs "
                            f"may be scaled per channel")
        f = factors[0]
        if isinstance(value, Binary):
            if f == 0:
                self.fail(node, "multiplies binary activations by 0")
            check_exact_size(self, node, [value.scale * f])
            return Binary(value.shape, value.scale * f)
        result = Pixels(value.shape, value.a * f, tuple(b * f for b in value.b), value.quantized)
        check_exact_size(self, node, [result.a, *result.b])
        return result

    def _shift(self, node, value, terms):
        if isinstance(value, Accum):
            result = derive(value, q=[q + t for q, t in zip(value.q, terms)])
            check_exact_size(self, node, result.q)
            return result
        if isinstance(value, Pixels):
            b = value.channel_b(len(terms))
            result = Pixels(value.shape, value.a, tuple(x + t for x, t in zip(b, terms)),
                            value.quantized)
            check_exact_size(self, node, result.b)
            return result
        self.fail(node, "adds a constant to binary activations (they are no longer +-s)")
