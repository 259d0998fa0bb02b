"""The network top: input, layers and argmax chained by streams; Verilog and its interface."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import checked_init

from ..errors import UserError
from ..fold import NetworkPlan, PoolPlan, argmax_compare_cycles, unit_layer
from ..model import Conv2d
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

    ``w`` (only when ``net.spram_words > 0``, i.e. some layer is folded ``PExSIMDs``): the
    16-bit weight stream. After reset the network accepts exactly ``net.spram_words`` words
    on ``w``, :func:`hwgen.fold.spram.spram_words` ``(net)`` in that order, and writes them
    into the SPRAM layers' blocks (one word per cycle at most; each is written the cycle
    after its transfer); ``i.ready`` stays low until the last word has been written (the
    cycle after the cycle after its transfer), and from then on ``w.ready`` is low until
    the next reset. Images then run as without SPRAM, with the same cycles.
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
        members = {
            "i": In(stream.Signature(net.lanes * net.bits)),
            "o": Out(stream.Signature(width)),
        }
        if net.spram_words:
            members["w"] = In(stream.Signature(16))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        net = self.net
        model = net.model
        spec = model.input
        src = wiring.flipped(self.i)
        if net.spram_words:
            loaded = Signal()
            src = _gated(m, src, loaded)
        spram_units = {}
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
                unit = MVTU(unit_layer(model, lp.index), lp.pe, lp.simd, bits, lp.spram,
                            lp.streaming)
                if lp.spram:
                    spram_units[lp.index] = unit
                    # a window emits padding before any input arrives: without this the
                    # layer took it while its weights were still being written
                    src = _gated(m, src, loaded)
            m.submodules[f"layer{lp.index}"] = unit
            wiring.connect(m, src, unit.i)
            src = unit.o
        if spram_units:
            _weight_loader(m, net, wiring.flipped(self.w), spram_units, loaded)
        if self.output == "scores":
            wiring.connect(m, src, wiring.flipped(self.o))
            return m
        last = net.layers[-1]
        m.submodules.argmax = argmax = Argmax(last.m, last.pe, last.score_width,
                                              argmax_compare_cycles(last))
        wiring.connect(m, src, argmax.i)
        wiring.connect(m, argmax.o, wiring.flipped(self.o))
        return m


def _gated(m: Module, src, open_):
    """The stream ``src`` passed on only while ``open_`` is high (valid and ready both
    held low otherwise)."""
    gated = stream.Signature(len(src.payload)).create(path=("gated",))
    m.d.comb += [gated.payload.eq(src.payload), gated.valid.eq(src.valid & open_),
                 src.ready.eq(gated.ready & open_)]
    return gated


def _weight_loader(m: Module, net: NetworkPlan, w, units: dict, loaded: Signal) -> None:
    """Write the words of stream ``w`` into the SPRAM blocks of ``units`` (layer index ->
    its MVTU) in :func:`hwgen.fold.spram.spram_words` order: one segment per block, each
    from address 0. Every transfer is registered and written the next cycle; ``loaded``
    goes high the cycle after the last write."""
    segments = [(lp.index, block, words) for lp in net.spram_layers
                for block, words in enumerate(lp.spram_block_words)]
    seg = Signal(range(len(segments)))
    addr = Signal(14)
    done = Signal()
    end = Signal()  # addr is the segment's last address
    with m.Switch(seg):
        for k, (_, _, words) in enumerate(segments):
            with m.Case(k):
                m.d.comb += end.eq(addr == words - 1)
    take = Signal()
    m.d.comb += [w.ready.eq(~done), take.eq(w.valid & ~done)]
    wr_en, wr_seg = Signal(), Signal(range(len(segments)))
    wr_addr, wr_data = Signal(14), Signal(16)
    m.d.sync += [wr_en.eq(take), loaded.eq(done)]
    with m.If(take):
        m.d.sync += [wr_seg.eq(seg), wr_addr.eq(addr), wr_data.eq(w.payload)]
        with m.If(end):
            m.d.sync += addr.eq(0)
            with m.If(seg == len(segments) - 1):
                m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += seg.eq(seg + 1)
        with m.Else():
            m.d.sync += addr.eq(addr + 1)
    for index, unit in units.items():
        first = next(k for k, s in enumerate(segments) if s[0] == index)
        count = sum(1 for s in segments if s[0] == index)
        mine = (wr_seg >= first) & (wr_seg < first + count)
        m.d.comb += [unit.load.en.eq(wr_en & mine), unit.load.block.eq(wr_seg - first),
                     unit.load.addr.eq(wr_addr), unit.load.data.eq(wr_data)]


def module_name(stem: str) -> str:
    """A Verilog identifier for a model file stem."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", stem)
    return f"sbn_{name}"


