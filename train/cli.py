"""``python -m train``: train a binary network and export it as a model file.

User errors print one line ``error: ...`` to stderr and exit 2 (no traceback); every
numeric option is range-checked and every output path (``--out``, ``--checkpoint``,
``--plots``) is checked before any work (``docs/cli.md``). The model file and checkpoints
are written atomically and the plots folder is staged, so an error or a kill never leaves
a partial file. Ctrl-C / SIGTERM: one line, exit 130 / 143. See ``docs/training.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hwgen.datasets import DATASETS
from hwgen.model.limits import MAX_GRAPH_CHARS
from hwgen.errors import UserError, first_line, one_line
from hwgen.interrupts import deferred_signals, interrupted, raised_interrupt
from hwgen.options import Parser, integer, real
from hwgen.outputs import check_output, output_type, resolved, same_path, staged_folder

from .arch import PRESETS
from .distributed import is_main_process
from .layers import METHODS, WEIGHT_NORMS
from .loop import DEFAULT_LR, PAPER_SBN, SBN_ONLY, TrainConfig, checkpoint_path, train
from .plots import PLOT_FILES
from .schedule import SCHEDULES


_out_file = output_type("file")
_positive = real(0, 1e6, low_open=True)   # beyond, float32 training overflows
_non_negative = real(0, 1e6)
_fraction = real(0, 1, low_open=True)  # (0, 1]


#: The longest command line (JSON-escaped) a run records in its model's provenance: a
#: quarter of what a model file's graph may hold.
MAX_COMMAND_CHARS = MAX_GRAPH_CHARS // 4
# The nu schedule: only --method sbn has a nu (argparse default None tells "given" apart).
NU_SCHEDULE = ("nu_schedule", "nu_start", "nu_end", "nu_ramp")


def build_parser(check_paths: bool = True) -> argparse.ArgumentParser:
    """The parser; ``check_paths=False`` takes output paths as given (to read a recorded
    command on another machine) instead of checking them where they would be written."""
    out_file = _out_file if check_paths else Path
    out_folder = output_type("folder") if check_paths else Path
    p = Parser(prog="python -m train",
               description="Train a self-binarizing (or STE / float baseline) network and "
                           "export it in the binary model format.")
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    p.add_argument("--arch", required=True,
                   help="architecture, e.g. mlp:256-256 or cnn:c32-p-c64-p-d256 "
                        "(grammar in docs/training.md), or a preset: "
                        + ", ".join(PRESETS))
    p.add_argument("--method", default="sbn", choices=METHODS)
    p.add_argument("--epochs", type=integer(1, 100_000), default=10)
    p.add_argument("--out", type=out_file, help="model file to write (.npz); sbn and ste only")
    p.add_argument("--checkpoint", type=out_file,
                   help="checkpoint file (default: --out with .ckpt.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint if there is one")
    p.add_argument("--seed", type=integer(0, 2**32 - 1), default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (default): cuda when available, else cpu")
    p.add_argument("--batch-size", type=integer(1, 1 << 20), default=128, help="global batch size")
    p.add_argument("--lr", type=real(0, 10, low_open=True), default=None,
                   help="Adam learning rate, cosine decay (default: "
                        + ", ".join(f"{m} {lr:g}" for m, lr in DEFAULT_LR.items()) + ")")
    p.add_argument("--weight-decay", type=_non_negative, default=0.0)
    p.add_argument("--binarize-at", type=integer(0, 256), default=None, metavar="B",
                   help="binarize input pixels (+1 if pixel >= B) instead of feeding raw "
                        "8-bit pixels to the first layer")
    p.add_argument("--nu-schedule", default=None, choices=SCHEDULES,
                   help=f"sbn: how nu grows (default {TrainConfig.nu_schedule})")
    p.add_argument("--nu-start", type=_positive, default=None,
                   help=f"sbn: nu at the first step (default {TrainConfig.nu_start:g})")
    p.add_argument("--nu-end", type=_positive, default=None,
                   help=f"sbn: nu at the end of the ramp (default {TrainConfig.nu_end:g})")
    p.add_argument("--nu-ramp", type=_fraction, default=None,
                   help="sbn: fraction of training over which nu ramps to --nu-end "
                        f"(default {TrainConfig.nu_ramp:g})")
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
    g.add_argument("--grad-cap", type=_non_negative, default=None, metavar="C",
                   help="backward = derivative of tanh(min(nu, C) x); 0: the exact "
                        f"gradient of tanh(nu x) (default {TrainConfig.grad_cap:g})")
    g.add_argument("--weight-grad-cap", type=_non_negative, default=None, metavar="C",
                   help=f"the weights' own backward cap (default "
                        f"{TrainConfig.weight_grad_cap:g}; 0: the same as --grad-cap)")
    g.add_argument("--hard-phase", type=real(0, 1, high_open=True), default=None, metavar="F",
                   help="train the last fraction F of the steps with the forward = sign "
                        f"(default {TrainConfig.hard_phase:g})")
    g.add_argument("--weight-clip", type=_non_negative, default=None, metavar="K",
                   help="after each step clip latent weights to |w/s| <= K (default off)")
    p.add_argument("--grad-clip", type=_non_negative, default=None, metavar="G",
                   help="clip the gradient's global norm at G (any method; default off)")
    p.add_argument("--bn-recal", type=integer(0, 1_000_000), default=0, metavar="N",
                   help="before export, re-estimate batch-norm statistics of the hard "
                        "network on N training batches (sbn and ste; default 0: off)")
    p.add_argument("--init-bound", type=_positive, default=None, metavar="A",
                   help="latent weights start uniform in [-A, A] (default 1/sqrt(fan-in))")
    p.add_argument("--flip", action="store_true", help="augment: random horizontal flips")
    p.add_argument("--shift", type=integer(0, 64), default=0, metavar="PX",
                   help="augment: random translations up to PX pixels")
    p.add_argument("--data-dir", help="folder with the dataset's files (IDX files; for "
                                      "cifar10 the cifar-10-batches-py folder or its parent)")
    p.add_argument("--train-limit", type=integer(1), help="use only the first N training images")
    p.add_argument("--test-limit", type=integer(1), help="use only the first N test images")
    p.add_argument("--plots", type=out_folder, metavar="DIR",
                   help="write training curves and histograms here")
    p.add_argument("--threads", type=integer(1, 1024), help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("--stop-after", type=integer(1), help=argparse.SUPPRESS)
    return p


def config_from_argv(argv: list[str], check_paths: bool = True) -> TrainConfig:
    """The :class:`TrainConfig` that ``python -m train ARGV`` runs (argparse exits on a
    malformed command line; :class:`UserError` for an sbn-only flag, the nu schedule's
    included, given to ste/float).
    ``check_paths=False``: the outputs are not checked (a recorded command, read back)."""
    command = "python -m train " + shlex.join(argv)
    escaped = len(json.dumps(command))
    if escaped > MAX_COMMAND_CHARS:  # the model file records it
        raise UserError(f"the command line is {escaped} characters as JSON; the model file "
                        f"records it, and takes at most {MAX_COMMAND_CHARS}")
    args = build_parser(check_paths).parse_args(argv)
    sbn = {k: getattr(TrainConfig, k) for k in SBN_ONLY}
    if args.sbn_variant == "paper":
        sbn.update(PAPER_SBN)
    given = {k: getattr(args, k) for k in SBN_ONLY if getattr(args, k) is not None}
    schedule = {k: getattr(args, k) for k in NU_SCHEDULE if getattr(args, k) is not None}
    if args.method != "sbn" and (given or schedule or args.sbn_variant != "default"):
        # ste and float have no nu: a schedule flag given to them would be silently ignored
        named = [*given, *(["sbn_variant"] if args.sbn_variant != "default" else []), *schedule]
        flag = "--" + named[0].replace("_", "-")
        raise UserError(f"{flag} needs --method sbn (got --method {args.method})")
    sbn.update(given)
    schedule = {k: getattr(TrainConfig, k) for k in NU_SCHEDULE} | schedule
    if (args.method == "sbn" and schedule["nu_schedule"] != "const"
            and schedule["nu_end"] < schedule["nu_start"]):
        # nu sharpens tanh towards sign: a falling schedule ends softer than it starts
        raise UserError(f"--nu-end {schedule['nu_end']:g} is below --nu-start "
                        f"{schedule['nu_start']:g}: nu must grow (or use --nu-schedule const)")
    if sbn["grad_cap"] == 0:
        sbn["grad_cap"] = None  # 0 asks for the exact gradient
    if sbn["weight_grad_cap"] == 0:
        sbn["weight_grad_cap"] = None  # 0: the weights use --grad-cap
    if sbn["weight_clip"] == 0:
        sbn["weight_clip"] = None
    if args.threads is not None:
        from hwgen.address_space import torch_threads_problem

        problem = torch_threads_problem(args.threads)
        if problem:
            raise UserError(problem)
    out = None if args.out is None else str(args.out)
    checkpoint = args.checkpoint or (Path(out).with_suffix(".ckpt.pt") if out else None)
    if check_paths and out and args.checkpoint is None:  # the default, beside --out
        check_output(checkpoint, "--checkpoint (default)")
    if check_paths:
        _check_outputs_are_not_data(args, out, checkpoint)
    if check_paths and args.plots is not None:
        for option, path in (("--out", out), ("--checkpoint", checkpoint)):
            if path is not None and same_path(args.plots, path):
                raise UserError(f"--plots {args.plots} is the {option} file: give the plots "
                                f"a folder of their own")
            if path is not None and Path(path).name in PLOT_FILES and \
                    same_path(resolved(path).parent, args.plots):
                raise UserError(f"{option} {path} is a file the plots write into the --plots "
                                f"folder {args.plots}: give it another name")
    return TrainConfig(
        dataset=args.dataset, arch=args.arch, method=args.method, epochs=args.epochs,
        out=out, checkpoint=None if args.checkpoint is None else str(args.checkpoint),
        resume=args.resume, seed=args.seed,
        device=args.device, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, binarize_at=args.binarize_at,
        **schedule, nu_learnable=args.nu_learnable, init_bound=args.init_bound,
        grad_clip=args.grad_clip or None, bn_recal=args.bn_recal, **sbn,
        flip=args.flip,
        shift=args.shift, data_dir=args.data_dir,
        train_limit=args.train_limit, test_limit=args.test_limit,
        plots=None if args.plots is None else str(args.plots),
        threads=args.threads, progress=not args.no_progress, stop_after=args.stop_after,
        command=command)


def _check_outputs_are_not_data(args, out, checkpoint) -> None:
    """Refuse an output that is one of the dataset's files in a folder it is read from, or
    ``--plots`` naming such a folder (``--checkpoint`` over the training labels replaced
    them, and the next run found no IDX file there)."""
    from hwgen.datasets import dataset_folders

    try:
        folders = dataset_folders(args.dataset, args.data_dir)
    except UserError:
        return  # a bad --data-dir is reported where the data is loaded
    info = DATASETS[args.dataset]
    names = [n for stems in info.files.values() for stem in stems for n in (stem, stem + ".gz")]
    files = [folder / sub / name for folder in folders for name in names
             for sub in ((".", "cifar-10-batches-py") if info.format == "cifar" else (".",))]
    for option, path in (("--out", out), ("--checkpoint", checkpoint), ("--plots", args.plots)):
        if path is None:
            continue
        if any(same_path(path, f) for f in files):
            raise UserError(f"{option} {path} is a file of the {args.dataset} data it trains "
                            f"on: give another path")
        if option == "--plots" and any(same_path(path, f) for f in folders):
            raise UserError(f"--plots {path} is the folder of the {args.dataset} data: give "
                            f"the plots a folder of their own")


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m train ARGV``; returns the exit code (2: a user error, printed as one
    line; 130/143: Ctrl-C/SIGTERM, the last completed epoch kept in the checkpoint)."""
    argv = sys.argv[1:] if argv is None else argv
    started, config = time.time(), None
    try:
        try:
            config = config_from_argv(argv)
        except SystemExit as exit_:  # --help, or a usage error already printed as one line
            return exit_.code
        run_staged(config)
    except UserError as err:
        if raised_interrupt() is not None:  # the error is the interrupt, converted on the way
            return interrupted(raised_interrupt(), _interrupted_message(config, started))
        print(one_line(f"error: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        return interrupted(interrupt, _interrupted_message(config, started))
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "allocate" not in str(err):
            raise
        # torch's allocator under a memory limit (ulimit -v, a cgroup) beyond what the
        # pre-check saw: the last completed epoch stays in the checkpoint
        print(one_line(f"error: out of memory ({type(err).__name__}: {first_line(err)}); "
                       f"give a smaller --batch-size or network"), file=sys.stderr)
        return 2
    except Exception:
        # an interrupt raised where Python wraps it (a class body's __set_name__ makes it a
        # RuntimeError while Amaranth's dependencies import): still the interrupt
        if raised_interrupt() is not None:
            return interrupted(raised_interrupt(), _interrupted_message(config, started))
        raise
    return 0


def _interrupted_message(config: TrainConfig | None, started: float) -> str:
    """The interrupt's line: it points at the checkpoint when this run resumed from one or
    wrote one (a file older than the run, from another run, is not this run's)."""
    path = None if config is None else checkpoint_path(config)
    try:
        ours = path is not None and (config.resume and path.is_file()
                                     or path.stat().st_mtime >= started - 1)
    except OSError:
        ours = False
    if not ours:
        return "error: interrupted"
    return one_line(f"error: interrupted (the last completed epoch is in the checkpoint "
                    f"{path}; rerun with --resume)")


def _file_identity(path) -> tuple | None:
    """What tells one file at ``path`` from another put there later (None: no file)."""
    try:
        info = os.stat(path) if path else None
    except OSError:
        return None
    return None if info is None else (info.st_dev, info.st_ino, info.st_mtime_ns)


def _keep_earlier(out) -> Path:
    """A second name (a hard link, else a copy) beside it for the model file ``out`` that
    exists before the run: the run may replace it and then fail to install its plots."""
    target = resolved(out)
    with deferred_signals():  # an interrupt here would leave the second name behind
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".earlier",
                                        dir=target.parent)
            os.close(fd)
            os.unlink(name)
            try:
                os.link(target, name)
            except OSError:
                shutil.copy2(target, name)
        except OSError as err:
            raise UserError(f"{out}: cannot keep the model already there while this run "
                            f"replaces it ({err.strerror or err})") from None
    return Path(name)


def run_staged(config: TrainConfig) -> dict:
    """:func:`train` with ``--plots`` written to a staging folder that becomes the plots
    folder only when training succeeded (only the main process writes plots), as the run's
    last output; when that folder cannot be put in place, or an interrupt comes before it
    is, the model file the run wrote is removed, and one that was there before the run is
    put back (the checkpoint stays, for ``--resume``)."""
    if config.plots is None or not is_main_process():
        return train(config)
    plots = config.plots
    result = None
    earlier = _file_identity(config.out)
    kept = _keep_earlier(config.out) if earlier is not None else None
    try:
        with staged_folder(plots, final=True) as staging:
            config.plots = str(staging)
            try:
                result = train(config)
            finally:
                config.plots = plots
            if not any(staging.iterdir()):  # stopped early: no plots, so no folder
                staging.rmdir()
    except (UserError, KeyboardInterrupt):
        if config.out and _file_identity(config.out) not in (None, earlier):
            with deferred_signals():  # this run's model: no half result; the earlier one back
                if kept is not None:
                    os.replace(kept, resolved(config.out))
                    kept = None
                else:
                    Path(config.out).unlink(missing_ok=True)
        raise
    finally:
        if kept is not None:
            kept.unlink(missing_ok=True)
    if "plots" in result:  # the files' names in the folder they were renamed into
        result["plots"] = [str(Path(plots) / Path(name).name) for name in result["plots"]]
    return result
