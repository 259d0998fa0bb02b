"""Command-line pieces that every command module shares (and that import no command).

- :class:`Parser`: argparse whose errors are one ``error: ...`` line and exit 2.
- :func:`integer` / :func:`real`: argparse ``type=`` functions for numeric options. Only
  ASCII digits are accepted (``²`` and ``٣`` are not numbers here), at most 32 characters;
  reals must be finite (``nan``, ``inf`` and ``1e999`` are refused); bounds give the range
  the option means. A bad value ends as ``error: argument --clock: must be ...``.
- :func:`verilog_identifier`: the ``type=`` of ``--module`` (:mod:`hwgen.names`).
- :func:`add_image_source`, :func:`add_fold_options`, :func:`load_images`: the image and
  fold options of the commands that take them.

Output paths have their own ``type=``, :func:`hwgen.outputs.output_type`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

from .errors import UserError, one_line
from .names import verilog_identifier_problem
from .outputs import output_type, same_path

_INTEGER = re.compile(r"[+-]?[0-9]{1,32}")
_REAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_MAX_NUMBER_CHARS = 32


_POOL_FIRST_FOLD = re.compile(r"-\s*(,|$)")
_FOLD_SPELLINGS = ("--fo", "--fol", "--fold")  # argparse takes unambiguous abbreviations


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one ``error: ...`` line (exit 2), like the rest.

    An option given ``--`` as its value (``--limit=--``, ``-j--``) is a usage error: plain
    argparse drops that ``--`` and hands the option ``[]`` (or its ``const``), unchecked by
    its ``type=`` and ``choices=``. An option is never given ``--`` otherwise (separated
    from it, ``--`` ends the options), so any ``--`` among an option's values is this."""

    def error(self, message):
        self.exit(2, one_line(f"error: {message} (see {self.prog} --help)") + "\n")

    def parse_known_args(self, args=None, namespace=None):
        # a fold may start with a pool's '-' ("--fold -,4x6"), which argparse would take for
        # an option: such a value is joined to its option ("--fold=-,4x6")
        if args is None:
            args = sys.argv[1:]
        joined = []
        for arg in args:
            if joined and joined[-1] in _FOLD_SPELLINGS and _POOL_FIRST_FOLD.match(str(arg)):
                joined[-1] = f"--fold={arg}"
            else:
                joined.append(arg)
        return super().parse_known_args(joined, namespace)

    def _get_values(self, action, arg_strings):
        if (action.option_strings and "--" in arg_strings
                and action.nargs not in (argparse.PARSER, argparse.REMAINDER)):
            expected = ("expected one argument" if action.nargs in (None, argparse.OPTIONAL)
                        else "expected values")
            raise argparse.ArgumentError(action, f"{expected}, not '--'")
        return super()._get_values(action, arg_strings)


def _shown(text: str) -> str:
    return repr(text[:_MAX_NUMBER_CHARS] + ("..." if len(text) > _MAX_NUMBER_CHARS else ""))


def _check_range(value, low, high, low_open: bool, high_open: bool):
    """``value`` when within the bounds; else an argparse error naming the bound it broke."""
    if low is not None and (value <= low if low_open else value < low):
        bound = f"greater than {low}" if low_open else f"at least {low}"
    elif high is not None and (value >= high if high_open else value > high):
        bound = f"less than {high}" if high_open else f"at most {high}"
    else:
        return value
    raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")


def integer(low: int | None = None, high: int | None = None):
    """A ``type=`` for a whole number in ``[low, high]`` (either bound may be ``None``)."""
    def parse(text: str) -> int:
        if len(text) > _MAX_NUMBER_CHARS or not _INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"must be a whole number, got {_shown(text)}")
        return _check_range(int(text), low, high, False, False)

    parse.__name__ = "integer"
    return parse


