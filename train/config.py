"""What a training run is: :class:`TrainConfig`, the defaults of each method, and the
paper-faithful settings. No torch here: what only reads or compares settings (the
benchmark's main process, the sweep-folder reader) imports this without loading PyTorch;
:mod:`train.loop` runs a config."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("sbn", "ste", "float")
WEIGHT_NORMS = ("none", "layer", "channel")

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


def check_settings(cfg: TrainConfig) -> None:
    """UserError (one line naming the option) unless ``cfg`` is a run ``python -m train``
    would start: what can be checked without torch (the device's availability is checked
    where torch is loaded). Also used on a command read back from a model's provenance."""
    import math

    from hwgen.errors import UserError
    from hwgen.outputs import same_path

    if cfg.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 2:
        raise UserError(f"--batch-size must be at least 2, got {cfg.batch_size}")
    if not cfg.lr > 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    if not (cfg.nu_start > 0 and cfg.nu_end > 0):
        raise UserError("--nu-start and --nu-end must be positive")
    if not 0 < cfg.nu_ramp <= 1:
        raise UserError(f"--nu-ramp must be in (0, 1], got {cfg.nu_ramp}")
    if cfg.binarize_at is not None and not 0 <= cfg.binarize_at <= 256:
        raise UserError(f"--binarize-at must be in [0, 256], got {cfg.binarize_at}")
    if cfg.shift < 0:
        raise UserError(f"--shift must be >= 0, got {cfg.shift}")
    if cfg.nu_learnable and cfg.method != "sbn":
        raise UserError(f"--nu-learnable needs --method sbn (got --method {cfg.method})")
    if cfg.weight_norm not in WEIGHT_NORMS:
        raise UserError(f"--weight-norm must be one of {', '.join(WEIGHT_NORMS)}, "
                        f"got {cfg.weight_norm!r}")
    for name in ("grad_cap", "weight_grad_cap", "weight_clip", "grad_clip"):
        value = getattr(cfg, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, "
                            f"got {value}")
    if not 0 <= cfg.hard_phase < 1:
        raise UserError(f"--hard-phase must be in [0, 1), got {cfg.hard_phase}")
    if cfg.bn_recal < 0:
        raise UserError(f"--bn-recal must be >= 0, got {cfg.bn_recal}")
    if cfg.bn_recal and cfg.method == "float":
        raise UserError("--bn-recal recalibrates the binary network before export: it goes "
                        "with --method sbn or ste, not float")
    if cfg.method == "float" and cfg.out:
        raise UserError("--method float trains the float upper bound, which has no binary "
                        "model file; omit --out (use --checkpoint to keep its weights)")
    if cfg.method != "float" and not cfg.out:
        raise UserError(f"--method {cfg.method} needs --out MODEL.npz")
    if cfg.out and not str(cfg.out).endswith(".npz"):
        raise UserError(f"--out {cfg.out}: model files end in .npz")
    if cfg.resume and not (cfg.checkpoint or cfg.out):
        raise UserError("--resume needs a checkpoint to resume from: give --checkpoint "
                        "(--method float writes no --out to keep one beside)")
    if cfg.out and cfg.checkpoint and same_path(cfg.out, cfg.checkpoint):
        raise UserError(f"--checkpoint {cfg.checkpoint} is the --out model file: give "
                        f"another path (the default is beside it, .ckpt.pt)")
    for name in ("train_limit", "test_limit"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