def interface(net: NetworkPlan, module: str) -> dict:
    """The contents of ``interface.json`` for ``net`` converted as ``module`` (with
    ``"weights"``, the weight stream, only when ``net.spram_words > 0``)."""
    iface = {
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
    if net.spram_words:
        iface["weights"] = {"data": "w__payload", "valid": "w__valid", "ready": "w__ready",
                            "bits": 16, "words": net.spram_words}
    return iface


#: The largest network the generator builds (UserError beyond): weight bits in all (above
#: the 3.7 Mbit of block RAM of the largest supported FPGA, the ULX3S-85F; ``verilog`` of a
#: model at this limit took 12 s and 149 MB), and input values per image.
MAX_GENERATED_WEIGHT_BITS = 1 << 22
MAX_GENERATED_INPUT_VALUES = 1 << 20
#: Generation (Amaranth elaboration and RTLIL) peaks at about 45 MB plus 33 KB per binary
#: XNOR term and 91 KB per raw-input term (PE x SIMD of each layer), fitted on seven folds of
#: the shipped models within 7% (an MLP at 17,024 binary terms: 629 MB; the ULX3S-85F's
#: fastest fold of ``fmnist-mlp-best``, 2,035 binary and 2,826 raw terms, about 395 MB).
#: Line buffers (of conv windows and max-pools) add 100-310 bytes per bit they hold (a
#: 1024x1024 max-pool window: 2 Mbit, 351 MB in all; eight 513-row convs over a 512x1024 map,
#: 5.3 Mbit: 1006 MB). :func:`generation_bytes` rounds these up; a fold estimated above this
#: many bytes is refused unless ``$SBN_MAX_GENERATION_BYTES`` allows more.
MAX_GENERATION_BYTES = 448 << 20
_BASE_BYTES, _BINARY_TERM_BYTES, _RAW_TERM_BYTES = 48 << 20, 36 << 10, 100 << 10
_LINE_BUFFER_BIT_BYTES = 320
#: ... and each layer some of its own (control, repacks, a conv's or a max-pool's window
#: unit): 255 3x3 convs of 2 channels over 8x8 maps took 594 MB (127 of them 301 MB), 255
#: dense layers of 2x2 weights 218 MB, 255 2x2 max-pools (stride 1) over a binary 256x256
#: map 574 MB, 60 of them over 64x64 224 MB (about 2-3 MB a pool beyond its line buffer).
_CONV_LAYER_BYTES, _POOL_LAYER_BYTES, _LAYER_BYTES = 3 << 20, 4 << 20, 1 << 20
#: ... and the repacks between the units about 800 bytes per LUT of their estimate
#: (:func:`hwgen.fold.repack_luts`; the input repack of 500 lanes into the shipped MLP's
#: first layer, 8 values a word: 1.02 M, 980 MB).
_REPACK_LUT_BYTES = 1 << 10
#: ... and the output layer about 100-120 KB per lane beyond its terms: its scores and the
#: argmax's comparator tree over them (4096 classes at 4096x1 took 620 MB, estimated 193
#: without these; 10000 at 10000x1 1563 MB, estimated 400).
_OUTPUT_LANE_BYTES = 128 << 10


def generation_bytes(net: NetworkPlan) -> int:
    """The estimated peak memory (bytes) of generating ``net``'s hardware, from its terms
    and line buffers (see :data:`MAX_GENERATION_BYTES`)."""
    terms = sum(lp.pe * lp.simd * (_BINARY_TERM_BYTES if lp.binary_input else _RAW_TERM_BYTES)
                for lp in net.mvtu_layers)
    units = [lp for lp in net.layers if isinstance(lp, PoolPlan)] + \
        [lp.window for lp in net.mvtu_layers if lp.window is not None]
    layers = sum(_POOL_LAYER_BYTES if isinstance(lp, PoolPlan) else _LAYER_BYTES
                 if getattr(lp, "window", None) is None else _CONV_LAYER_BYTES
                 for lp in net.layers)
    repacks = sum(r.luts for before in net.repacks() for r in before)
    output = _OUTPUT_LANE_BYTES * net.mvtu_layers[-1].pe if net.mvtu_layers else 0
    return (_BASE_BYTES + terms + layers + output + _REPACK_LUT_BYTES * repacks
            + _LINE_BUFFER_BIT_BYTES * sum(unit.line_buffer_bits for unit in units))


def check_model_generatable(model) -> None:
    """UserError when ``model`` is too large to generate hardware for whatever its fold (it
    may still be valid and evaluated: ``hwgen eval`` takes far larger ones). Cheap: callers
    check it before searching for a fold."""
    bits = sum(int(layer.weight.size) for layer in model.layers if hasattr(layer, "weight"))
    if bits > MAX_GENERATED_WEIGHT_BITS:
        raise UserError(f"the model has {bits} weight bits, more than the "
                        f"{MAX_GENERATED_WEIGHT_BITS} hardware is generated for")
    if model.input.size > MAX_GENERATED_INPUT_VALUES:
        raise UserError(f"the model takes {model.input.size} input values per image, more "
                        f"than the {MAX_GENERATED_INPUT_VALUES} hardware is generated for")
    # a conv's padding can grow a small input into a large map (its line buffer and window)
    for index, (layer, (c, h, w)) in enumerate(zip(model.layers, model.shapes())):
        if isinstance(layer, Conv2d):
            (ph, pw) = layer.padding
            h, w = h + 2 * ph, w + 2 * pw
        if c * h * w > MAX_GENERATED_INPUT_VALUES:
            raise UserError(f"layer {index} ({layer.op}) reads a {c}x{h}x{w} map"
                            f"{' (padded)' if isinstance(layer, Conv2d) else ''}, more than "
                            f"the {MAX_GENERATED_INPUT_VALUES} values per image hardware is "
                            f"generated for")


def check_generatable(net: NetworkPlan) -> None:
    """UserError when ``net`` is too large to generate hardware for: its model
    (:func:`check_model_generatable`) or its fold (:func:`generation_bytes` above
    :data:`MAX_GENERATION_BYTES` or ``$SBN_MAX_GENERATION_BYTES``)."""
    from ..environment import size_limit

    check_model_generatable(net.model)
    need, limit = generation_bytes(net), size_limit("SBN_MAX_GENERATION_BYTES",
                                                   MAX_GENERATION_BYTES)
    if need > limit:
        raise UserError(f"fold {net.fold_text} at --lanes {net.lanes} would take about "
                        f"{need >> 20} MiB to generate, more than the limit of "
                        f"{f'{limit >> 20} MiB' if limit >= 1 << 20 else f'{limit} bytes'}: give a fold with a smaller PExSIMD, --lanes dividing the first "
                        f"layer's input word, or raise $SBN_MAX_GENERATION_BYTES")


def to_verilog(net: NetworkPlan, module: str) -> str:
    """The core's Verilog as module ``module``: the same in Verilog-2005 and SystemVerilog
    simulators (:mod:`.portable`). UserError for a network beyond
    :func:`check_generatable`."""
    check_generatable(net)
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
        raise UserError(f"{outdir}: cannot write ({err.strerror or err})") from None
    return v_path, json_path
