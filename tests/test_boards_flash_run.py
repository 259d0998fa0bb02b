"""``hwgen run --sim`` for a model whose default iCEBreaker fold keeps weights in SPRAM: the
simulated board boots from its simulated flash (the build's image, or ``--weights FILE``),
and a board that refuses images says why in one line."""

import os

import numpy as np
import pytest

from boards.commands import plan_for_board
from boards.targets import get_board
from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.random_models import calibrate_thresholds, conv, dense, random_images, random_model
from hwgen.weight_image import HEADER_BYTES as HEADER
from hwgen.weight_image import image_for

from .test_boards_flash import verilator_or_skip
from .test_model_format import cli_error

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim


def _model(tmp_path, seed=41, name="m"):
    """256 inputs, 512 hidden: 128 Kbit of first-layer weights, more than the UP5K's block
    RAMs hold, so the default fold puts them in SPRAM (8,192 words)."""
    rng = np.random.default_rng(seed)
    model = random_model(rng, (1, 16, 16), [dense(512), dense(10)], classes=10,
                         binarize_at=128)
    images = random_images(rng, model.input, 8)
    model = calibrate_thresholds(model, images)
    path = model_io.save(model, tmp_path / f"{name}.npz")
    write_idx(tmp_path / "images", images[:, 0])
    return path


@pytest.fixture(scope="module")
def spram_model(tmp_path_factory):
    verilator_or_skip()
    tmp = tmp_path_factory.mktemp("spram-run")
    path = _model(tmp)
    _, net, _ = plan_for_board(path, get_board("icebreaker"), None, None)
    assert net.spram_words == 8192       # the default fold uses SPRAM
    return tmp, path, net


def _run(tmp, path, *extra):
    return ["run", path, "--sim", "--images", tmp / "images", *extra]


def test_run_sim_boots_from_the_builds_image(spram_model, capsys):
    tmp, path, _ = spram_model
    assert main(list(map(str, _run(tmp, path)))) == 0
    out = capsys.readouterr().out
    assert "agreement 8/8 with reference" in out
    assert out.rstrip().endswith("8 frames sent, 0 retries")   # booted before the first


def test_run_sim_with_a_good_weights_file(spram_model, capsys):
    tmp, path, net = spram_model
    (tmp / "good.bin").write_bytes(image_for(net) + b"\xff" * 100)   # a flash dump's tail
    assert main(list(map(str, _run(tmp, path, "--weights", tmp / "good.bin")))) == 0
    assert "agreement 8/8 with reference" in capsys.readouterr().out


@pytest.mark.parametrize("fault,line", [
    ("erased", "error: the board's flash holds no weights for this model (the simulated "
               "flash holds {file})"),
    ("other model", "error: the board's flash holds weights for another model or fold (the "
                    "simulated flash holds {file})"),
    ("flipped bit", "error: the weights in the board's flash are corrupt (CRC mismatch; the "
                    "simulated flash holds {file})"),
])
def test_run_sim_refuses_bad_flash(spram_model, capsys, fault, line):
    tmp, path, net = spram_model
    if fault == "erased":
        data = b"\xff" * 4096
    elif fault == "other model":
        (tmp / "other").mkdir(exist_ok=True)
        other = _model(tmp / "other", seed=42)
        _, other_net, _ = plan_for_board(other, get_board("icebreaker"), None, None)
        assert other_net.spram_words == net.spram_words
        data = image_for(other_net)
    else:
        data = bytearray(image_for(net))
        data[5000] ^= 0x20
    file = tmp / f"{fault.replace(' ', '-')}.bin"
    file.write_bytes(bytes(data))
    assert cli_error(capsys, *_run(tmp, path, "--weights", file)) == line.format(file=file)


def test_run_weights_option_errors(spram_model, capsys, tmp_path):
    tmp, path, _ = spram_model
    missing = tmp_path / "missing.bin"
    assert cli_error(capsys, *_run(tmp, path, "--weights", missing)) \
        == f"error: {missing}: no such weight image"
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate((16 << 20) + 1)
    assert cli_error(capsys, *_run(tmp, path, "--weights", huge)) \
        == f"error: {huge}: {(16 << 20) + 1} bytes is more than a flash image " \
           f"({16 << 20} bytes at most)"
    assert cli_error(capsys, *_run(tmp, path, "--weights", tmp_path)) \
        == f"error: {tmp_path}: is a directory, not a regular weight image"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert cli_error(capsys, *_run(tmp, path, "--weights", fifo)) \
        == f"error: {fifo}: is a FIFO, not a regular weight image"
    assert cli_error(capsys, "run", path, "--port", "/dev/null", "--images", tmp / "images",
                     "--weights", missing) \
        == "error: --weights is for --sim (a real board reads its own flash)"


