"""The generated core simulates the same under Verilog-2005 and SystemVerilog semantics.

Under ``-g2012`` a declaration initializer raises no event at time 0, so logic that only a
time-0 event would start (Yosys's guarded ``always @*`` processes) stays X; the core must
not contain any (:mod:`hwgen.gateware.portable`). The ``hwgen vectors`` testbench is run as
printed, in both Icarus modes.
"""

import json
import subprocess

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.gateware.portable import portable_text
from hwgen.random_models import conv, dense, pool, random_images, random_model

from .conftest import CONFORMANCE

MODES = ("-g2005", "-g2012")


def test_portable_text_renames_dollar_functions_and_refuses_always_star():
    text = ("  function [1:0] \\$procmux$12 ;\n    input a;\n    \\$procmux$12  = a;\n"
            "  endfunction\n  assign y = \\$procmux$12 (x);\n  assign z = \\$procmux$123 ;\n")
    out = portable_text(text)
    assert "\\$procmux$12 " not in out and out.count("\\fn$procmux$12 ") == 3
    assert "\\$procmux$123 ;" in out  # a longer name that starts the same is left alone
    with pytest.raises(ValueError, match="always @"):
        portable_text("  always @* begin\n  end\n")


def _models():
    rng = np.random.default_rng(5)
    yield "dense", random_model(rng, (1, 6, 7), [dense(12), dense(9)], classes=4,
                                binarize_at=None)
    yield "conv-pool-3ch", random_model(
        rng, (3, 8, 8), [conv(4, padding=1, pad_value=0), pool(), conv(6), dense(10)], classes=5,
        binarize_at=None)
    # the weights of the conv after the pool and of the hidden dense layer in SPRAM (a width
    # cascade; the testbench streams weights.hex in after reset)
    yield "conv-pool-3ch-spram", random_model(
        rng, (3, 8, 8), [conv(4, padding=1, pad_value=0), pool(), conv(6), dense(10)], classes=5,
        binarize_at=None)
    # both hidden layers in one neuron fold: the raw first one streaming and centred, the
    # second preloaded (accumulators loaded with their constants in the cycle after reset)
    yield "dense-preloaded", random_model(rng, (1, 6, 7), [dense(12), dense(9)], classes=4,
                                          binarize_at=None)


FOLDS = {"conv-pool-3ch-spram": "2x9,-,2x8s,2x16s,5x10", "dense-preloaded": "12x2,9x4,4x3"}


def _vectors(tmp_path, capsys, path, images, count, fold=None) -> tuple:
    """Run ``hwgen vectors``; returns (folder, the printed command's Verilog file)."""
    write_idx(tmp_path / "images", images)
    out = tmp_path / "vec"
    assert main(["vectors", str(path), "--images", str(tmp_path / "images"), "-n", str(count),
                 "-o", str(out)] + (["--fold", fold] if fold else [])) == 0
    printed = capsys.readouterr().out
    assert "iverilog -g2012 -o tb.vvp tb.v" in printed
    return out, f"{json.loads((out / 'vectors.json').read_text())['interface']['module']}.v"


def _icarus(iverilog, folder, verilog, mode, count):
    subprocess.run([iverilog, mode, "-o", "tb.vvp", "tb.v", verilog], cwd=folder, check=True)
    proc = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=folder, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and f"PASS {count}/{count}" in proc.stdout, (
        f"{mode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")


@pytest.mark.sim
@pytest.mark.parametrize("name,model", list(_models()), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_vectors_pass_in_both_icarus_modes(tmp_path, capsys, iverilog, name, model):
    path = model_io.save(model, tmp_path / f"{name}.npz")
    images = random_images(np.random.default_rng(1), model.input, 12)
    folder, verilog = _vectors(tmp_path, capsys, path, images[:, 0] if images.shape[1] == 1
                               else images, 12, FOLDS.get(name))
    assert "always @*" not in (folder / verilog).read_text()
    assert (folder / "weights.hex").exists() == name.endswith("spram")
    for mode in MODES:
        _icarus(iverilog, folder, verilog, mode, 12)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(p.name[:-4] for p in CONFORMANCE.glob("*.npz")
                                        if not p.name.endswith(".expected.npz")))
def test_conformance_vectors_pass_in_both_icarus_modes(tmp_path, capsys, iverilog,
                                                       conformance_dir, stem):
    expected = np.load(conformance_dir / f"{stem}.expected.npz")
    images = expected["images"]
    folder, verilog = _vectors(tmp_path, capsys, conformance_dir / f"{stem}.npz",
                               images[:, 0] if images.shape[1] == 1 else images, len(images))
    for mode in MODES:
        _icarus(iverilog, folder, verilog, mode, len(images))
