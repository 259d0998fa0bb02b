"""``python -m hwgen import``: a QONNX binary network -> a checked model file (format v1)."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from .. import model as model_io
from ..errors import UserError, one_line
from ..files import read_bounded
from ..options import (add_image_source, check_labels, check_outputs_are_not_inputs, integer,
                       load_images)
from ..outputs import output_type
from .graph import ImportError_

MAX_CLASS_FILE_BYTES = 1 << 20
#: Values (images x values per image) of the random check images at most: 16 Mi values,
#: 32 MiB at 16 bits, so a huge input costs fewer check images, not unbounded memory.
MAX_CHECK_VALUES = 1 << 24
#: Executions of graph nodes (batches x nodes) the random check runs at most: QONNX runs
#: each node of each batch in Python, a few ms each, so a graph that needs batches of one
#: image and has hundreds of nodes gets fewer random images (a 108 KB graph of an
#: 8192-channel layer and 495 Neg nodes would have run for about 35 minutes).
MAX_NODE_RUNS = 20_000


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="convert a QONNX (Brevitas / FINN) binary network into a model file",
        description="Read a QONNX graph of a binary network, convert it exactly into format "
                    "version 1, check its predictions against the graph's own QONNX "
                    "execution, and write MODEL.npz only when every checked image agrees "
                    "(docs/import.md). Needs the extra .[import].")
    p.add_argument("onnx", type=Path, metavar="MODEL.onnx")
    p.add_argument("-o", "--output", type=output_type("file", (".npz",)), required=True,
                   metavar="MODEL.npz", help="the model file to write")
    p.add_argument("--classes", type=Path, metavar="NAMES.txt",
                   help="class names, one per line (default: 0, 1, ...)")
    p.add_argument("--input-bits", type=integer(1, 16), metavar="B",
                   help="bits of the unsigned input values the graph takes when it has no "
                        "input quantizer (default 8)")
    p.add_argument("--input-scale", type=_ratio, metavar="S",
                   help="the graph takes S times the input integers, e.g. 1/255 for a network "
                        "trained on pixels in [0, 1] (default 1; graphs with an input "
                        "quantizer define their own)")
    p.add_argument("--check-images", type=integer(1, 100_000), default=1000, metavar="N",
                   help="random images for the check when no dataset is given "
                        "(default 1000)")
    p.add_argument("--seed", type=integer(0, 2**32 - 1), default=0,
                   help="seed of the random check images (default 0)")
    add_image_source(p, required=False)
    p.set_defaults(func=cmd_import)


_RATIO = re.compile(r"[+-]?(?:[0-9]+/[0-9]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?)")
MAX_RATIO_CHARS = 64
MAX_RATIO_EXPONENT = 64
MAX_RATIO_BITS = 32  # the value and its denominator at most 2**32


def _ratio(text: str) -> Fraction:
    """A positive exact number: '1/255', '0.5', '2', '3.9e-3'; at most 64 characters and
    a decimal exponent within +-64 (so that ``1e999999999`` is refused, not computed), and,
    in lowest terms, a value and a denominator at most 2**32."""
    shown = repr(text[:MAX_RATIO_CHARS] + ("..." if len(text) > MAX_RATIO_CHARS else ""))
    if len(text) > MAX_RATIO_CHARS:
        raise argparse.ArgumentTypeError(f"longer than {MAX_RATIO_CHARS} characters: {shown}")
    match = _RATIO.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a number or ratio: {shown}")
    if match.group(1) is not None and abs(int(match.group(1))) > MAX_RATIO_EXPONENT:
        raise argparse.ArgumentTypeError(
            f"exponent beyond +-{MAX_RATIO_EXPONENT}: {shown}")
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or ratio: {shown}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, such as 1/255, got {shown}")
    if value > 1 << MAX_RATIO_BITS or value.denominator > 1 << MAX_RATIO_BITS:
        raise argparse.ArgumentTypeError(
            f"must be at most 2**{MAX_RATIO_BITS} with a denominator (in lowest terms) at most "
            f"2**{MAX_RATIO_BITS}, got {shown}")
    return value


def read_classes(path: Path, count: int) -> list[str]:
    data = read_bounded(path, MAX_CLASS_FILE_BYTES, ImportError_)
    try:
        # a BOM is no part of the first name; only \n (and \r\n) end a name: str.splitlines
        # would also split at U+2028, \v, \f...
        names = bytes(data).decode("utf-8-sig").split("\n")
    except UnicodeDecodeError:
        raise ImportError_(f"{path}: not UTF-8 text") from None
    names = [n.strip() for n in names if n.strip()]
    if len(names) != count:
        raise ImportError_(f"{path}: {len(names)} class names, but the model has {count} "
                           f"classes")
    return names


def _check_images(args, spec, most: int | None = None):
    """The images the import is checked on: the dataset or IDX file given, else
    ``--check-images`` random ones, as many of them as fit :data:`MAX_CHECK_VALUES` values
    and ``most`` images (fewer for a large input or a slow graph, which the output line's
    count shows; an input larger than that on its own is refused)."""
    if args.dataset or args.images:
        images, labels = load_images(args)
        source = args.dataset or str(args.images)
    else:
        if spec.size > MAX_CHECK_VALUES:
            raise ImportError_(f"the model input {list(spec.shape)} ({spec.size} values) is "
                               f"too large to check on random images (at most "
                               f"{MAX_CHECK_VALUES} values); nothing written")
        count = min(args.check_images, MAX_CHECK_VALUES // spec.size)
        slow = most is not None and most < count
        if slow:
            count = most
        rng = np.random.default_rng(args.seed)
        images = rng.integers(0, spec.max_value + 1, size=(count,) + spec.shape,
                              dtype=np.uint16 if spec.bits > 8 else np.uint8)
        # the first two are blank and saturated: constant images reach the extreme
        # accumulators, where a hand-set threshold sits (random ones rarely do)
        images[:1] = 0
        images[1:2] = spec.max_value
        limit = (f"{MAX_NODE_RUNS} executions of the graph's nodes" if slow else
                 f"{MAX_CHECK_VALUES} values")
        fewer = (f"; {count} of the {args.check_images} asked for, as many as fit {limit}"
                 if count < args.check_images else "")
        labels, source = None, f"random (seed {args.seed}{fewer})"
    return images, labels, source


@contextlib.contextmanager
def _qonnx_failures(onnx_path):
    """Whatever qonnx or onnxruntime raise on refusing the graph, as one line."""
    try:
        yield
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:
        raise ImportError_(f"{onnx_path}: the QONNX execution failed "
                           f"({type(err).__name__}: {str(err).strip()[:300]})") from None


@contextlib.contextmanager
def _named(onnx_path):
    """The check's refusals, prefixed with the file they are about."""
    try:
        yield
    except ImportError_ as err:
        raise ImportError_(f"{onnx_path}: {err}") from None


