"""``python -m hwgen``: subcommands over model files; composes every command in one place.

This module builds the parser from its own commands (``eval``, ``info``, ``verilog``) and
those of :mod:`sim.commands`, :mod:`boards.commands` and :mod:`hwgen.qonnx_import.command`
(``import``), which import only the shared
pieces (:mod:`hwgen.options`, :mod:`hwgen.outputs`), never this module: no import cycle.

User errors (bad files, options, images) print one line ``error: ...`` to stderr and exit 2.
Interrupts: ``error: interrupted``, exit 130 (Ctrl-C) or 143 (SIGTERM, see
:mod:`hwgen.interrupts`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import model as model_io
from .errors import UserError, one_line
from .files import track_inputs
from .interrupts import interrupted, raised_interrupt
from .names import default_module
from .options import (Parser, add_fold_options, add_image_source, add_save_predictions,
                      check_labels, load_images, verilog_identifier)
from .outputs import output_type, save_npy, staged_folder
from .reference import ENGINES

# Kept importable from here for callers of the old names.
__all__ = ["add_fold_options", "add_image_source", "build_parser", "load_images", "main",
           "save_npy"]


def cmd_eval(args) -> int:
    from .reference import Reference

    model = model_io.load(args.model)
    images, labels = load_images(args)
    check_labels(labels, model)
    predictions = Reference(model, args.engine).predict(images, progress=sys.stderr.isatty())
    if labels is None:
        print(f"predicted {len(predictions)} images (no labels given)")
    else:
        correct = int((predictions == labels).sum())
        print(f"accuracy {correct / len(labels):.4f} ({correct}/{len(labels)})")
    if args.save_predictions:   # after the result is out: a failing stdout writes no file
        sys.stdout.flush()
        save_npy(args.save_predictions, predictions, final=True)
    return 0


def cmd_info(args) -> int:
    from .summary import format_table

    model = model_io.load(args.model)
    folded = None
    if args.fold is not None:
        from .fold import format_fold_table, plan, resolve_fold
        from .gateware.network import check_model_generatable

        check_model_generatable(model)   # the fold search is for hardware of bounded size
        folded = format_fold_table(plan(model, resolve_fold(args.fold, model)))
    print(format_table(model))
    if folded is not None:
        print(folded)
    return 0


def cmd_verilog(args) -> int:
    from .fold import plan, resolve_fold
    from .gateware.network import check_generatable, check_model_generatable, write_verilog

    model = model_io.load(args.model)
    check_model_generatable(model)
    net = plan(model, resolve_fold(args.fold, model), lanes=args.lanes)
    check_generatable(net)
    module = args.module or default_module(args.model)
    with staged_folder(args.output, final=True) as staging:
        written = write_verilog(net, staging, module)
        v_path, json_path = (args.output / path.name for path in written)
        # printed before the files are installed: a failing stdout leaves none behind
        print(one_line(f"wrote {v_path} and {json_path}: II {net.interval_text} cycles "
                       f"per image, latency {net.latency_cycles} cycles"), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m hwgen",
                     description="Binary neural network model files to bit-exact hardware.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

    p = sub.add_parser("eval", help="accuracy of the integer reference on a dataset",
                       description="Run the bit-exact integer reference over images and "
                                   "print 'accuracy 0.xxxx (k/n)'.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    add_image_source(p)
    add_save_predictions(p, "the predicted classes")
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
                        "layer, e.g. 64x32,32x16,10x8, or JSON), the default fold when "
                        "FOLD is omitted or 'auto', or 'fastest': the highest throughput "
                        "within the iCE40 UP5K budget that `build --board icebreaker` "
                        "uses (the default is that too; build's default is slower)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verilog", help="generate the streaming accelerator as Verilog",
                       description="Write OUTDIR/<module>.v and OUTDIR/interface.json for "
                                   "the model's folded dataflow accelerator.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    p.add_argument("-o", "--output", type=output_type("folder"), required=True,
                   metavar="OUTDIR", help="output folder (created if missing; its parent "
                                          "must exist)")
    add_fold_options(p)
    p.add_argument("--module", type=verilog_identifier, metavar="NAME",
                   help="Verilog module name (default: sbn_<stem>)")
    p.set_defaults(func=cmd_verilog)

    from boards.commands import register as register_board_commands
    from sim.commands import register as register_sim_commands

    from .qonnx_import.command import register as register_import_command

    register_sim_commands(sub)
    register_board_commands(sub)
    register_import_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m hwgen ARGV``; returns the exit code (0, 1: a check failed, 2: a user
    error, printed as one line; 130/143: interrupted)."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help, or a usage error already printed as one line
            return exit_.code
        track_inputs(True)  # no output may be renamed over a file the command read
        try:
            return args.func(args)
        finally:
            track_inputs(False)
    except UserError as err:
        if raised_interrupt() is not None:  # the error is the interrupt, converted on the way
            return interrupted(raised_interrupt())
        print(one_line(f"error: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        return interrupted(interrupt)