def test_run_weights_for_a_fold_without_spram(capsys, tmp_path):
    rng = np.random.default_rng(3)
    model = random_model(rng, (1, 8, 9), [dense(16)], classes=4, binarize_at=128)
    path = model_io.save(model, tmp_path / "small.npz")
    write_idx(tmp_path / "images", random_images(rng, model.input, 2)[:, 0])
    (tmp_path / "w.bin").write_bytes(b"SBNW")
    line = cli_error(capsys, *_run(tmp_path, path, "--weights", tmp_path / "w.bin"))
    assert line == ("error: --weights: this model's fold keeps no weights in SPRAM, so the "
                    "simulated board reads no flash")


# --- run --load-weights: the weights over the UART ------------------------------------------


def test_run_sim_load_weights_over_the_uart(spram_model, capsys):
    """An erased simulated flash: the host sends the model's image over the UART first."""
    tmp, path, net = spram_model
    assert main(list(map(str, _run(tmp, path, "--load-weights")))) == 0
    out = capsys.readouterr().out
    size = len(image_for(net))
    assert f"weights: {size} bytes sent over the UART in {-(-size // 1024)} frames" in out
    assert "checked and loaded by the board" in out
    assert "agreement 8/8 with reference" in out


def test_run_sim_load_weights_replaces_a_corrupt_flash_image(spram_model, capsys):
    tmp, path, net = spram_model
    data = bytearray(image_for(net))
    data[5000] ^= 0x20
    (tmp / "corrupt.bin").write_bytes(bytes(data))
    (tmp / "good.bin").write_bytes(image_for(net))
    argv = _run(tmp, path, "--weights", tmp / "corrupt.bin", "--load-weights", tmp / "good.bin")
    assert main(list(map(str, argv))) == 0
    assert "agreement 8/8 with reference" in capsys.readouterr().out


def test_run_sim_load_weights_over_good_flash_weights_sends_none(spram_model, capsys):
    tmp, path, net = spram_model
    (tmp / "good.bin").write_bytes(image_for(net))
    argv = _run(tmp, path, "--weights", tmp / "good.bin", "--load-weights")
    assert main(list(map(str, argv))) == 0
    out = capsys.readouterr().out
    assert "weights: the board holds good weights already (from its flash); none sent" in out
    assert "agreement 8/8 with reference" in out


@pytest.mark.parametrize("fault, line", [
    ("not an image", "error: the board refused the weights in {file}: not a weight image (it "
                     "does not start with a weight image header)"),
    ("flipped bit", "error: the board refused the weights in {file}: corrupt (CRC mismatch) "
                    "(its words do not match its CRC)"),
])
def test_run_sim_load_weights_refused(spram_model, capsys, fault, line):
    tmp, path, net = spram_model
    data = bytearray(image_for(net))
    if fault == "not an image":
        data = bytearray(b"\x00" * 64)
    else:
        data[HEADER + 77] ^= 0x01
    file = tmp / f"upload-{fault.replace(' ', '-')}.bin"
    file.write_bytes(bytes(data))
    assert cli_error(capsys, *_run(tmp, path, "--load-weights", file)) == line.format(file=file)


def test_run_load_weights_for_a_fold_without_spram(capsys, tmp_path):
    rng = np.random.default_rng(4)
    model = random_model(rng, (1, 8, 9), [dense(16)], classes=4, binarize_at=128)
    path = model_io.save(model, tmp_path / "small.npz")
    write_idx(tmp_path / "images", random_images(rng, model.input, 2)[:, 0])
    line = cli_error(capsys, *_run(tmp_path, path, "--load-weights"))
    assert line == ("error: --load-weights: this model's fold keeps no weights in SPRAM, so "
                    "the board has none to load (its weights are in the bitstream)")


def test_run_sim_with_a_core_slower_than_the_link(tmp_path, capsys, monkeypatch):
    """A fold whose core takes an image more slowly than the UART brings its frame: the board
    top gets a receive FIFO that holds a frame (without it every frame overran)."""
    from boards import commands

    rng = np.random.default_rng(5)
    model = random_model(rng, (1, 12, 12), [conv(8, 3, pad_value=0), dense(6)], classes=4,
                         binarize_at=None)
    path = model_io.save(model, tmp_path / "slow.npz")
    write_idx(tmp_path / "images", random_images(rng, model.input, 3)[:, 0])
    board = get_board("icebreaker")
    _, net, _ = plan_for_board(path, board, "1x1,1x1,1x1", None)
    assert net.cycles_per_image > commands.uart_cycles_per_image(144, 48, 12_000_000)
    assert commands.rx_fifo_depth(net, board, 48, 12_000_000) == 256
    argv = ["run", path, "--sim", "--images", tmp_path / "images", "--fold", "1x1,1x1,1x1",
            "--baud", "12000000"]
    assert main(list(map(str, argv))) == 0
    assert "agreement 3/3 with reference" in capsys.readouterr().out
    monkeypatch.setattr(commands, "rx_fifo_depth", lambda *args: 0)
    import boards.run_command as run_command
    monkeypatch.setattr(run_command, "rx_fifo_depth", lambda *args: 0)
    assert cli_error(capsys, *argv, "--limit", "1") == \
        "error: board: image 0: no valid answer after 3 retries"
