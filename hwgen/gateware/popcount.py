"""Pipelined adder trees: popcounts of XNOR bits and sums of signed terms."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value

from ..fold import TREE_LEVELS_PER_STAGE, tree_register_stages

__all__ = ["adder_tree", "tree_register_stages"]


def adder_tree(m: Module, terms: list, enable: Value,
               levels_per_stage: int = TREE_LEVELS_PER_STAGE, name: str = "tree") -> Value:
    """The sum of ``terms`` as a balanced tree of two-input adders.

    Each level adds neighbours pairwise (an odd one passes through); after every
    ``levels_per_stage`` levels, except after the root, the level's sums are registered in
    the ``sync`` domain when ``enable`` is high. The result therefore lags the terms by
    :func:`~hwgen.fold.tree_register_stages` ``(len(terms), levels_per_stage)`` enabled
    cycles and is combinational after the last register. Widths grow one bit per level
    (single-bit unsigned leaves make a popcount; signed leaves a signed sum).
    """
    if not terms:
        raise ValueError("adder_tree needs at least one term")
    if not isinstance(levels_per_stage, int) or levels_per_stage < 1:
        raise ValueError(f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
    level = [Value.cast(t) for t in terms]
    depth = 0
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        depth += 1
        if depth % levels_per_stage == 0 and len(nxt) > 1:
            registered = []
            for j, value in enumerate(nxt):
                reg = Signal(value.shape(), name=f"{name}_l{depth}_{j}")
                with m.If(enable):
                    m.d.sync += reg.eq(value)
                registered.append(reg)
            nxt = registered
        level = nxt
    assert depth == max(0, (len(terms) - 1).bit_length())
    return level[0]
