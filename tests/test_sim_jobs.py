"""``hwgen sim -j N``: the images sharded across N harness processes of one compiled core give
the same classes, in order, as one process; the steady-state interval is still exact."""

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.fold import plan
from hwgen.gateware.network import interface, write_verilog
from hwgen.random_models import dense, random_images, random_model
from hwgen.reference import Reference
from sim.commands import plan_model
from sim.verilated import SimResult, VerilatedCore

from .conftest import ROOT, require
from .test_model_format import cli_error

SHIPPED = ROOT / "models" / "fmnist-mlp-up5k.npz"


@pytest.fixture
def small(tmp_path):
    """A small binarized-input model and 37 images (an odd count: unequal shards)."""
    rng = np.random.default_rng(41)
    model = random_model(rng, (1, 6, 7), [dense(12), dense(9)], classes=4, binarize_at=120)
    path = model_io.save(model, tmp_path / "small.npz")
    images = random_images(rng, model.input, 37)
    write_idx(tmp_path / "images", images[:, 0])
    return model, path, images


def _cli_predictions(tmp_path, capsys, path, images_idx, *options) -> tuple[np.ndarray, str]:
    out = tmp_path / f"p{len(list(tmp_path.glob('p*.npy')))}.npy"
    code = main(["sim", str(path), "--images", str(images_idx), "--save-predictions", str(out),
                 *map(str, options)])
    text = capsys.readouterr().out
    assert code == 0, text
    return np.load(out), text


@pytest.mark.sim
def test_sim_j2_equals_j1_on_a_random_model(tmp_path, capsys, small):
    model, path, images = small
    expected = Reference(model).predict(images)
    assert len(set(expected)) > 1, "degenerate case: one class for every image"
    one, text1 = _cli_predictions(tmp_path, capsys, path, tmp_path / "images", "-j", "1")
    two, text2 = _cli_predictions(tmp_path, capsys, path, tmp_path / "images", "--jobs", "2")
    np.testing.assert_array_equal(one, expected)
    np.testing.assert_array_equal(two, one)
    assert "agreement 37/37" in text2 and "2 processes" in text2 and "1 process\n" in text1
    gaps, _ = _cli_predictions(tmp_path, capsys, path, tmp_path / "images", "-j", "3",
                               "--valid-percent", "70", "--ready-percent", "60")
    np.testing.assert_array_equal(gaps, expected)


@pytest.mark.sim
def test_shards_keep_the_exact_interval_and_image_order(tmp_path, small):
    model, _, images = small
    net = plan(model)
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache")
    one, two = core.run(images, jobs=1), core.run(images, jobs=2)
    many = core.run(images[:3], jobs=8)  # at most one process per image
    assert one.shard_starts.tolist() == [0] and two.shard_starts.tolist() == [0, 18]
    assert many.shard_starts.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(many.classes, one.classes[:3])
    np.testing.assert_array_equal(two.classes, one.classes)
    assert one.steady_cycles_per_image() == two.steady_cycles_per_image() == \
        net.cycles_per_image
    # each shard counts cycles from its own reset: the second starts like the first
    assert two.out_cycles[18] == one.out_cycles[0]


def test_steady_interval_ignores_the_seams_between_shards():
    result = SimResult(np.zeros(5, np.int64), np.array([10, 14, 18, 10, 14]),
                       np.array([0, 3]))
    assert result.steady_cycles_per_image() == 4
    assert result.simulated_cycles() == 19 + 15
    assert np.isnan(SimResult(np.zeros(1), np.array([7])).steady_cycles_per_image())


@pytest.mark.sim
@pytest.mark.parametrize("name,count", [("fmnist-mlp-up5k.npz", 40),
                                        ("fmnist-cnn-up5k-sbn.npz", 6)])
def test_sim_j2_equals_j1_on_a_shipped_model(tmp_path, capsys, name, count):
    """The shipped iCE40UP5K MLP and CNN on a few images (random pixels: no dataset)."""
    path = require(SHIPPED.parent / name, "the shipped models")
    model, _, _ = plan_model(path, None, None)
    images = random_images(np.random.default_rng(5), model.input, count)
    write_idx(tmp_path / "images", images[:, 0])
    one, _ = _cli_predictions(tmp_path, capsys, path, tmp_path / "images", "-j", "1")
    two, text = _cli_predictions(tmp_path, capsys, path, tmp_path / "images", "-j", "2")
    np.testing.assert_array_equal(one, Reference(model).predict(images))
    np.testing.assert_array_equal(two, one)
    assert f"agreement {count}/{count}" in text


@pytest.mark.parametrize("value,why", [("0", "must be at least 1, got 0"),
                                       ("-2", "must be at least 1, got -2"),
                                       ("two", "must be a whole number, got 'two'"),
                                       ("1.5", "must be a whole number, got '1.5'")])
def test_sim_refuses_a_bad_job_count(tmp_path, capsys, small, value, why):
    _, path, _ = small
    message = cli_error(capsys, "sim", path, "--images", tmp_path / "images", "-j", value)
    assert "-j/--jobs" in message and why in message


def test_core_run_refuses_a_bad_job_count(tmp_path, small):
    from hwgen.errors import UserError

    model, _, images = small
    net = plan(model)
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache")
    for jobs in (0, 1.5, True):
        with pytest.raises(UserError, match="jobs must be a whole number at least 1"):
            core.run(images, jobs=jobs)


@pytest.mark.sim
def test_results_cut_short_or_temporary_files_that_fail_are_one_error(tmp_path, small,
                                                                       monkeypatch):
    """Round 36: with a nearly full $TMPDIR the harness's results file came back short (an
    empty one was a NumPy broadcasting traceback; a single line would have been broadcast
    into a wrong agreement), and a failed write of the beats was an OSError traceback."""
    import sim.verilated as verilated
    from hwgen.errors import UserError

    model, _, images = small
    net = plan(model)
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache")
    real = verilated._run_shards

    def short(cmds, outs, tmp, count, progress):
        stdouts = real(cmds, outs, tmp, count, progress)
        outs[-1].write_text(outs[-1].read_text().splitlines()[0] + "\n")  # one line kept
        return stdouts

    monkeypatch.setattr(verilated, "_run_shards", short)
    with pytest.raises(UserError, match=r"process 2 returned 1 results for 19 images .* "
                                        r"\$TMPDIR full"):
        core.run(images, jobs=2)

    def full(cmds, outs, tmp, count, progress):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(verilated, "_run_shards", full)
    with pytest.raises(UserError, match="temporary files in .* failed .No space left on "
                                        "device.: is \\$TMPDIR full"):
        core.run(images, jobs=2)
