"""``python -m hwgen build`` (and the parsers of ``build`` and ``run``, whose command is
:mod:`boards.run_command`): a bitstream.

``build`` folds the model for the board, refuses it before synthesis when the resource
estimate does not fit, proves the core bit-exact in Verilator (the gate; ``--skip-verify``
overrides it with a warning), synthesizes and places/routes with the YoWASP tools, and
writes ``OUTDIR/`` (bitstream, ``report.json``, ``summary.txt``) only when everything
succeeded: the build runs in a staging folder that is renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dataclasses import replace

import numpy as np

from hwgen import model as model_io
from hwgen.errors import UserError, one_line
from hwgen.fold.storage import SPRAM_DEPTH, SPRAM_WIDTH
from hwgen.names import default_module
from hwgen.options import MAX_LANES, add_image_source, integer, real
from hwgen.outputs import (check_output, output_type, replace_file, resolved,
                           staged_folder)
from hwgen.reference import Reference

from . import protocol
from . import weights
from .build import Retry, TimingError
from .build_report import build_report, format_summary
from .targets import BOARDS, get_board
from .weights import spram_words

VERIFY_DEFAULT_IMAGES = 300
MAX_VERIFY_IMAGES = 100_000
MAX_CLOCK_MHZ = 1000.0
MAX_BAUD = 100_000_000
MAX_PNR_SEEDS = 100
MAX_PNR_BUDGET_S = 86400.0
FIT_LUT_FRACTION = 0.9  # refuse designs whose estimate exceeds 90% of the board's LUTs


def _board(name: str):
    try:
        return get_board(name)
    except ValueError as err:
        raise UserError(str(err)) from None


def _budget(board, spec, clock_mhz: float, baud: int):
    """The board's resources for a core whose input is ``spec`` (a model's
    :class:`~hwgen.model.InputSpec`); no faster than the UART delivers images (bit-packed
    frames when the model binarizes its input)."""
    from hwgen.fold import Budget

    payload = protocol.image_payload_length(spec.size, spec.binarize_at is not None)
    luts = int(board.luts * FIT_LUT_FRACTION) - board.board_luts
    return Budget(luts=luts, brams=_bram_budget(board),
                  min_interval=uart_cycles_per_image(payload, clock_mhz, baud),
                  bram_port_bits=board.bram_port_bits,
                  bram_blocks=board.bram_blocks - board.board_brams,
                  spram_blocks=board.spram_blocks,
                  weight_loader_luts=board.flash_loader_luts)


def uart_cycles_per_image(payload: int, clock_mhz: float, baud: int) -> int:
    """Clock cycles one image's request frame (``payload`` bytes) takes on the UART (10 bits
    per byte)."""
    frame = protocol.REQUEST_OVERHEAD + payload
    return int(frame * 10 / baud * clock_mhz * 1e6)


def _bram_budget(board) -> int:
    """The board's block RAMs in iCE40 4-Kbit units (what the fold planner counts)."""
    return (board.bram_blocks - board.board_brams) * board.bram_block_bits // 4096


def plan_for_board(model_path: Path, board, fold: str | None, lanes: int | None,
                   clock_mhz: float | None = None, baud: int | None = None):
    """Load and fold the model; returns (model, net, module). Without ``fold`` (or
    ``auto``): the cheapest design that keeps up with the UART at ``clock_mhz``/``baud``, or
    the fastest within the board's budget if even that is slower; ``fastest``: the fastest
    within the board's budget."""
    model, nets, module = fold_candidates(model_path, board, fold, lanes, clock_mhz, baud)
    return model, nets[0], module


# The LUT budgets (fractions of the first design's estimate) of the smaller folds a build
# tries in turn while place-and-route misses the clock: with ``--fold fastest`` or the
# default fold (a given fold is built as given)
FALLBACK_LUT_STEPS = (0.97, 0.85, 0.7)


