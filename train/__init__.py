"""train: self-binarizing network training (and STE / float baselines) with exact export.

Modules: :mod:`~train.arch` (spec grammar), :mod:`~train.layers` (binarizers, blocks),
:mod:`~train.net` (the network), :mod:`~train.schedule` (nu), :mod:`~train.fold` (exact
BN + sign folding), :mod:`~train.export` (hwgen model, torch hard evaluation),
:mod:`~train.data`, :mod:`~train.loop` (training, checkpoints, DDP), :mod:`~train.epoch_log`
(its epoch lines read back), :mod:`~train.plots`,
:mod:`~train.cli` (``python -m train``). See ``docs/training.md``.
"""
