"""Benchmark (not a test): float vs STE vs SBN on the same MLP and CNN, equal epochs, seeds.

Every run uses the same optimizer (Adam, cosine decay), batch size, epochs and augmentation;
only ``--method`` changes. Test accuracy is the exported model's accuracy under the
bit-exact integer reference for ``sbn``/``ste`` (the hard network) and the float network's
accuracy for ``float``. Prints a Markdown table of mean and sample std over the seeds and
optionally writes every run as JSON.

Full benchmark (slow on CPU)::

    .venv/bin/python benchmarks/train_compare.py --epochs 30 --seeds 0 1 2

Reduced version (what docs/training.md reports, if so stated there)::

    .venv/bin/python benchmarks/train_compare.py --epochs 10 --seeds 0 1 2 \
        --cnn cnn:c16-p-c32-p-d128 --cnn-train-limit 20000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.loop import TrainConfig, train  # noqa: E402

METHODS = ("float", "ste", "sbn")


def run_one(arch: str, method: str, seed: int, args, workdir: Path,
            train_limit: int | None) -> dict:
    out = None if method == "float" else str(workdir / f"{method}-{seed}-{abs(hash(arch))}.npz")
    cfg = TrainConfig(dataset="fashion-mnist", arch=arch, method=method, epochs=args.epochs,
                      out=out, checkpoint=str(workdir / "ckpt.pt"), seed=seed,
                      batch_size=args.batch_size, lr=args.lr, flip=args.flip,
                      shift=args.shift, threads=args.threads, progress=False,
                      data_dir=args.data_dir, train_limit=train_limit,
                      nu_start=args.nu_start, nu_end=args.nu_end, nu_ramp=args.nu_ramp,
                      device=args.device)
    t0 = time.time()
    result = train(cfg)
    acc = result.get("test_accuracy", result["soft_test_accuracy"])
    return {"arch": arch, "method": method, "seed": seed, "test_accuracy": acc,
            "soft_test_accuracy": result["soft_test_accuracy"],
            "gap_points": result.get("binarization_gap_points"),
            "seconds": time.time() - t0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mlp", default="mlp:100-100")
    p.add_argument("--cnn", default="cnn:c32-p-c64-p-d256")
    p.add_argument("--skip-mlp", action="store_true")
    p.add_argument("--skip-cnn", action="store_true")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--nu-start", type=float, default=1.0)
    p.add_argument("--nu-end", type=float, default=1000.0)
    p.add_argument("--nu-ramp", type=float, default=0.8)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--shift", type=int, default=0)
    p.add_argument("--train-limit", type=int, help="training images for the MLP runs")
    p.add_argument("--cnn-train-limit", type=int, help="training images for the CNN runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir")
    p.add_argument("--json", type=Path, help="write every run here")
    args = p.parse_args()

    archs = []
    if not args.skip_mlp:
        archs.append((args.mlp, args.train_limit))
    if not args.skip_cnn:
        archs.append((args.cnn, args.cnn_train_limit))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, limit in archs:
            for method in args.methods:
                for seed in args.seeds:
                    r = run_one(arch, method, seed, args, Path(tmp), limit)
                    runs.append(r)
                    print(f"# {arch} {method} seed {seed}: {100 * r['test_accuracy']:.2f}% "
                          f"({r['seconds']:.0f}s)", file=sys.stderr, flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(runs, indent=1))

    print(f"\nFashion-MNIST test accuracy (%), {args.epochs} epochs, seeds "
          f"{' '.join(map(str, args.seeds))}, mean ± std over seeds\n")
    print("| architecture | " + " | ".join(args.methods) + " |")
    print("| --- |" + " --- |" * len(args.methods))
    for arch, _ in archs:
        cells = []
        for method in args.methods:
            accs = [100 * r["test_accuracy"] for r in runs
                    if r["arch"] == arch and r["method"] == method]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{statistics.mean(accs):.2f} ± {std:.2f}")
        print(f"| `{arch}` | " + " | ".join(cells) + " |")
    gaps = [r["gap_points"] for r in runs if r["method"] == "sbn" and r["gap_points"] is not None]
    if gaps:
        print(f"\nsbn binarization gap (soft - hard, points): mean {statistics.mean(gaps):+.2f}, "
              f"max {max(gaps):+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
