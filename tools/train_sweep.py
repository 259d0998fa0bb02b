#!/usr/bin/env python3
"""Train several configurations side by side on one machine (one GPU) inside a time budget.

Each line of the runs file is ``NAME: ARGS`` where ARGS are ``python -m train`` arguments
without ``--epochs``/``--out``/``--plots`` (``#`` starts a comment). ``--max-epochs N`` at
the end of a line caps that run's epochs (default ``--cap``).

1. Calibration: every run trains one epoch, all at once, and the epoch time each one logs
   under that load is read back. With ``--calibration-images N`` the calibration epoch
   uses only the first N training images (and the same fraction of the test images) and
   its time is scaled up by ``--train-images / N``: a fraction of the time, the same
   load. Fixed per-epoch costs (warm-up) are scaled too, so the estimate errs long (the
   H200 sweeps of ``tools/sweeps/fmnist-cnn-sbn*.txt`` planned 11.5 s per epoch for runs
   that took 6.9). A run with its own ``--train-limit`` calibrates on its own set,
   unscaled.
2. Each run then gets the most epochs that end inside the budget at that speed (at most its
   cap); runs with the same cap get the same count (the smallest), so that runs meant to
   be compared train equally long. All runs train together, writing ``OUT/NAME.npz``,
   ``OUT/NAME.log`` and training curves in ``OUT/NAME-plots/``.
3. ``OUT/summary.txt`` gets one line per run: epochs, seconds per epoch, the exported
   (bit-exact) test accuracy, or the error.

Usage: ``python tools/train_sweep.py RUNS.txt --out DIR --budget SECONDS [--data-dir D]``.
Every child is a plain ``python -m train`` run; a run's command line is in its log and in
its model file's provenance. Bad input is one ``error:`` line and exit 2, as for the
commands; Ctrl-C or SIGTERM stops every run (each removes its own partial outputs) and
exits 130/143; a sweep whose every run failed exits 2 after writing its summary.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if __name__ == "__main__":
    from benchmarks.script import start_script
    start_script()
from benchmarks.script import fail, read_text, run as run_script  # noqa: E402
from train.epoch_log import epoch_seconds  # noqa: E402  (torch-free)

#: The largest runs file read (a sweep of a few dozen lines is about 2 KB).
MAX_RUNS_BYTES = 1 << 20
#: The most epochs a run may be capped at (as train's --epochs).
MAX_EPOCHS = 100_000
#: The largest run log read back (a 1,000-epoch run's is about 200 KB).
MAX_LOG_BYTES = 16 << 20

FINAL_LINE = re.compile(r"exported .*?([\d.]+)%")


def parse_runs(path: Path, cap: int) -> list[tuple[str, list[str], int]]:
    """``(name, train arguments, epoch cap)`` per line of the runs file ``path`` (a regular
    file, UTF-8, at most :data:`MAX_RUNS_BYTES`); one ``error:`` line and exit 2 otherwise."""
    text = read_text(path, MAX_RUNS_BYTES, "runs file", f"{path}: the runs file is not UTF-8 text")
    runs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name.strip()):
            fail(f"{path}:{number}: expected 'NAME: ARGS'")
        try:
            args = shlex.split(rest)
        except ValueError as err:
            fail(f"{path}:{number}: {err}")
        if any("\0" in arg for arg in args):
            fail(f"{path}:{number}: an argument holds a NUL byte")
        limit = cap
        if "--max-epochs" in args:
            i = args.index("--max-epochs")
            value = args[i + 1] if i + 1 < len(args) else ""
            if not re.fullmatch(r"[0-9]{1,6}", value) or not 1 <= int(value) <= MAX_EPOCHS:
                fail(f"{path}:{number}: --max-epochs needs a whole number in 1..{MAX_EPOCHS}")
            limit = int(value)
            del args[i:i + 2]
        runs.append((name.strip(), args, limit))
    if len({r[0] for r in runs}) != len(runs):
        fail(f"{path}: run names must be unique")
    return runs


def _new_file(path: Path) -> int:
    """A write descriptor of a new regular file at ``path`` (what was there, a link or a
    FIFO included, is replaced: it is the sweep's own output name; a link is not followed,
    a FIFO not waited on)."""
    if os.path.lexists(path) and not path.is_symlink() and path.is_dir():
        fail(f"{path}: is a folder, not a file the sweep can write")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)


def launch(args: list[str], log: Path, threads: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "train", *args, "--threads", str(threads), "--no-progress"]
    fd = _new_file(log)
    try:
        os.write(fd, ("$ " + shlex.join(cmd) + "\n").encode("utf-8", "surrogateescape"))
        return subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, env=env)
    finally:
        os.close(fd)  # the child has its own


def read_log(log: Path) -> str:
    """A run's log as text (bounded, regular only; bytes that are not UTF-8 replaced: a run
    may write in another encoding, or a run's own output may have replaced the file)."""
    from hwgen.errors import UserError
    from hwgen.files import read_bounded

    try:
        return read_bounded(log, MAX_LOG_BYTES, what="run log").decode("utf-8", "replace")
    except UserError as err:
        fail(str(err))