def cmd_import(args) -> int:
    from ..reference import Reference, check_images
    from . import import_qonnx, require_packages
    from .check import check_agreement, prepare_execution

    check_outputs_are_not_inputs(args)
    require_packages()
    graph, imported = import_qonnx(args.onnx, args.input_bits, args.input_scale)
    model = imported.model
    if args.classes:
        model.classes = read_classes(args.classes, len(model.classes))
    elif args.dataset:
        from ..datasets import DATASETS

        names = list(DATASETS[args.dataset].classes)
        if len(names) == len(model.classes):
            model.classes = names
    model.validate()
    execution, most = None, None
    if not (args.dataset or args.images):   # random images: as many as the graph runs fast
        with _qonnx_failures(args.onnx):   # a graph too large to check fails before any work
            execution = prepare_execution(graph.proto, args.check_images)
        nodes = max(1, len(execution.model.graph.node))
        most = max(2, MAX_NODE_RUNS // nodes * execution.batch)
    images, labels, source = _check_images(args, model.input, most)
    images = check_images(model.input, images)
    check_labels(labels, model)
    progress = sys.stderr.isatty()
    if execution is None:
        with _qonnx_failures(args.onnx):
            execution = prepare_execution(graph.proto, len(images))
    with _qonnx_failures(args.onnx), _named(args.onnx):
        agreement = check_agreement(execution, Reference(model), images, imported.score_unit,
                                    convert=imported.mapping.graph_input, progress=progress)
    if not agreement.ok:
        print(one_line(
            f"error: the imported model disagrees with the QONNX execution on {source} image "
            f"{agreement.first_disagreement}: {agreement.describe_first()} "
            f"({agreement.images - agreement.agree} of {agreement.images} images differ); "
            f"nothing written"), file=sys.stderr)
        return 1
    accuracy = None
    if labels is not None:
        accuracy = float((agreement.predicted == labels).mean()) if len(labels) else None
    model.provenance = {
        "method": "qonnx-import", "source": Path(args.onnx).name,
        "producer": graph.producer, "input_bits": model.input.bits,
        "graph_input": f"{imported.mapping.scale} * (x + {imported.mapping.shift})",
        "check": {"images": agreement.images, "source": source, "agree": agreement.agree,
                  "ties": agreement.ties},
    }
    if accuracy is not None and args.dataset:
        model.provenance.update(dataset=args.dataset, test_accuracy=accuracy,
                                test_images=len(labels))
    layers = ", ".join(f"{layer.op}" for layer in model.layers)
    mapping = imported.mapping
    fed = "" if (mapping.scale, mapping.shift) == (1, 0) else \
        f" (the graph is fed {mapping.scale} * (p {'-' if mapping.shift < 0 else '+'} " \
        f"{abs(mapping.shift)}) for an input integer p)"
    text = (f"imported {args.onnx}: {len(model.layers)} layers ({layers}), input "
            f"{list(model.input.shape)} {model.input.bits}-bit"
            + (f" binarized at {model.input.binarize_at}" if model.input.binary else "")
            + fed
            + f"; agrees with the QONNX execution on {agreement.agree}/{agreement.images} "
              f"{source} images ({agreement.ties} with tied top scores)"
            + (f"; accuracy {accuracy:.4f}" if accuracy is not None else "")
            + f"; wrote {args.output}")
    from ..outputs import staged_file

    with staged_file(args.output, final=True) as staging:
        model_io.save(model, staging)
        # printed before the file is installed: a failing stdout leaves none behind
        print(one_line(text), flush=True)
    if imported.float_ties:
        print(one_line(
            f"warning: {len(imported.float_ties)} channel(s) reach an accumulator value within "
            f"float32 rounding of their threshold (first: {imported.float_ties[0]}): the "
            f"model follows exact arithmetic there, and the graph's float32 execution may "
            f"decide the other way on inputs that reach it"), file=sys.stderr)
    return 0
