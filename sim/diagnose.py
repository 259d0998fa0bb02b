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

from hwgen.gateware.testing import run_mvtu
from hwgen.reference import Reference, binarize


def first_differing_layer(model, net, image) -> str:
    """A one-line verdict on where the core built from ``net`` (a folded plan of
    ``net.model``) goes wrong for ``image`` against the reference of ``model``."""
    reference = Reference(model)
    trace = reference.trace(image)
    x = binarize(model.input, np.asarray(image).reshape((1,) + model.input.shape))
    for lp, step in zip(net.layers, trace):
        layer = net.model.layers[lp.index]
        got, _, _ = run_mvtu(layer, lp.pe, lp.simd, None if lp.binary_input else net.bits,
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
