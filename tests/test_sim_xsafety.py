"""X-safety: the generated cores' outputs after reset never depend on uninitialized state.

The X-randomized Verilator build (``VerilatedCore(..., x_random=True)``: the Verilog's
register initializers and RAM contents dropped, ``--x-initial unique --x-assign unique``)
starts every variable but the ROMs from a seeded random value, so only the reset sets the
state. Each case runs the same images, gap pattern and
backpressure with several seeds and requires the integer reference's classes, the same output
cycle of every image and the same hash of the observable outputs (``in_ready``, ``out_valid``
and the valid output data) of every cycle. A stand-in core with a deliberately uninitialized
accumulator shows that the check catches what the ordinary build hides. Every valid model of
the shared conformance suite runs the same way in ``make sim``.
"""

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.fold import parse_fold, plan, spram_words
from hwgen.gateware.network import interface, write_verilog
from hwgen.random_models import (calibrate_thresholds, conv, dense, pool, random_images,
                                 random_model)
from hwgen.reference import Reference
from sim.verilated import VerilatedCore

from .conftest import CONFORMANCE, require
from .standin import standin_classes, write_standin
from .test_gateware_network import VALID_CONFORMANCE

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim

X_SEEDS = (1, 2, 77)  # seeds of the random initial values
# (gap/backpressure seed, valid percent, ready percent): back to back, then gaps
PATTERNS = ((0, 100, 100), (3, 70, 60))


def _runs(core: VerilatedCore, images: np.ndarray, seeds=X_SEEDS, jobs: int = 1,
          weights=None):
    """``{(pattern, x seed): SimResult}`` for every pattern and seed (``weights``: the
    core's weight words, loaded after reset)."""
    return {(pattern, x_seed): core.run(images, seed=pattern[0], valid_percent=pattern[1],
                                        ready_percent=pattern[2], x_seed=x_seed, jobs=jobs,
                                        weights=weights)
            for pattern in PATTERNS for x_seed in seeds}


def _assert_independent_of_initial_values(runs, expected):
    """Every run gives ``expected``; runs of one pattern agree cycle by cycle."""
    for (pattern, x_seed), result in runs.items():
        mismatches = np.flatnonzero(result.classes != expected)
        assert not len(mismatches), (f"x seed {x_seed}, pattern {pattern}: first mismatch at "
                                     f"image {mismatches[0]}")
        first = runs[pattern, X_SEEDS[0]]
        np.testing.assert_array_equal(result.out_cycles, first.out_cycles,
                                      err_msg=f"output cycles, x seeds {X_SEEDS[0]}, {x_seed}")
        assert result.digests and result.digests == first.digests, \
            f"cycle-by-cycle outputs differ between x seeds {X_SEEDS[0]} and {x_seed}"