def slowest_epoch(log: Path) -> float | None:
    """The longest epoch a run's log reports, or None when it reports none."""
    times = epoch_seconds(read_log(log))
    # The log rounds to 0.1 s: a tiny run may print 0.0.
    return max(0.1, max(times)) if times else None


def plan_epochs(speed: dict[str, float | None], caps: dict[str, int],
                left: float) -> dict[str, int]:
    """Epochs per run: the most that end within ``left`` seconds at the run's ``speed``
    (seconds per epoch, with 10% to spare; at least 1, at most its cap); runs that share a
    cap then all get the fewest of them. Runs without a speed (calibration failed) get
    none."""
    plan = {name: max(1, min(caps[name], int(left / (t * 1.1))))
            for name, t in speed.items() if t is not None}
    return {name: min(plan[other] for other in plan if caps[other] == caps[name])
            for name in plan}


def _out_folder(out: Path) -> None:
    """Make the sweep's folder (its parents too); one error line if it cannot be one."""
    from hwgen.files import folder_problem

    problem = folder_problem(out)
    if problem is None:
        return
    if problem != "no such folder":
        fail(f"--out {out}: {problem}")
    try:
        out.mkdir(parents=True)
    except OSError as err:
        fail(f"--out {out}: cannot make it ({err.strerror or err})")


def main() -> int:
    from hwgen.options import Parser, folder_name, integer, real

    p = Parser(prog="tools/train_sweep.py", description=__doc__.splitlines()[0])
    p.add_argument("runs", type=folder_name, metavar="RUNS.txt")
    p.add_argument("--out", type=folder_name, required=True)
    p.add_argument("--budget", type=real(0, 10**7, low_open=True), required=True,
                   help="seconds for the whole sweep")
    p.add_argument("--cap", type=integer(1, MAX_EPOCHS), default=200,
                   help="most epochs of any run")
    p.add_argument("--margin", type=real(0, 10**7), default=45.0,
                   help="seconds kept for start-up, export and checks")
    p.add_argument("--data-dir", type=lambda text: str(folder_name(text)))
    p.add_argument("--calibration-images", type=integer(0, 10**7), default=0, metavar="N",
                   help="calibrate on the first N training images (default 0: all)")
    p.add_argument("--train-images", type=integer(1, 10**7), default=60000, metavar="N",
                   help="training images in the dataset, to scale a short calibration "
                        "(default 60000: MNIST, Fashion-MNIST)")
    p.add_argument("--test-images", type=integer(1, 10**7), default=10000, metavar="N",
                   help="test images in the dataset (default 10000)")
    a = p.parse_args()
    start = time.time()
    runs = parse_runs(a.runs, a.cap)
    if not runs:
        fail(f"{a.runs}: no runs")
    _out_folder(a.out)
    children: list[subprocess.Popen] = []
    try:
        return _sweep(a, runs, start, children)
    except OSError as err:  # a log or the summary cannot be written
        fail(f"{getattr(err, 'filename', None) or a.out}: cannot write "
             f"({err.strerror or err})")
    finally:
        _stop(children)


