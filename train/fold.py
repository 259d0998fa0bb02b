"""Exact folding of batch norm + sign into one integer threshold and one sign bit.

A hidden channel computes, on its integer accumulator ``acc``::

    a = (acc - offset) / scale                        # input normalization (first raw layer)
    y = gamma * (a - mean) / sqrt(var + eps) + beta   # batch norm with running statistics
    out = +1 if y >= 0 else -1

and the model format wants ``out = +1 if sign * acc >= threshold else -1``. :func:`fold_bn`
finds ``(sign, threshold)`` such that the two agree for *every* integer ``acc`` in the
channel's reachable range ``[lo, hi]``, with ``y`` evaluated in exact real arithmetic on the
given float parameters (each float is taken as the exact rational it represents, and
``offset``/``scale`` may also be given as exact :class:`~fractions.Fraction` values; the one
square root is handled by squaring with case analysis, :func:`bn_sign_exact`). A float
estimate of the crossing point is refined by exact tests, so float rounding never decides.

- ``gamma > 0``: passes for ``acc >= T``  -> ``sign = +1``, ``threshold = T``.
- ``gamma < 0``: passes for ``acc <= T``  -> ``sign = -1``, ``threshold = -T``.
- ``gamma == 0``: constant ``beta >= 0``  -> always (threshold ``lo``) or never (``hi + 1``).

Thresholds are clamped to the reachable range: ``[lo, hi + 1]`` for sign +1 and
``[-hi, -lo + 1]`` for sign -1 (``threshold == -hi`` always passes, ``-lo + 1`` never).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def _exact(x) -> Fraction:
    """``x`` as an exact rational: a Fraction or int as it is, anything else as the float."""
    if isinstance(x, (Fraction, int)) and not isinstance(x, bool):
        return Fraction(x)
    return Fraction(float(x))


def bn_sign_exact(acc: int, gamma, beta, mean, var, eps, offset=0.0, scale=1.0) -> bool:
    """True when ``y >= 0`` (see the module docstring), decided in exact arithmetic.

    Requires ``var + eps > 0`` and ``scale > 0``.
    """
    g, b = Fraction(float(gamma)), Fraction(float(beta))
    v = Fraction(float(var)) + Fraction(float(eps))
    a = (Fraction(int(acc)) - _exact(offset)) / _exact(scale)
    p = g * (a - Fraction(float(mean)))  # y * sqrt(v) = p + b * sqrt(v), sqrt(v) > 0
    if p >= 0 and b >= 0:
        return True
    if p <= 0 and b <= 0:
        return p == 0 and b == 0
    if p > 0:  # b < 0: p >= -b sqrt(v)
        return p * p >= b * b * v
    return b * b * v >= p * p  # p < 0 < b


def _crossing_estimate(gamma, beta, mean, var, eps, offset, scale) -> float:
    """Float64 estimate of the real ``acc`` where ``y == 0`` (may be +-inf)."""
    with np.errstate(all="ignore"):
        t = float(offset) + float(scale) * (float(mean) - float(beta) * math.sqrt(
            float(var) + float(eps)) / float(gamma))
    return t


def fold_channel(gamma, beta, mean, var, eps, lo: int, hi: int, offset=0.0,
                 scale=1.0) -> tuple[int, int]:
    """``(sign, threshold)`` of one channel for integer accumulators in ``[lo, hi]``."""
    if not (float(var) + float(eps) > 0 and _exact(scale) > 0):
        raise ValueError(f"need var + eps > 0 and scale > 0, got var={var}, eps={eps}, "
                         f"scale={scale}")
    if not all(math.isfinite(float(x)) for x in (gamma, beta, mean, var, eps, offset, scale)):
        raise ValueError("batch norm parameters must be finite")

    def passes(acc):
        return bn_sign_exact(acc, gamma, beta, mean, var, eps, offset, scale)

    if float(gamma) == 0.0:
        return (1, lo) if float(beta) >= 0 else (1, hi + 1)
    t = _crossing_estimate(gamma, beta, mean, var, eps, offset, scale)
    if float(gamma) > 0:
        # smallest c in [lo, hi + 1] with passes(c) (hi + 1: never passes)
        c = lo if t <= lo else hi + 1 if t >= hi + 1 else math.ceil(t)
        while c > lo and passes(c - 1):
            c -= 1
        while c <= hi and not passes(c):
            c += 1
        return 1, c
    # gamma < 0: largest c in [lo - 1, hi] with passes(c) (lo - 1: never passes)
    c = lo - 1 if t < lo else hi if t >= hi else math.floor(t)
    while c < hi and passes(c + 1):
        c += 1
    while c >= lo and not passes(c):
        c -= 1
    return -1, -c


def fold_bn(gamma, beta, mean, var, eps: float, lo, hi, offset=None,
            scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Fold per-channel batch norm parameters (1-D float arrays of length M).

    ``lo``/``hi``: per-channel (or scalar) integer accumulator range; ``offset``: per-channel
    (or scalar, default 0) input-normalization offset; ``scale``: scalar > 0. ``offset``
    and ``scale`` may be floats or exact Fractions (a sequence of Fractions stays exact).
    Returns ``(sign int8 [M] in {-1, +1}, threshold int64 [M])``.
    """
    gamma, beta, mean, var = (np.asarray(x, dtype=np.float64).reshape(-1)
                              for x in (gamma, beta, mean, var))
    m = gamma.shape[0]
    lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), (m,))
    hi = np.broadcast_to(np.asarray(hi, dtype=np.int64), (m,))
    if offset is None:
        offset = [0.0] * m
    elif np.ndim(offset) == 0:
        offset = [offset] * m
    else:
        offset = list(offset) if len(offset) == m else list(np.broadcast_to(
            np.asarray(offset, dtype=object), (m,)))
    sign = np.empty(m, dtype=np.int8)
    threshold = np.empty(m, dtype=np.int64)
    for j in range(m):
        sign[j], threshold[j] = fold_channel(gamma[j], beta[j], mean[j], var[j], eps,
                                             int(lo[j]), int(hi[j]), offset[j], scale)
    return sign, threshold
