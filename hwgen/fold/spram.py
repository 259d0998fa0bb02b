"""The words a core loads into its SPRAM after reset, in load order (pure NumPy).

A core whose plan has layers folded ``PExSIMDs`` (:attr:`~hwgen.fold.NetworkPlan.spram_words`
> 0) takes exactly :func:`spram_words` ``(net)`` on its 16-bit weight stream ``w`` after
reset, and no image before the last of them is written (see
:class:`hwgen.gateware.network.Network`). The order:

* the SPRAM layers in layer order; for each
* its SPRAM blocks in load order: depth index ``d`` outer (``d = 0 ..
  ceil(NF*SF / 16384) - 1``), width index ``k`` inner (``k = 0 .. ceil(PE*SIMD / 16) - 1``);
  for each block ``(d, k)``
* addresses ``a = 0 .. used - 1`` of the block, ``used = min(16384, NF*SF - d*16384)``:
  bits ``[16k, 16k + 16)`` of the layer's weight-ROM word ``d*16384 + a`` (the words of
  :func:`hwgen.layout.pack_weights` for the layer's unit weights,
  :func:`~hwgen.fold.plans.unit_layer`: a conv layer's in window order, a dense layer after
  a feature map in stream order), bit ``16k + j`` of the ROM word in bit ``j`` of the
  16-bit word; ROM bits past ``PE*SIMD`` (the last width block of a fold whose ``PE*SIMD``
  is no multiple of 16) are 0.

So a layer takes ``ceil(PE*SIMD / 16) * NF*SF`` words and the whole load
``net.spram_words``. Builds on :mod:`~hwgen.fold.plans` and :mod:`~hwgen.fold.storage`.
"""

from __future__ import annotations

import numpy as np

from ..layout import weight_rows
from .plans import NetworkPlan, unit_layer
from .storage import SPRAM_DEPTH, SPRAM_WIDTH, spram_shape

__all__ = ["spram_words", "layer_spram_words"]


def layer_spram_words(net: NetworkPlan, index: int) -> np.ndarray:
    """The load words (uint16, in load order) of layer ``index``'s SPRAM blocks."""
    lp = net.layers[index]
    if not getattr(lp, "spram", False):
        raise ValueError(f"layer {index} keeps no weights in SPRAM")
    rows = weight_rows(unit_layer(net.model, index).weight, lp.pe, lp.simd)
    depth, width = rows.shape
    wide, deep = spram_shape(width, depth)
    bits = np.zeros((depth, wide * SPRAM_WIDTH), dtype=np.uint8)
    bits[:, :width] = rows
    # [depth, wide, 16] bits -> [depth, wide] little-endian 16-bit words
    words = np.packbits(bits.reshape(depth, wide, SPRAM_WIDTH), axis=-1, bitorder="little")
    words = words[..., 0].astype(np.uint16) | (words[..., 1].astype(np.uint16) << 8)
    out = [words[d * SPRAM_DEPTH:(d + 1) * SPRAM_DEPTH, k]
           for d in range(deep) for k in range(wide)]
    return np.concatenate(out).astype(np.uint16)


def spram_words(net: NetworkPlan) -> np.ndarray:
    """Every SPRAM layer's :func:`layer_spram_words`, in layer order: uint16
    ``[net.spram_words]`` (empty without SPRAM layers)."""
    parts = [layer_spram_words(net, lp.index) for lp in net.spram_layers]
    words = np.concatenate(parts) if parts else np.zeros(0, np.uint16)
    assert len(words) == net.spram_words
    return words
