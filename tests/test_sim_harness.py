"""The Verilator harness and the golden-vector testbench, on a stand-in core."""

import shutil
import subprocess

import numpy as np
import pytest

from sim.golden import write_golden_vectors
from sim.vectors import beats_as_ints, pack_beats
from sim.verilated import VerilatedCore, verilator_name

from .standin import standin_classes, write_standin

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim


def test_pack_beats_layout():
    images = np.array([[1, 2, 3, 4, 5]], dtype=np.uint8)
    beats = beats_as_ints(pack_beats(images, lanes=2, bits=8))
    assert beats == [[0x0201, 0x0403, 0x0005]]
    wide = beats_as_ints(pack_beats(np.arange(1, 6, dtype=np.uint8)[None], lanes=5, bits=8))
    assert wide == [[0x0504030201]]
    odd = beats_as_ints(pack_beats(np.array([[3, 1, 2]], np.uint8), lanes=3, bits=2))
    assert odd == [[0b10_01_11]]


def _beats_by_hand(images, lanes, bits):
    flat = images.reshape(len(images), -1)
    beats = -(-flat.shape[1] // lanes)
    return [[sum(int(v) << (lane * bits)
                 for lane, v in enumerate(image[b * lanes:(b + 1) * lanes]))
             for b in range(beats)] for image in flat]


def test_pack_beats_any_width_and_chunk(monkeypatch):
    """Every width up to the format's 24 bits, with chunks that split the images unevenly."""
    import sim.vectors

    rng = np.random.default_rng(7)
    for bits in (1, 3, 8, 9, 16, 17, 24):
        for chunk in (1, 500, 1 << 20):
            monkeypatch.setattr(sim.vectors, "PACK_BYTES", chunk)
            lanes = int(rng.integers(1, 7))
            images = rng.integers(0, 1 << bits, (7, 2, 3, 3), dtype=np.uint32)
            packed = beats_as_ints(pack_beats(images, lanes, bits))
            assert packed == _beats_by_hand(images, lanes, bits), (bits, chunk, lanes)


def test_pack_beats_memory_does_not_grow_with_width():
    """24-bit values once took ~430 bytes of temporaries each (a 64-bit array per bit plane),
    256 images at a time: 1.8 GB for 128x128 inputs. Now about 8 MB beyond the result."""
    import tracemalloc

    images = np.zeros((64, 1, 128, 128), dtype=np.uint32)
    tracemalloc.start()
    try:
        result = pack_beats(images, lanes=8, bits=24)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - result.nbytes < 40 << 20, peak


def test_verilator_names():
    assert verilator_name("i__payload") == "i___05Fpayload"
    assert verilator_name("clk") == "clk"
    assert verilator_name("a___b") == "a___05F_b"


@pytest.mark.parametrize("lanes,beats", [(5, 3), (3, 30)])
def test_verilated_standin_with_gaps_and_backpressure(tmp_path, lanes, beats):
    verilog, interface = write_standin(tmp_path, lanes, 8, beats, 4)
    core = VerilatedCore(verilog, interface, cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(lanes)
    images = rng.integers(0, 256, (300, lanes * beats - 1), dtype=np.uint8)
    expected = standin_classes(images, 4)
    smooth = core.run(images)
    np.testing.assert_array_equal(smooth.classes, expected)
    assert smooth.steady_cycles_per_image() == beats + 1
    rough = core.run(images, seed=3, valid_percent=55, ready_percent=60)
    np.testing.assert_array_equal(rough.classes, expected)
    assert rough.steady_cycles_per_image() > beats + 1


def test_golden_vectors_pass_and_fail_in_icarus(tmp_path, iverilog):
    verilog, interface = write_standin(tmp_path, 5, 8, 3, 4)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 14), dtype=np.uint8)
    expected = standin_classes(images, 4)
    for name, classes in (("good", expected), ("bad", (expected + (np.arange(40) == 9)) % 16)):
        folder = write_golden_vectors(tmp_path / name, interface, images, classes)
        shutil.copy(verilog, folder)
        subprocess.run([iverilog, "-g2012", "-o", "tb.vvp", "tb.v", "standin.v"],
                       cwd=folder, check=True)
        proc = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=folder, capture_output=True,
                              text=True)
        if name == "good":
            assert proc.returncode == 0 and "PASS 40/40" in proc.stdout
        else:
            assert proc.returncode != 0 and "FAIL image 9:" in proc.stdout
