"""Benchmark: the compiled Verilator harness (what ``hwgen sim`` runs) on a model.

    .venv/bin/python benchmarks/sim_speed.py [MODEL.npz] [--images 10000]

Prints generation, compile (cold: the build cache is bypassed) and run times, simulated
cycles per image, images/s and simulated cycles/s, and the agreement with the integer
reference. Defaults to the shipped iCE40UP5K model on the Fashion-MNIST test set.
Not a test: timings are noisy.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hwgen.datasets import load_dataset  # noqa: E402
from hwgen.gateware.network import interface, write_verilog  # noqa: E402
from hwgen.reference import Reference  # noqa: E402
from sim.commands import plan_model  # noqa: E402
from sim.verilated import VerilatedCore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="models/fmnist-mlp-up5k.npz")
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()

    images, _ = load_dataset("fashion-mnist", "test", limit=args.images)
    model, net, module = plan_model(Path(args.model), None, None)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        verilog, _ = write_verilog(net, Path(tmp), module)
        generated = time.perf_counter()
        core = VerilatedCore(verilog, interface(net, module), cache_dir=Path(tmp) / "cache")
        core.build()
        built = time.perf_counter()
        result = core.run(images)
        ran = time.perf_counter()
    agree = int((result.classes == Reference(model).predict(images)).sum())
    cycles = int(result.out_cycles[-1]) + 1
    print(f"model {args.model}, {len(images)} images, fold "
          f"{','.join(f'{lp.pe}x{lp.simd}' for lp in net.layers)}, II {net.cycles_per_image}")
    print(f"{'step':<10} {'seconds':>8}")
    print(f"{'generate':<10} {generated - start:>8.1f}")
    print(f"{'compile':<10} {built - generated:>8.1f}")
    print(f"{'run':<10} {ran - built:>8.1f}")
    print(f"run: {len(images) / (ran - built):.0f} images/s, {cycles / (ran - built) / 1e6:.1f} M "
          f"simulated cycles/s, {result.steady_cycles_per_image():.1f} cycles per image")
    print(f"agreement {agree}/{len(images)} with reference")


if __name__ == "__main__":
    main()
