"""``hwgen sim``, ``vectors``, ``build`` and ``run --sim`` as a user runs them."""

import json
import subprocess

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.random_models import conv, dense, lfc_model, random_images, random_model
from hwgen.reference import Reference

from .test_model_format import cli_error


@pytest.fixture
def small(tmp_path):
    """A small raw-input model with 60 images and labels as IDX files."""
    rng = np.random.default_rng(21)
    model = random_model(rng, (1, 6, 7), [dense(12), dense(9)], classes=4, binarize_at=None)
    path = model_io.save(model, tmp_path / "small.npz")
    images = random_images(rng, model.input, 60)
    write_idx(tmp_path / "images", images[:, 0])
    write_idx(tmp_path / "labels", rng.integers(0, 4, 60).astype(np.uint8))
    return model, path, images


@pytest.mark.sim
def test_sim_agrees_with_reference_and_saves_predictions(tmp_path, capsys, small):
    model, path, images = small
    out = tmp_path / "hw.npy"
    code = main(["sim", str(path), "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--valid-percent", "70", "--ready-percent", "80",
                 "--save-predictions", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "agreement 60/60 with reference" in text and "accuracy " in text
    np.testing.assert_array_equal(np.load(out), Reference(model).predict(images))


@pytest.mark.sim
def test_sim_exits_1_and_names_the_first_mismatch(tmp_path, capsys, small, monkeypatch):
    _, path, _ = small
    import sim.commands

    real = sim.commands.Reference

    class OffByOne(real):
        def predict(self, images, progress=False):
            classes = super().predict(images)
            classes[5] = (classes[5] + 1) % 4
            return classes

    monkeypatch.setattr(sim.commands, "Reference", OffByOne)
    assert main(["sim", str(path), "--images", str(tmp_path / "images")]) == 1
    captured = capsys.readouterr()
    assert "agreement 59/60 with reference" in captured.out
    assert "first mismatch at image 5" in captured.err


@pytest.mark.sim
@pytest.mark.parametrize("suffix", [".vcd", ".fst"])
def test_sim_writes_waveforms(tmp_path, capsys, small, suffix):
    _, path, _ = small
    waves = tmp_path / f"waves{suffix}"
    assert main(["sim", str(path), "--images", str(tmp_path / "images"), "--limit", "3",
                 "--waves", str(waves)]) == 0
    assert "agreement 3/3" in capsys.readouterr().out
    header = waves.read_bytes()[:64]
    assert header.startswith(b"$") if suffix == ".vcd" else len(header) == 64


def test_sim_refuses_an_unknown_waveform_format(tmp_path, capsys, small):
    _, path, _ = small
    assert "waveforms are written as .vcd or .fst" in cli_error(
        capsys, "sim", path, "--images", tmp_path / "images", "--waves", tmp_path / "w.txt")


@pytest.mark.sim
def test_golden_vectors_run_in_icarus(tmp_path, capsys, small, iverilog):
    _, path, _ = small
    out = tmp_path / "vec"
    assert main(["vectors", str(path), "--images", str(tmp_path / "images"), "-n", "25",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    info = json.loads((out / "vectors.json").read_text())
    verilog = f"{info['interface']['module']}.v"
    subprocess.run([iverilog, "-g2012", "-o", "tb.vvp", "tb.v", verilog], cwd=out, check=True)
    proc = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0 and "PASS 25/25" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.sim
def test_golden_vectors_of_an_hwc_core_from_flat_images(tmp_path, capsys, iverilog):
    """A 3-channel raw-input convolution reads its input in (H, W, C) order: images given
    flat (an IDX file [K, 48]) are shaped [K, C, H, W] before they are packed (they were
    packed as if [K, 48, 1, 1]: the testbench failed 15 of 30 against a correct core)."""

    rng = np.random.default_rng(1)
    model = random_model(rng, (3, 4, 4), [conv(4, padding=1, pad_value=0)], binarize_at=None)
    path = model_io.save(model, tmp_path / "hwc.npz")
    write_idx(tmp_path / "flat.idx", random_images(rng, model.input, 30).reshape(30, -1))
    out = tmp_path / "vec"
    assert main(["vectors", str(path), "--images", str(tmp_path / "flat.idx"), "-n", "30",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    info = json.loads((out / "vectors.json").read_text())
    assert info["interface"]["input"]["order"] == "HWC"
    verilog = f"{info['interface']['module']}.v"
    subprocess.run([iverilog, "-g2012", "-o", "tb.vvp", "tb.v", verilog], cwd=out, check=True)
    proc = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0 and "PASS 30/30" in proc.stdout, proc.stdout + proc.stderr


def test_build_refuses_a_model_too_large_for_the_board(tmp_path, capsys):
    path = model_io.save(lfc_model(np.random.default_rng(0)), tmp_path / "lfc.npz")
    msg = cli_error(capsys, "build", path, "--board", "icebreaker", "-o", tmp_path / "out")
    assert "model too large for icebreaker" in msg and "block RAMs" in msg
    # the LFC's 2.9 Mbit of weights cannot fit 120 Kbit of block RAM and 1 Mbit of SPRAM
    # whatever the fold
    assert ("weight bits alone exceed the 1171456 bits of block RAM and SPRAM, so no --fold "
            "fits") in msg
    assert not (tmp_path / "out").exists()


def test_build_gate_refuses_a_core_that_disagrees(tmp_path, capsys, small, monkeypatch):
    _, path, _ = small
    import boards.commands

    real = boards.commands.Reference

    class Wrong(real):
        def predict(self, images, progress=False):
            return (super().predict(images) + 1) % 4

    monkeypatch.setattr(boards.commands, "Reference", Wrong)
    msg = cli_error(capsys, "build", path, "--board", "icebreaker", "-o", tmp_path / "out",
                    "--verify-images", "20")
    assert "verification failed" in msg and "--skip-verify" in msg
    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


@pytest.mark.slow
def test_build_small_model_for_icebreaker(tmp_path, capsys, small):
    _, path, _ = small
    out = tmp_path / "out"
    assert main(["build", str(path), "--board", "icebreaker", "-o", str(out),
                 "--verify-images", "50", "--fold", "2x7,3x4,2x3", "--clock", "48"]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert (out / report["bitstream"]).stat().st_size > 0
    assert report["timing_met"] and report["fmax_mhz"] >= report["clock_mhz"]
    assert 0 < report["luts_used"] <= report["luts_available"]
    assert "verify: 50/50 random images agree" in text and "LUTs" in text


@pytest.mark.sim
def test_run_sim_classifies_through_the_simulated_uart(tmp_path, capsys, small):
    model, path, images = small
    assert main(["run", str(path), "--sim", "--images", str(tmp_path / "images"),
                 "--limit", "6"]) == 0
    text = capsys.readouterr().out
    assert "agreement 6/6 with reference" in text
    expected = Reference(model).predict(images[:6])
    assert [f"image {k}: class {c} " in text for k, c in enumerate(expected)] == [True] * 6


def test_run_needs_port_or_sim(capsys, small, tmp_path):
    _, path, _ = small
    assert "exactly one of --port" in cli_error(capsys, "run", str(path), "--images",
                                                tmp_path / "images")


@pytest.fixture
def small_cnn(tmp_path):
    """A 3-channel conv/pool model (its core reads images in H, W, C order) with 40 images."""
    from hwgen.random_models import calibrate_thresholds, conv, pool

    rng = np.random.default_rng(22)
    model = random_model(rng, (3, 6, 5), [conv(4, 3, 1, 1, pad_value=2), pool(2), dense(6)],
                         classes=4, bits=4, binarize_at=None)
    images = random_images(rng, model.input, 40)
    model = calibrate_thresholds(model, images)
    path = model_io.save(model, tmp_path / "cnn.npz")
    write_idx(tmp_path / "cnn-images", images)
    return model, path, images


@pytest.mark.sim
def test_sim_and_run_sim_of_a_multichannel_cnn(tmp_path, capsys, small_cnn):
    """``hwgen sim`` (Verilator) and ``hwgen run --sim`` (the UART board top) send each image
    in the core's H, W, C order and agree with the reference."""
    model, path, images = small_cnn
    expected = Reference(model).predict(images)
    assert len(set(expected)) > 1
    assert main(["sim", str(path), "--images", str(tmp_path / "cnn-images"),
                 "--save-predictions", str(tmp_path / "p.npy")]) == 0
    assert "agreement 40/40" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)
    assert main(["run", str(path), "--sim", "--images", str(tmp_path / "cnn-images"),
                 "--limit", "8"]) == 0
    assert "agreement 8/8 with reference" in capsys.readouterr().out


def test_build_timing_failure_names_a_command_that_asks_for_a_reached_clock(
        tmp_path, capsys, small, monkeypatch):
    """A build whose place-and-route misses the clock ends in one error line that gives the
    achieved Fmax, the same build at a whole-MHz clock 3% under it (which the board's PLL
    makes), and where the critical paths are; the files are kept in OUT.failed."""
    import boards.commands
    from boards.build import TimingError

    _, path, _ = small

    def missed(staging, *_args, **_kwargs):
        (staging / "core.tim").write_text("critical path\n")
        raise TimingError("timing not met", 46.23, 48.0)

    monkeypatch.setattr(boards.commands, "_build_into", missed)
    msg = cli_error(capsys, "build", path, "--board", "icebreaker", "-o", tmp_path / "out",
                    "--verify-images", "5", "--fold", "2x7,3x4,2x3")
    assert msg.startswith("error: timing not met: achieved Fmax 46.2 MHz, requested 48.0 MHz")
    assert (f"python -m hwgen build --board icebreaker {path} -o {tmp_path / 'out'} --fold "
            f"2x7,3x4,2x3 --clock 44;") in msg
    assert (tmp_path / "out.failed" / "core.tim").exists() and not (tmp_path / "out").exists()
    made = boards.commands.pll_output_mhz(boards.commands._board("icebreaker"), 44)
    assert made <= 0.97 * 46.23 < boards.commands.pll_output_mhz(
        boards.commands._board("icebreaker"), 45)

    def hopeless(staging, *_args, **_kwargs):
        raise TimingError("timing not met", 9.0, 48.0)

    monkeypatch.setattr(boards.commands, "_build_into", hopeless)
    msg = cli_error(capsys, "build", path, "--board", "ulx3s-85f", "-o", tmp_path / "out2",
                    "--verify-images", "5")
    assert "no lower clock the board's PLL makes is left: try a narrower --fold" in msg
