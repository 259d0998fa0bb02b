"""cocotb + Verilator regressions: generated networks streamed with random input gaps and
output backpressure, every class compared with the integer reference (``make sim``).

Cases marked ``slow`` as well run in ``make sim`` only; the rest also run in ``make test``.
"""

import numpy as np
import pytest

from hwgen.fold import Fold, plan, spram_words
from hwgen.gateware.network import interface, write_verilog
from hwgen.random_models import dense, random_images, random_model
from hwgen.reference import Reference
from sim.cocotb_run import run_cocotb

from .conftest import CONFORMANCE, require
from .test_gateware_network import VALID_CONFORMANCE

# name: (input shape, hidden layers, binarize_at, bits, folds or None, lanes or None, slow)
CASES = {
    "binarized-odd-folds": ((1, 5, 7), [dense(13), dense(6)], 100, 8,
                            [Fold(4, 8), Fold(5, 3), Fold(2, 4)], 3, False),
    "raw-odd-folds": ((1, 7, 9), [dense(11), dense(7)], None, 8,
                      [Fold(3, 10), Fold(4, 5), Fold(3, 7)], 5, False),
    "raw-6bit-default": ((2, 5, 5), [dense(19)], None, 6, None, None, True),
    "binarized-deep-default": ((1, 9, 9), [dense(33), dense(21), dense(17)], 77, 8, None,
                               None, True),
    "binarized-pe-wide": ((1, 3, 5), [dense(11), dense(7)], 60, 8,
                          [Fold(11, 15), Fold(7, 2), Fold(3, 7)], 4, True),
    "raw-only-output": ((3, 3, 3), [], None, 8, [Fold(2, 9)], 9, True),
    # hidden layers' weights in SPRAM: loaded on the weight stream after reset, with gaps
    "spram-binarized": ((1, 5, 7), [dense(13), dense(6)], 100, 8,
                        [Fold(4, 8, True), Fold(2, 8, True), Fold(2, 4)], 3, False),
}


def _diagnosed_mismatch(model, net, images, got, expected) -> str | None:
    """None when the hardware's classes ``got`` equal ``expected``; else the first differing
    image and the layer that differs when replayed alone (``sim.diagnose``)."""
    mismatches = np.flatnonzero(got[:len(expected)] != expected[:len(got)])
    if len(mismatches):
        from sim.diagnose import first_differing_layer

        first = int(mismatches[0])
        return (f"first mismatch at image {first}: hardware {got[first]}, reference "
                f"{expected[first]}; {first_differing_layer(model, net, images[first])}")
    if len(got) != len(expected):
        return f"only {len(got)} of {len(expected)} images came out"
    return None


@pytest.mark.sim
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if c[-1] else n
                                  for n, c in CASES.items()])
def test_network_matches_reference_under_gaps_and_backpressure(tmp_path, name):
    shape, layers, binarize_at, bits, folds, lanes, _ = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    model = random_model(rng, shape, layers, classes=6, bits=bits, binarize_at=binarize_at)
    net = plan(model, folds, lanes)
    verilog, _ = write_verilog(net, tmp_path, "dut")
    images = random_images(rng, model.input, 120)
    expected = Reference(model).predict(images)
    got = run_cocotb(verilog, interface(net, "dut"), images, expected, tmp_path / "cocotb",
                     seed=sorted(CASES).index(name), valid_percent=70, ready_percent=60,
                     weights=spram_words(net) if net.spram_words else None)
    problem = _diagnosed_mismatch(model, net, images, got, expected)
    assert problem is None, problem


