"""Constant ROMs: weights packed PE x SIMD per word, and per-channel parameters.

Weight ROM layout (one word per cycle of the folded unit): address ``nf * SF + sf`` holds
the weights of output channels ``nf*PE .. nf*PE+PE-1`` for inputs ``sf*SIMD ..
sf*SIMD+SIMD-1``; lane ``p`` (channel ``nf*PE + p``) occupies bits ``[p*SIMD, (p+1)*SIMD)``
and input ``sf*SIMD + i`` is bit ``i`` of the lane, 1 for +1 and 0 for -1. Padding (a
input ``>= N``) holds 1; a padded channel (``>= M``) repeats channel 0's weights, so its
sum stays inside the accumulator range (its comparator is set to never fire). A ``NF*SF x PE*SIMD`` memory with one
synchronous read port and no write port maps onto ``ceil(PE*SIMD / w) * ceil(NF*SF / d)``
iCE40 SB_RAM40_4K blocks for the best ``d x w`` configuration (Yosys picks it), or stays in
logic when :func:`hwgen.fold.rom_in_logic` says block RAM would be wasted.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib.memory import Memory

from ..fold import ceil_div

__all__ = ["pack_weights", "pack_lanes", "rom"]


def pack_weights(weight: np.ndarray, pe: int, simd: int) -> list[int]:
    """The ROM words of a +-1 ``weight [M, N]`` folded ``pe x simd`` (layout above)."""
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D [M, N], not shape {weight.shape}")
    m, n = weight.shape
    nf, sf = ceil_div(m, pe), ceil_div(n, simd)
    bits = np.ones((nf * pe, sf * simd), dtype=np.uint8)
    bits[:m, :n] = weight > 0
    bits[m:, :n] = bits[0, :n]  # padded channels copy channel 0: their sums stay in range
    # [nf, pe, sf, simd] -> [nf, sf, pe, simd]: one row of pe*simd bits per address.
    rows = bits.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(nf * sf, pe * simd)
    return [_bits_to_int(row) for row in rows]


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


def _bits_to_int(row: np.ndarray) -> int:
    packed = np.packbits(row.astype(np.uint8), bitorder="little")
    return int.from_bytes(packed.tobytes(), "little")


def rom(init: list[int], width: int, logic: bool) -> Memory:
    """A read-only :class:`~amaranth.lib.memory.Memory` of ``len(init)`` words of ``width``
    bits; ``logic`` asks Yosys to keep it out of block RAM, otherwise to put it in block
    RAM (``ram_style`` ``"logic"`` or ``"block"``: the choice the cost model made)."""
    return Memory(shape=unsigned(width), depth=max(1, len(init)), init=init,
                  attrs=ram_style(logic))


def ram_style(logic: bool) -> dict:
    return {"ram_style": "logic" if logic else "block"}
