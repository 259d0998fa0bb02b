"""The training variants ``benchmarks/train_compare.py`` knows: each a name for a method and
the ``python -m train`` settings it changes (torch-free, so results files, sweeps and tests
can name variants without loading a trainer)."""

from __future__ import annotations

from train.config import PAPER_SBN

# name -> (method, TrainConfig settings beyond the shared ones). Each row of the results
# file also stores its variant's settings, relative to today's TrainConfig defaults (rows
# are renamed when a default changes: the old default becomes ``sbn-vN``).
_V3 = {"lr": 1e-3, "hard_phase": 0.25}  # the third default: Adam 1e-3, a quarter hard phase
_V2 = {"lr": 1e-3, "hard_phase": 0.1}  # the second default: a shorter hard phase
_V1 = {**_V2, "weight_grad_cap": None}  # the first: also one cap for weights and activations
VARIANTS: dict[str, tuple[str, dict]] = {
    "float": ("float", {}),
    "ste": ("ste", {}),
    "ste-recal": ("ste", {"bn_recal": 100}),
    "ste-lr-3e-3": ("ste", {"lr": 3e-3}),
    "ste-lr-5e-3": ("ste", {"lr": 5e-3}),
    "ste-lr-1e-2": ("ste", {"lr": 1e-2}),
    "sbn-paper": ("sbn", {**PAPER_SBN, "lr": 1e-3}),
    "sbn": ("sbn", {}),
    # probes of today's default: a longer hard phase (three quarters of the steps)
    "sbn-hard-0.75": ("sbn", {"hard_phase": 0.75}),
    "sbn-lr-5e-3": ("sbn", {"lr": 5e-3}),
    "sbn-hard-0.75-lr-5e-3": ("sbn", {"hard_phase": 0.75, "lr": 5e-3}),
    "sbn-lr-1e-2": ("sbn", {"lr": 1e-2}),
    # the third default and the probes around it (one or two settings changed, most on the
    # CNN) that chose today's: Adam 3e-3 and a hard phase of half the steps
    "sbn-v3": ("sbn", dict(_V3)),
    **{f"sbn-v3-{name}": ("sbn", {**_V3, **change}) for name, change in {
        "hard-0.5": {"hard_phase": 0.5},
        "hard-0.75": {"hard_phase": 0.75},
        "ramp-0.4-hard-0.5": {"nu_ramp": 0.4, "hard_phase": 0.5},
        "wcap-1": {"weight_grad_cap": None},
        "wcap-1-hard-0.5": {"weight_grad_cap": None, "hard_phase": 0.5},
        "lr-3e-3": {"lr": 3e-3},
    }.items()},
    # the second default and its ablations (one setting changed), which chose the weight cap
    # and, against sbn-v3, the longer hard phase
    "sbn-v2": ("sbn", dict(_V2)),
    **{f"sbn-v2-{name}": ("sbn", {**_V2, **change}) for name, change in {
        "exact-grad": {"grad_cap": None, "weight_grad_cap": None},
        "no-norm": {"weight_norm": "none"},
        "no-hard": {"hard_phase": 0.0},
        "wcap-0.1": {"weight_grad_cap": 0.1},
        "recal": {"bn_recal": 100},
        "wclip-2": {"weight_clip": 2.0},
    }.items()},
    # the first default (no separate weight cap) and the single-seed probes around it that
    # chose weight normalization, the cap and the hard phase
    "sbn-v1": ("sbn", dict(_V1)),
    **{f"sbn-v1-{name}": ("sbn", {**_V1, **change}) for name, change in {
        "exact-grad": {"grad_cap": None},
        "no-norm": {"weight_norm": "none"},
        "layer-norm": {"weight_norm": "layer"},
        "no-hard": {"hard_phase": 0.0},
        "hard-0.25": {"hard_phase": 0.25},
        "cap-2": {"grad_cap": 2.0},
        "cap-0.5": {"grad_cap": 0.5},
        "recal": {"bn_recal": 100},
        "wclip-3": {"weight_clip": 3.0},
        "wclip-2": {"weight_clip": 2.0},
        "wclip-1.5": {"weight_clip": 1.5},
        "hard-0.25-wclip-1.5": {"hard_phase": 0.25, "weight_clip": 1.5},
        "gclip-1": {"grad_clip": 1.0},
        "nu-100": {"nu_end": 100.0},
        "nu-start-0.3": {"nu_start": 0.3},
        "ramp-0.4": {"nu_ramp": 0.4},
        "wd-1e-3": {"weight_decay": 1e-3},
        "wd-1e-2": {"weight_decay": 1e-2},
        "lr-3e-3": {"lr": 3e-3},
    }.items()},
}
