"""Results rows for ``train_compare.json`` from a ``tools/train_sweep.py`` output folder.

A sweep (several ``python -m train`` runs sharing one GPU) leaves ``NAME.npz`` and
``NAME.log`` per run. Each model file's provenance holds the exact command line, so the run's
full :class:`~train.config.TrainConfig` is rebuilt from it and matched against the benchmark's
named variants: a run becomes a row only when its settings (beyond arch, epochs, seed and the
run's plumbing) are exactly a variant's under today's defaults, the settings its provenance
records agree with that reconstruction (a file trained under other defaults does not), and
it was scored on the full Fashion-MNIST test set. Every other run is reported with the
reason and left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shlex
from pathlib import Path

# TrainConfig fields that say where and how a run was executed, or that are a row's own
# columns, not what was trained.
PLUMBING = {"dataset", "arch", "method", "epochs", "seed", "out", "checkpoint", "resume",
            "device", "data_dir", "train_limit", "test_limit", "plots", "threads",
            "progress", "stop_after", "command"}
# Settings the trainer records in an sbn model's provenance.
RECORDED = ("nu_schedule", "nu_start", "nu_end", "nu_ramp", "weight_norm", "grad_cap",
            "weight_grad_cap", "hard_phase", "weight_clip", "bn_recal", "grad_clip")
PREFIX = "python -m train "
TEST_IMAGES = 10000


def _defaults(method: str) -> dict:
    """Today's TrainConfig defaults for ``method`` (the learning rate's depends on it)."""
    from train.config import DEFAULT_LR, TrainConfig
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {**defaults, "lr": DEFAULT_LR[method]}


def settings_of(cfg) -> dict:
    """The fields of ``cfg`` (a TrainConfig) that differ from the trainer's defaults."""
    defaults = _defaults(cfg.method)
    return {name: getattr(cfg, name) for name in defaults
            if name not in PLUMBING and getattr(cfg, name) != defaults[name]}


def variant_of(method: str, settings: dict, variants: dict) -> str | None:
    """The variant ``(method, settings)`` trains, or None. A variant's settings are compared
    without the entries that equal today's defaults; where several variants train the same
    (a setting an older default spelled out), the one with the fewest settings is named."""
    defaults = _defaults(method)
    matches = [name for name, (v_method, v_settings) in variants.items()
               if v_method == method
               and {k: v for k, v in v_settings.items() if defaults.get(k) != v} == settings]
    return min(matches, key=lambda name: len(variants[name][1]), default=None)


def trained_lr(prov: dict, command: str, cfg) -> float:
    """The learning rate a run trained at: as its provenance records, else (files from
    before the trainer recorded it) the command's ``--lr`` or the trainer's default then."""
    from train.config import LEGACY_LR
    if "lr" in prov:
        return prov["lr"]
    given = any(arg == "--lr" or arg.startswith("--lr=") for arg in shlex.split(command))
    return cfg.lr if given else LEGACY_LR


