"""Per-channel constants that the dense units' arithmetic leaves to the parameters: the
count of -1 weights a raw-input unit's XOR terms fall short by (:func:`raw_negatives`), and
the offset an output layer adds to its accumulator (:func:`output_offsets`); both remembered
per layer, so a fold search that plans a layer hundreds of times counts its weights once.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..model import Dense, accumulator_range


#: Per layer, what its weights alone decide (raw ranges, -1 counts), kept while the layer
#: lives: a fold search plans each layer for hundreds of folds, and counting a 2^26-weight
#: layer's signs takes about a tenth of a second.
_WEIGHT_FACTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _weight_fact(layer, key, compute):
    """``compute()`` for ``layer`` and ``key``, remembered until ``layer.weight`` changes."""
    facts = _WEIGHT_FACTS.get(layer)
    if facts is None or facts[0] is not layer.weight:
        facts = (layer.weight, {})
        _WEIGHT_FACTS[layer] = facts
    if key not in facts[1]:
        facts[1][key] = compute()
    return facts[1][key]


def _raw_range(layer, input_bits: int) -> tuple[int, int]:
    """:func:`~hwgen.model.accumulator_range` of ``layer`` on raw ``input_bits``-bit input."""
    return _weight_fact(layer, ("range", input_bits),
                        lambda: accumulator_range(layer, False, (1 << input_bits) - 1))


def raw_pair_columns(n: int, simd: int) -> np.ndarray:
    """The input columns (of ``n``) that lead a term of a raw-input unit folded ``SIMD``
    wide: within each synapse fold, positions ``0, 2, 4, ...``. With ``SIMD >= 2`` position
    ``2k`` and ``2k + 1`` form one term (an odd ``SIMD``'s last position is a term alone);
    with ``SIMD == 1`` every column is a term."""
    columns = np.arange(n)
    return columns if simd < 2 else columns[(columns % simd) % 2 == 0]


def raw_negatives(layer: Dense, simd: int = 1) -> np.ndarray:
    """Per channel, what a raw-input unit folded ``simd`` wide falls short of the model's
    sum by: the count of -1 weights among the columns that lead a term
    (:func:`raw_pair_columns`). A term's value ``v`` is ``x`` (one input) or ``x_a + x_b``
    or ``x_a - x_b`` (a pair, chosen by whether the weights agree); the unit adds ``v`` when
    the leading weight is +1 and ``~v = -v - 1`` (an XOR, no negation) when it is -1.
    Padding inputs are 0 with weight +1. Read-only (shared by every plan of the layer)."""
    def count():
        weight = np.asarray(layer.weight)
        leading = raw_pair_columns(weight.shape[1], simd)
        counts = np.concatenate([(weight[i:i + 4096][:, leading] <= 0).sum(axis=1)
                                 for i in range(0, weight.shape[0], 4096)] or
                                [np.zeros(0, np.int64)]).astype(np.int64)
        counts.flags.writeable = False
        return counts
    return _weight_fact(layer, ("negatives", 1 if simd < 2 else simd), count)


def output_offsets(layer: Dense, binary: bool, simd: int = 1) -> np.ndarray:
    """Per-channel constant added to the accumulated value of an output layer (folded
    ``simd`` wide).

    Binary input: ``score = 2 * popcount - N + bias``, so the offset is ``bias - N``.
    Raw input: ``score = acc + negatives + bias`` (``acc`` falls short by
    :func:`raw_negatives`).
    """
    m, n = layer.weight.shape
    bias = np.zeros(m, np.int64) if layer.bias is None else layer.bias.astype(np.int64)
    return bias - n if binary else bias + raw_negatives(layer, simd)
