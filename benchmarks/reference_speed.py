"""Benchmark: the integer reference on an LFC-sized network over 10,000 images.

    .venv/bin/python benchmarks/reference_speed.py [--images 10000] [--repeat 3]

LFC = 784-1024-1024-1024-10, binarized input, random parameters (hwgen.random_models.lfc_model).
Prints one row per engine: best wall time of --repeat runs (after one warm-up run),
images/s, and binary multiply-accumulates per second. Not a test: timings are noisy.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

if __name__ == "__main__":
    from benchmarks.script import start_script
    start_script()

import numpy as np  # noqa: E402

from benchmarks.script import run as run_script  # noqa: E402
from hwgen.options import Parser, integer  # noqa: E402
from hwgen.random_models import lfc_model, random_images  # noqa: E402
from hwgen.reference import ENGINES, Reference  # noqa: E402


#: The most images timed (LFC-sized: each holds 784 values and the engines' activations;
#: a million took 2 GB).
MAX_IMAGES = 100_000
_SLICE = 10_000


def main() -> None:
    parser = Parser(prog="benchmarks/reference_speed.py", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=integer(1, MAX_IMAGES), default=10_000)
    parser.add_argument("--repeat", type=integer(1, 100), default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    model = lfc_model(rng)
    # made a slice at a time: random_images draws int64 values first (8 bytes for each
    # uint8 kept; 100,000 images at once took 713 MB)
    images = np.concatenate([random_images(rng, model.input, min(_SLICE, args.images - start))
                             for start in range(0, args.images, _SLICE)])
    macs = sum(layer.weight.size for layer in model.layers)
    print(f"LFC 784-1024-1024-1024-10, binarized input, {args.images} images, "
          f"{os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"{'engine':<8} {'best s':>8} {'images/s':>10} {'GMAC/s':>8}")
    results = {}
    for engine in ENGINES:
        reference = Reference(model, engine)
        results[engine] = reference.run(images[:256])  # warm-up
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            results[engine] = reference.run(images)
            times.append(time.perf_counter() - start)
        best = min(times)
        print(f"{engine:<8} {best:>8.3f} {args.images / best:>10.0f} "
              f"{macs * args.images / best / 1e9:>8.1f}")
    same = all(np.array_equal(results[ENGINES[0]], r) for r in results.values())
    print(f"engines agree on every score: {same}")


if __name__ == "__main__":
    sys.exit(run_script(main))