def real(low: float | None = None, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False):
    """A ``type=`` for a finite number in the range the bounds give (``low_open``: greater
    than ``low``, not equal; ``high_open`` likewise)."""
    def parse(text: str) -> float:
        if len(text) > _MAX_NUMBER_CHARS or not _REAL.fullmatch(text.strip()):
            finite = text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")
            raise argparse.ArgumentTypeError(
                f"must be a {'finite ' if finite else ''}number, got {_shown(text)}")
        value = float(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {_shown(text)}")
        return _check_range(value, low, high, low_open, high_open)

    parse.__name__ = "number"
    return parse


def verilog_identifier(text: str) -> str:
    """The ``type=`` of ``--module``: a legal Verilog module name that is no keyword."""
    problem = verilog_identifier_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{_shown(text)} {problem}")
    return text


#: Sizes no command needs more of; bounds keep a hostile value from costing memory or time.
MAX_IMAGES = 1_000_000
MAX_LANES = 1 << 20
MAX_JOBS = 256


def folder_name(text: str) -> Path:
    """A ``type=`` for a folder name: not empty (``Path("")`` would be the working folder)."""
    if not text:
        raise argparse.ArgumentTypeError("is empty: give a folder")
    return Path(text)


def add_image_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--dataset NAME [--split] [--data-dir]`` or ``--images IDX [--labels IDX]``, ``--limit``."""
    from .datasets import DATASETS

    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--dataset", choices=sorted(DATASETS), help="a named dataset")
    source.add_argument("--images", type=Path, help="an IDX file of images (gzip or raw)")
    parser.add_argument("--labels", type=Path, help="an IDX file of labels for --images")
    parser.add_argument("--split", choices=("test", "train"),
                        help="dataset split (default: test)")
    parser.add_argument("--data-dir", type=folder_name,
                        help="folder holding the dataset's IDX files")
    parser.add_argument("--limit", type=integer(1), metavar="N",
                        help="use only the first N images")


def add_fold_options(parser: argparse.ArgumentParser) -> None:
    """``--fold FOLD`` and ``--lanes P`` of the commands that generate the core."""
    parser.add_argument("--fold", metavar="FOLD",
                        help="PExSIMD per layer (e.g. 64x32,32x16,10x8; 1x64s: that "
                             "layer's weights in SPRAM), or JSON; default "
                             "(or 'auto', or 'fastest'): the highest throughput within the "
                             "iCE40 UP5K budget of `build --board icebreaker`")
    parser.add_argument("--lanes", type=integer(1, MAX_LANES), metavar="P",
                        help="input values per beat (default: the fewest that keep up)")


def add_save_predictions(parser: argparse.ArgumentParser, what: str) -> None:
    """``--save-predictions P.npy``: an output file, checked when the command line is."""
    parser.add_argument("--save-predictions", type=output_type("file", (".npy",)),
                        metavar="P.npy", help=f"write {what} (int64 [K]) to this .npy file")


def load_images(args):
    """The images and labels that :func:`add_image_source` options name."""
    from .datasets import load_dataset, load_idx_pair

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    check_outputs_are_not_inputs(args)
    if args.dataset:
        if args.labels:
            raise UserError("--labels goes with --images, not --dataset")
        return load_dataset(args.dataset, args.split or "test", args.data_dir, args.limit)
    for option, value in (("--split", args.split), ("--data-dir", args.data_dir)):
        if value is not None:  # it would be silently ignored
            raise UserError(f"{option} goes with --dataset, not --images")
    return load_idx_pair(args.images, args.labels, args.limit)


#: The file outputs a command may have (attribute, option) and the inputs none of them may
#: name (attribute, what it is).
_FILE_OUTPUTS = (("save_predictions", "--save-predictions"), ("waves", "--waves"),
                 ("output", "-o"))
_INPUTS = (("model", "the model"), ("onnx", "the MODEL.onnx"), ("images", "the --images"),
           ("labels", "the --labels"), ("classes", "the --classes"),
           ("weights", "the --weights"))


def check_outputs_are_not_inputs(args) -> None:
    """Refuse a file output (``--save-predictions``, ``--waves``, ``-o``) that is one of the
    command's inputs: it would be replaced (``import G.npz -o G.npz`` lost the graph, ``sim
    --waves`` over ``--images`` the images)."""
    for attr, option in _FILE_OUTPUTS:
        out = getattr(args, attr, None)
        if not out:
            continue
        for name, what in _INPUTS:
            path = getattr(args, name, None)
            if isinstance(path, (str, os.PathLike)) and path and same_path(out, path):
                raise UserError(f"{option} {out} is {what} file, which it would overwrite")


def check_labels(labels, model) -> None:
    """Refuse labels (non-negative integers, or None) that name a class ``model`` lacks."""
    if labels is not None and len(labels) and int(labels.max()) >= len(model.classes):
        raise UserError(f"the labels name class {int(labels.max())}, but the model has "
                        f"{len(model.classes)} classes (0 to {len(model.classes) - 1})")
