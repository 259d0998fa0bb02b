"""Benchmark (not a test): float vs STE vs self-binarizing variants, equal epochs and seeds.

Every run uses the same optimizer (Adam, cosine decay), batch size, epochs and
augmentation; only the method and the variant's flags change. A *variant* is a named set
of ``python -m train`` settings (:data:`benchmarks.train_variants.VARIANTS`): ``sbn`` is the trainer's default,
``sbn-paper`` the paper-faithful method (exact tanh gradient); ``sbn-v3``, ``sbn-v2`` and
``sbn-v1`` are the earlier defaults and the ``sbn-vN-*`` rows the ablations and probes around
them that decided the next default.

Each run is a row of ``benchmarks/results/train_compare.json`` (``--json``)::

    {"arch", "epochs", "method", "variant", "seed", "exported_accuracy", "gap",
     "soft_accuracy", "float_accuracy" (float rows only), "device", "seconds",
     "train_images", "settings"}

``exported_accuracy`` is the exported file's accuracy under the bit-exact integer
reference on the 10000 Fashion-MNIST test images (a fraction; ``null`` for ``float``,
which has no binary export), ``gap`` the soft minus the exported accuracy in points. Rows
already in the file are kept and replaced by a new run of the same (arch, epochs, variant,
seed), so a benchmark can be built up over several invocations. ``--docs`` rewrites the
table in ``docs/training.md`` between its markers from the whole file; ``--plot PNG``
draws the main variants (:data:`PLOTTED`) as bars per (arch, epochs, training
images).
Rows from a reduced training set (``--train-limit``) are grouped apart and say so.

    .venv/bin/python benchmarks/train_compare.py --archs mlp:100-100 --epochs 15 \\
        --seeds 0 1 2 --variants float ste sbn-paper sbn --jobs 2 --docs
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if __name__ == "__main__":  # not in the spawned training processes, which import this file
    from benchmarks.script import start_script
    from hwgen.address_space import TRAIN_BASE
    start_script(TRAIN_BASE)  # its training processes load torch

from benchmarks.script import fail, read_text, run as run_script  # noqa: E402
from hwgen.errors import UserError  # noqa: E402
from benchmarks.sweep_rows import rows_from_sweep  # noqa: E402
from train.config import DEFAULT_LR, SBN_ONLY  # noqa: E402
from benchmarks.train_variants import VARIANTS  # noqa: E402

DOC = ROOT / "docs" / "training.md"
BEGIN, END = "<!-- train_compare:begin -->", "<!-- train_compare:end -->"


def run_one(job: dict) -> dict:
    """Train one (arch, epochs, variant, seed) and return its row."""
    from train.loop import TrainConfig, train

    method, settings = VARIANTS[job["variant"]]
    with tempfile.TemporaryDirectory() as tmp:
        out = None if method == "float" else str(Path(tmp) / "model.npz")
        cfg = TrainConfig(dataset="fashion-mnist", arch=job["arch"], method=method,
                          epochs=job["epochs"], out=out, checkpoint=str(Path(tmp) / "c.pt"),
                          seed=job["seed"], threads=job["threads"], progress=False,
                          data_dir=job["data_dir"], train_limit=job["train_limit"],
                          device=job["device"], **settings)
        t0 = time.time()
        result = train(cfg)
    soft = result["soft_test_accuracy"]
    exported = result.get("test_accuracy")
    row = {"arch": job["arch"], "epochs": job["epochs"], "method": method,
           "variant": job["variant"], "seed": job["seed"], "exported_accuracy": exported,
           "gap": None if exported is None else round(100 * (soft - exported), 4),
           "soft_accuracy": soft, "device": cfg.device,
           "seconds": round(time.time() - t0, 1),
           "train_images": result["train_images"], "settings": settings}
    if method == "float":
        row["float_accuracy"] = soft
    if "test_accuracy_before_bn_recal" in result:
        row["exported_accuracy_before_bn_recal"] = result["test_accuracy_before_bn_recal"]
    return row


# What every row must hold (and of which type) for the table and the plot.
ROW_KEYS = {"arch": str, "epochs": int, "method": str, "variant": str, "seed": int,
            "train_images": int, "device": str, "exported_accuracy": (float, int, type(None)),
            "gap": (float, int, type(None))}


def _key(row: dict) -> tuple:
    return (row["arch"], row["epochs"], row["train_images"], row["variant"], row["seed"])


#: The largest results file read (the checked-in one is about 100 KB).
MAX_RESULTS_BYTES = 64 << 20


def load_rows(path: Path) -> list[dict]:
    from hwgen.files import read_bounded

    if not os.path.lexists(path):
        return []
    try:
        data = read_bounded(path, MAX_RESULTS_BYTES, what="results file",
                            reason=", not a results file")
        rows = json.loads(data.decode("utf-8"))
    except UserError as err:
        fail(str(err))
    except (ValueError, RecursionError) as err:
        fail(f"{path}: not a results file ({err.__class__.__name__})")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        fail(f"{path}: expected a JSON list of rows")
    first = {}
    for number, row in enumerate(rows):
        bad = row_problem(row)
        if bad:
            fail(f"{path}: row {number} lacks or mistypes {bad}")
        twin = first.setdefault(_key(row), number)
        if twin != number:  # it would count as one more seed in the table
            fail(f"{path}: rows {twin} and {number} are the same run ({_run_name(row)})")
    return rows


def _run_name(row: dict) -> str:
    return (f"{row['arch']}, {row['epochs']} epochs, {row['train_images']} images, "
            f"{row['variant']}, seed {row['seed']}")


def row_problem(row: dict) -> str | None:
    """The keys of ``row`` that are missing or hold what a row may not (:func:`_valid`),
    comma-separated; None for a good row."""
    bad = [key for key in ROW_KEYS if not _valid(key, row.get(key))]
    if not bad and row["exported_accuracy"] is None and (
            row.get("float_accuracy") is None
            or not _valid("exported_accuracy", row["float_accuracy"])):
        bad = ["float_accuracy"]  # a float row's accuracy
    return ", ".join(bad) or None


#: What a row's values may be beyond their type: names as ``train --arch`` and the variants
#: spell them (they become plot labels, where ``$`` starts math), whole numbers and fractions
#: in range (a gap of 10**400 failed the table's mean).
_NAME = re.compile(r"[A-Za-z0-9:_.+\-]{1,200}")
_RANGES = {"epochs": (1, 100_000), "seed": (0, 2**32 - 1), "train_images": (1, 10**7),
           "exported_accuracy": (0, 1), "gap": (-100, 100)}


def _valid(key: str, value) -> bool:
    """Whether ``value`` may stand under ``key`` in a row (:data:`ROW_KEYS`)."""
    if not isinstance(value, ROW_KEYS[key]) or isinstance(value, bool):
        return False
    if isinstance(value, str):
        return _NAME.fullmatch(value) is not None
    if value is None:
        return True
    low, high = _RANGES[key]
    return low <= value <= high  # also refuses NaN


def save_rows(path: Path, rows: list[dict]) -> None:
    """``rows`` sorted, written to ``path`` staged (its folder was checked when parsed)."""
    rows = sorted(rows, key=lambda r: (r["arch"], r["epochs"], -r["train_images"],
                                       list(VARIANTS).index(
        r["variant"]) if r["variant"] in VARIANTS else 99, r["variant"], r["seed"]))
    from hwgen.outputs import staged_file

    with staged_file(path) as staging:
        staging.write_text(json.dumps(rows, indent=1) + "\n")


def accuracy(row: dict) -> float:
    value = row["exported_accuracy"]
    return row["float_accuracy"] if value is None else value


# Settings that mean nothing to STE: an sbn variant's baseline is the STE variant that has its
# other settings (its learning rate, its batch-norm recalibration), plain ``ste`` otherwise.
_STE_BLIND = set(SBN_ONLY) | {"nu_schedule", "nu_start", "nu_end", "nu_ramp", "nu_learnable"}


def _effective(method: str, settings: dict) -> dict:
    """``settings`` with the learning rate spelled out (its default depends on the method)."""
    return {"lr": DEFAULT_LR[method], **settings}


def ste_baseline(variant: str) -> str:
    """The STE variant the table compares ``variant`` with at the same learning rate and
    other shared settings (``ste`` when there is none)."""
    method, settings = VARIANTS.get(variant, ("", {}))
    if method != "sbn":
        return "ste"
    shared = {k: v for k, v in _effective(method, settings).items() if k not in _STE_BLIND}
    return next((name for name, (m, s) in VARIANTS.items()
                 if m == "ste" and _effective(m, s) == shared), "ste")


def _mean(group: list[dict]) -> float:
    return statistics.mean(100 * accuracy(r) for r in group)


def table(rows: list[dict]) -> str:
    """Markdown: one line per (arch, epochs, training images, variant): mean ± std over
    seeds (%), the seeds, mean gap, the difference to ``ste`` (each method at its own
    defaults) and, where it is another row, to the STE baseline at the same learning rate
    (:func:`ste_baseline`), on the same (arch, epochs, training images)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["arch"], row["epochs"], row["train_images"], row["variant"]),
                          []).append(row)
    order = list(VARIANTS)
    lines = ["| arch | epochs | variant | method | exported accuracy (%) | seeds | "
             "gap (points) | vs ste (points) | vs ste, same lr (points) | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (arch, epochs, images, variant), group in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2], order.index(
                kv[0][3]) if kv[0][3] in order else 99)):
        accs = [100 * accuracy(r) for r in group]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        ste = groups.get((arch, epochs, images, "ste"))
        versus = f"{mean - _mean(ste):+.2f}" if ste and variant != "ste" else ""
        baseline = ste_baseline(variant)
        same = groups.get((arch, epochs, images, baseline))
        versus_same = (f"{mean - _mean(same):+.2f} ({baseline})"
                       if same and baseline not in ("ste", variant) else "")
        gaps = [r["gap"] for r in group if r["gap"] is not None]
        gap = f"{statistics.mean(gaps):+.2f}" if gaps else ""
        seeds = " ".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))
        notes = sorted({f"{r['device']}, {r['train_images']} train images"
                        for r in group if r["device"] != "cpu" or r["train_images"] != 60000})
        label = "float (not exported)" if group[0]["method"] == "float" else ""
        lines.append(f"| `{arch}` | {epochs} | {variant} | {group[0]['method']} | "
                     f"{mean:.2f} ± {std:.2f} | {seeds} | {gap} | {versus} | {versus_same} | "
                     f"{'; '.join(filter(None, [label, *notes]))} |")
    return "\n".join(lines)


