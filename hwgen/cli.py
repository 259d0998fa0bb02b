"""``python -m hwgen``: subcommands over model files.

User errors (bad files, options, images) print one line ``error: ...`` to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import model as model_io
from .datasets import DATASETS, load_dataset, load_idx_pair
from .errors import UserError
from .reference import ENGINES, Reference


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one ``error: ...`` line (exit 2), like the rest."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_image_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--dataset NAME [--split] [--data-dir]`` or ``--images IDX [--labels IDX]``, ``--limit``."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--dataset", choices=sorted(DATASETS), help="a named dataset")
    source.add_argument("--images", type=Path, help="an IDX file of images (gzip or raw)")
    parser.add_argument("--labels", type=Path, help="an IDX file of labels for --images")
    parser.add_argument("--split", default="test", choices=("test", "train"),
                        help="dataset split (default: test)")
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's IDX files")
    parser.add_argument("--limit", type=int, help="use only the first N images")


def add_fold_options(parser: argparse.ArgumentParser) -> None:
    """``--fold FOLD`` and ``--lanes P`` of the commands that generate the core."""
    parser.add_argument("--fold", metavar="FOLD",
                        help="PExSIMD per layer (e.g. 64x32,32x16,10x8), or JSON; default: "
                             "balanced within an iCE40 UP5K-sized budget")
    parser.add_argument("--lanes", type=int, metavar="P",
                        help="input values per beat (default: the fewest that keep up)")


def load_images(args) -> tuple[np.ndarray, np.ndarray | None]:
    """The images and labels that :func:`add_image_source` options name."""
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.dataset:
        if args.labels:
            raise UserError("--labels goes with --images, not --dataset")
        return load_dataset(args.dataset, args.split, args.data_dir, args.limit)
    return load_idx_pair(args.images, args.labels, args.limit)


def cmd_eval(args) -> int:
    model = model_io.load(args.model)
    images, labels = load_images(args)
    predictions = Reference(model, args.engine).predict(images, progress=sys.stderr.isatty())
    if args.save_predictions:
        save_npy(args.save_predictions, predictions)
    if labels is None:
        print(f"predicted {len(predictions)} images (no labels given)")
    else:
        correct = int((predictions == labels).sum())
        print(f"accuracy {correct / len(labels):.4f} ({correct}/{len(labels)})")
    return 0


def save_npy(path: Path, array: np.ndarray) -> None:
    path = Path(path)
    if path.suffix != ".npy":
        raise UserError(f"{path}: predictions are saved as .npy; give a name ending in .npy")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({err.strerror})") from None


def cmd_info(args) -> int:
    from .summary import format_table

    model = model_io.load(args.model)
    folded = None
    if args.fold is not None:
        from .fold import format_fold_table, parse_fold, plan

        folds = None if args.fold == "auto" else parse_fold(args.fold, model)
        folded = format_fold_table(plan(model, folds))
    print(format_table(model))
    if folded is not None:
        print(folded)
    return 0


def cmd_verilog(args) -> int:
    from .fold import parse_fold, plan
    from .gateware.network import module_name, write_verilog

    model = model_io.load(args.model)
    folds = None if args.fold in (None, "auto") else parse_fold(args.fold, model)
    net = plan(model, folds, lanes=args.lanes)
    module = args.module or module_name(Path(args.model).stem)
    if not module.isidentifier() or not module.isascii():
        raise UserError(f"--module {module!r} is not a Verilog identifier")
    v_path, json_path = write_verilog(net, args.output, module)
    print(f"wrote {v_path} and {json_path}: II {net.cycles_per_image} cycles per image, "
          f"latency {net.latency_cycles} cycles")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hwgen",
                     description="Binary neural network model files to bit-exact hardware.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("eval", help="accuracy of the integer reference on a dataset",
                       description="Run the bit-exact integer reference over images and "
                                   "print 'accuracy 0.xxxx (k/n)'.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    add_image_source(p)
    p.add_argument("--save-predictions", type=Path, metavar="P.npy",
                   help="write the predicted classes (int64 [K]) to this .npy file")
    p.add_argument("--engine", choices=ENGINES, default="gemm",
                   help="how binary layers are computed (same results; default gemm)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="layers, shapes, parameter bits, accumulator widths",
                       description="Print the model's layers, shapes, parameter bits and "
                                   "accumulator ranges/widths.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    p.add_argument("--fold", nargs="?", const="auto", metavar="FOLD",
                   help="also print per-layer PE, SIMD, cycles, block RAMs, LUTs, and the "
                        "network's initiation interval and latency, for FOLD (PExSIMD per "
                        "layer, e.g. 64x32,32x16,10x8, or JSON) or the default fold when "
                        "FOLD is omitted or 'auto'")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verilog", help="generate the streaming accelerator as Verilog",
                       description="Write OUTDIR/<module>.v and OUTDIR/interface.json for "
                                   "the model's folded dataflow accelerator.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR",
                   help="output folder (created if missing)")
    add_fold_options(p)
    p.add_argument("--module", metavar="NAME", help="Verilog module name (default: sbn_<stem>)")
    p.set_defaults(func=cmd_verilog)

    from boards.commands import register as register_board_commands
    from sim.commands import register as register_sim_commands

    register_sim_commands(sub, add_image_source, add_fold_options)
    register_board_commands(sub, add_image_source)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return exit_.code
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
