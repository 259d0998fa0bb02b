"""``hwgen.gateware.rtlil_memory``: memory contents written by the compact emitter are
byte-for-byte Amaranth's own, for a fraction of the memory."""

from __future__ import annotations

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.gateware import rtlil_memory  # importing the package installs the emitter


class _Roms(wiring.Component):
    """Read-only memories of the given (width, depth), each read at ``addr``."""

    def __init__(self, shapes, seed):
        self._shapes, self._seed = shapes, seed
        super().__init__({"addr": In(8), "data": Out(sum(w for w, _ in shapes))})

    def elaborate(self, platform):
        m = Module()
        rng = random.Random(self._seed)
        outs = []
        for k, (width, depth) in enumerate(self._shapes):
            init = [rng.getrandbits(width) for _ in range(depth)]
            mem = Memory(shape=unsigned(width), depth=depth, init=init)
            m.submodules[f"rom{k}"] = mem
            port = mem.read_port()
            m.d.comb += port.addr.eq(self.addr)
            outs.append(port.data)
        m.d.comb += self.data.eq(sum((o.as_unsigned() << sum(w for w, _ in self._shapes[:k])
                                      for k, o in enumerate(outs)), 0))
        return m


def test_the_compact_emitter_is_installed():
    assert rtlil_memory.install()
    assert rtlil.ModuleEmitter.emit_memory is rtlil_memory._emit_memory


@pytest.mark.parametrize("shapes", [[(1, 1)], [(7, 5)], [(64, 300), (3, 1), (16, 256)],
                                    [(129, 17)]])
def test_the_rtlil_is_amaranths_own(monkeypatch, shapes):
    compact = rtlil.convert(_Roms(shapes, 1), name="top")
    monkeypatch.setattr(rtlil.ModuleEmitter, "emit_memory", rtlil_memory._original)
    own = rtlil.convert(_Roms(shapes, 1), name="top")
    assert compact == own
    assert "$meminit_v2" in own


def test_compact_constant():
    assert rtlil_memory.compact_constant([0b01, 0b10, 0b11], 2) == "6'111001"
    assert rtlil_memory.compact_constant([5], 4) == "4'0101"


def test_an_unknown_emitter_is_left_alone(monkeypatch):
    def other(self, cell_idx, cell):
        raise AssertionError

    monkeypatch.setattr(rtlil.ModuleEmitter, "emit_memory", other)
    monkeypatch.setattr(rtlil_memory, "_original", other)
    assert not rtlil_memory.install()
    assert rtlil.ModuleEmitter.emit_memory is other
