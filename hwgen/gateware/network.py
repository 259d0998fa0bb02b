"""The network top: input, layers and argmax chained by streams; Verilog and its interface."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import checked_init

from ..errors import UserError
from ..fold import NetworkPlan, PoolPlan, argmax_compare_cycles, unit_layer
from .argmax import Argmax
from .input import Binarize
from .maxpool import MaxPool
from .mvtu import MVTU
from .portable import convert
from .repack import Repack
from .window import SlidingWindow

__all__ = ["Network", "interface", "write_verilog"]


class Network(wiring.Component):
    """A whole network (dense, conv2d and maxpool2d layers), folded as ``net`` (a
    :class:`~hwgen.fold.NetworkPlan`) says.

    ``i``: ``net.lanes`` unsigned ``net.bits``-bit input values per beat, value ``k`` in bits
    ``[k*bits, (k+1)*bits)``, in ``net.input_order`` (C, H, W row-major; or H, W, C when a
    conv/pool layer reads a multi-channel input), ``net.beats_per_image`` beats per image
    (the last zero-padded; its padding is ignored). ``o``: one beat per image, the
    predicted class in ``net.class_bits`` bits (argmax of the scores, ties to the lowest
    index). Images may follow each other back to back; the network accepts one every
    ``net.cycles_per_image`` cycles in steady state and answers within
    ``net.latency_cycles`` cycles after an idle network accepted an image's first beat
    (exactly then for a dense network). Clock domain ``sync``.

    Between units every stream is a sequence of positions in row-major order (a dense
    activation is a single 1x1 position): repacks (``net.repacks()``) regroup the input
    lanes and each MVTU's ``PE`` output channels into what the next unit reads, the
    ``SIMD``-element words of a dense layer, or the ``word``-channel beats (``G`` per
    position) that a conv layer's :class:`~.window.SlidingWindow` or a
    :class:`~.maxpool.MaxPool` reads (:func:`~hwgen.fold.narrowest_buffers`).

    ``output="scores"`` (for verification) leaves out the argmax: ``o`` then carries the
    output layer's ``NF`` beats per image of ``PE`` signed ``score_width``-bit scores (lanes
    past the class count undefined).
    """

    @checked_init
    def __init__(self, net: NetworkPlan, output: str = "class"):
        if not isinstance(net, NetworkPlan):
            raise TypeError(f"net must be a NetworkPlan, not {type(net).__name__}")
        if output not in ("class", "scores"):
            raise ValueError(f"output must be 'class' or 'scores', not {output!r}")
        self.net, self.output = net, output
        last = net.layers[-1]
        width = net.class_bits if output == "class" else last.pe * last.score_width
        super().__init__({
            "i": In(stream.Signature(net.lanes * net.bits)),
            "o": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        net = self.net
        model = net.model
        spec = model.input
        src = wiring.flipped(self.i)
        if spec.binary:
            m.submodules.binarize = binarize = Binarize(net.lanes, net.bits, spec.binarize_at)
            wiring.connect(m, src, binarize.i)
            src = binarize.o
        for lp, before in zip(net.layers, net.repacks()):
            for r in before:
                m.submodules[r.name] = repack = Repack(r.n, r.c, r.s, r.element_bits)
                wiring.connect(m, src, repack.i)
                src = repack.o
            if isinstance(lp, PoolPlan):
                unit = MaxPool(lp.channels, lp.height, lp.width, lp.kernel, lp.stride, lp.word)
            else:
                bits = None if lp.binary_input else net.bits
                if lp.window is not None:
                    w = lp.window
                    window = SlidingWindow(**w.unit_geometry, pad_value=w.pad_value,
                                           element_bits=bits, simd=lp.simd)
                    m.submodules[f"window{lp.index}"] = window
                    wiring.connect(m, src, window.i)
                    src = window.o
                unit = MVTU(unit_layer(model, lp.index), lp.pe, lp.simd, bits)
            m.submodules[f"layer{lp.index}"] = unit
            wiring.connect(m, src, unit.i)
            src = unit.o
        if self.output == "scores":
            wiring.connect(m, src, wiring.flipped(self.o))
            return m
        last = net.layers[-1]
        m.submodules.argmax = argmax = Argmax(last.m, last.pe, last.score_width,
                                              argmax_compare_cycles(last))
        wiring.connect(m, src, argmax.i)
        wiring.connect(m, argmax.o, wiring.flipped(self.o))
        return m


def module_name(stem: str) -> str:
    """A Verilog identifier for a model file stem."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", stem)
    return f"sbn_{name}"


def interface(net: NetworkPlan, module: str) -> dict:
    """The contents of ``interface.json`` for ``net`` converted as ``module``."""
    return {
        "module": module,
        "clock": "clk",
        "reset": "rst",
        "input": {"data": "i__payload", "valid": "i__valid", "ready": "i__ready",
                  "lanes": net.lanes, "bits": net.bits, "order": net.input_order,
                  "shape": list(net.model.input.shape),
                  "beats_per_image": net.beats_per_image},
        "output": {"data": "o__payload", "valid": "o__valid", "ready": "o__ready",
                   "class_bits": net.class_bits},
        "cycles_per_image": net.cycles_per_image,
        "latency_cycles": net.latency_cycles,
    }


def to_verilog(net: NetworkPlan, module: str) -> str:
    """The core's Verilog as module ``module``: the same in Verilog-2005 and SystemVerilog
    simulators (:mod:`.portable`)."""
    return convert(Network(net), module)


def write_verilog(net: NetworkPlan, outdir: str | os.PathLike, module: str) -> tuple[Path, Path]:
    """Write ``outdir/<module>.v`` and ``outdir/interface.json``.

    Both files are written to temporary names and renamed into place, ``interface.json``
    last; an ``interface.json`` already there is removed first, so a failed run never
    leaves an interface beside a Verilog file it does not describe.
    """
    outdir = Path(outdir)
    umask = os.umask(0)
    os.umask(umask)
    text = to_verilog(net, module)
    iface = json.dumps(interface(net, module), indent=2) + "\n"
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        json_path, v_path = outdir / "interface.json", outdir / f"{module}.v"
        json_path.unlink(missing_ok=True)
        for path, content in ((v_path, text), (json_path, iface)):
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=outdir)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(content)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; use the usual mode
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as err:
        raise UserError(f"{outdir}: cannot write ({err.strerror})") from None
    return v_path, json_path
