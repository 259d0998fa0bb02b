"""Which layer first goes wrong: each folded layer replayed alone on the reference's input.

When the whole core disagrees with the reference on an image, :func:`first_differing_layer`
feeds every dense or conv layer's unit (an :class:`~hwgen.gateware.mvtu.MVTU` in the
Amaranth simulator, over the layer's weights in stream order; a conv layer gets every
window of its input, as the sliding-window unit forms them) with exactly the input the
reference computed for that layer, and compares the unit's output with the reference's
output of that layer (``Reference.trace``). The first layer whose unit disagrees is named;
if every unit agrees alone, the fault lies between them (windows, pools, repacking, argmax,
or the Verilog conversion) and the message says so. Max-pool layers are not replayed.
"""

from __future__ import annotations

import numpy as np

from hwgen.fold import PoolPlan, unit_layer
from hwgen.gateware.testing import run_mvtu
from hwgen.layout import hwc_images, window_vectors
from hwgen.reference import Reference, binarize


def first_differing_layer(model, net, image) -> str:
    """A one-line verdict on where the core built from ``net`` (a folded plan of
    ``net.model``) goes wrong for ``image`` against the reference of ``model``."""
    reference = Reference(model)
    trace = reference.trace(image)
    x = binarize(model.input, np.asarray(image).reshape((1,) + model.input.shape))
    for lp, step in zip(net.layers, trace):
        layer = net.model.layers[lp.index]
        if isinstance(lp, PoolPlan):
            x = step.output
            continue
        if lp.window is not None:  # every window, in the unit's (KH, KW, C) order
            vectors = window_vectors(x, layer.kernel, layer.stride, layer.padding,
                                     layer.pad_value)
            want = step.output[0].reshape(layer.out_channels, -1).T  # [positions, M]
            acc = step.acc[0].reshape(layer.out_channels, -1).T
        else:  # the flattened input in stream order
            vectors = hwc_images(x).reshape(1, -1) if lp.index else x.reshape(1, -1)
            want, acc = step.output.reshape(1, -1), step.acc.reshape(1, -1)
        got, _, _ = run_mvtu(unit_layer(net.model, lp.index), lp.pe, lp.simd,
                             None if lp.binary_input else net.bits, vectors)
        if not layer.is_output:
            want = (want > 0).astype(int)
        bad = np.argwhere(got != want)
        if len(bad):
            p, j = (int(v) for v in bad[0])
            what = "score" if layer.is_output else "output bit"
            where = f" at position {p}" if lp.window is not None else ""
            return (f"layer {lp.index} ({layer.op}) differs alone: {what} of channel {j}{where} "
                    f"is {int(got[p][j])}, reference {int(want[p][j])} (accumulator "
                    f"{int(acc[p][j])})")
        x = step.output
    return ("every layer agrees with the reference when run alone: the difference arises "
            "between layers (repacking, argmax) or in the Verilog conversion")