def fold_candidates(model_path: Path, board, fold: str | None, lanes: int | None,
                    clock_mhz: float | None = None, baud: int | None = None):
    """(model, nets, module): the plans a build tries in order. A given fold: that one.
    Else the chosen fold (``fastest``: the fastest within the board's budget; default: the
    cheapest that keeps up with the UART), then the same choice within
    :data:`FALLBACK_LUT_STEPS` of the first one's estimated LUTs (smaller designs close
    timing more easily), each smaller and slower than the one before."""
    from hwgen.fold import fold_keyword, plan, resolve_fold
    from hwgen.gateware.network import check_generatable, check_model_generatable

    model = model_io.load(model_path)
    problem = protocol.link_problem(model.input.bits, len(model.classes),
                                     model.input.size)
    if problem:   # the board top's framer and replies
        raise UserError(f"{board.name}: {problem}")
    check_model_generatable(model)
    budget = _budget(board, model.input, clock_mhz or board.default_clock_mhz,
                     baud or board.default_baud)
    word = fold_keyword(fold)
    if word is None:
        net = plan(model, resolve_fold(fold, model, budget), lanes=lanes, budget=budget)
        check_generatable(net)
        return model, [net], default_module(model_path)
    nets = [plan(model, resolve_fold(word, model, budget), lanes=lanes, budget=budget)]
    first = nets[0].luts
    for step in FALLBACK_LUT_STEPS:
        smaller = replace(budget, luts=int(first * step))
        net = plan(model, resolve_fold(word, model, smaller), lanes=lanes, budget=smaller)
        if net.luts <= smaller.luts and net.cycles_per_image > nets[-1].cycles_per_image:
            nets.append(net)
    return model, nets, default_module(model_path)


#: The largest receive FIFO a board top gets for a slow core (2 iCE40 block RAMs).
MAX_RX_FIFO = 1024


def rx_fifo_depth(net, board, clock_mhz: float | None = None, baud: int | None = None) -> int:
    """The receive FIFO (bytes) the board top needs for ``net``: 0 when the core takes an
    image at least as fast as the UART brings its frame; else one that holds a whole frame
    (the host then keeps one frame in flight), so a core whose input stalls for longer than
    the parser's few characters of slack does not overrun. On the ULX3S its top's own
    default (512, BRAM to spare) when that is larger."""
    spec = net.model.input
    frame = protocol.REQUEST_OVERHEAD + protocol.image_payload_length(
        spec.size, spec.binarize_at is not None)
    interval = uart_cycles_per_image(frame - protocol.REQUEST_OVERHEAD,
                                     clock_mhz or board.default_clock_mhz,
                                     baud or board.default_baud)
    if net.cycles_per_image <= interval:
        return 0
    return min(MAX_RX_FIFO, 1 << max(1, (frame - 1).bit_length()))


