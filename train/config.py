"""What a training run is: :class:`TrainConfig`, the defaults of each method, and the
paper-faithful settings. No torch here: what only reads or compares settings (the
benchmark's main process, the sweep-folder reader) imports this without loading PyTorch;
:mod:`train.loop` runs a config."""

from __future__ import annotations

from dataclasses import dataclass

# Settings that only mean something for --method sbn (stored as "off" for the others).
SBN_ONLY = ("weight_norm", "grad_cap", "weight_grad_cap", "hard_phase", "weight_clip")
# The Self-Binarizing Networks paper's method: exact tanh gradient, no weight normalization,
# no hard phase (``TrainConfig(**PAPER_SBN)``, ``--sbn-variant paper``).
PAPER_SBN = {"weight_norm": "none", "grad_cap": None, "weight_grad_cap": None,
             "hard_phase": 0.0, "weight_clip": None}
# Adam's learning rate when none is given: the measured best of each method
# (docs/training.md). Files written before the trainer recorded ``lr`` in their provenance
# trained at LEGACY_LR unless their command gave ``--lr``.
DEFAULT_LR = {"sbn": 3e-3, "ste": 1e-3, "float": 1e-3}
LEGACY_LR = 1e-3


@dataclass
class TrainConfig:
    dataset: str = "fashion-mnist"
    arch: str = "mlp:96-96"
    method: str = "sbn"
    epochs: int = 10
    out: str | None = None
    checkpoint: str | None = None
    resume: bool = False
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 128
    lr: float | None = None  # None: DEFAULT_LR[method], filled in on construction
    weight_decay: float = 0.0
    binarize_at: int | None = None
    nu_schedule: str = "exp"
    nu_start: float = 1.0
    nu_end: float = 1000.0
    nu_ramp: float = 0.8
    nu_learnable: bool = False  # sbn: per-layer learnable nu above the schedule's floor
    # sbn's binarization (train/layers.py); the defaults are the measured best (see
    # docs/training.md), PAPER_SBN the paper-faithful reference
    weight_norm: str = "channel"
    grad_cap: float | None = 1.0
    weight_grad_cap: float | None = 0.25  # None: grad_cap
    hard_phase: float = 0.5
    weight_clip: float | None = None
    grad_clip: float | None = None  # any method: clip the gradient's global norm
    bn_recal: int = 0  # sbn and ste: re-estimate batch-norm statistics on N hard batches
    init_bound: float | None = None
    flip: bool = False
    shift: int = 0
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    plots: str | None = None
    threads: int | None = None
    progress: bool = True
    stop_after: int | None = None  # stop (as if killed) after this many epochs; for tests
    command: str = ""

    def __post_init__(self):
        if self.lr is None:
            self.lr = DEFAULT_LR.get(self.method, LEGACY_LR)
