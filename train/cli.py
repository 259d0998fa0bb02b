"""``python -m train``: train a binary network and export it as a model file.

User errors print one line ``error: ...`` to stderr and exit 2 (no traceback); the model
file and checkpoints are written atomically, so an error or a kill never leaves a partial
file. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hwgen.datasets import DATASETS
from hwgen.errors import UserError

from .arch import PRESETS
from .layers import METHODS, WEIGHT_NORMS
from .loop import PAPER_SBN, SBN_ONLY, TrainConfig, train
from .schedule import SCHEDULES


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m train",
                description="Train a self-binarizing (or STE / float baseline) network and "
                            "export it in the binary model format.")
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    p.add_argument("--arch", required=True,
                   help="architecture, e.g. mlp:256-256 or cnn:c32-p-c64-p-d256 "
                        "(grammar in docs/training.md), or a preset: "
                        + ", ".join(PRESETS))
    p.add_argument("--method", default="sbn", choices=METHODS)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", help="model file to write (.npz); sbn and ste only")
    p.add_argument("--checkpoint", help="checkpoint file (default: --out with .ckpt.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint if there is one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default): cuda when available, else cpu")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--binarize-at", type=int, default=None, metavar="B",
                   help="binarize input pixels (+1 if pixel >= B) instead of feeding raw "
                        "8-bit pixels to the first layer")
    p.add_argument("--nu-schedule", default="exp", choices=SCHEDULES)
    p.add_argument("--nu-start", type=float, default=1.0)
    p.add_argument("--nu-end", type=float, default=1000.0)
    p.add_argument("--nu-ramp", type=float, default=0.8,
                   help="fraction of training over which nu ramps to --nu-end (default 0.8)")
    p.add_argument("--nu-learnable", action="store_true",
                   help="sbn: each layer learns its own nu >= the schedule's nu "
                        "(nu_eff = nu * (1 + exp(q)), q learned)")
    g = p.add_argument_group(
        "self-binarizing options (--method sbn; defaults: the measured best, "
        "docs/training.md)")
    g.add_argument("--sbn-variant", choices=("default", "paper"), default="default",
                   help="paper: the paper-faithful method (exact tanh gradient, no weight "
                        "normalization, no hard phase); the flags below override either")
    g.add_argument("--weight-norm", choices=WEIGHT_NORMS, default=None,
                   help="weights enter tanh as w/s, s = detached mean |w| of the layer or of "
                        f"each output channel (default {TrainConfig.weight_norm})")
    g.add_argument("--grad-cap", type=float, default=None, metavar="C",
                   help="backward = derivative of tanh(min(nu, C) x); 0: the exact "
                        f"gradient of tanh(nu x) (default {TrainConfig.grad_cap:g})")
    g.add_argument("--weight-grad-cap", type=float, default=None, metavar="C",
                   help=f"the weights' own backward cap (default "
                        f"{TrainConfig.weight_grad_cap:g}; 0: the same as --grad-cap)")
    g.add_argument("--hard-phase", type=float, default=None, metavar="F",
                   help="train the last fraction F of the steps with the forward = sign "
                        f"(default {TrainConfig.hard_phase:g})")
    g.add_argument("--weight-clip", type=float, default=None, metavar="K",
                   help="after each step clip latent weights to |w/s| <= K (default off)")
    p.add_argument("--grad-clip", type=float, default=None, metavar="G",
                   help="clip the gradient's global norm at G (any method; default off)")
    p.add_argument("--bn-recal", type=int, default=0, metavar="N",
                   help="before export, re-estimate batch-norm statistics of the hard "
                        "network on N training batches (sbn and ste; default 0: off)")
    p.add_argument("--init-bound", type=float, default=None, metavar="A",
                   help="latent weights start uniform in [-A, A] (default 1/sqrt(fan-in))")
    p.add_argument("--flip", action="store_true", help="augment: random horizontal flips")
    p.add_argument("--shift", type=int, default=0, metavar="PX",
                   help="augment: random translations up to PX pixels")
    p.add_argument("--data-dir", help="folder with the dataset's files (IDX files; for "
                                      "cifar10 the cifar-10-batches-py folder or its parent)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, help="use only the first N test images")
    p.add_argument("--plots", metavar="DIR", help="write training curves and histograms here")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    return p


def config_from_argv(argv: list[str]) -> TrainConfig:
    """The :class:`TrainConfig` that ``python -m train ARGV`` runs (argparse exits on a
    malformed command line; :class:`UserError` for an sbn-only flag given to ste/float)."""
    args = build_parser().parse_args(argv)
    sbn = {k: getattr(TrainConfig, k) for k in SBN_ONLY}
    if args.sbn_variant == "paper":
        sbn.update(PAPER_SBN)
    given = {k: getattr(args, k) for k in SBN_ONLY if getattr(args, k) is not None}
    if args.method != "sbn" and (given or args.sbn_variant != "default"):
        flag = "--" + (next(iter(given)) if given else "sbn_variant").replace("_", "-")
        raise UserError(f"{flag} needs --method sbn (got --method {args.method})")
    sbn.update(given)
    if sbn["grad_cap"] == 0:
        sbn["grad_cap"] = None  # 0 asks for the exact gradient
    if sbn["weight_grad_cap"] == 0:
        sbn["weight_grad_cap"] = None  # 0: the weights use --grad-cap
    if sbn["weight_clip"] == 0:
        sbn["weight_clip"] = None
    return TrainConfig(
        dataset=args.dataset, arch=args.arch, method=args.method, epochs=args.epochs,
        out=args.out, checkpoint=args.checkpoint, resume=args.resume, seed=args.seed,
        device=args.device, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, binarize_at=args.binarize_at,
        nu_schedule=args.nu_schedule, nu_start=args.nu_start, nu_end=args.nu_end,
        nu_ramp=args.nu_ramp, nu_learnable=args.nu_learnable, init_bound=args.init_bound,
        grad_clip=args.grad_clip or None, bn_recal=args.bn_recal, **sbn,
        flip=args.flip,
        shift=args.shift, data_dir=args.data_dir,
        train_limit=args.train_limit, test_limit=args.test_limit, plots=args.plots,
        threads=args.threads, progress=not args.no_progress, stop_after=args.stop_after,
        command="python -m train " + shlex.join(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        train(config_from_argv(argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (the last completed epoch is in the checkpoint; rerun "
              "with --resume)", file=sys.stderr)
        return 130
    return 0
