"""The streaming core as the board sees it: its shape and an adapter to any implementation.

The contract (issue 4's ``interface.json``): an input stream of beats, each ``lanes`` values of
``bits`` bits (value k in bits ``[k*bits, (k+1)*bits)``), ``beats_per_image`` beats per image
(last beat zero-padded), values in C, H, W row-major order; an output stream whose low
``class_bits`` bits are the predicted class, one per image, in order; synchronous active-high
reset. :class:`StreamCore` presents any such core as a component with members ``i`` (input
stream, ``lanes*bits`` wide) and ``o`` (output stream, ``class_bits`` wide), so the board logic
never depends on where the core came from: an Amaranth component (:meth:`StreamCore.wrap`) or a
Verilog module described by its ``interface.json`` (:meth:`StreamCore.from_verilog`).

A core that keeps weights in SPRAM (``interface.json`` ``"weights"``, :attr:`CoreShape.weight_words`
= N > 0) also has ``w``, a stream of 16-bit words: after reset it takes exactly N words on it
(the board's :class:`~boards.flash_loader.FlashWeightLoader` brings them from flash), holds
its image input's ready low until the last one is in, then keeps ``w.ready`` low until the
next reset.
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

#: Width of the words on a core's weight port (``w``).
WEIGHT_BITS = 16
#: The most weight words a core takes (the 24-bit flash address space holds no more).
MAX_WEIGHT_WORDS = 1 << 23


def _positive(name: str, value, upper=None) -> int:
    return integer(name, value, 1, upper)


@dataclass(frozen=True)
class CoreShape:
    """Stream parameters of a core. ``n_values``: input values per image (defaults to
    ``lanes * beats_per_image``; must need exactly ``beats_per_image`` beats).
    ``binarize_at``: set (an integer in ``0..2**bits``) when the core turns each input value
    ``v`` into ``v >= binarize_at`` before anything else (a model with ``input.binarize_at``);
    the board then also takes bit-packed CLASSIFY_PACKED frames (:meth:`packed_values`).
    ``weight_words``: the 16-bit words the core takes on its ``w`` stream after reset (0: it
    has no such port)."""

    lanes: int
    bits: int
    beats_per_image: int
    class_bits: int
    n_values: int | None = None
    binarize_at: int | None = None
    weight_words: int = 0

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
        if self.binarize_at is not None:
            integer("binarize_at", self.binarize_at, 0, 1 << self.bits)
        integer("weight_words", self.weight_words, 0, MAX_WEIGHT_WORDS)

    @property
    def beat_bits(self) -> int:
        return self.lanes * self.bits

    @property
    def packed(self) -> bool:
        """The board takes CLASSIFY_PACKED frames for this core (``binarize_at`` is set)."""
        return self.binarize_at is not None

    @property
    def packed_bytes(self) -> int:
        """Payload bytes of a CLASSIFY_PACKED frame: ``ceil(n_values / 8)``."""
        return -(-self.n_values // 8)

    def packed_values(self, values) -> list[int]:
        """The values the core receives for an image sent bit-packed: ``2**bits - 1`` where
        ``value >= binarize_at``, else 0. The core's threshold compare gives the same bits as
        for the original values (``2**bits - 1 >= t`` and ``0 < t`` for every ``t`` in
        ``1..2**bits - 1``; at ``t = 0`` every bit is 1 and at ``t = 2**bits`` every bit 0,
        so those are exact too)."""
        if self.binarize_at is None:
            raise ValueError("this core does not binarize its input (binarize_at is None)")
        top = (1 << self.bits) - 1
        return [top if int(v) >= self.binarize_at else 0 for v in values]

    @classmethod
    def from_interface(cls, interface: dict, n_values: int | None = None,
                       binarize_at: int | None = None) -> "CoreShape":
        """From a parsed ``interface.json`` (``binarize_at``: the model's, or the input's
        ``binarize_at`` entry when the interface has one; ``weight_words``: its
        ``weights`` entry's ``words``)."""
        try:
            i, o = interface["input"], interface["output"]
            if binarize_at is None:
                binarize_at = i.get("binarize_at")
            weights = interface.get("weights")
            words = 0
            if weights is not None:
                if weights.get("bits") != WEIGHT_BITS:
                    raise ValueError(f"the weights port carries {weights.get('bits')!r}-bit "
                                     f"words; the board loads {WEIGHT_BITS}-bit words")
                words = weights["words"]
            return cls(i["lanes"], i["bits"], i["beats_per_image"], o["class_bits"], n_values,
                       binarize_at, words)
        except (KeyError, TypeError, AttributeError) as e:
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
    members = {
        "i": In(stream.Signature(shape.beat_bits)),
        "o": Out(stream.Signature(shape.class_bits)),
    }
    if shape.weight_words:
        members["w"] = In(stream.Signature(WEIGHT_BITS))
    return wiring.Signature(members)


def _find_stream(component, flow, name, exclude=None):
    if name is not None:
        return getattr(component, name)
    found = [n for n, m in component.signature.members.items()
             if m.is_signature and m.flow == flow and isinstance(m.signature, stream.Signature)
             and n != exclude]
    if len(found) != 1:
        direction = "input" if flow == In else "output"
        raise ValueError(f"cannot tell the core's {direction} stream among {found}; "
                         f"name it explicitly")
    return getattr(component, found[0])


class StreamCore(wiring.Component):
    """Adapter with members ``i`` (beats in) and ``o`` (class out) around a core.

    No added latency (wires only); the class is the low ``class_bits`` of the inner payload.
    """

    def __init__(self, shape: CoreShape, inner=None, *, in_ports=None, out_ports=None,
                 w_ports=None):
        with checking(self):
            if not isinstance(shape, CoreShape):
                raise TypeError(f"shape must be a CoreShape, not {shape!r}")
        self.shape = shape
        self._inner = inner
        self._in_ports = in_ports    # (data, valid, ready) signals of the inner core
        self._out_ports = out_ports
        self._w_ports = w_ports
        self._files = []
        super().__init__(core_signature(shape))

    @classmethod
    def wrap(cls, component: wiring.Component, shape: CoreShape, *, input: str | None = None,
             output: str | None = None, weights: str = "w") -> "StreamCore":
        """Wrap an Amaranth component with one input and one output ``lib.stream`` member
        (found automatically, or named by ``input`` / ``output``), and, when
        ``shape.weight_words`` is set, its 16-bit weight input ``weights``."""
        if not isinstance(component, wiring.Component):
            raise TypeError(f"core must be an amaranth wiring.Component, not {component!r}")
        if not isinstance(shape, CoreShape):
            raise TypeError(f"shape must be a CoreShape, not {shape!r}")
        w_ports = None
        if shape.weight_words:
            members = component.signature.members
            member = members[weights] if weights in members else None
            if member is None or not member.is_signature or member.flow != In \
                    or not isinstance(member.signature, stream.Signature):
                raise ValueError(f"the shape has {shape.weight_words} weight words but the "
                                 f"core has no input stream {weights!r}")
            w = getattr(component, weights)
            if len(Value.cast(w.payload)) != WEIGHT_BITS:
                raise ValueError(f"core weight payload is {len(Value.cast(w.payload))} bits, "
                                 f"not {WEIGHT_BITS}")
            w_ports = (w.payload, w.valid, w.ready)
        i = _find_stream(component, In, input, exclude=weights if shape.weight_words else None)
        o = _find_stream(component, Out, output)
        if len(Value.cast(i.payload)) < shape.beat_bits:
            raise ValueError(f"core input payload is {len(Value.cast(i.payload))} bits, "
                             f"narrower than lanes*bits = {shape.beat_bits}")
        if len(Value.cast(o.payload)) < shape.class_bits:
            raise ValueError(f"core output payload is {len(Value.cast(o.payload))} bits, "
                             f"narrower than class_bits = {shape.class_bits}")
        return cls(shape, component, in_ports=(i.payload, i.valid, i.ready),
                   out_ports=(o.payload, o.valid, o.ready), w_ports=w_ports)

    @classmethod
    def from_verilog(cls, interface: dict | str | Path, verilog: str | Path | None = None,
                     n_values: int | None = None,
                     binarize_at: int | None = None) -> "StreamCore":
        """A Verilog module described by ``interface`` (dict or path to ``interface.json``);
        ``verilog``, a path to its source, is added to the platform at elaboration.
        ``binarize_at``: see :class:`CoreShape`."""
        if not isinstance(interface, dict):
            interface = json.loads(Path(interface).read_text())
        shape = CoreShape.from_interface(interface, n_values, binarize_at)
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
            w_ports = self._w_ports
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
            w_ports = None
            if self.shape.weight_words:
                w_ports = Signal(WEIGHT_BITS), Signal(), Signal()
                wi = ifc["weights"]
                ports.update({f"i_{wi['data']}": w_ports[0], f"i_{wi['valid']}": w_ports[1],
                              f"o_{wi['ready']}": w_ports[2]})
            m.submodules.core = Instance(ifc["module"], **ports)
            if platform is not None:
                for path in self._files:
                    platform.add_file(path.name, path.read_text())
        m.d.comb += [
            in_data.eq(self.i.payload), in_valid.eq(self.i.valid), self.i.ready.eq(in_ready),
            self.o.payload.eq(out_data[:self.shape.class_bits]), self.o.valid.eq(out_valid),
            out_ready.eq(self.o.ready),
        ]
        if w_ports is not None:
            w_data, w_valid, w_ready = w_ports
            m.d.comb += [w_data.eq(self.w.payload), w_valid.eq(self.w.valid),
                         self.w.ready.eq(w_ready)]
        return m