def _row(path: Path, folder: Path, variants: dict, device: str) -> dict | str:
    """One run's row, or why it is left out."""
    from hwgen.errors import UserError
    from hwgen.model import load
    from train.arch import parse_arch
    from train.cli import config_from_argv
    from train.config import check_settings
    from train.epoch_log import epoch_seconds

    try:
        prov = load(path).provenance
    except (OSError, UserError) as err:
        raise ValueError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
    command = prov.get("command", "")
    if not isinstance(command, str) or not command.startswith(PREFIX):
        return "no 'python -m train' command in its provenance"
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            # argparse's own line (or -h's help) is not the script's output
            cfg = config_from_argv(shlex.split(command[len(PREFIX):]), check_paths=False)
    except (SystemExit, UserError, ValueError):
        return f"its command does not parse: {command[:200]}"
    try:
        check_settings(cfg)  # what train itself refuses: no --out, a bad --arch...
        parse_arch(cfg.arch)
    except UserError as err:
        return f"its command is no run train would start ({str(err)[:200]})"
    mismatched = [k for k in ("dataset", "method", "arch", "epochs", "seed", "binarize_at")
                  if k in prov and prov[k] != getattr(cfg, k)]
    if mismatched:
        return f"its command's {', '.join(mismatched)} differ from its provenance's"
    if cfg.stop_after is not None:
        return "its command stops early (--stop-after)"
    recorded = prov.get("train_images")
    if cfg.train_limit is not None and isinstance(recorded, int) and recorded > cfg.train_limit:
        return (f"its provenance's train_images ({recorded}) exceed its command's "
                f"--train-limit {cfg.train_limit}")
    settings = settings_of(cfg)
    variant = variant_of(cfg.method, settings, variants)
    if cfg.dataset != "fashion-mnist" or variant is None:
        return f"{cfg.dataset} {cfg.method} {settings} is no variant"
    differs = [k for k in RECORDED if k in prov and prov[k] != getattr(cfg, k)]
    if trained_lr(prov, command, cfg) != cfg.lr:
        differs.append("lr")
    if differs:
        return f"trained under other defaults ({', '.join(differs)} differ from today's)"
    if prov.get("test_images") != TEST_IMAGES:
        return f"scored on {prov.get('test_images')} test images, not {TEST_IMAGES}"
    if not all(isinstance(prov.get(k), float) and 0 <= prov[k] <= 1
               for k in ("test_accuracy", "soft_test_accuracy")):
        return "no test accuracies (fractions) in its provenance"
    images = prov.get("train_images", cfg.train_limit or 60000)
    if not isinstance(images, int) or isinstance(images, bool) or not 1 <= images <= 10**7:
        return f"its provenance's train_images is not a number of images: {images!r:.40}"
    log = path.with_suffix(".log")
    try:
        times = epoch_seconds(_read_log(log)) if os.path.lexists(log) else []
        if not all(0 <= t < 1e9 for t in times):
            raise ValueError("an epoch's seconds out of range")
    except UserError as err:
        raise ValueError(str(err)) from None
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: seconds as "1.2.3"
        raise ValueError(f"{log}: not a readable training log ({err.__class__.__name__})") \
            from None
    exported, soft = prov["test_accuracy"], prov["soft_test_accuracy"]
    row = {"arch": cfg.arch, "epochs": cfg.epochs, "method": cfg.method, "variant": variant,
           "seed": cfg.seed, "exported_accuracy": exported,
           "gap": round(100 * (soft - exported), 4), "soft_accuracy": soft,
           "device": prov.get("device", device),
           "train_images": images,
           "settings": settings, "sweep": f"{folder.name}/{path.stem}"}
    if times:
        row["seconds"] = round(sum(times), 1)  # under the sweep's shared load
    return row


#: The largest training log read (a 1,000-epoch run's is about 200 KB).
MAX_LOG_BYTES = 16 << 20


def _read_log(log: Path) -> str:
    """The text of the training log ``log``: a regular file of at most
    :data:`MAX_LOG_BYTES` (UserError otherwise; a FIFO there is never waited on)."""
    from hwgen.files import read_bounded

    return read_bounded(log, MAX_LOG_BYTES, what="training log",
                        reason=", not a training log").decode("utf-8")


def rows_from_sweep(folder: Path, variants: dict, device: str) -> tuple[list[dict], list[str]]:
    """``(rows, notes)``: one row per run of ``folder`` that is a variant's (module
    docstring), and one note per run left out, saying why. ``device`` labels runs whose
    provenance does not record one (files from before the trainer recorded it). Raises
    ``ValueError`` on a folder or model file that cannot be read."""
    from hwgen.files import folder_problem

    problem = folder_problem(folder)  # (Path.is_dir raised for a name too long)
    if problem:
        raise ValueError(f"{folder}: {problem}")
    rows, notes = [], []
    for path in sorted(folder.glob("*.npz")):
        row = _row(path, folder, variants, device)
        if isinstance(row, str):
            notes.append(f"{path.name}: {row}")
        else:
            rows.append(row)
    return rows, notes
