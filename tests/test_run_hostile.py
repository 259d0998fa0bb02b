"""Fuzz round 23's breaks, each one line now: a board answering a class the model lacks,
an empty weight image for ``run --load-weights``, a ``VERILATOR`` that cannot be run, and a
cache folder where the WebAssembly tools cannot keep their compiled code; and a
``--save-predictions`` file that is one of the inputs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from boards import protocol
from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.errors import UserError
from hwgen.random_models import dense, random_images, random_model
from hwgen.wasm_cache import check_wasm_cache

from .conftest import ROOT


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(3)
    model = random_model(rng, (1, 3, 3), [dense(4)], classes=3)
    path = tmp_path / "tiny.npz"
    model_io.save(model, path)
    images = tmp_path / "images.idx"
    write_idx(images, random_images(rng, model.input, 4)[:, 0])
    return path, images


class AnsweringBoard:
    """A transport whose 'board' answers every request OK with class ``klass``."""

    def __init__(self, klass: int):
        self.klass, self.pending = klass, bytearray()
        self.baud, self.board_timeout, self.latency = 3_000_000, 0.5, 0.0

    def write(self, data):
        data = bytes(data)
        while len(data) >= 8 and data[:2] == protocol.SYNC:
            length = data[4] << 8 | data[5]
            self.pending += protocol.encode_reply(0, data[3], self.klass)
            data = data[8 + length:]

    def read(self, n, timeout):
        out, self.pending = bytes(self.pending[:n]), self.pending[n:]
        return out

    def idle(self, seconds):
        pass

    def close(self):
        pass


def _one_error(capsys, code) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("klass", [3, 200])
def test_a_class_the_model_lacks_is_a_board_error(tiny, monkeypatch, capsys, klass):
    import boards.host

    monkeypatch.setattr(boards.host, "SerialTransport",
                        lambda port, baud: AnsweringBoard(klass))
    model, images = tiny
    code = main(["run", "--port", "fake", str(model), "--images", str(images)])
    err = _one_error(capsys, code)
    assert f"answered class {klass} for image 0, but the model has 3 classes" in err


def test_the_answering_board_works_for_a_class_the_model_has(tiny, monkeypatch, capsys):
    import boards.host

    monkeypatch.setattr(boards.host, "SerialTransport",
                        lambda port, baud: AnsweringBoard(2))
    model, images = tiny
    from hwgen.datasets import read_idx
    from hwgen.reference import Reference

    agree = int((Reference(model_io.load(model)).predict(read_idx(images)[:, None]) == 2).sum())
    code = main(["run", "--port", "fake", str(model), "--images", str(images)])
    captured = capsys.readouterr()
    out = captured.out
    assert code == (0 if agree == 4 else 1)  # exit 1 when any class differs
    assert "image 3: class 2 (class2)" in out and f"agreement {agree}/4 with reference" in out
    # a failed check ends in one error line, as sim's does (it had none; round 36)
    assert captured.err == ("" if agree == 4 else captured.err.splitlines()[-1] + "\n")
    if agree != 4:
        assert captured.err.startswith(f"error: the board disagrees with the reference on "
                                       f"{4 - agree} of 4 images (first: image "), captured.err


def test_an_empty_weight_image_is_refused_before_sending(tiny, tmp_path, capsys):
    model, images = tiny
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    code = main(["run", "--port", "loop://", str(model), "--images", str(images),
                 "--load-weights", str(empty)])
    assert "the file is empty" in _one_error(capsys, code)


def test_a_verilator_that_cannot_run_is_one_line(tiny, tmp_path, monkeypatch, capsys):
    model, images = tiny
    script = tmp_path / "verilator"
    script.write_text("#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("VERILATOR", str(script))
    monkeypatch.setenv("SBN_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["sim", str(model), "--images", str(images)])
    assert "is not executable" in _one_error(capsys, code)
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    code = main(["sim", str(model), "--images", str(images)])
    assert f"cannot run {script}" in _one_error(capsys, code)


@pytest.mark.parametrize("variable, value, named", [
    ("HOME", "/dev/null", "'/dev/null/.cache'"),
    ("XDG_CACHE_HOME", "/dev/null/x", "'/dev/null/x'"),
    ("YOWASP_CACHE_DIR", "/dev/null", "YOWASP_CACHE_DIR '/dev/null'"),
])
def test_an_unusable_tool_cache_is_one_line_before_yosys_runs(monkeypatch, variable, value,
                                                              named):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError, match=f"cannot keep their compiled code in .*{named}"):
        check_wasm_cache()


def test_verilog_with_home_on_a_file_fails_fast(tiny, tmp_path):
    model, _ = tiny
    env = dict(os.environ, HOME="/dev/null")
    env.pop("XDG_CACHE_HOME", None)
    env.pop("YOWASP_CACHE_DIR", None)
    out = tmp_path / "v"
    proc = subprocess.run([sys.executable, "-m", "hwgen", "verilog", str(model), "-o", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "/dev/null is not a directory" in proc.stderr and not out.exists()


def test_predictions_are_not_written_over_an_input(tiny, tmp_path, capsys):
    model, images = tiny
    as_npy = tmp_path / "model.npy"
    as_npy.write_bytes(model.read_bytes())
    code = main(["eval", str(as_npy), "--images", str(images), "--save-predictions",
                 str(tmp_path / "." / "model.npy")])
    assert "is the model file" in _one_error(capsys, code)
    assert as_npy.read_bytes() == model.read_bytes()


def test_fold_keywords_take_any_case_and_spaces(tiny, capsys):
    from hwgen.fold import fold_keyword

    assert [fold_keyword(t) for t in (None, " Auto", "FASTEST ", "4x9", "fast")] == \
        ["auto", "auto", "fastest", None, None]
    model, _ = tiny
    assert main(["info", str(model), "--fold", "fastest"]) == 0
    want = capsys.readouterr().out
    assert main(["info", str(model), "--fold", " Fastest "]) == 0
    assert capsys.readouterr().out == want


def test_an_output_folder_that_is_a_dangling_link_is_refused(tiny, tmp_path, capsys):
    model, _ = tiny
    (tmp_path / "v").symlink_to(tmp_path / "missing")
    code = main(["verilog", str(model), "-o", str(tmp_path / "v")])
    assert "symbolic link to a folder that does not exist" in _one_error(capsys, code)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("bits, classes, side, fragment", [
    (16, 3, 3, "one byte per value; this model takes 16-bit values"),
    (8, 300, 3, "at most 256 classes); this model has 300"),
    # a frame's payload holds at most 65535 values: CoreShape's ValueError was a traceback
    (8, 3, 256, "at most 65535 values per image; this model takes 65536")])
def test_models_the_uart_cannot_carry_are_refused_before_any_work(tmp_path, capsys, bits,
                                                                  classes, side, fragment):
    rng = np.random.default_rng(4)
    model = random_model(rng, (1, side, side), [dense(4)], classes=classes, bits=bits,
                         binarize_at=None)
    path = tmp_path / "m.npz"
    model_io.save(model, path)
    images = tmp_path / "i.idx"
    write_idx(images, np.zeros((2, side, side), np.uint8))
    for argv in (["build", "--board", "icebreaker", str(path), "-o", str(tmp_path / "b"),
                  "--skip-verify"],
                 ["run", "--sim", str(path), "--images", str(images)],
                 # before any PNG is decoded (a 130 KB one of 4096x4096 took 800 MiB first)
                 ["run", "--sim", str(path), str(tmp_path / "never-read.png")]):
        assert fragment in _one_error(capsys, main(argv))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.idx", "m.npz"]


def test_a_truncated_weight_image_is_refused_before_sending(tiny, tmp_path, capsys):
    from hwgen.weight_image import encode

    model, images = tiny
    image = encode(np.arange(40), b"12345678")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(image[:-3])
    code = main(["run", "--port", "loop://", str(model), "--images", str(images),
                 "--load-weights", str(cut)])
    assert f"truncated: {len(image) - 3} bytes, its header says {len(image)}" in \
        _one_error(capsys, code)


# ------------------------------------------------------------------ fuzz round 25 (hwgen)


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc/self/mem")
def test_a_regular_file_that_cannot_be_read_is_one_line(tmp_path, capsys):
    """/proc/self/mem stats as a regular file and fails every read with EIO."""
    from hwgen.files import read_regular

    with pytest.raises(UserError, match="cannot read"):
        read_regular("/proc/self/mem", 100)
    code = main(["info", str(ROOT / "models" / "fmnist-mlp-up5k.npz"), "--fold",
                 "/proc/self/mem.json"])
    _one_error(capsys, code)


def test_names_too_long_for_the_system_are_one_line(tiny, tmp_path, monkeypatch, capsys):
    """A path component over NAME_MAX made pathlib's is_dir/is_file raise (ENAMETOOLONG)."""
    from sim.toolchain import find_verilator

    long = str(tmp_path / ("y" * 300))
    model, _ = tiny
    code = main(["eval", str(model), "--dataset", "mnist", "--data-dir", long])
    assert "File name too long" in _one_error(capsys, code)
    monkeypatch.setenv("SBN_DATA_DIR", long)
    code = main(["eval", str(model), "--dataset", "mnist"])
    assert "SBN_DATA_DIR" in _one_error(capsys, code)
    monkeypatch.delenv("SBN_DATA_DIR")
    monkeypatch.setenv("YOWASP_CACHE_DIR", long)
    with pytest.raises(UserError, match="File name too long"):
        check_wasm_cache()
    monkeypatch.setenv("VERILATOR", long)
    with pytest.raises(UserError, match="File name too long"):
        find_verilator()


