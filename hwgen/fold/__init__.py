"""Folding: how many output channels (PE) and inputs (SIMD) each layer computes per cycle.

This package is pure Python (no Amaranth), so ``python -m hwgen info --fold`` stays fast. It
holds everything the generator and the CLI must agree on, one idea per module, each building
only on those listed before it:

* :mod:`~hwgen.fold.parse`: what a :class:`Fold` is (``NF * SF`` cycles per image or output
  position); :func:`parse_fold` reads a user's fold (``"64x32,32x16,10x8"`` or JSON) and
  checks it, :func:`resolve_fold` also takes ``auto`` and ``fastest`` (:data:`FOLD_CHOICES`);
* :mod:`~hwgen.fold.geometry`: block RAM, ROM, buffer and LUT costs and pipeline depths of
  the units on the iCE40 (:func:`bram_blocks`, :func:`rom_in_logic`, :func:`repack_luts`,
  ...);
* :mod:`~hwgen.fold.storage`: where a layer's weights live (logic, block RAM, or SPRAM for
  a ``PExSIMDs`` fold): SPRAM geometry (:func:`spram_blocks`, :func:`spram_block_words`),
  its LUT cost and :func:`check_spram`;
* :mod:`~hwgen.fold.line_buffers`: the plans of a conv layer's sliding window
  (:class:`WindowPlan`) and of a max-pool (:class:`PoolPlan`);
* :mod:`~hwgen.fold.channel_constants`: per-channel constants the dense units leave to
  their parameters (:func:`raw_negatives`, :func:`output_offsets`);
* :mod:`~hwgen.fold.plans`: :func:`plan` turns a model and a fold into a
  :class:`NetworkPlan`: per layer the folded sizes, derived widths, weight ROM geometry,
  block RAMs, estimated LUTs and cycles, and for the network the initiation interval and
  the latency;
* :mod:`~hwgen.fold.default`: :func:`default_fold` picks a fold that balances layer cycle
  counts within a :class:`Budget` (``--fold fastest`` is :mod:`hwgen.fold_search`);
* :mod:`~hwgen.fold.spram`: :func:`spram_words`, the words a core loads into its SPRAM
  after reset, in load order;
* :mod:`~hwgen.fold.cycles`: an exact cycle model of the RTL in :mod:`hwgen.gateware`
  (:func:`latency`, checked against simulation by the tests) and :func:`latency_bound`;
* :mod:`~hwgen.fold.report`: :func:`format_fold_table`, the table ``info --fold`` prints.

Every name is importable from :mod:`hwgen.fold` itself (the submodules are its layout, not
its interface). ``docs/conv-hardware.md`` describes the units and the stream order between
them.
"""

from __future__ import annotations

from .parse import (FOLD_CHOICES, MAX_FOLD_CHARS, MAX_FOLD_DEPTH, _TEXT_FOLD, Fold, FoldError,
                    _json_entry, _read_fold_file, _text_entry, check_fold, check_supported,
                    fold_keyword, has_fold, parse_fold, resolve_fold, where)
from .geometry import (BRAM_BITS, ICE40_BRAM_CONFIGS, LINE_BUFFER_LOGIC_BITS, LOGIC_BUFFER_MAX_BITS,
                       LOGIC_BUFFER_MAX_DEPTH, LOGIC_ROM_MAX_BITS, LOGIC_ROM_MAX_DEPTH,
                       MIN_BRAM_EFFICIENCY, POOL_BASE_LCS, RAW_TREE_LEVELS_PER_STAGE,
                       TREE_LEVELS_PER_STAGE, WINDOW_BASE_LCS, _divisors, argmax_compare_cycles,
                       argmax_latency, argmax_luts, argmax_stages, bram_blocks, buffer_in_logic,
                       ceil_div, line_buffer_bits, line_buffer_brams, line_buffer_in_logic,
                       line_buffer_logic_bits, line_buffer_rows, logic_rom_luts, pool_luts,
                       repack_luts, rom_in_logic, tree_register_stages, window_luts)
from .storage import (SPRAM_BLOCK_LCS, SPRAM_DEPTH, SPRAM_LOADER_LCS, SPRAM_WIDTH,
                      UP5K_SPRAM_BLOCKS, SpramLayer, SpramNetwork, check_spram, spram_block_words,
                      spram_blocks, spram_luts, spram_shape)
from .line_buffers import PoolPlan, WindowPlan, _LineBufferUnit
from .channel_constants import output_offsets, raw_negatives, raw_pair_columns
from .plans import (LayerPlan, NetworkPlan, RepackPlan, _conv_view, default_lanes, dense_plan,
                    input_order, layer_plan, narrowest_buffers, plan, repacks_before,
                    stream_after, unit_layer)
from .default import (DEFAULT_MAX_ROM_DEPTH, UP5K_FLASH_LOADER_LUTS, Budget, _fold_counts,
                      default_fold, spram_folds, up5k_budget)
from .spram import spram_words
from .cycles import latency, latency_bound, repack_schedule
from .report import _buffer_note, format_fold_table

__all__ = [
    "BRAM_BITS", "DEFAULT_MAX_ROM_DEPTH", "FOLD_CHOICES", "ICE40_BRAM_CONFIGS",
    "UP5K_FLASH_LOADER_LUTS", "up5k_budget",
    "LINE_BUFFER_LOGIC_BITS", "LOGIC_BUFFER_MAX_BITS", "LOGIC_BUFFER_MAX_DEPTH",
    "LOGIC_ROM_MAX_BITS", "LOGIC_ROM_MAX_DEPTH", "MAX_FOLD_CHARS", "MAX_FOLD_DEPTH",
    "MIN_BRAM_EFFICIENCY", "POOL_BASE_LCS", "RAW_TREE_LEVELS_PER_STAGE", "TREE_LEVELS_PER_STAGE",
    "SPRAM_BLOCK_LCS", "SPRAM_DEPTH", "SPRAM_LOADER_LCS", "SPRAM_WIDTH", "UP5K_SPRAM_BLOCKS",
    "SpramLayer", "SpramNetwork", "check_spram", "spram_block_words", "spram_blocks", "spram_folds",
    "spram_luts", "spram_shape", "spram_words",
    "WINDOW_BASE_LCS", "_TEXT_FOLD", "Budget", "Fold", "FoldError", "LayerPlan", "NetworkPlan",
    "PoolPlan", "RepackPlan", "WindowPlan", "_LineBufferUnit", "_buffer_note", "_conv_view",
    "_divisors", "_fold_counts", "_json_entry", "_read_fold_file", "_text_entry",
    "argmax_compare_cycles", "argmax_latency", "argmax_luts", "argmax_stages", "bram_blocks",
    "buffer_in_logic", "ceil_div", "check_fold", "check_supported", "default_fold", "default_lanes",
    "dense_plan", "fold_keyword",
    "format_fold_table", "has_fold", "input_order", "latency", "latency_bound", "layer_plan",
    "line_buffer_bits", "line_buffer_brams", "line_buffer_in_logic", "line_buffer_logic_bits",
    "line_buffer_rows", "logic_rom_luts", "narrowest_buffers", "output_offsets", "parse_fold",
    "plan", "pool_luts", "raw_negatives", "raw_pair_columns", "repack_luts", "repack_schedule",
    "repacks_before",
    "resolve_fold", "rom_in_logic", "stream_after", "tree_register_stages", "unit_layer", "where",
    "window_luts"
]