def _stop(children: list[subprocess.Popen]) -> None:
    """Stop the runs still going (an interrupt or an error here): SIGTERM, which each
    answers by removing its partial outputs, then SIGKILL for any that does not end."""
    alive = [proc for proc in children if proc.poll() is None]
    for proc in alive:
        proc.send_signal(signal.SIGTERM)
    for proc in alive:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sweep(a, runs, start: float, children: list) -> int:
    threads = max(1, (os.cpu_count() or 1) // len(runs))
    extra = ["--data-dir", a.data_dir] if a.data_dir else []

    cal_dir = a.out / "calibration"
    cal_dir.mkdir(exist_ok=True)
    scale, cal_extra = 1.0, []
    if 0 < a.calibration_images < a.train_images:
        scale = a.train_images / a.calibration_images
        test = max(1, round(a.test_images / scale))
        cal_extra = ["--train-limit", str(a.calibration_images), "--test-limit", str(test)]
    # a run that limits its own training set calibrates on it, unscaled
    scales = {name: 1.0 if any(arg == "--train-limit" or arg.startswith("--train-limit=")
                               for arg in args) else scale
              for name, args, _ in runs}
    procs = {}
    for name, args, _ in runs:  # each child is known to _stop as soon as it runs
        procs[name] = launch([*args, *extra, *([] if scales[name] == 1.0 else cal_extra),
                              "--epochs", "1", "--out", str(cal_dir / f"{name}.npz")],
                             cal_dir / f"{name}.log", threads)
        children.append(procs[name])
    for proc in procs.values():
        proc.wait()
    speed = {name: slowest_epoch(cal_dir / f"{name}.log") for name, _, _ in runs}
    speed = {name: None if t is None else t * scales[name] for name, t in speed.items()}
    left = a.budget - (time.time() - start) - a.margin
    print(f"calibration took {time.time() - start:.0f} s; {left:.0f} s left for training",
          flush=True)

    for name, _, _ in runs:
        if speed[name] is None:
            print(f"{name}: calibration failed (see {cal_dir / name}.log)", flush=True)
    plan = plan_epochs(speed, {name: cap for name, _, cap in runs}, left)
    for name in plan:
        print(f"{name}: {speed[name]:.1f} s/epoch -> {plan[name]} epochs", flush=True)
    procs = {}
    for name, args, _ in runs:
        if name in plan:
            procs[name] = launch([*args, *extra, "--epochs", str(plan[name]),
                                  "--out", str(a.out / f"{name}.npz"),
                                  "--plots", str(a.out / f"{name}-plots")],
                                 a.out / f"{name}.log", threads)
            children.append(procs[name])
    lines = []
    for name, proc in procs.items():
        proc.wait()
        text = read_log(a.out / f"{name}.log")
        final = [m.group(1) for m in map(FINAL_LINE.search, text.splitlines()) if m]
        result = (f"exported {final[-1]}%" if proc.returncode == 0 and final
                  else f"FAILED (exit {proc.returncode}): {text.strip().splitlines()[-1]}")
        lines.append(f"{name}: {plan[name]} epochs at {speed[name]:.1f} s/epoch (calibration "
                     f"load): {result}")
    for name, _, _ in runs:
        if name not in plan:
            lines.append(f"{name}: calibration failed")
    summary = "\n".join(lines) + f"\nwall {time.time() - start:.0f} s\n"
    from hwgen.outputs import staged_file

    with staged_file(a.out / "summary.txt", final=True) as staging:  # a link is replaced
        staging.write_text(summary, encoding="utf-8", errors="surrogateescape")
    print(summary, end="", flush=True)
    if not any(proc.returncode == 0 for proc in procs.values()):
        fail(f"every run failed (see {a.out / 'summary.txt'} and the runs' logs)")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