PLOTTED = ("float", "ste", "ste-lr-3e-3", "sbn-paper", "sbn-v3", "sbn", "sbn-hard-0.75")


#: bar groups one chart holds (each 1.9 inches wide: 1,000 of them drew a 209,000-pixel
#: canvas, 940 MiB)
MAX_PLOT_GROUPS = 60


def check_plottable(rows: list[dict], variants=PLOTTED) -> list[tuple]:
    """The plot's (arch, epochs, images) groups, sorted; ends the script (one line) when
    there are none or more than :data:`MAX_PLOT_GROUPS`."""
    groups = sorted({(r["arch"], r["epochs"], r["train_images"]) for r in rows
                     if r["variant"] in variants}, key=lambda g: (g[0], g[1], -g[2]))
    if not groups:
        fail(f"no rows of the plotted variants ({', '.join(variants)}) to plot")
    if len(groups) > MAX_PLOT_GROUPS:
        fail(f"{len(groups)} (arch, epochs, images) groups to plot, more than the "
             f"{MAX_PLOT_GROUPS} one chart holds: plot from a --json with fewer")
    return groups


def plot(rows: list[dict], path: Path, variants=PLOTTED) -> None:
    """Grouped bars: mean exported accuracy (float: float accuracy) with the seeds' std, one
    group per (arch, epochs), one bar per variant in ``variants`` that has rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = check_plottable(rows, variants)
    shown = [v for v in variants if any(r["variant"] == v for r in rows)]
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(groups), 4))
    width = 0.8 / max(1, len(shown))
    for i, variant in enumerate(shown):
        means, stds, xs = [], [], []
        for j, group in enumerate(groups):
            accs = [100 * accuracy(r) for r in rows
                    if (r["arch"], r["epochs"], r["train_images"], r["variant"])
                    == (*group, variant)]
            if accs:
                xs.append(j + (i - (len(shown) - 1) / 2) * width)
                means.append(statistics.mean(accs))
                stds.append(statistics.stdev(accs) if len(accs) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=variant)
        for x, m, sd in zip(xs, means, stds):
            ax.text(x, m + sd + 0.15, f"{m:.2f}", ha="center", va="bottom", fontsize=6,
                    rotation=90)
    ax.set_xticks(range(len(groups)), [f"{a}\n{e} epochs" + ("" if n == 60000 else
                                                               f", {n} images")
                                       for a, e, n in groups], fontsize=8)
    low = min((100 * accuracy(r) for r in rows if r["variant"] in shown), default=80)
    ax.set_ylim(max(0, low - 2), 100 if low > 95 else min(100, low + 12))
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title("exported (bit-exact) accuracy, mean ± std over seeds; float: not binary",
                 fontsize=9)
    ax.legend(fontsize=8, ncol=len(shown))
    with warnings.catch_warnings():  # long labels: the layout does what it can, quietly
        warnings.simplefilter("ignore")
        fig.tight_layout()
    from hwgen.outputs import staged_file

    with staged_file(path, final=True) as staging:
        fig.savefig(staging, dpi=110, format="png")
    plt.close(fig)


#: The largest docs page rewritten (docs/training.md is about 30 KB).
MAX_DOC_BYTES = 4 << 20


def update_docs(text: str) -> None:
    """The table between :data:`DOC`'s markers replaced by ``text`` (the page read bounded,
    regular and UTF-8 only, its markers in order; written staged)."""
    from hwgen.outputs import staged_file

    doc = read_text(DOC, MAX_DOC_BYTES, "docs page", f"{DOC}: not UTF-8 text")
    begin = doc.find(BEGIN)
    if begin < 0 or doc.find(END, begin + len(BEGIN)) < 0:
        fail(f"{DOC}: no {BEGIN} ... {END} markers")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with staged_file(DOC) as staging:  # (a --plot may follow)
        staging.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def _run_failure(err: BaseException) -> str:
    """The one line for a training run that failed: its own error (a bad ``--archs``), an
    allocation torch could not make, or its process killed (the kernel's OOM killer)."""
    from hwgen.errors import first_line

    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, BrokenProcessPool):
        return "a training run's process ended abruptly (killed, or out of memory?)"
    if isinstance(err, MemoryError) or "allocate" in str(err):
        return (f"out of memory in a training run ({type(err).__name__}: {first_line(err)}); "
                f"give fewer --jobs or a smaller network")
    raise err


