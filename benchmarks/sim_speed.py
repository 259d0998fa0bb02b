"""Benchmark: the compiled Verilator harness (what ``hwgen sim`` runs) on a model.

    .venv/bin/python benchmarks/sim_speed.py [MODEL.npz] [--images 10000] [--jobs 1 2]
        [--fold FOLD] [--dataset fashion-mnist|mnist] [--data-dir DIR] [--json OUT.json]

Prints generation and compile (cold: the build cache is bypassed) times, then for each
``-j`` value (images sharded across that many harness processes, as ``hwgen sim -j`` does)
the run time, images/s and simulated cycles/s (all processes' cycles over the wall time),
the steady cycles per image, and the agreement with the integer reference. ``--json``
writes the same numbers to a file. Defaults to the shipped iCE40UP5K model on the
Fashion-MNIST test set. Not a test: timings are noisy, and a -j N speedup is bounded by the
idle cores.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

if __name__ == "__main__":
    from benchmarks.script import start_script
    start_script()

from benchmarks.script import run as run_script, write_json  # noqa: E402
from hwgen.options import Parser, integer  # noqa: E402
from hwgen.outputs import output_type  # noqa: E402
from hwgen.datasets import load_dataset  # noqa: E402
from hwgen.gateware.network import interface, write_verilog  # noqa: E402
from hwgen.reference import Reference  # noqa: E402
from sim.commands import plan_model  # noqa: E402
from sim.verilated import VerilatedCore  # noqa: E402


def main() -> None:
    parser = Parser(prog="benchmarks/sim_speed.py", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="models/fmnist-mlp-up5k.npz")
    parser.add_argument("--images", type=integer(1, 10_000), default=10_000,
                        help="the first N test images (the test sets hold 10,000)")
    parser.add_argument("--jobs", type=integer(1, 64), nargs="+", default=[1, 2],
                        help="the -j values to time (default: 1 2)")
    parser.add_argument("--fold", help="as hwgen sim --fold (default: the model's default)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    parser.add_argument("--data-dir", help="the dataset's folder (default: where it lives)")
    parser.add_argument("--json", type=output_type("file", (".json",)), metavar="OUT.json",
                        help="also write the numbers to this file")
    args = parser.parse_args()

    images, _ = load_dataset(args.dataset, "test", data_dir=args.data_dir, limit=args.images)
    model, net, module = plan_model(Path(args.model), args.fold, None)
    reference = Reference(model).predict(images)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        verilog, _ = write_verilog(net, Path(tmp), module)
        generated = time.perf_counter()
        core = VerilatedCore(verilog, interface(net, module), cache_dir=Path(tmp) / "cache")
        core.build()
        built = time.perf_counter()
        for jobs in args.jobs:
            begin = time.perf_counter()
            result = core.run(images, jobs=jobs)
            seconds = time.perf_counter() - begin
            runs.append({"jobs": jobs, "seconds": round(seconds, 3),
                         "images_per_s": round(len(images) / seconds, 1),
                         "cycles_per_s": round(result.simulated_cycles() / seconds),
                         "cycles_per_image": result.steady_cycles_per_image(),
                         "agreement": int((result.classes == reference).sum())})
    report = {"model": str(args.model), "images": len(images),
              "fold": ",".join(f"{lp.pe}x{lp.simd}" for lp in net.layers if hasattr(lp, "pe")),
              "ii": net.cycles_per_image, "cpus": os.cpu_count(),
              "generate_s": round(generated - start, 2), "compile_s": round(built - generated, 2),
              "runs": runs}
    print(f"model {report['model']}, {len(images)} images, fold {report['fold']}, "
          f"II {report['ii']}")
    print(f"generate {report['generate_s']:.1f} s, compile (cold) {report['compile_s']:.1f} s")
    print(f"{'-j':>3} {'seconds':>8} {'images/s':>9} {'M cycles/s':>11} {'cycles/image':>13} "
          f"{'agreement':>11}")
    for run in runs:
        print(f"{run['jobs']:>3} {run['seconds']:>8.1f} {run['images_per_s']:>9.1f} "
              f"{run['cycles_per_s'] / 1e6:>11.2f} {run['cycles_per_image']:>13.1f} "
              f"{run['agreement']:>5}/{len(images)}")
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(run_script(main))
