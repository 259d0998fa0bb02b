"""Which layer first goes wrong: each folded layer replayed alone on the reference's input.

When the whole core disagrees with the reference on an image, :func:`first_differing_layer`
feeds every layer's unit (an :class:`~hwgen.gateware.mvtu.MVTU` in the Amaranth simulator)
with exactly the input the reference computed for that layer, and compares the unit's
output with the reference's output of that layer (``Reference.trace``). The first layer
whose unit disagrees is named; if every unit agrees alone, the fault lies between them
(repacking, argmax, or the Verilog conversion) and the message says so.
"""

from __future__ import annotations

import numpy as np

from hwgen.reference import Reference, binarize


def run_layer(layer, pe: int, simd: int, input_bits: int | None, xs: np.ndarray,
              rng: np.random.Generator | None = None, valid_prob: float = 1.0,
              ready_prob: float = 1.0):
    """Simulate one MVTU on input vectors ``xs [K, N]`` (+-1, or raw unsigned integers).

    Returns ``(outputs [K, M], monitor, plan)``: outputs are 0/1 bits for a hidden layer
    (padded lanes checked to be 0) or signed scores for the output layer.
    """
    from hwgen.gateware.mvtu import MVTU
    from hwgen.gateware.testing import StreamDriver, StreamMonitor, pack, simulate, unpack

    dut = MVTU(layer, pe, simd, input_bits)
    p = dut.plan
    words = []
    for x in xs:
        elems = [int(v) for v in (x > 0 if input_bits is None else x)]
        elems += [0] * (p.sf * simd - len(elems))
        words += [pack(elems[k * simd:(k + 1) * simd], p.element_bits) for k in range(p.sf)]
    driver = StreamDriver(dut.i, words, rng, valid_prob)
    monitor = StreamMonitor(dut.o, len(xs) * p.nf, rng, ready_prob)
    simulate(dut, driver, monitor)
    out = []
    for k in range(len(xs)):
        lanes = []
        for beat in monitor.payloads[k * p.nf:(k + 1) * p.nf]:
            lanes += unpack(beat, p.out_element_bits, pe, signed=layer.is_output)
        if not layer.is_output and lanes[p.m:] != [0] * (len(lanes) - p.m):
            raise AssertionError("padded output lanes of a hidden layer must be 0")
        out.append(lanes[:p.m])
    return np.array(out), monitor, p


def first_differing_layer(model, net, image) -> str:
    """A one-line verdict on where the core built from ``net`` (a folded plan of
    ``net.model``) goes wrong for ``image`` against the reference of ``model``."""
    reference = Reference(model)
    trace = reference.trace(image)
    x = binarize(model.input, np.asarray(image).reshape((1,) + model.input.shape))
    for lp, step in zip(net.layers, trace):
        layer = net.model.layers[lp.index]
        got, _, _ = run_layer(layer, lp.pe, lp.simd, None if lp.binary_input else net.bits,
                              x.reshape(1, -1))
        if layer.is_output:
            want = step.output.reshape(-1)
        else:
            want = (step.output.reshape(-1) > 0).astype(int)
        bad = np.flatnonzero(got[0] != want)
        if len(bad):
            j = int(bad[0])
            what = "score" if layer.is_output else "output bit"
            return (f"layer {lp.index} ({layer.op}) differs alone: {what} of channel {j} is "
                    f"{int(got[0][j])}, reference {int(want[j])} (accumulator "
                    f"{int(step.acc.reshape(-1)[j])})")
        x = step.output
    return ("every layer agrees with the reference when run alone: the difference arises "
            "between layers (repacking, argmax) or in the Verilog conversion")
