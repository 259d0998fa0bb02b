"""The output layer: +-1 weights and an int32 bias from the last layer's exact score map."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .graph import ImportError_
from .ops_layers import OpenLayer
from .values import Accum


def output_layer(out: Accum, layer: OpenLayer):
    """The output layer's weights, int32 bias and score unit (how far the graph's score moves
    per accumulator step, which the check's tie tolerance is half of) from its exact affine
    map."""
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
    if not all(-(1 << 31) <= x < 1 << 31 for x in bias):
        # one constant added to every class's score changes no prediction: the lowest
        # bias becomes int32's lowest value
        shift = min(bias) + (1 << 31)
        bias = [x - shift for x in bias]
    if not all(-(1 << 31) <= x < 1 << 31 for x in bias):
        raise ImportError_(f"{node.describe()}: the output biases span "
                           f"{max(bias) - min(bias)} accumulator steps, more than int32 holds")
    if out.normalized:   # the graph's score moves by |p1| / sqrt(v) per accumulator step
        unit_abs = unit_abs / Fraction(math.sqrt(next(iter(vs))))
    return weight, np.array(bias, dtype=np.int32), unit_abs
