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
square root is handled by squaring with case analysis). The exact decision and the search
for the threshold are :mod:`hwgen.threshold_rule`'s, shared with the QONNX importer, so
float rounding never decides.

- ``gamma > 0``: passes for ``acc >= T``  -> ``sign = +1``, ``threshold = T``.
- ``gamma < 0``: passes for ``acc <= T``  -> ``sign = -1``, ``threshold = -T``.
- ``gamma == 0``: constant ``beta >= 0``  -> always (threshold ``lo``) or never (``hi + 1``).

Thresholds are clamped to the reachable range: ``[lo, hi + 1]`` for sign +1 and
``[-hi, -lo + 1]`` for sign -1 (``threshold == -hi`` always passes, ``-lo + 1`` never).
"""

from __future__ import annotations

import math

import numpy as np

from hwgen.threshold_rule import exact, passes, threshold_rule


def bn_sign_exact(acc: int, gamma, beta, mean, var, eps, offset=0.0, scale=1.0) -> bool:
    """True when ``y >= 0`` (see the module docstring), decided in exact arithmetic.

    Requires ``var + eps > 0`` and ``scale > 0``.
    """
    return passes(acc, *_rule_terms(gamma, beta, mean, var, eps, offset, scale))


def _rule_terms(gamma, beta, mean, var, eps, offset, scale):
    """``(p1, p0, q, v)`` of :mod:`hwgen.threshold_rule` for one channel:
    ``y * sqrt(v) = g * ((acc - offset) / scale - mean) + beta * sqrt(v)``."""
    g, s = exact(gamma), exact(scale)
    return (g / s, -g * (exact(offset) / s + exact(mean)), exact(beta),
            exact(var) + exact(eps))


def fold_channel(gamma, beta, mean, var, eps, lo: int, hi: int, offset=0.0,
                 scale=1.0) -> tuple[int, int]:
    """``(sign, threshold)`` of one channel for integer accumulators in ``[lo, hi]``."""
    if not all(math.isfinite(float(x)) for x in (gamma, beta, mean, var, eps, offset, scale)):
        raise ValueError("batch norm parameters must be finite")
    if not (float(var) + float(eps) > 0 and exact(scale) > 0):
        raise ValueError(f"need var + eps > 0 and scale > 0, got var={var}, eps={eps}, "
                         f"scale={scale}")
    return threshold_rule(*_rule_terms(gamma, beta, mean, var, eps, offset, scale), lo, hi)


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
