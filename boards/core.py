"""The streaming core as the board sees it: its shape and an adapter to any implementation.

The contract (issue 4's ``interface.json``): an input stream of beats, each ``lanes`` values of
``bits`` bits (value k in bits ``[k*bits, (k+1)*bits)``), ``beats_per_image`` beats per image
(last beat zero-padded), values in C, H, W row-major order; an output stream whose low
``class_bits`` bits are the predicted class, one per image, in order; synchronous active-high
reset. :class:`StreamCore` presents any such core as a component with members ``i`` (input
stream, ``lanes*bits`` wide) and ``o`` (output stream, ``class_bits`` wide), so the board logic
never depends on where the core came from: an Amaranth component (:meth:`StreamCore.wrap`) or a
Verilog module described by its ``interface.json`` (:meth:`StreamCore.from_verilog`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from amaranth import Instance, Module, Signal, ClockSignal, ResetSignal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import checking, integer


def _positive(name: str, value, upper=None) -> int:
    return integer(name, value, 1, upper)


@dataclass(frozen=True)
class CoreShape:
    """Stream parameters of a core. ``n_values``: input values per image (defaults to
    ``lanes * beats_per_image``; must need exactly ``beats_per_image`` beats)."""

    lanes: int
    bits: int
    beats_per_image: int
    class_bits: int
    n_values: int | None = None

    def __post_init__(self):
        _positive("lanes", self.lanes)
        _positive("bits", self.bits, 8)  # one protocol byte per value
        _positive("beats_per_image", self.beats_per_image)
        _positive("class_bits", self.class_bits, 8)  # one protocol byte per class
        if self.n_values is None:
            object.__setattr__(self, "n_values", self.lanes * self.beats_per_image)
        _positive("n_values", self.n_values, 0xFFFF)
        if math.ceil(self.n_values / self.lanes) != self.beats_per_image:
            raise ValueError(f"{self.n_values} values in beats of {self.lanes} need "
                             f"{math.ceil(self.n_values / self.lanes)} beats, not "
                             f"beats_per_image={self.beats_per_image}")

    @property
    def beat_bits(self) -> int:
        return self.lanes * self.bits

    @classmethod
    def from_interface(cls, interface: dict, n_values: int | None = None) -> "CoreShape":
        """From a parsed ``interface.json``."""
        try:
            i, o = interface["input"], interface["output"]
            return cls(i["lanes"], i["bits"], i["beats_per_image"], o["class_bits"], n_values)
        except (KeyError, TypeError) as e:
            raise ValueError(f"interface description lacks {e}") from None

    def pack(self, values) -> list[int]:
        """The input beats of one image, as integers (reference for tests and vectors)."""
        values = [int(v) for v in values]
        if len(values) != self.n_values:
            raise ValueError(f"image has {len(values)} values, the core takes {self.n_values}")
        values += [0] * (self.lanes * self.beats_per_image - len(values))
        return [sum(v << (k * self.bits) for k, v in enumerate(values[b:b + self.lanes]))
                for b in range(0, len(values), self.lanes)]


def core_signature(shape: CoreShape) -> wiring.Signature:
    return wiring.Signature({
        "i": In(stream.Signature(shape.beat_bits)),
        "o": Out(stream.Signature(shape.class_bits)),
    })


def _find_stream(component, flow, name):
    if name is not None:
        return getattr(component, name)
    found = [n for n, m in component.signature.members.items()
             if m.is_signature and m.flow == flow and isinstance(m.signature, stream.Signature)]
    if len(found) != 1:
        direction = "input" if flow == In else "output"
        raise ValueError(f"cannot tell the core's {direction} stream among {found}; "
                         f"name it explicitly")
    return getattr(component, found[0])


class StreamCore(wiring.Component):
    """Adapter with members ``i`` (beats in) and ``o`` (class out) around a core.

    No added latency (wires only); the class is the low ``class_bits`` of the inner payload.
    """

    def __init__(self, shape: CoreShape, inner=None, *, in_ports=None, out_ports=None):
        with checking(self):
            if not isinstance(shape, CoreShape):
                raise TypeError(f"shape must be a CoreShape, not {shape!r}")
        self.shape = shape
        self._inner = inner
        self._in_ports = in_ports    # (data, valid, ready) signals of the inner core
        self._out_ports = out_ports
        self._files = []
        super().__init__(core_signature(shape))

    @classmethod
    def wrap(cls, component: wiring.Component, shape: CoreShape, *, input: str | None = None,
             output: str | None = None) -> "StreamCore":
        """Wrap an Amaranth component with one input and one output ``lib.stream`` member
        (found automatically, or named by ``input`` / ``output``)."""
        if not isinstance(component, wiring.Component):
            raise TypeError(f"core must be an amaranth wiring.Component, not {component!r}")
        i = _find_stream(component, In, input)
        o = _find_stream(component, Out, output)
        if len(Value.cast(i.payload)) < shape.beat_bits:
            raise ValueError(f"core input payload is {len(Value.cast(i.payload))} bits, "
                             f"narrower than lanes*bits = {shape.beat_bits}")
        if len(Value.cast(o.payload)) < shape.class_bits:
            raise ValueError(f"core output payload is {len(Value.cast(o.payload))} bits, "
                             f"narrower than class_bits = {shape.class_bits}")
        return cls(shape, component, in_ports=(i.payload, i.valid, i.ready),
                   out_ports=(o.payload, o.valid, o.ready))

    @classmethod
    def from_verilog(cls, interface: dict | str | Path, verilog: str | Path | None = None,
                     n_values: int | None = None) -> "StreamCore":
        """A Verilog module described by ``interface`` (dict or path to ``interface.json``);
        ``verilog``, a path to its source, is added to the platform at elaboration."""
        if not isinstance(interface, dict):
            interface = json.loads(Path(interface).read_text())
        shape = CoreShape.from_interface(interface, n_values)
        core = cls(shape)
        core._interface = interface
        if verilog is not None:
            core._files.append(Path(verilog))
        return core

    def elaborate(self, platform):
        m = Module()
        if self._inner is None and not hasattr(self, "_interface"):
            raise ValueError("StreamCore needs an inner core")
        if self._inner is not None:
            m.submodules.core = self._inner
            in_data, in_valid, in_ready = self._in_ports
            out_data, out_valid, out_ready = self._out_ports
        else:
            ifc = self._interface
            in_data, in_valid, in_ready = Signal(self.shape.beat_bits), Signal(), Signal()
            width = ifc["output"].get("data_bits", self.shape.class_bits)
            out_data, out_valid, out_ready = Signal(width), Signal(), Signal()
            i, o = ifc["input"], ifc["output"]
            ports = {
                f"i_{ifc.get('clock', 'clk')}": ClockSignal(),
                f"i_{ifc.get('reset', 'rst')}": ResetSignal(),
                f"i_{i['data']}": in_data, f"i_{i['valid']}": in_valid,
                f"o_{i['ready']}": in_ready,
                f"o_{o['data']}": out_data, f"o_{o['valid']}": out_valid,
                f"i_{o['ready']}": out_ready,
            }
            m.submodules.core = Instance(ifc["module"], **ports)
            if platform is not None:
                for path in self._files:
                    platform.add_file(path.name, path.read_text())
        m.d.comb += [
            in_data.eq(self.i.payload), in_valid.eq(self.i.valid), self.i.ready.eq(in_ready),
            self.o.payload.eq(out_data[:self.shape.class_bits]), self.o.valid.eq(out_valid),
            out_ready.eq(self.o.ready),
        ]
        return m
