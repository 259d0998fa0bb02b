"""Where a layer's weights live: a ROM in logic, a ROM in block RAM, or the UP5K's SPRAM.

A layer folded ``PExSIMDs`` (:class:`~hwgen.fold.parse.Fold` with ``spram``) reads its
``NF*SF`` words of ``PE*SIMD`` bits (the weight ROM's words, :func:`hwgen.layout.pack_weights`)
from iCE40UP5K SPRAM blocks (SB_SPRAM256KA: :data:`SPRAM_DEPTH` words of
:data:`SPRAM_WIDTH` bits, one port, one-cycle synchronous read, no initial contents) instead
of a ROM: ``ceil(PE*SIMD / 16)`` blocks side by side (the width cascade) times
``ceil(NF*SF / 16384)`` of them one above the other (the depth cascade, behind an output
multiplexer). The core writes them at run time, from its weight stream, before it takes any
image (:mod:`hwgen.fold.spram` gives the words in load order).

The mixins :class:`SpramLayer` (of :class:`~hwgen.fold.plans.LayerPlan`) and
:class:`SpramNetwork` (of :class:`~hwgen.fold.plans.NetworkPlan`) add the SPRAM sizes to the
plans; :func:`check_spram` is :func:`~hwgen.fold.plan`'s check that a network's SPRAM layers
fit the device. Pure arithmetic; builds on :mod:`~hwgen.fold.parse` and
:mod:`~hwgen.fold.geometry`.
"""

from __future__ import annotations

from .geometry import ceil_div
from .parse import FoldError

#: One SB_SPRAM256KA block: 16384 words of 16 bits.
SPRAM_WIDTH = 16
SPRAM_DEPTH = 16384
#: SPRAM blocks on the iCE40UP5K (the limit :func:`~hwgen.fold.plan` checks by default).
UP5K_SPRAM_BLOCKS = 4
#: Logic cells of the network's weight loader when some layer is in SPRAM (the registered
#: write: data, address, block and enable; the address counter, its end compare and the
#: block counter) and, per SPRAM block, of its chip-select decode.
SPRAM_LOADER_LCS = 70
SPRAM_BLOCK_LCS = 3


def spram_shape(width: int, depth: int) -> tuple[int, int]:
    """(width blocks, depth blocks) of a ``depth x width`` memory in SPRAM."""
    return ceil_div(width, SPRAM_WIDTH), ceil_div(depth, SPRAM_DEPTH)


def spram_blocks(width: int, depth: int) -> int:
    """SPRAM blocks of a ``depth x width`` memory: width cascade times depth cascade."""
    wide, deep = spram_shape(width, depth)
    return wide * deep


def spram_block_words(width: int, depth: int) -> list[int]:
    """The words used in each block of a ``depth x width`` memory, blocks in load order:
    depth index ``d`` outer, width index ``k`` inner (block ``d * wide + k``)."""
    wide, deep = spram_shape(width, depth)
    return [min(SPRAM_DEPTH, depth - d * SPRAM_DEPTH) for d in range(deep) for _ in range(wide)]


def spram_luts(width: int, depth: int) -> int:
    """LUT estimate of a weight memory in SPRAM beyond the unit's datapath: a 2:1 multiplexer
    per bit per extra block of the depth cascade, and the blocks' chip-select decode."""
    wide, deep = spram_shape(width, depth)
    return wide * SPRAM_WIDTH * (deep - 1) + SPRAM_BLOCK_LCS * wide * deep


class SpramLayer:
    """SPRAM sizes of a :class:`~hwgen.fold.plans.LayerPlan` (read from its ``spram``,
    ``weight_logic``, ``pe``, ``simd``, ``nf`` and ``sf``)."""

    @property
    def weight_store(self) -> str:
        """Where the weights live: ``"spram"``, ``"logic"`` or ``"bram"``."""
        return "spram" if self.spram else "logic" if self.weight_logic else "bram"

    @property
    def spram_blocks(self) -> int:
        """SPRAM blocks of the weights (0 unless ``spram``)."""
        return spram_blocks(self.pe * self.simd, self.nf * self.sf) if self.spram else 0

    @property
    def spram_block_words(self) -> list[int]:
        """Words used in each of its SPRAM blocks, in load order (:func:`spram_block_words`)."""
        return spram_block_words(self.pe * self.simd, self.nf * self.sf) if self.spram else []

    @property
    def spram_words(self) -> int:
        """16-bit words the core loads into its SPRAM blocks."""
        return sum(self.spram_block_words)


class SpramNetwork:
    """SPRAM totals of a :class:`~hwgen.fold.plans.NetworkPlan` (from its ``mvtu_layers``)."""

    @property
    def spram_layers(self) -> list:
        """The plans of the layers whose weights are in SPRAM, in layer order."""
        return [lp for lp in self.mvtu_layers if lp.spram]

    @property
    def spram_blocks(self) -> int:
        return sum(lp.spram_blocks for lp in self.mvtu_layers)

    @property
    def spram_words(self) -> int:
        """16-bit words the core takes on its weight stream after reset (every SPRAM layer's
        :attr:`SpramLayer.spram_words`; 0: the core has no weight stream)."""
        return sum(lp.spram_words for lp in self.mvtu_layers)

    @property
    def spram_loader_luts(self) -> int:
        return SPRAM_LOADER_LCS if self.spram_words else 0


def check_spram(layers: list, limit: int) -> None:
    """FoldError unless the SPRAM blocks of ``layers`` (plans) fit the device's ``limit``."""
    used = [(lp.index, lp.spram_blocks) for lp in layers if getattr(lp, "spram", False)]
    total = sum(blocks for _, blocks in used)
    if total > limit:
        each = ", ".join(f"layer {index}: {blocks}" for index, blocks in used)
        raise FoldError(f"the fold needs {total} SPRAM blocks ({each}), the device has "
                        f"{limit}")