def _worker_signals() -> None:
    """In each training process: Ctrl-C (and SIGQUIT, or SIGHUP from a closed terminal)
    reaches the whole process group, and the parent stops its workers itself (SIGTERM, then
    the default action), so a worker ignores those and prints nothing of its own; the other
    signals the parent guards (:data:`hwgen.interrupts.ENDING_SIGNALS`) take their default
    action in a worker."""
    from hwgen.interrupts import ENDING_SIGNALS

    group = {signal.SIGINT, getattr(signal, "SIGQUIT", None), getattr(signal, "SIGHUP", None)}
    for number in ENDING_SIGNALS:
        signal.signal(number, signal.SIG_IGN if number in group else signal.SIG_DFL)


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with its stderr on /dev/null: when an
    interrupt stops the workers mid-run, it reported the pool's semaphores as leaked, a
    warning of two lines after the script's one."""
    from multiprocessing import resource_tracker

    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _file_size_note() -> str:
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    return f"; the file-size limit, ulimit -f, is {limit} bytes"


def train_all(jobs: list[dict], rows: list[dict], json_path: Path, processes: int) -> list[dict]:
    """Train ``jobs`` on ``processes`` workers; each finished run's row replaces its key's
    in ``rows`` and the file is saved at once. On an error or an interrupt the workers are
    stopped before it propagates (leaving the ``with`` block would wait for them)."""
    from tqdm import tqdm

    try:
        _quiet_resource_tracker()
        pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"),
                                   initializer=_worker_signals)
    except OSError as err:  # its semaphores are files in /dev/shm: EFBIG under ulimit -f 0
        raise UserError(f"cannot start the training processes ({err.strerror or err}"
                        f"{_file_size_note()})") from None
    try:
        futures = [pool.submit(run_one, job) for job in jobs]
        bar = tqdm(as_completed(futures), total=len(jobs), unit="run", file=sys.stderr,
                   leave=False, disable=not sys.stderr.isatty())
        for future in bar:
            try:
                row = future.result()
            except (UserError, MemoryError, RuntimeError, BrokenProcessPool) as err:
                bar.close()  # its line cleared before the error's
                raise UserError(_run_failure(err)) from err
            rows = [r for r in rows if _key(r) != _key(row)] + [row]
            save_rows(json_path, rows)
            bar.write(f"# {row['arch']} {row['epochs']} ep {row['variant']} seed "
                      f"{row['seed']}: {100 * accuracy(row):.2f}% ({row['seconds']:.0f}s)",
                      file=sys.stderr)
    except BaseException:
        children = multiprocessing.active_children()
        for child in children:
            child.terminate()
        for child in children:  # gone before the error line: none writes after it
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(10)
        pool.shutdown(wait=False, cancel_futures=True)  # joining it could wait forever
        raise
    pool.shutdown()
    return rows