def test_diagnosis_names_the_first_differing_layer():
    from sim.diagnose import first_differing_layer

    rng = np.random.default_rng(9)
    model = random_model(rng, (1, 4, 5), [dense(6), dense(5)], classes=3, binarize_at=90)
    image = random_images(rng, model.input, 1)[0]
    assert first_differing_layer(model, plan(model, None), image).startswith("every layer")
    broken = random_model(np.random.default_rng(9), (1, 4, 5), [dense(6), dense(5)],
                          classes=3, binarize_at=90)
    trace = Reference(model).trace(image)
    # flip channel 2 of layer 1 for this image by moving its threshold past its accumulator
    acc = int(trace[1].acc.reshape(-1)[2]) * int(model.layers[1].sign[2])
    passed = acc >= model.layers[1].threshold[2]
    broken.layers[1].threshold[2] = acc + 1 if passed else acc
    verdict = first_differing_layer(model, plan(broken, None), image)
    assert verdict.startswith("layer 1 (dense) differs alone: output bit of channel 2")


# ----------------------------------------------------------------------------- CNNs

from .test_gateware_cnn import CNNS, _case  # noqa: E402

CNN_FAST = ["binarized-two-stacks", "raw-3ch-stride2"]


@pytest.mark.sim
@pytest.mark.parametrize("name", [n if n in CNN_FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(CNNS)])
def test_cnn_in_verilator_and_cocotb(tmp_path, name):
    """Conv/pool networks: Verilator (the compiled harness, with random gaps and
    backpressure) and cocotb classify 150 images exactly as the reference does."""
    from sim.verilated import VerilatedCore

    rng, model, net, _ = _case(name, images=40)
    images = random_images(rng, model.input, 150)
    expected = Reference(model).predict(images)
    assert len(set(expected)) > 1, "degenerate case: one class for every image"
    verilog, _ = write_verilog(net, tmp_path, "dut")
    iface = interface(net, "dut")
    core = VerilatedCore(verilog, iface, cache_dir=tmp_path / "cache")
    result = core.run(images, seed=5, valid_percent=70, ready_percent=60)
    problem = _diagnosed_mismatch(model, net, images, result.classes, expected)
    assert problem is None, problem
    got = run_cocotb(verilog, iface, images[:60], expected[:60], tmp_path / "cocotb", seed=2,
                     valid_percent=80, ready_percent=70)
    problem = _diagnosed_mismatch(model, net, images[:60], got, expected[:60])
    assert problem is None, problem


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("case", VALID_CONFORMANCE)
def test_conformance_cases_in_verilator(tmp_path, case):
    """Every valid model of the shared conformance suite, default fold, in Verilator: the
    expected predictions for its images."""
    from hwgen import model as model_io
    from sim.verilated import VerilatedCore

    path = require(CONFORMANCE / f"{case}.npz", "the shared conformance suite")
    model = model_io.load(path)
    expected = np.load(CONFORMANCE / f"{case}.expected.npz")
    net = plan(model)
    verilog, _ = write_verilog(net, tmp_path, "dut")
    core = VerilatedCore(verilog, interface(net, "dut"), cache_dir=tmp_path / "cache")
    result = core.run(expected["images"], seed=1, valid_percent=75, ready_percent=75)
    np.testing.assert_array_equal(result.classes, expected["predictions"])


def test_diagnosis_names_a_conv_layer_and_position():
    from sim.diagnose import first_differing_layer

    _, model, net, images = _case("binarized-two-stacks")
    image = images[0]
    assert first_differing_layer(model, net, image).startswith("every layer")
    _, broken, _, _ = _case("binarized-two-stacks")
    trace = Reference(model).trace(image)
    # flip channel 3 of conv layer 2 at position (1, 2) by moving its threshold past it
    layer = model.layers[2]
    acc = int(trace[2].acc[0, 3, 1, 2]) * int(layer.sign[3])
    passed = acc >= layer.threshold[3]
    broken.layers[2].threshold[3] = acc + 1 if passed else acc
    verdict = first_differing_layer(model, plan(broken, net.folds, net.lanes), image)
    assert verdict.startswith("layer 2 (conv2d) differs alone: output bit of channel 3 at "
                              "position "), verdict
