"""``python -m hwgen sim`` and ``python -m hwgen vectors``: the generated core, simulated.

- ``sim`` runs every image through the Verilated core (compiled harness, no Python per
  beat; ``-j N`` shards the images across N processes of it, default one per CPU) and
  compares each class with the integer reference: ``agreement k/n with reference``,
  ``accuracy ...``; exit code 1 on any mismatch, naming the first one.
- ``vectors`` writes the core, its ``interface.json`` and golden vectors (``$readmemh``
  files and a plain Verilog testbench) for any simulator.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwgen import model as model_io
from hwgen.errors import UserError, one_line
from hwgen.names import default_module
from hwgen.options import (MAX_IMAGES, MAX_JOBS, add_fold_options, add_image_source,
                           add_save_predictions, check_labels, integer, load_images)
from hwgen.outputs import output_type, save_npy, staged_file, staged_folder
from hwgen.reference import Reference, check_images

from .golden import write_golden_vectors
from .verilated import SimResult, VerilatedCore, default_jobs


def plan_model(model_path: Path, fold: str | None, lanes: int | None):
    """Load ``model_path`` and fold it; returns ``(model, net, module name)``."""
    from hwgen.fold import plan, resolve_fold
    from hwgen.gateware.network import check_generatable, check_model_generatable

    model = model_io.load(model_path)
    check_model_generatable(model)
    net = plan(model, resolve_fold(fold, model), lanes=lanes)
    check_generatable(net)
    return model, net, default_module(model_path)


def simulate_net(net, module: str, images: np.ndarray, seed: int = 0,
                 valid_percent: int = 100, ready_percent: int = 100,
                 waves: Path | None = None, jobs: int = 1) -> SimResult:
    """Generate the core for ``net``, compile it (cached) and stream ``images`` through it,
    sharded across ``jobs`` harness processes (one with ``waves``); classes in image order.
    A core with SPRAM layers first loads its weight words
    (:func:`hwgen.fold.spram.spram_words`) after reset, in every process."""
    from hwgen.gateware.network import interface, write_verilog

    with tempfile.TemporaryDirectory(prefix="sbn-core-") as tmp:
        verilog, _ = write_verilog(net, Path(tmp), module)
        core = VerilatedCore(verilog, interface(net, module), trace=waves_kind(waves))
        core.build()
        return core.run(images, seed=seed, valid_percent=valid_percent,
                        ready_percent=ready_percent, waves=waves, jobs=jobs,
                        progress=len(images) > 500 and sys.stderr.isatty(),  # long runs: a bar
                        weights=_weights(net))


def _weights(net):
    """The weight words a core for ``net`` loads after reset (None without SPRAM layers)."""
    from hwgen.fold.spram import spram_words

    return spram_words(net) if net.spram_words else None


def simulate(model_path: Path, images: np.ndarray, fold: str | None = None,
             lanes: int | None = None, seed: int = 0, valid_percent: int = 100,
             ready_percent: int = 100, waves: Path | None = None, jobs: int = 1):
    """Generate, compile (cached) and run the core on ``images`` in ``jobs`` processes;
    returns (model, net, result)."""
    model, net, module = plan_model(model_path, fold, lanes)
    result = simulate_net(net, module, images, seed, valid_percent, ready_percent, waves,
                          jobs)
    return model, net, result


def waves_kind(path: Path | None) -> str | None:
    """``"vcd"`` or ``"fst"`` from a waveform file name (None for no waveforms)."""
    if path is None:
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in (".vcd", ".fst"):
        raise UserError(f"{path}: waveforms are written as .vcd or .fst; name the file so")
    return suffix[1:]


_percent = integer(1, 100)
_jobs = integer(1, MAX_JOBS)  # -j: processes of the harness


@contextlib.contextmanager
def _staged_waves(waves: Path | None):
    """The path the simulator writes waveforms to: a staging name beside ``waves``, renamed
    onto it when the run succeeds (``None`` without ``--waves``)."""
    if waves is None:
        yield None
        return
    with staged_file(waves) as staging:
        yield staging


def cmd_sim(args) -> int:
    waves_kind(args.waves)  # refuse a bad name before any work
    images, labels = load_images(args)
    jobs = default_jobs() if args.jobs is None else args.jobs
    start = time.perf_counter()
    model, net, module = plan_model(args.model, args.fold, args.lanes)
    check_labels(labels, model)
    # the shape and value range the model takes (as eval checks them), before Verilator
    # builds anything: NaN, float or out-of-range values are one line, not a failed run
    images = check_images(model.input, images)
    with _staged_waves(args.waves) as waves:
        result = simulate_net(net, module, images, args.seed, args.valid_percent,
                              args.ready_percent, waves, jobs)
    elapsed = time.perf_counter() - start
    reference = Reference(model).predict(images)
    agree = int((result.classes == reference).sum())
    n = len(reference)
    print(f"agreement {agree}/{n} with reference")
    if labels is not None:
        correct = int((result.classes == labels).sum())
        print(f"accuracy {correct / n:.4f} ({correct}/{n})")
    if args.save_predictions:   # after the result is out: a failing stdout writes no file
        sys.stdout.flush()
        save_npy(args.save_predictions, result.classes, final=True)
    steady = result.steady_cycles_per_image()
    # a spacing needs two outputs in one process: none with one image per process
    measured = (f"{steady:.1f}" if steady == steady
                else "not measured (one image per process)")
    print(f"cycles per image {measured} in simulation (predicted II {net.interval_text}), "
          f"{n / elapsed:.1f} images/s simulated including build, "
          f"{len(result.shard_starts)} process{'es' if len(result.shard_starts) > 1 else ''}")
    if result.load_cycles:
        print(f"weights: {net.spram_words} words into {net.spram_blocks} SPRAM blocks after "
              f"reset, {max(result.load_cycles)} cycles (image cycles count from then)")
    if args.waves:
        print(one_line(f"waveforms: {args.waves}"))
    if agree != n:
        from .diagnose import first_differing_layer

        first = int(np.flatnonzero(result.classes != reference)[0])
        print(f"error: first mismatch at image {first}: hardware class "
              f"{int(result.classes[first])}, reference class {int(reference[first])}; "
              f"{first_differing_layer(model, net, images[first])}", file=sys.stderr)
        return 1
    return 0


def cmd_vectors(args) -> int:
    from hwgen.gateware.network import interface, write_verilog

    args.limit = args.count if args.limit is None else min(args.limit, args.count)
    images, _ = load_images(args)
    outdir = Path(args.output)
    with staged_folder(outdir, final=True) as staging:
        model, net, module = plan_model(args.model, args.fold, args.lanes)
        images = check_images(model.input, images)  # [K, C, H, W], as the core's order needs
        verilog, _ = write_verilog(net, staging, module)
        iface = interface(net, module)
        expected = Reference(model).predict(images)
        write_golden_vectors(staging, iface, images, expected,
                             weights=_weights(net))
        name = shlex.quote(verilog.name)
        # printed before the folder is installed: a failing stdout leaves none behind
        print(one_line(f"wrote {len(expected)} golden vectors for {verilog.name} to "
                       f"{outdir}; run: cd {shlex.quote(str(outdir))} && iverilog -g2012 -o "
                       f"tb.vvp tb.v {name} && vvp -n tb.vvp"), flush=True)
    return 0


def register(sub) -> None:
    """Add the ``sim`` and ``vectors`` subcommands to the ``python -m hwgen`` parser."""
    p = sub.add_parser("sim", help="run images through the Verilated core, check vs reference",
                       description="Generate the core, compile it with Verilator (cached), "
                                   "stream every image through it and compare each class "
                                   "with the integer reference. Exit 1 on any mismatch.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    add_image_source(p)
    add_fold_options(p)
    add_save_predictions(p, "the hardware's classes")
    p.add_argument("--waves", type=output_type("file"), metavar="WAVES.vcd",
                   help="write a waveform: .vcd, or .fst (needs Debian's liblz4-dev)")
    p.add_argument("--seed", type=integer(0, 2**31 - 1), default=0,
                   help="seed of the gap/backpressure pattern")
    p.add_argument("--valid-percent", type=_percent, default=100,
                   help="chance that the input offers a beat in a cycle (default 100)")
    p.add_argument("--ready-percent", type=_percent, default=100,
                   help="chance that the output accepts in a cycle (default 100)")
    p.add_argument("-j", "--jobs", type=_jobs, metavar="N",
                   help="split the images across N Verilator processes of the same build, "
                        "each from reset (default: the number of CPUs; --waves runs one)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("vectors", help="golden vectors and a Verilog testbench for any simulator",
                       description="Write the core, interface.json, inputs.hex, expected.hex "
                                   "and tb.v (a self-checking testbench) into OUTDIR.")
    p.add_argument("model", type=Path, metavar="MODEL.npz")
    add_image_source(p)
    add_fold_options(p)
    p.add_argument("-n", dest="count", type=integer(1, MAX_IMAGES), required=True,
                   metavar="N", help="number of images")
    p.add_argument("-o", "--output", type=output_type("folder"), required=True,
                   metavar="OUTDIR", help="output folder (created if missing; its parent "
                                          "must exist)")
    p.set_defaults(func=cmd_vectors)


__all__ = ["SimResult", "cmd_sim", "cmd_vectors", "register", "simulate"]
