"""A stand-in core with the generated cores' stream contract (see ``interface.json``), for
testing simulation harnesses independently of the network generator.

Its class is the sum of an image's values modulo ``2**class_bits``; it takes one beat per
cycle and has a one-cycle bubble per image (so its II is ``beats + 1``).

``write_standin(..., uninitialized=True)`` writes a deliberately broken variant for X-safety
tests: its accumulator is not reset, so its first class depends on the power-on state (the
Verilog initializer 0 in an ordinary Verilator build, random in an X-randomized one).
"""

from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class SumCore(wiring.Component):
    def __init__(self, lanes: int, bits: int, beats: int, class_bits: int,
                 uninitialized: bool = False):
        self.lanes, self.bits, self.beats, self.class_bits = lanes, bits, beats, class_bits
        self.uninitialized = uninitialized
        super().__init__({"i": In(stream.Signature(lanes * bits)),
                          "o": Out(stream.Signature(class_bits))})

    def elaborate(self, platform):
        m = Module()
        acc = Signal(32, reset_less=self.uninitialized)
        beat = Signal(range(self.beats + 1))
        total = sum(self.i.payload[k * self.bits:(k + 1) * self.bits] for k in range(self.lanes))
        m.d.comb += self.i.ready.eq(~self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(beat == self.beats - 1):
                m.d.sync += [self.o.payload.eq(acc + total), self.o.valid.eq(1), acc.eq(0),
                             beat.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(acc + total), beat.eq(beat + 1)]
        return m


def write_standin(folder, lanes: int, bits: int, beats: int, class_bits: int,
                  uninitialized: bool = False):
    """Write ``standin.v``; return ``(verilog path, interface dict)``. ``uninitialized``:
    the accumulator is not reset (see the module docstring)."""
    core = SumCore(lanes, bits, beats, class_bits, uninitialized)
    path = folder / "standin.v"
    path.write_text(verilog.convert(core, name="standin"))
    interface = {
        "module": "standin", "clock": "clk", "reset": "rst",
        "input": {"data": "i__payload", "valid": "i__valid", "ready": "i__ready",
                  "lanes": lanes, "bits": bits, "beats_per_image": beats},
        "output": {"data": "o__payload", "valid": "o__valid", "ready": "o__ready",
                   "class_bits": class_bits},
        "cycles_per_image": beats + 1, "latency_cycles": 2}
    return path, interface


def standin_classes(images, class_bits: int):
    flat = images.reshape(images.shape[0], -1).astype("int64")
    return flat.sum(axis=1) % (1 << class_bits)