#: The options of training runs and their defaults.
TRAINING_OPTIONS = {"archs": ["mlp:100-100"], "epochs": [15], "seeds": [0, 1, 2],
                    "variants": ["float", "ste", "sbn-paper", "sbn"], "jobs": 1, "threads": 1,
                    "train_limit": None, "data_dir": None}


def _merge_sweeps(rows: list[dict], folders: list[Path], device: str) -> list[dict]:
    """``rows`` with the runs of each sweep folder (:func:`rows_from_sweep`) in place of the
    rows of the same key; what is left out is listed on stderr."""
    report = []  # printed once every folder has been read: an error comes alone
    for folder in folders:
        try:
            found, notes = rows_from_sweep(folder, VARIANTS, device)
        except ValueError as err:
            fail(str(err))
        for row in list(found):
            bad = row_problem(row)
            if bad:
                found.remove(row)
                notes.append(f"{row.get('sweep')}: its provenance gives an unusable {bad}")
        first = {}
        for row in found:
            twin = first.setdefault(_key(row), row)
            if twin is not row:
                fail(f"{folder}: {twin['sweep']} and {row['sweep']} are the same run "
                     f"({_run_name(row)}); keep one")
        report += [f"# left out: {note}" for note in notes]
        rows = [r for r in rows if _key(r) not in first] + found
        report.append(f"# {folder}: {len(found)} rows")
    from hwgen.errors import one_line

    for line in report:  # names and provenance from the folder: control characters escaped
        print(one_line(line), file=sys.stderr)
    return rows


