"""Exact integer threshold rules: ``p1*acc + p0 + q*sqrt(v) >= 0`` as ``sign*acc >= threshold``.

Every binary layer of the format ends in ``y = +1 if sign * acc >= threshold else -1`` on its
integer accumulator ``acc``. Whatever float pipeline produced a channel's decision (input
normalization, a scale, a bias, batch norm, another scale, a threshold compare), as long as
it is monotone in ``acc`` it can be written, in exact real arithmetic, as::

    passes(acc)  <=>  p1 * acc + p0 + q * sqrt(v) >= 0          (v > 0)

with rationals ``p1, p0, q, v``: batch norm contributes the one square root (``v = var +
eps``, multiplied through since ``sqrt(v) > 0``). This module decides that inequality exactly
(squaring with a sign case analysis, never a float comparison) and finds the integer rule
that agrees with it for *every* ``acc`` in the channel's reachable range ``[lo, hi]`` by a
binary search over that range (the predicate is monotone in ``acc``).

Used by the trainer's export (:mod:`train.fold`: batch norm with the running statistics) and
by the QONNX importer (:mod:`hwgen.qonnx_import`: any chain of scales, biases, batch norm and
thresholds). Floats are taken as the exact rationals they represent (:func:`exact`).

Rule conventions (the model format's): ``p1 > 0`` passes for ``acc >= T``: ``(+1, T)``;
``p1 < 0`` passes for ``acc <= T``: ``(-1, -T)``; ``p1 == 0`` is a constant channel, always
``(+1, lo)`` or never ``(+1, hi + 1)``. Thresholds are clamped to the reachable range:
``[lo, hi + 1]`` for sign +1 and ``[-hi, -lo + 1]`` for sign -1.
"""

from __future__ import annotations

import math
from fractions import Fraction


def exact(x) -> Fraction:
    """``x`` as an exact rational: Fractions and ints as they are, anything else as its float.

    Raises ``ValueError`` for NaN or an infinity (they have no rational value).
    """
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return Fraction(x)
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return Fraction(value)


def passes(acc, p1, p0, q=0, v=1) -> bool:
    """True when ``p1*acc + p0 + q*sqrt(v) >= 0``, decided exactly. Requires ``v > 0``."""
    p = exact(p1) * exact(acc) + exact(p0)
    q, v = exact(q), exact(v)
    if p >= 0 and q >= 0:
        return True
    if p <= 0 and q <= 0:
        return p == 0 and q == 0
    if p > 0:  # q < 0: p >= -q sqrt(v)
        return p * p >= q * q * v
    return q * q * v >= p * p  # p < 0 < q


def threshold_rule(p1, p0, q, v, lo: int, hi: int) -> tuple[int, int]:
    """``(sign, threshold)`` agreeing with :func:`passes` for every integer ``acc`` in
    ``[lo, hi]`` (``lo <= hi``). Raises ``ValueError`` unless ``v > 0`` and all are finite."""
    p1, p0, q, v = exact(p1), exact(p0), exact(q), exact(v)
    if not v > 0:
        raise ValueError(f"need v > 0 (a variance plus epsilon), got {float(v)}")
    lo, hi = int(lo), int(hi)
    if p1 == 0:
        return (1, lo) if passes(0, 0, p0, q, v) else (1, hi + 1)

    def ok(acc: int) -> bool:
        return passes(acc, p1, p0, q, v)

    if p1 > 0:  # smallest c in [lo, hi + 1] with ok(c) (hi + 1: never passes)
        first, last = lo, hi + 1
        while first < last:
            mid = (first + last) // 2
            if ok(mid):
                last = mid
            else:
                first = mid + 1
        return 1, first
    # p1 < 0: largest c in [lo - 1, hi] with ok(c) (lo - 1: never passes)
    first, last = lo - 1, hi
    while first < last:
        mid = (first + last + 1) // 2
        if ok(mid):
            first = mid
        else:
            last = mid - 1
    return -1, -first


#: Float32's rounding is 2**-24 of a value; a chain of a few operations (a scale, a bias, a
#: batch norm) stays within a few of those units of its largest term.
FLOAT32_TIE_MARGIN = 2.0 ** -21


def float_tie(p1, p0, q, v, rule: tuple[int, int], lo: int, hi: int) -> int | None:
    """An accumulator value next to ``rule``'s threshold (in ``[lo, hi]``) at which
    ``p1*acc + p0 + q*sqrt(v)`` is within :data:`FLOAT32_TIE_MARGIN` of its largest term:
    a float32 evaluation of the same chain may round it to the other side of 0, so the
    graph's float execution and this exact rule can disagree there. None when there is none.
    """
    p1, p0, q, v = exact(p1), exact(p0), exact(q), exact(v)
    if p1 == 0:
        return None
    sign, threshold = rule
    first = threshold if sign > 0 else -threshold  # p1 > 0: passes from first up
    try:
        root = q * Fraction(math.sqrt(v))
    except (OverflowError, ValueError):  # beyond float64: no float32 graph computes it
        return None
    for acc in ((first - 1, first) if sign > 0 else (first, first + 1)):
        if lo <= acc <= hi:
            value = p1 * acc + p0 + root
            largest = max(abs(p1 * acc), abs(p0), abs(root))
            if abs(value) <= FLOAT32_TIE_MARGIN * largest:
                return acc
    return None