def rx_fifo_brams(depth: int) -> int:
    """4-Kbit block RAMs a receive FIFO of ``depth`` bytes takes (512 bytes each)."""
    return -(-depth // 512) if depth else 0


def check_fit(net, board, model=None, uart_weights: bool = False) -> tuple[int, int]:
    """Estimated (LUTs, 4-Kbit block RAMs) of core + board logic; UserError if over budget.

    With ``model``, a model whose weights alone exceed the board's block RAM is told so
    (no fold can fix that) instead of being sent to a narrower ``--fold``."""
    luts = net.luts + board.board_luts + (board.flash_loader_luts if spram_words(net) else 0)
    if uart_weights and spram_words(net):
        luts += board.uart_weights_luts
    brams = net.brams + board.board_brams * board.bram_block_bits // 4096
    if board.family == "ice40":    # the ULX3S's board_brams count its FIFO already
        brams += rx_fifo_brams(rx_fifo_depth(net, board))
    lut_limit = int(board.luts * FIT_LUT_FRACTION)
    bram_limit = board.bram_blocks * board.bram_block_bits // 4096
    if luts > lut_limit or brams > bram_limit:
        head = (f"model too large for {board.name} ({board.device}): estimated {luts} LUTs "
                f"(limit {lut_limit}, 90% of {board.luts}) and {brams} 4-Kbit block RAMs "
                f"(limit {bram_limit})")
        weight_bits = sum(layer.weight.size for layer in model.layers
                          if hasattr(layer, "weight")) if model is not None else 0
        capacity = (board.bram_blocks * board.bram_block_bits
                    + board.spram_blocks * SPRAM_DEPTH * SPRAM_WIDTH)
        if weight_bits > capacity:
            raise UserError(f"{head}; its {weight_bits} weight bits alone exceed the "
                            f"{capacity} bits of block RAM{' and SPRAM' * bool(board.spram_blocks)}"
                            f", so no --fold fits: use a larger board or a smaller model")
        raise UserError(f"{head}; try a narrower --fold or a larger board")
    return luts, brams


def verification_images(model, count: int, rng_seed: int = 0) -> tuple[np.ndarray, str]:
    """Real test images when the model's input is a 28x28 dataset image, else random ones."""
    from hwgen.datasets import load_dataset
    from hwgen.errors import DatasetError

    if model.input.shape == (1, 28, 28) and model.input.bits == 8:
        dataset = (model.provenance or {}).get("dataset", "fashion-mnist")
        dataset = dataset if dataset in ("fashion-mnist", "mnist") else "fashion-mnist"
        try:
            images, _ = load_dataset(dataset, "test", limit=count)
            return images, f"{dataset} test images"
        except DatasetError:
            pass
    from hwgen.random_models import random_images

    return random_images(np.random.default_rng(rng_seed), model.input, count), "random images"


def verify(model, net, module: str, count: int) -> str:
    """The gate: ``count`` images through the Verilated core; UserError on any mismatch."""
    from sim.commands import simulate_net

    images, what = verification_images(model, count)
    expected = Reference(model).predict(images)
    result = simulate_net(net, module, images, seed=1, valid_percent=80, ready_percent=80)
    bad = np.flatnonzero(result.classes != expected)
    if len(bad):
        raise UserError(f"verification failed: {len(bad)} of {len(images)} {what} differ from "
                        f"the reference (first: image {bad[0]}, hardware class "
                        f"{result.classes[bad[0]]}, reference {expected[bad[0]]}); refusing "
                        f"to synthesize (--skip-verify overrides)")
    return f"{len(images)}/{len(images)} {what} agree with the reference (Verilator)"



def _check_baud(board, baud) -> None:
    try:
        board.check_baud(baud or board.default_baud)
    except ValueError as err:
        raise UserError(f"--baud: {err}") from None


def _check_clock(board, mhz, baud=None) -> None:
    """UserError unless ``board``'s PLL makes ``mhz`` (None: the board's default clock)
    and its UART can divide that clock into ``baud`` (None: the board's default)."""
    from .uart import baud_divisor

    clock = board.default_clock_mhz if mhz is None else mhz
    try:
        made = pll_output_mhz(board, clock)
    except ValueError as err:
        raise UserError(f"--clock {clock:g}: {board.name}: {err}") from None
    try:
        baud_divisor(made * 1e6, baud or board.default_baud)
    except ValueError as err:
        raise UserError(f"--clock {clock:g} and --baud: {err}") from None


def cmd_build(args) -> int:
    board = _board(args.board)
    _check_baud(board, args.baud)  # before any fold is verified or placed
    _check_clock(board, args.clock, args.baud)
    if args.program:
        programmer(board)  # before minutes of building, not after
    from hwgen.wasm_cache import check_wasm_cache

    check_wasm_cache()  # Yosys and nextpnr run as WebAssembly, even with --skip-verify
    outdir = args.output or _default_output(args.model, board)
    model, nets, module = fold_candidates(args.model, board, args.fold, args.lanes,
                                          args.clock, args.baud)
    if args.uart_weights and not any(spram_words(net) for net in nets):
        raise UserError(f"--uart-weights: fold {nets[0].fold_text} keeps no weights in SPRAM, "
                        f"so the board has none to load (its weights are in the bitstream)")
    missed = []  # the faster folds that missed the clock or did not fit
    for k, net in enumerate(nets):
        try:
            report, summary = _build_fold(args, board, outdir, model, net, module, missed,
                                          last=k == len(nets) - 1)
        except _DidNotFit as err:   # the estimate was low: try the next, smaller fold
            missed.append({"fold": net.fold_text, "cycles_per_image": net.cycles_per_image,
                           "achieved_mhz": None, "did_not_fit": True})
            print(one_line(f"fold {net.fold_text}: synthesis or place-and-route failed "
                           f"(exit {err.returncode}: the design did not fit); trying a "
                           f"smaller, slower fold"))
            continue
        except TimingError as err:  # a faster fold of several: try the next
            missed.append({"fold": net.fold_text, "cycles_per_image": net.cycles_per_image,
                           "achieved_mhz": err.achieved_mhz,
                           "seeds": [a["seed"] for a in err.attempts]})
            print(one_line(f"fold {net.fold_text}: timing not met (Fmax "
                           f"{err.achieved_mhz:.1f} MHz at {err.requested_mhz:.1f}); trying a "
                           f"smaller, slower fold"))
            continue
        break
    for line in summary.replace(report["bitstream"], str(outdir / report["bitstream"])) \
            .splitlines():
        print(one_line(line))
    print(one_line(f"report       {outdir / 'report.json'}"))
    for line in weights.program_lines(outdir, report):
        print(one_line(line))
    if args.program:
        program(board, outdir / report["bitstream"])
        image = report.get("weights_image")
        if image:
            program(board, outdir / image["file"], image["flash_offset"])
    return 0


class _DidNotFit(Exception):
    """Synthesis or place-and-route of a fold that is not the last candidate failed."""

    def __init__(self, returncode: int):
        super().__init__(returncode)
        self.returncode = returncode


def _build_fold(args, board, outdir: Path, model, net, module: str, missed: list, *,
                last: bool) -> tuple[dict, str]:
    """Check the fit, verify, synthesize and place/route one fold into ``outdir``; returns
    (report, summary). A timing failure is a UserError when ``last`` (the failed build's
    files kept beside ``outdir``), else the :class:`TimingError` (nothing kept)."""
    fold_text = net.fold_text
    weights.check_board(board, net)
    luts_est, brams_est = check_fit(net, board, model, args.uart_weights)
    print(f"fold {fold_text}: II {net.interval_text} cycles, estimated {luts_est} LUTs, "
          f"{brams_est} 4-Kbit block RAMs")
    if args.skip_verify:
        print("warning: --skip-verify: synthesizing a core that was not checked against the "
              "reference", file=sys.stderr)
    else:
        print("verify: " + verify(model, net, module, args.verify_images))
    absolute = resolved(outdir)   # "-o ." has no name of its own to add ".failed" to
    failed = absolute.with_name(absolute.name + ".failed")
    try:
        outdir.parent.mkdir(exist_ok=True)  # only the default's build/ may be missing
    except OSError as err:
        raise UserError(f"{outdir.parent}: cannot create the folder ({err.strerror or err})") \
            from None
    # with --program the board is programmed next, and Ctrl-C must still stop that
    with staged_folder(outdir, final=not args.program) as staging:
        try:
            return _build_into(staging, model, net, module, board, args, luts_est, brams_est,
                               fold_text, missed)
        except subprocess.CalledProcessError as err:
            if not last:   # nothing kept: a smaller fold comes next
                raise _DidNotFit(err.returncode) from None
            _keep_failed(staging, failed)
            raise UserError(f"synthesis or place-and-route failed (exit {err.returncode}; "
                            f"the tool's ERROR line is above: a design that does not fit "
                            f"fails here, try a narrower --fold); files in {failed}") from None
        except TimingError as err:
            if not last:
                raise
            _keep_failed(staging, failed)
            log = failed / (Path(err.timing_log).name if err.timing_log else module + ".tim")
            raise UserError(f"{timing_advice(err, args, board)}; critical paths in "
                            f"{log}") from None


def _default_output(model_path: Path, board) -> Path:
    """``build/<model>-<board>``, checked as ``-o`` is (``build/`` may be missing: it is
    made when the build starts writing)."""
    outdir = Path("build") / f"{Path(model_path).stem}-{board.name}"
    if not outdir.parent.is_dir():
        check_output(outdir.parent, "-o", "folder")
        return outdir
    return check_output(outdir, "-o", "folder")


def _keep_failed(staging: Path, failed: Path) -> None:
    """Keep a failed build's files for the user as ``failed`` (replacing an older one: a
    folder is removed, anything else, a FIFO included, unlinked without being opened)."""
    if failed.is_dir() and not failed.is_symlink():
        shutil.rmtree(failed, ignore_errors=True)
    elif os.path.lexists(failed):
        try:
            failed.unlink()
        except OSError:
            pass   # the rename below reports it
    staging.rename(failed)


# Place-and-route at a lower constraint lands a few percent either side of the Fmax it
# reached at the higher one: the suggested clock keeps this much below it.
CLOCK_MARGIN = 0.03


def timing_advice(err: TimingError, args, board) -> str:
    """``err``'s message, with the build command that asks for a clock the design reached
    (the highest whole MHz whose PLL output is at least :data:`CLOCK_MARGIN` below the
    achieved Fmax), the user's other options kept; or the advice to narrow the fold when the
    PLL makes no such clock."""
    achieved = err.achieved_mhz
    if achieved is None or err.requested_mhz is None:
        return str(err)
    head = (f"timing not met: achieved Fmax {achieved:.1f} MHz, requested "
            f"{err.requested_mhz:.1f} MHz")
    if len(err.attempts) > 1:
        head += (f" (best of {len(err.attempts)} place-and-route seeds: "
                 f"{', '.join(str(a['seed']) for a in err.attempts)})")
    path = err.critical_path
    if path and path["start"] and path["end"]:
        head += (f"; critical path {path['delay_ns']:.1f} ns ({path['routing_ns']:.1f} "
                 f"routing) from {path['start']} to {path['end']}"
                 f"{' (enable)' if path['end_pin'] in ('CEN', 'CE') else ''}")
    target = achieved * (1 - CLOCK_MARGIN)
    mhz = int(target)
    try:
        while pll_output_mhz(board, mhz) > target:  # the PLL makes the request +-1 MHz
            mhz -= 1
    except ValueError:
        return f"{head}; no lower clock the board's PLL makes is left: try a narrower --fold"
    words = ["python", "-m", "hwgen", "build", "--board", board.name, str(args.model)]
    for flag, value in (("-o", args.output), ("--fold", args.fold), ("--lanes", args.lanes)):
        if value is not None:
            words += [flag, str(value)]
    if args.baud is not None:
        words += ["--baud", str(args.baud)]
    words += ["--clock", str(mhz)]
    return (f"{head}; this asks for {mhz} MHz (the PLL makes {pll_output_mhz(board, mhz):.2f}), "
            f"at least {CLOCK_MARGIN:.0%} under it: {shlex.join(words)}")


def pll_output_mhz(board, mhz: float) -> float:
    """The frequency ``board``'s PLL makes for a request of ``mhz`` (within the 1 MHz its top
    allows); ``ValueError`` when it cannot."""
    if board.family == "ice40":
        from .pll_ice40 import ICEBREAKER_CLOCK_MHZ, solve
        return float(solve(mhz, ICEBREAKER_CLOCK_MHZ, max_error_mhz=1.0).f_out)
    from .pll_ecp5 import solve
    from .ulx3s import ULX3S_CLOCK_MHZ
    return float(solve(mhz, ULX3S_CLOCK_MHZ, max_error_mhz=1.0).f_out)


def _build_into(staging: Path, model, net, module: str, board, args, luts_est: int,
                brams_est: int, fold_text: str, missed: list) -> tuple[dict, str]:
    """Board top + synthesis + report files in ``staging``; returns (report, summary)."""
    from hwgen.gateware.network import Network, check_generatable

    from .core import CoreShape, StreamCore

    check_generatable(net)
    shape = CoreShape(net.lanes, net.bits, net.beats_per_image, net.class_bits, net.input_size,
                      binarize_at=model.input.binarize_at, weight_words=spram_words(net))
    core = StreamCore.wrap(Network(net), shape)
    header = weights.weight_header(net)
    try:
        fifo = {}
        if board.family == "ice40":
            fifo["rx_fifo_depth"] = rx_fifo_depth(net, board, args.clock, args.baud)
        if header and args.uart_weights:
            fifo["uart_weights"] = True
        top = board.make_top(core, clock_mhz=args.clock or board.default_clock_mhz,
                             baud=args.baud or board.default_baud, **fifo,
                             **({"weight_header": header} if header else {}))
    except ValueError as err:
        from hwgen.interrupts import silence_unused_elaboratables

        silence_unused_elaboratables()  # the core was made for a top that cannot be
        raise UserError(f"board top: {err}") from None
    start = time.perf_counter()
    retry = Retry(seeds=args.pnr_seeds, budget_s=args.pnr_budget)
    # TimingError: cmd_build keeps the files
    raw = board.build(top, staging, name=module, retry=retry)
    report = build_report(model, net, board, raw, luts_est, brams_est, fold_text)
    if header:
        report["weights_image"] = weights.write_weights(net, staging)
    if missed:
        report["faster_folds_missed"] = missed
    report["build_seconds"] = round(time.perf_counter() - start, 1)
    replace_file(staging / "report.json", json.dumps(report, indent=2) + "\n")
    summary = format_summary(report)
    replace_file(staging / "summary.txt", summary + "\n")
    return report, summary


def programmer(board) -> list[str]:
    """The command that flashes ``board`` (before the file arguments): openFPGALoader, or
    iceprog for iCE40; UserError when neither is installed (checked before a build too)."""
    if shutil.which("openFPGALoader"):
        return ["openFPGALoader", "--board", board.name.split("-")[0]]
    if board.family == "ice40" and shutil.which("iceprog"):
        return ["iceprog"]
    raise UserError("--program needs openFPGALoader (or iceprog for iCE40) on PATH")


def program(board, path: Path, offset: int | None = None) -> None:
    """Flash ``path`` with openFPGALoader or (iCE40) iceprog, whichever is installed: the
    bitstream, or with ``offset`` a weight image at that byte offset of the flash."""
    at = [] if offset is None else ["-o", weights.flash_offset_text(offset)]
    cmd = [*programmer(board), *at, str(path)]
    if subprocess.run(cmd).returncode != 0:
        what = "programming the weights" if offset is not None else "programming"
        raise UserError(f"{what} failed: {' '.join(cmd)}")


_clock = real(0, MAX_CLOCK_MHZ, low_open=True)  # MHz
_baud = integer(1, MAX_BAUD)
_lanes = integer(1, MAX_LANES)


def register(sub) -> None:
    """Add ``build`` and ``run`` to the ``python -m hwgen`` parser."""
    from .run_command import cmd_run  # it builds on this module

    names = ", ".join(f"{b.name} ({b.description})" for b in BOARDS.values())
    p = sub.add_parser("build", help="a bitstream for a board (verify, synthesize, report)",
                       description="Fold the model for the board, check it in Verilator, "
                                   "synthesize and place/route it with the YoWASP tools, and "
                                   f"write the bitstream and report.json. Boards: {names}.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    p.add_argument("--board", required=True, choices=sorted(BOARDS), help=f"one of: {names}")
    p.add_argument("-o", "--output", type=output_type("folder"), metavar="DIR",
                   help="output folder (default build/<model>-<board>; its parent must exist)")
    p.add_argument("--clock", type=_clock, metavar="MHZ", help="requested clock (default: "
                   "the board's, 48 MHz on the iCEBreaker)")
    p.add_argument("--baud", type=_baud, help="UART baud (default: the board's, 3000000; "
                   "the iCEBreaker takes up to 12000000)")
    p.add_argument("--fold", metavar="FOLD", help="PExSIMD per layer, or JSON; 'fastest': the "
                   "highest throughput that fits the board (slower ones are tried in turn "
                   "while timing fails); default: the cheapest that keeps up with the UART")
    p.add_argument("--lanes", type=_lanes, metavar="P", help="input values per beat")
    p.add_argument("--skip-verify", action="store_true",
                   help="synthesize without the Verilator check (prints a warning)")
    p.add_argument("--verify-images", type=integer(1, MAX_VERIFY_IMAGES),
                   default=VERIFY_DEFAULT_IMAGES, metavar="N",
                   help=f"images for the Verilator check (default {VERIFY_DEFAULT_IMAGES})")
    p.add_argument("--pnr-seeds", type=integer(1, MAX_PNR_SEEDS), default=Retry.seeds,
                   metavar="N", help="place-and-route attempts with different nextpnr seeds "
                   f"while timing is not met (default {Retry.seeds}; 1: no retry)")
    p.add_argument("--pnr-budget", type=real(0, MAX_PNR_BUDGET_S), default=Retry.budget_s,
                   metavar="SECONDS", help="start no retry that would likely end later than "
                   f"this after the first attempt (default {Retry.budget_s:.0f})")
    p.add_argument("--uart-weights", action="store_true",
                   help="for a fold with SPRAM: the bitstream also takes its weight image "
                        "over the UART (hwgen run --load-weights), for a board whose flash "
                        "holds none; about 400 LUTs more")
    p.add_argument("--program", action="store_true",
                   help="flash the bitstream afterwards (openFPGALoader or iceprog), and "
                        "weights.bin for a fold with SPRAM")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="classify images on a board over UART (or --sim)",
                       description="Send images to a board running a `hwgen build` bitstream "
                                   "(or to the simulated board top with --sim) and compare "
                                   "its classes with the reference.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    p.add_argument("pngs", type=Path, nargs="*", metavar="IMAGE.png")
    p.add_argument("--port", metavar="DEVICE", help="serial port, e.g. /dev/ttyUSB1")
    p.add_argument("--sim", action="store_true", help="use the simulated board (Verilator)")
    p.add_argument("--board", default="icebreaker", choices=sorted(BOARDS),
                   help="board whose fold and baud --sim reproduces (default icebreaker)")
    p.add_argument("--baud", type=_baud,
                   help="UART baud (default: the board's, 3000000); with --sim the "
                        "simulated link at the board's default clock (iCEBreaker: 48 MHz, "
                        "at most 12000000 = 4 cycles per bit)")
    p.add_argument("--fold", metavar="FOLD")
    p.add_argument("--lanes", type=_lanes, metavar="P")
    p.add_argument("--weights", type=Path, metavar="FILE",
                   help="with --sim, for a fold with SPRAM: the flash image the simulated "
                        "board boots from (default: the one hwgen build writes; with "
                        "--load-weights: an erased flash)")
    p.add_argument("--load-weights", nargs="?", const="", metavar="FILE",
                   help="for a fold with SPRAM: first send the weight image over the UART "
                        "(for a board whose flash holds none): FILE, or this model's for "
                        "the board's fold (the weights.bin hwgen build writes); the board "
                        "checks it as it checks its flash")
    add_image_source(p, required=False)
    p.set_defaults(func=cmd_run)

