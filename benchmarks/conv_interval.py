"""Benchmark: the initiation interval of small random CNNs, planned bound against Verilator.

    .venv/bin/python benchmarks/conv_interval.py [--seeds 100:160] [--images 12]
        [--json benchmarks/results/conv_interval.json]

For each seed: a random input map (1-3 channels, 3x3 to 10x10), a conv (kernel 1-5, stride
1-2, padding 0-1), sometimes a 2x2 max-pool and a second conv, then the dense output
layer; a random fold; ``--images`` images streamed back to back through the Verilator core.
Prints one row per network: its layers, fold, the plan's ``cycles_per_image`` (a lower
bound for such networks) and the measured mean spacing of the outputs, then how many met
the bound exactly. Seeds whose random model or fold is invalid are skipped. Not a test:
needs Verilator (about 10 s per network to compile).
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

if __name__ == "__main__":
    from benchmarks.script import start_script
    start_script()

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.script import run as run_script, write_json  # noqa: E402
from hwgen.options import Parser, integer  # noqa: E402
from hwgen.outputs import output_type  # noqa: E402
from hwgen.fold import Fold, FoldError, plan  # noqa: E402
from hwgen.random_models import conv, pool, random_images, random_model  # noqa: E402


def random_cnn(seed: int):
    """(model, folds) for ``seed``, or None when the draw is not a valid network."""
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in (rng.integers(1, 4), rng.integers(3, 11), rng.integers(3, 11)))
    binarize_at = 128 if rng.random() < 0.5 else None
    k = int(rng.integers(1, min(h, w, 5) + 1))
    stride, padding = int(rng.integers(1, 3)), int(rng.integers(0, min(2, k)))
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    pad_value = -1 if binarize_at else int(rng.integers(0, 256))
    layers = [conv(int(rng.integers(2, 9)), k, stride, padding, pad_value)]
    if rng.random() < 0.4 and ho >= 2 and wo >= 2:
        layers.append(pool(2))
        ho, wo = ho // 2, wo // 2
    if rng.random() < 0.4 and ho >= 2 and wo >= 2:
        k2 = int(rng.integers(1, min(ho, wo, 3) + 1))
        layers.append(conv(int(rng.integers(2, 9)), k2, 1, int(rng.integers(0, min(2, k2))), 1))
    try:
        model = random_model(rng, (c, h, w), layers, classes=int(rng.integers(2, 6)),
                             binarize_at=binarize_at)
        folds = [Fold(int(rng.integers(1, layer.weight.shape[0] + 1)),
                      int(rng.integers(1, layer.weight[0].size + 1)))
                 if hasattr(layer, "weight") else None for layer in model.layers]
        plan(model, folds)
    except (FoldError, ValueError):
        return None
    return model, folds, rng


def describe(model) -> str:
    parts = ["x".join(map(str, model.input.shape))]
    for layer in model.layers[:-1]:
        if hasattr(layer, "weight"):
            m, _, kh, kw = layer.weight.shape
            parts.append(f"c{m}k{kh}x{kw}s{layer.stride[0]}p{layer.padding[0]}")
        else:
            parts.append("pool")
    return "-".join(parts)


MAX_NETWORKS = 10_000  # seeds in one run (each compiles a core: about 10 s)


def _seed_range(text: str) -> range:
    """``first:end`` (end excluded) of whole numbers, at most :data:`MAX_NETWORKS` seeds."""
    match = re.fullmatch(r"([0-9]{1,10}):([0-9]{1,10})", text)
    if not match or not 0 < int(match.group(2)) - int(match.group(1)) <= MAX_NETWORKS:
        raise argparse.ArgumentTypeError(f"expected first:end, whole numbers with first < end "
                                         f"and at most {MAX_NETWORKS} seeds, got {text!r}")
    return range(int(match.group(1)), int(match.group(2)))


def main() -> None:
    from sim.commands import simulate_net

    parser = Parser(prog="benchmarks/conv_interval.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seed_range, default=_seed_range("100:160"),
                        help="first:end (end excluded)")
    parser.add_argument("--images", type=integer(2, 10_000), default=12)
    parser.add_argument("--json", type=output_type("file", (".json",)),
                        help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    for seed in tqdm(args.seeds, desc="networks", disable=not sys.stderr.isatty()):
        drawn = random_cnn(seed)
        if drawn is None:
            continue
        model, folds, rng = drawn
        net = plan(model, folds)
        result = simulate_net(net, "dut", random_images(rng, model.input, args.images))
        rows.append({"seed": seed, "network": describe(model), "fold": net.fold_text,
                     "bound": net.cycles_per_image,
                     "measured": result.steady_cycles_per_image()})
    print(f"{'seed':>5}  {'network':<34} {'fold':<22} {'bound':>6} {'measured':>9} {'over':>6}")
    for r in rows:
        print(f"{r['seed']:>5}  {r['network']:<34} {r['fold']:<22} {r['bound']:>6} "
              f"{r['measured']:>9.1f} {r['measured'] / r['bound'] - 1:>6.1%}")
    exact = sum(r["measured"] == r["bound"] for r in rows)
    below = sum(r["measured"] < r["bound"] for r in rows)
    print(f"{len(rows)} networks: {exact} at the bound, {len(rows) - exact - below} above, "
          f"{below} below")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    sys.exit(run_script(main))
