"""Constant ROMs: weights packed PE x SIMD per word, and per-channel parameters.

Weight ROM layout (one word per cycle of the folded unit; :func:`pack_weights`, pure NumPy
in :mod:`hwgen.layout` so that :mod:`hwgen.fold` lays out SPRAM contents without Amaranth,
re-exported here): address ``nf * SF + sf`` holds the weights of output channels ``nf*PE ..
nf*PE+PE-1`` for inputs ``sf*SIMD .. sf*SIMD+SIMD-1``; lane ``p`` (channel ``nf*PE + p``)
occupies bits ``[p*SIMD, (p+1)*SIMD)`` and input ``sf*SIMD + i`` is bit ``i`` of the lane,
1 for +1 and 0 for -1. Padding (an input ``>= N``) holds 1; a padded channel (``>= M``)
repeats channel 0's weights, so its sum stays inside the accumulator range (its comparator
is set to never fire). A ``NF*SF x PE*SIMD`` memory with one synchronous read port and no
write port maps onto ``ceil(PE*SIMD / w) * ceil(NF*SF / d)`` iCE40 SB_RAM40_4K blocks for
the best ``d x w`` configuration (Yosys picks it), or stays in logic when
:func:`hwgen.fold.rom_in_logic` says block RAM would be wasted. A layer folded
``PExSIMDs`` reads the same words from SPRAM instead (:mod:`.spram`).
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib.memory import Memory

from ..fold import ceil_div
from ..layout import pack_weights

__all__ = ["pack_weights", "pack_lanes", "rom"]


def pack_lanes(values, width: int, lanes: int, pad: int = 0) -> list[int]:
    """Words of ``lanes`` fields of ``width`` bits (two's complement), ``values[k*lanes + p]``
    in field ``p`` of word ``k``; missing values are ``pad``."""
    values = [int(v) for v in values]
    words = ceil_div(len(values), lanes)
    values += [pad] * (words * lanes - len(values))
    mask = (1 << width) - 1
    out = []
    for k in range(words):
        word = 0
        for p in range(lanes):
            value = values[k * lanes + p]
            if not -(1 << width) <= value < (1 << width):
                raise ValueError(f"value {value} does not fit in {width} bits")
            word |= (value & mask) << (p * width)
        out.append(word)
    return out


def rom(init: list[int], width: int, logic: bool) -> Memory:
    """A read-only :class:`~amaranth.lib.memory.Memory` of ``len(init)`` words of ``width``
    bits; ``logic`` asks Yosys to keep it out of block RAM, otherwise to put it in block
    RAM (``ram_style`` ``"logic"`` or ``"block"``: the choice the cost model made)."""
    return Memory(shape=unsigned(width), depth=max(1, len(init)), init=init,
                  attrs=ram_style(logic))


def ram_style(logic: bool) -> dict:
    return {"ram_style": "logic" if logic else "block"}