def main() -> int:
    from hwgen.options import Parser, folder_name, integer
    from hwgen.outputs import output_type

    p = Parser(prog="python -m benchmarks.train_compare",
               description=__doc__.splitlines()[0])
    # the options of training runs: None when not given (--table-only and --from-sweep
    # train nothing, and refuse them rather than ignore them)
    p.add_argument("--archs", nargs="+", help="(default: mlp:100-100)")
    p.add_argument("--epochs", type=integer(1, 100_000), nargs="+", help="(default: 15)")
    p.add_argument("--seeds", type=integer(0, 2**32 - 1), nargs="+", help="(default: 0 1 2)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                   help="names from benchmarks/train_variants.py, e.g. float ste sbn-paper sbn "
                        "sbn-hard-0.75 (default: float ste sbn-paper sbn)")
    p.add_argument("--jobs", type=integer(1, 256), help="runs trained at the same time (1)")
    p.add_argument("--threads", type=integer(1, 1024), help="torch threads per run (1)")
    p.add_argument("--train-limit", type=integer(1), help="first N training images only")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where runs train (default cpu); with --from-sweep, the label of runs "
                        "whose provenance does not record theirs (default: unknown)")
    p.add_argument("--data-dir", type=lambda text: str(folder_name(text)),
                   help="where the training runs find Fashion-MNIST")
    p.add_argument("--json", type=output_type("file", (".json",)),
                   default=ROOT / "benchmarks" / "results" / "train_compare.json")
    p.add_argument("--docs", action="store_true",
                   help="rewrite the table in docs/training.md from the JSON file")
    p.add_argument("--table-only", action="store_true", help="train nothing; print the table")
    p.add_argument("--from-sweep", type=folder_name, nargs="+", default=[], metavar="DIR",
                   help="train nothing; add the runs of tools/train_sweep.py output folders "
                        "whose settings are a variant's (benchmarks/sweep_rows.py)")
    p.add_argument("--plot", type=output_type("file", (".png",)), metavar="PNG",
                   help="bar chart of the main variants (PLOTTED) per (arch, epochs)")
    args = p.parse_args()
    training = {name: getattr(args, name) for name in TRAINING_OPTIONS}
    if args.table_only or args.from_sweep:
        given = [name for name, value in training.items() if value is not None]
        if given:
            fail(f"--{given[0].replace('_', '-')} is for training runs; "
                 f"{'--table-only' if args.table_only else '--from-sweep'} trains nothing")
    else:
        training = {name: TRAINING_OPTIONS[name] if value is None else value
                    for name, value in training.items()}
        from train.arch import parse_arch
        for arch in training["archs"]:  # before any process starts, not in one of them
            try:
                parse_arch(arch)
            except UserError as err:
                fail(str(err))

    rows = load_rows(args.json)
    if args.from_sweep:  # every folder read before the results file is written
        rows = _merge_sweeps(rows, args.from_sweep, args.device or "unknown")
        if args.plot:
            check_plottable(rows)
        save_rows(args.json, rows)
    jobs = [] if args.table_only or args.from_sweep else [
        {"arch": a, "epochs": e, "variant": v, "seed": s, "threads": training["threads"],
         "data_dir": args.data_dir, "train_limit": training["train_limit"],
         "device": args.device or "cpu"}
        for a in training["archs"] for e in training["epochs"] for v in training["variants"]
        for s in training["seeds"]]
    if jobs:
        try:
            rows = train_all(jobs, rows, args.json, training["jobs"])
        except UserError as err:
            fail(str(err))
    text = table(rows)
    print(text)
    if args.docs:
        update_docs(text)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
