"""The benchmark scripts take bad input as the commands do (issue 16): one ``error: ...``
line and exit 2, bounded sizes, results written staged, Ctrl-C as one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT

B = "benchmarks"


def _script(*argv, timeout=120):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("argv, message", [
    ([f"{B}/conv_interval.py", "--seeds", "abc"], "argument --seeds: expected first:end"),
    ([f"{B}/conv_interval.py", "--seeds", "5:5"], "argument --seeds: expected first:end"),
    ([f"{B}/conv_interval.py", "--images", "-1"], "argument --images: must be at least 2"),
    ([f"{B}/conv_interval.py", "--json", "missing/x.json"], "argument --json: missing/x.json"),
    ([f"{B}/reference_speed.py", "--repeat", "0"], "argument --repeat: must be at least 1"),
    ([f"{B}/reference_speed.py", "--images", "1000000"],
     "argument --images: must be at most 100000"),
    ([f"{B}/sim_speed.py", "--images", "x"], "argument --images: must be a whole number"),
    ([f"{B}/sim_speed.py", "nowhere.npz", "--images", "5"], "nowhere.npz: no such model file"),
    ([f"{B}/sim_speed.py", "models/fmnist-mlp-up5k.npz", "--fold", "zz", "--images", "5"],
     "layer 0: fold 'zz' is not PExSIMD"),
])
def test_bad_input_is_one_line(argv, message):
    proc = _script(*argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {message}") and proc.stderr.count("\n") == 1, \
        proc.stderr


def test_reference_speed_runs_and_an_interrupt_is_one_line():
    done = _script(f"{B}/reference_speed.py", "--images", "300", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "engines agree on every score: True"
    proc = subprocess.Popen([sys.executable, f"{B}/reference_speed.py", "--images", "100000",
                             "--repeat", "100"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "error: interrupted\n")
