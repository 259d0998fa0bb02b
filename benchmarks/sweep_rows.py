"""Results rows for ``train_compare.json`` from a ``tools/train_sweep.py`` output folder.

A sweep (several ``python -m train`` runs sharing one GPU) leaves ``NAME.npz`` and
``NAME.log`` per run. Each model file's provenance holds the exact command line, so the run's
full :class:`~train.loop.TrainConfig` is rebuilt from it and matched against the benchmark's
named variants: a run becomes a row only when its settings (beyond arch, epochs, seed and the
run's plumbing) are exactly a variant's. Runs that match none (a shipped-model candidate with
augmentation, say) are reported and left out.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

# TrainConfig fields that say where and how a run was executed, or that are a row's own
# columns, not what was trained.
PLUMBING = {"dataset", "arch", "method", "epochs", "seed", "out", "checkpoint", "resume",
            "device", "data_dir", "train_limit", "test_limit", "plots", "threads",
            "progress", "stop_after", "command"}
EPOCH_SECONDS = re.compile(r"^epoch \d+/\d+ .*\(([\d.]+)s\)\s*$")
PREFIX = "python -m train "


def settings_of(cfg) -> dict:
    """The fields of ``cfg`` (a TrainConfig) that differ from the trainer's defaults."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in PLUMBING and getattr(cfg, f.name) != f.default}


def variant_of(method: str, settings: dict, variants: dict) -> str | None:
    """The name of the variant ``(method, settings)`` is, or None."""
    for name, (v_method, v_settings) in variants.items():
        if v_method == method and v_settings == settings:
            return name
    return None


def rows_from_sweep(folder: Path, variants: dict, device: str) -> tuple[list[dict], list[str]]:
    """``(rows, notes)``: one row per run of ``folder`` whose settings are a variant's, and one
    note per run left out (and why). ``device`` labels runs whose provenance does not record
    one (files from before the trainer recorded it). Raises ``ValueError`` on a folder or
    model file that cannot be read."""
    from hwgen.errors import UserError
    from hwgen.model import load
    from train.cli import config_from_argv

    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    rows, notes = [], []
    for path in sorted(folder.glob("*.npz")):
        try:
            prov = load(path).provenance
        except (OSError, UserError) as err:
            raise ValueError(f"{path}: {err}") from None
        command = prov.get("command", "")
        if not isinstance(command, str) or not command.startswith(PREFIX):
            notes.append(f"{path.name}: no 'python -m train' command in its provenance")
            continue
        try:
            cfg = config_from_argv(shlex.split(command[len(PREFIX):]))
        except (SystemExit, UserError, ValueError):
            notes.append(f"{path.name}: its command does not parse: {command}")
            continue
        settings = settings_of(cfg)
        variant = variant_of(cfg.method, settings, variants)
        if cfg.dataset != "fashion-mnist" or variant is None:
            notes.append(f"{path.name}: {cfg.dataset} {cfg.method} {settings} is no variant")
            continue
        log = path.with_suffix(".log")
        times = ([float(m.group(1)) for m in map(EPOCH_SECONDS.match,
                                                 log.read_text().splitlines()) if m]
                 if log.exists() else [])
        exported = float(prov["test_accuracy"])
        soft = float(prov["soft_test_accuracy"])
        row = {"arch": cfg.arch, "epochs": cfg.epochs, "method": cfg.method,
               "variant": variant, "seed": cfg.seed, "exported_accuracy": exported,
               "gap": round(100 * (soft - exported), 4), "soft_accuracy": soft,
               "device": prov.get("device", device),
               "train_images": int(prov.get("train_images", cfg.train_limit or 60000)),
               "settings": settings, "sweep": f"{folder.name}/{path.stem}"}
        if times:
            row["seconds"] = round(sum(times), 1)  # under the sweep's shared load
        rows.append(row)
    return rows, notes
