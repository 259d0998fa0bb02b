"""The shared exact threshold rule (trainer export and QONNX import)."""

import math
from fractions import Fraction

import numpy as np
import pytest

from hwgen.threshold_rule import exact, passes, threshold_rule


def _rule_passes(sign, threshold, acc):
    return sign * acc >= threshold


def test_rule_agrees_with_the_exact_predicate_everywhere_in_range():
    rng = np.random.default_rng(0)
    for _ in range(400):
        p1 = Fraction(int(rng.integers(-7, 8)), int(rng.integers(1, 5)))
        p0 = Fraction(int(rng.integers(-40, 41)), int(rng.integers(1, 4)))
        q = Fraction(int(rng.integers(-9, 10)), int(rng.integers(1, 3)))
        v = Fraction(int(rng.integers(1, 30)), int(rng.integers(1, 5)))
        lo = int(rng.integers(-30, 5))
        hi = lo + int(rng.integers(0, 40))
        sign, threshold = threshold_rule(p1, p0, q, v, lo, hi)
        for acc in range(lo, hi + 1):
            assert _rule_passes(sign, threshold, acc) == passes(acc, p1, p0, q, v)
        low, high = (lo, hi + 1) if sign == 1 else (-hi, -lo + 1)
        assert low <= threshold <= high  # clamped to the reachable range


def test_exact_ties_and_square_roots():
    # acc - 2 + 0 >= 0 at acc = 2 exactly (a tie passes)
    assert threshold_rule(1, -2, 0, 1, -5, 5) == (1, 2)
    # -acc + sqrt(2) >= 0  <=>  acc <= 1.414..  <=>  -acc >= -1
    assert threshold_rule(-1, 0, 1, 2, -5, 5) == (-1, -1)
    # acc + 1 - sqrt(4) >= 0 <=> acc >= 1 (a perfect square: the tie is exact)
    assert threshold_rule(1, 1, -1, 4, -5, 5) == (1, 1)
    # constant channels: never / always
    assert threshold_rule(0, -1, 0, 1, -5, 5) == (1, 6)
    assert threshold_rule(0, 0, 0, 1, -5, 5) == (1, -5)


def test_floats_are_taken_as_the_rationals_they_are():
    assert exact(0.1) == Fraction(3602879701896397, 36028797018963968)
    with pytest.raises(ValueError):
        exact(math.nan)
    with pytest.raises(ValueError):
        threshold_rule(1, 0, 0, 0, -1, 1)  # v must be > 0
    # 0.1 * acc >= 0.3 in exact arithmetic: 0.1 and 0.3 as floats put the tie just past 3
    sign, threshold = threshold_rule(0.1, -0.3, 0, 1, -10, 10)
    assert (sign, threshold) == (1, 3 if Fraction(0.1) * 3 >= Fraction(0.3) else 4)
