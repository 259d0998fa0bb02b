"""``hwgen build`` of a fold that keeps weights in SPRAM (stand-in synthesis and place-and-route
tools): weights.bin beside the bitstream, its report entry, the programming commands."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from boards import weights
from boards.commands import check_fit, plan_for_board
from boards.targets import get_board
from hwgen import model as model_io
from hwgen.cli import main
from hwgen.errors import UserError
from hwgen.random_models import dense, random_model
from hwgen.weight_image import FLASH_OFFSET, decode, image_for, model_id

from .test_boards_pnr import install_fake_tools

# nextpnr's report as the real one writes it for a design with two SPRAM blocks
FAKE_NEXTPNR = r'''
import json, sys
args = sys.argv[1:]
json.dump({"utilization": {"ICESTORM_LC": {"used": 3000, "available": 5280},
                           "ICESTORM_RAM": {"used": 4, "available": 30},
                           "ICESTORM_SPRAM": {"used": 2, "available": 4}},
           "fmax": {"clk": {"achieved": 50.0, "constraint": 48.0}}},
          open(args[args.index("--report") + 1], "w"))
open(args[args.index("--asc") + 1], "w").write("asc\n")
open(args[args.index("--log") + 1], "w").write("")
'''

FAKE_PROGRAMMER = r'''
import sys
with open(sys.argv[1], "a") as log:
    log.write(" ".join(sys.argv[2:]) + "\n")
'''


@pytest.fixture
def spram_model(tmp_path):
    rng = np.random.default_rng(5)
    model = random_model(rng, (1, 16, 16), [dense(512), dense(10)], classes=10,
                         binarize_at=128)
    return model_io.save(model, tmp_path / "big.npz")


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    return install_fake_tools(tmp_path / "tools", monkeypatch, FAKE_NEXTPNR)


def test_build_writes_the_weight_image_and_says_how_to_program_it(tmp_path, capsys,
                                                                    spram_model, fake_tools):
    _, net, _ = plan_for_board(spram_model, get_board("icebreaker"), None, None)
    assert net.spram_words == 8192
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", str(spram_model), "--skip-verify",
                 "-o", str(out)]) == 0
    data = (out / "weights.bin").read_bytes()
    assert data == image_for(net)
    ident, words = decode(data)
    assert ident == model_id(net) and len(words) == 8192
    report = json.loads((out / "report.json").read_text())
    assert report["weights_image"] == {"file": "weights.bin", "flash_offset": FLASH_OFFSET,
                                       "bytes": len(data), "words": 8192}
    assert report["spram_used"] == 2
    printed = capsys.readouterr().out.splitlines()
    bitstream = out / report["bitstream"]
    assert f"program      iceprog {bitstream}" in printed
    assert f"             iceprog -o 0x100000 {out / 'weights.bin'}" in printed
    assert "SPRAMs       2/4 (50%) (weights, loaded from flash)" in printed
    assert not list(tmp_path.glob(".out*"))     # the staging folder was renamed into place


def test_build_program_writes_bitstream_then_weights(tmp_path, spram_model, fake_tools,
                                                     monkeypatch):
    calls = tmp_path / "calls"
    for name in ("openFPGALoader", "iceprog"):
        script = fake_tools / f"{name}.py"
        script.write_text(FAKE_PROGRAMMER)
        wrapper = fake_tools / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "{calls}" '
                           f'"$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setitem(os.environ, "PATH", f"{fake_tools}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", str(spram_model), "--skip-verify",
                 "-o", str(out), "--program"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert calls.read_text().splitlines() == [
        f"--board icebreaker {out / report['bitstream']}",
        f"--board icebreaker -o 0x100000 {out / 'weights.bin'}"]


def test_a_build_without_spram_writes_no_weights(tmp_path, fake_tools):
    model = random_model(np.random.default_rng(3), (1, 6, 6), [dense(24)], classes=4)
    path = model_io.save(model, tmp_path / "tiny.npz")
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", str(path), "--skip-verify",
                 "-o", str(out)]) == 0
    assert not (out / "weights.bin").exists()
    assert "weights_image" not in json.loads((out / "report.json").read_text())


def test_spram_folds_are_for_the_up5k(spram_model):
    _, net, _ = plan_for_board(spram_model, get_board("icebreaker"), None, None)
    with pytest.raises(UserError, match="SPRAM .* which ulx3s-85f does not have"):
        weights.check_board(get_board("ulx3s-85f"), net)
    # the flash loader's logic counts against the board's LUTs
    luts, _ = check_fit(net, get_board("icebreaker"))
    board = get_board("icebreaker")
    assert luts == net.luts + board.board_luts + board.flash_loader_luts
