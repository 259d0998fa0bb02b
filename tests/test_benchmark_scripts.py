"""The benchmark scripts take bad input as the commands do (issue 16): one ``error: ...``
line and exit 2, bounded sizes, results written staged, Ctrl-C as one line."""

from __future__ import annotations

import json
import os
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


def test_library_settings_and_a_removed_working_folder(tmp_path):
    """The scripts ignore the library settings the commands ignore (``MPLBACKEND=bogus``
    was a traceback at the plot, after the results file was rewritten; ``TQDM_*``,
    ``TORCH_LOGS``), and escape what stdout cannot encode (the table's ``±`` under
    ``PYTHONIOENCODING=ascii``); a working folder that was removed is one line (oneMKL ended
    ``import torch`` silently, spawn was a traceback). Round 30 of the fuzz."""
    results = tmp_path / "r.json"
    results.write_text(json.dumps([
        {"arch": "mlp:8", "epochs": 1, "method": "ste", "variant": "ste", "seed": seed,
         "train_images": 100, "device": "cpu", "exported_accuracy": 0.5, "gap": 0.0}
        for seed in (0, 1)]))
    env = dict(os.environ, MPLBACKEND="bogus", MATPLOTLIBRC="/etc/passwd",
               TQDM_MININTERVAL="abc", PYTHONIOENCODING="ascii")
    proc = subprocess.run([sys.executable, f"{B}/train_compare.py", "--table-only", "--json",
                           str(results), "--plot", str(tmp_path / "bars.png")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "\\xb1" in proc.stdout and (tmp_path / "bars.png").is_file()
    gone = tmp_path / "gone"
    gone.mkdir()
    for argv in ([str(ROOT / B / "reference_speed.py")], ["-m", "train", "--arch", "mlp:8"],
                 ["-m", "hwgen", "info", str(ROOT / "models" / "fmnist-mlp-up5k.npz")]):
        proc = subprocess.run([sys.executable, *argv], cwd=gone, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              preexec_fn=lambda: os.rmdir(gone))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == ("error: the working folder is gone (No such file or "
                               "directory): run from an existing folder\n"), proc.stderr
        gone.mkdir()


def test_docs_page_is_read_bounded_and_written_staged(tmp_path, monkeypatch, capsys):
    """``train_compare --docs``: a page that is missing, a folder, a link to /dev/zero, not
    UTF-8, or whose end marker comes first was a traceback or a hang (round 32 of the fuzz).
    One line each, the page untouched; a good page gets the table between its markers."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import train_compare as tc

    page = tmp_path / "training.md"
    monkeypatch.setattr(tc, "DOC", page)
    for make, why in [
            (lambda: None, "no such docs page"),
            (page.mkdir, "not a regular docs page"),
            (lambda: page.symlink_to("/dev/zero"), "not a regular docs page"),
            (lambda: page.write_bytes(b"\xff" + tc.BEGIN.encode()), "not UTF-8 text"),
            (lambda: page.write_text(f"a {tc.END} b {tc.BEGIN} c"), "markers")]:
        if page.is_symlink() or page.is_file():
            page.unlink()
        elif page.is_dir():
            page.rmdir()
        make()
        with pytest.raises(SystemExit) as ended:
            tc.update_docs("| table |")
        assert ended.value.code == 2 and why in capsys.readouterr().err
    page.unlink()
    page.write_text(f"a\n{tc.BEGIN}\nold\n{tc.END}\nb\n")
    tc.update_docs("| table |")
    assert page.read_text() == f"a\n{tc.BEGIN}\n| table |\n{tc.END}\nb\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.md"]


def test_sweep_notes_print_control_characters_escaped(tmp_path, monkeypatch, capsys):
    """Round 33: a note about a run left out quoted a file name or provenance with a newline
    and an escape sequence raw, which put a fake ``error:`` line on the terminal."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import train_compare as tc

    monkeypatch.setattr(tc, "rows_from_sweep", lambda folder, variants, device: (
        [], ["a\nerror: fake\x1b[2J.npz: not a variant's run"]))
    assert tc._merge_sweeps([], [tmp_path], "cpu") == []
    err = capsys.readouterr().err
    assert err.splitlines() == ["# left out: a\\nerror: fake\\x1b[2J.npz: not a variant's run",
                                f"# {tmp_path}: 0 rows"]