def test_x_randomized_build_catches_an_uninitialized_register(tmp_path):
    """The stand-in core's accumulator is not reset: the ordinary build (its Verilog
    initializer, 0) gets every class right, the X-randomized one does not, and its seeds
    disagree; the two builds are cached apart."""
    verilog, iface = write_standin(tmp_path, 5, 8, 3, 4, uninitialized=True)
    images = np.random.default_rng(0).integers(0, 256, (20, 14), dtype=np.uint8)
    expected = standin_classes(images, 4)
    plain = VerilatedCore(verilog, iface, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(plain.run(images).classes, expected)
    xcore = VerilatedCore(verilog, iface, cache_dir=tmp_path / "cache", x_random=True)
    assert xcore.build() != plain.build()
    runs = [xcore.run(images, x_seed=seed) for seed in X_SEEDS]
    assert any((run.classes != expected).any() for run in runs)
    assert len({run.digests[0] for run in runs}) > 1
    assert plain.run(images).digests is None


def test_x_randomized_build_is_deterministic_per_seed(tmp_path):
    """The same seed gives the same (wrong) classes: failures reproduce."""
    verilog, iface = write_standin(tmp_path, 5, 8, 3, 4, uninitialized=True)
    images = np.random.default_rng(0).integers(0, 256, (6, 14), dtype=np.uint8)
    core = VerilatedCore(verilog, iface, cache_dir=tmp_path / "cache", x_random=True)
    a, b = core.run(images, x_seed=5), core.run(images, x_seed=5)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert a.digests == b.digests


def _random_case(name):
    if name in ("dense", "dense-spram", "dense-preloaded"):
        rng = np.random.default_rng(31)
        model = random_model(rng, (1, 7, 9), [dense(13), dense(6)], classes=5, bits=8,
                             binarize_at=None if name == "dense-preloaded" else 100)
    else:  # a raw 3-channel input (H, W, C beats), a padded conv, a max-pool, a dense layer
        rng = np.random.default_rng(32)
        model = random_model(rng, (3, 8, 8), [conv(6, 3, 1, 1, pad_value=1), pool(2),
                                              dense(8)], classes=5, bits=8, binarize_at=None)
    images = random_images(rng, model.input, 40)
    return calibrate_thresholds(model, images), images


# dense-spram: both hidden layers' weights in SPRAM (memories whose power-on contents the
# X-randomized build drops: only the weight load after reset fills them). dense-preloaded:
# both hidden layers in one neuron fold, the raw first one streaming and centred (their
# accumulators take their constants in the cycle after reset)
FOLDS = {"dense-spram": "2x16s,1x13s,5x6", "dense-preloaded": "13x3,6x4,5x6"}


@pytest.mark.parametrize("name", ["dense", "conv-pool-3ch", "dense-spram", "dense-preloaded"])
def test_generated_core_outputs_do_not_depend_on_initial_values(tmp_path, name):
    model, images = _random_case(name)
    expected = Reference(model).predict(images)
    assert len(set(expected)) > 1, "degenerate case: one class for every image"
    net = plan(model, parse_fold(FOLDS[name], model) if name in FOLDS else None)
    assert bool(net.spram_words) == (name == "dense-spram")
    assert (net.layers[0].streaming and net.layers[0].centered
            and net.layers[1].preloaded) == (name == "dense-preloaded")
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache",
                         x_random=True)
    weights = spram_words(net) if net.spram_words else None
    _assert_independent_of_initial_values(_runs(core, images, weights=weights), expected)
    # the registers' initializers and the RAMs' contents really were dropped
    assert core.power_on_values_dropped > len(net.layers)


@pytest.mark.slow
@pytest.mark.parametrize("case", VALID_CONFORMANCE or ["suite-missing"])  # CI: fails then
def test_conformance_cases_x_randomized(tmp_path, case):
    """Every valid model of the shared conformance suite, default fold, X-randomized with
    several seeds: its expected predictions, the same outputs cycle by cycle."""
    path = require(CONFORMANCE / f"{case}.npz", "the shared conformance suite")
    model = model_io.load(path)
    expected = np.load(CONFORMANCE / f"{case}.expected.npz")
    net = plan(model)
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache",
                         x_random=True)
    _assert_independent_of_initial_values(_runs(core, expected["images"], jobs=2),
                                          expected["predictions"])
    assert core.power_on_values_dropped > len(net.layers)


def test_power_on_values_are_dropped_but_roms_and_triggers_kept():
    from sim.verilated import without_power_on_values

    verilog = "\n".join([
        "module m(clk);", "  reg [3:0] a = 4'h0;", "  reg \\$b  = 1'h1;",
        "  reg signed [2:0] c = 3'h2;", "  reg \\$auto$verilog_backend.cc:1:dump_module$1  = 0;",
        "  reg [3:0] ram [1:0];", "  initial begin", "    ram[0] = 4'h0;", "    ram[1] = 4'h0;",
        "  end", "  reg [3:0] rom [1:0];", "  initial begin", "    rom[0] = 4'h5;",
        "    rom[1] = 4'h6;", "  end", "  always @(posedge clk) begin",
        "    if (a[0])", "      ram[a[0]] <= rom[a[1]];", "  end", "endmodule", ""])
    text, dropped = without_power_on_values(verilog)
    assert dropped == 4
    for line in ("  reg [3:0] a;", "  reg \\$b ;", "  reg signed [2:0] c;",
                 "  reg \\$auto$verilog_backend.cc:1:dump_module$1  = 0;", "    rom[1] = 4'h6;"):
        assert line in text.splitlines()
    assert "ram[0] = " not in text and text.count("initial begin") == 1