def test_a_numpy_variable_it_cannot_read_is_one_line(tiny):
    model, _ = tiny
    env = dict(os.environ, NUMPY_MADVISE_HUGEPAGE="x")
    proc = subprocess.run([sys.executable, "-m", "hwgen", "info", str(model)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: numpy could not be imported (ValueError")


def test_import_and_sim_outputs_are_not_their_inputs(tiny, tmp_path, capsys):
    model, images = tiny
    graph = tmp_path / "graph.npz"
    graph.write_bytes(b"not onnx, but the user's file")
    code = main(["import", str(graph), "-o", str(tmp_path / "." / "graph.npz")])
    assert "is the MODEL.onnx file" in _one_error(capsys, code)
    assert graph.read_bytes() == b"not onnx, but the user's file"
    as_vcd = tmp_path / "images.vcd"
    as_vcd.write_bytes(images.read_bytes())
    code = main(["sim", str(model), "--images", str(as_vcd), "--waves", str(as_vcd)])
    assert "--waves" in _one_error(capsys, code) and as_vcd.read_bytes() == images.read_bytes()


def test_a_folder_where_an_output_file_goes_is_never_replaced(tiny, tmp_path, capsys):
    """Fuzz round 25: ``--plots p`` with a folder ``p/curves.png`` (and so ``verilog -o``
    with a folder ``interface.json``) replaced that folder, and the user's files in it."""
    model, _ = tiny
    (tmp_path / "v" / "interface.json").mkdir(parents=True)
    (tmp_path / "v" / "interface.json" / "notes.txt").write_text("mine")
    code = main(["verilog", str(model), "-o", str(tmp_path / "v")])
    assert "is a folder where this command writes a file" in _one_error(capsys, code)
    assert (tmp_path / "v" / "interface.json" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["interface.json"]


def test_a_fold_that_starts_with_a_pool_may_follow_its_option(capsys):
    """``--fold -,4x6`` was 'expected one argument' (argparse took '-,4x6' for an option)."""
    cnn = str(ROOT / "models" / "fmnist-cnn-up5k.npz")
    code = main(["info", cnn, "--fold", "-,4x6"])
    assert "gives 2 layer folds but the model has 6 layers" in _one_error(capsys, code)
    code = main(["info", cnn, "--fol", "-,4x6"])   # an abbreviation argparse takes
    assert "gives 2 layer folds" in _one_error(capsys, code)
    assert main(["info", cnn, "--fold", "1x9,-,4x16,-,4x16,2x32"]) == 0
    assert "fold   1x9,-,4x16,-,4x16,2x32;" in capsys.readouterr().out


# ------------------------------------------------------------------ fuzz round 26 (hwgen)


def test_an_output_is_never_renamed_over_a_file_the_command_read(tiny, tmp_path, capsys):
    """Fuzz round 26: a model named ``D/interface.json`` (or ``D/vectors.json``, images as
    ``D/inputs.hex``) was replaced by ``verilog``/``vectors -o D``; a dataset's labels (a
    link in --data-dir to ``D/labels.npy``) by ``--save-predictions D/labels.npy``."""
    model, images = tiny
    folder = tmp_path / "D"
    folder.mkdir()
    for name, argv in (("interface.json", ["verilog"]),
                       ("vectors.json", ["vectors", "--images", str(images), "-n", "2"])):
        inside = folder / name
        inside.write_bytes(model.read_bytes())
        code = main([argv[0], str(inside), *argv[1:], "-o", str(folder)])
        assert "is one of this command's inputs" in _one_error(capsys, code)
        assert inside.read_bytes() == model.read_bytes()
        inside.unlink()
    labels = folder / "labels.idx"
    write_idx(labels, np.zeros(4, np.uint8))
    (folder / "my-images").symlink_to(images)
    (folder / "my-labels").symlink_to(labels)
    before = labels.read_bytes()
    code = main(["eval", str(model), "--images", str(folder / "my-images"), "--labels",
                 str(folder / "my-labels"), "--save-predictions", str(folder / "labels.idx")])
    # the check at parse time compares names; the rename-time one catches the link
    assert code == 2 and labels.read_bytes() == before
    capsys.readouterr()


def test_image_source_options_that_would_be_ignored_are_errors(tiny, capsys):
    model, images = tiny
    code = main(["eval", str(model), "--images", str(images), "--split", "train"])
    assert "--split goes with --dataset" in _one_error(capsys, code)
    code = main(["eval", str(model), "--images", str(images), "--data-dir", str(ROOT)])
    assert "--data-dir goes with --dataset" in _one_error(capsys, code)
    code = main(["eval", str(model), "--dataset", "mnist", "--data-dir", ""])
    assert "--data-dir: is empty" in _one_error(capsys, code)
