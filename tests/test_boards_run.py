"""``hwgen run --sim`` at 12 Mbaud: bit-packed frames for a model that binarizes its input, and
the rate in simulated board time (deterministic: cycles of the Verilated board, not wall time).
"""

import re

import numpy as np
import pytest

from boards import protocol as P
from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.random_models import calibrate_thresholds, dense, random_images, random_model
from hwgen.reference import Reference

from .test_model_format import cli_error

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim

RATE = re.compile(r"^([0-9.]+) inferences/s in simulated board time \(48 MHz, 12000000 baud, "
                  r"4 cycles per bit; [0-9.]+/s in wall-clock time\) over the simulated link, "
                  r"(packed|byte) frames \(.*\), 20 frames sent, 0 retries$")


def _model(tmp_path, binarize_at):
    rng = np.random.default_rng(41)
    model = random_model(rng, (1, 8, 9), [dense(16), dense(10)], classes=4,
                         binarize_at=binarize_at)
    images = random_images(rng, model.input, 20)
    model = calibrate_thresholds(model, images)
    path = model_io.save(model, tmp_path / "m.npz")
    write_idx(tmp_path / "images", images[:, 0])
    return model, path, images


@pytest.mark.parametrize("binarize_at", [128, None])
def test_run_sim_at_12_mbaud(tmp_path, capsys, binarize_at):
    """72 values: a 17-byte packed frame (9 payload bytes) or an 80-byte byte frame. All 20
    images agree with the reference, and the simulated rate is within 15% of what the link
    allows (frames back to back: 10 bits of 4 cycles per byte at 48 MHz)."""
    model, path, images = _model(tmp_path, binarize_at)
    assert main(["run", str(path), "--sim", "--images", str(tmp_path / "images"),
                 "--baud", "12000000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "agreement 20/20 with reference" in lines
    expected = Reference(model).predict(images)
    assert [f"image {k}: class {c} " in "\n".join(lines) for k, c in enumerate(expected)] \
        == [True] * 20
    match = RATE.match(lines[-1])
    assert match, lines[-1]
    packed = binarize_at is not None
    assert match[2] == ("packed" if packed else "byte")
    frame = P.REQUEST_OVERHEAD + (P.packed_length(72) if packed else 72)
    assert f"{frame} bytes" in lines[-1]
    bound = 12e6 / 10 / frame
    assert 0.85 * bound <= float(match[1]) <= bound


def test_run_sim_refuses_a_baud_the_board_cannot_run(tmp_path, capsys):
    """Above the iCEBreaker's FT2232H (which is also 4 cycles per bit at its 48 MHz clock):
    refused before anything is simulated."""
    _, path, _ = _model(tmp_path, 128)
    line = cli_error(capsys, "run", path, "--sim", "--images", tmp_path / "images",
                     "--baud", "16000000")
    assert line == ("error: --baud: baud rate 16000000 is above 12000000 baud, the highest "
                    "the iCEBreaker's FT2232H runs at")
