"""A bank of iCE40UP5K SPRAM blocks: a wide, deep read-mostly memory written at run time.

The iCE40UP5K has four SB_SPRAM256KA blocks (16384 words of 16 bits, one port, one-cycle
synchronous read) that the bitstream cannot initialize. :class:`SPRAMBank` puts a
``depth x width`` memory into ``ceil(width / 16)`` blocks side by side (the width cascade)
times ``ceil(depth / 16384)`` one above the other (the depth cascade): a weight ROM of a
layer folded ``PExSIMDs`` (see :mod:`hwgen.fold.storage`), which the network fills from its
weight stream before it computes (:class:`~.network.Network`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import SPRAM_DEPTH, SPRAM_WIDTH, ceil_div

__all__ = ["SPRAMBank", "load_signature", "is_ice40up"]


def load_signature(blocks: int) -> wiring.Signature:
    """The write side of a :class:`SPRAMBank` of ``blocks`` blocks, as its writer drives it:
    ``block`` (the block index in load order), ``addr`` (14 bits), ``data`` (16 bits),
    ``en`` (write this cycle)."""
    return wiring.Signature({
        "block": Out(range(max(1, blocks))),
        "addr": Out(14),
        "data": Out(SPRAM_WIDTH),
        "en": Out(1),
    })


def is_ice40up(platform) -> bool:
    """Whether ``platform`` targets an iCE40 UltraPlus device (one with SB_SPRAM256KA)."""
    return str(getattr(platform, "device", "") or "").startswith("iCE40UP")


class SPRAMBank(wiring.Component):
    """A ``depth x width`` memory in 16K x 16 SPRAM blocks (``width`` a multiple of 16).

    Read side, like a synchronous :class:`~amaranth.lib.memory.Memory` read port: ``data``
    is the word at ``addr`` one cycle after a cycle with ``en`` high, and holds while ``en``
    is low. Write side (``load``, :func:`load_signature`): with ``load.en`` high, 16-bit
    ``load.data`` goes to address ``load.addr`` of block ``load.block``, blocks numbered in
    load order: block ``d * W + k`` (``W = width // 16`` blocks wide) holds bits ``[16k,
    16k + 16)`` of the words ``d * block_depth + a``. Reads and writes must not overlap
    (a cycle with both writes; the read data is then undefined): the network writes
    before it computes. ``block_depth`` (default 16384, the SB_SPRAM256KA's) is for tests
    of the depth cascade; any other value only works in simulation.

    On an iCE40 UltraPlus platform (:func:`is_ice40up`) every block is an SB_SPRAM256KA
    (chip-selected for a read of its depth slice or a write to it; never in standby, sleep
    or power-off); elsewhere (simulation, Verilog export) a behavioural model with the same
    cycle behaviour: a :class:`~amaranth.lib.memory.Memory` per block (as deep as the words
    that block holds) read into a data register that is 0 at power-on. The depth-cascade
    select is a register loaded with the read, reset to 0.
    """

    @checked_init
    def __init__(self, width: int, depth: int, block_depth: int = SPRAM_DEPTH):
        check_int("width", width, SPRAM_WIDTH)
        check_int("depth", depth, 1)
        check_int("block_depth", block_depth, 1)
        if width % SPRAM_WIDTH:
            raise ValueError(f"width must be a multiple of {SPRAM_WIDTH}, not {width}")
        if block_depth > SPRAM_DEPTH:
            raise ValueError(f"block_depth must be at most {SPRAM_DEPTH}, not {block_depth}")
        self.width, self.depth, self.block_depth = width, depth, block_depth
        self.wide = width // SPRAM_WIDTH
        self.deep = ceil_div(depth, block_depth)
        super().__init__({
            "addr": In(range(depth)),
            "en": In(1),
            "data": Out(width),
            "load": In(load_signature(self.blocks)),
        })

    @property
    def blocks(self) -> int:
        return self.wide * self.deep

    def block_words(self, d: int) -> int:
        """Words used in the blocks of depth index ``d``."""
        return min(self.block_depth, self.depth - d * self.block_depth)

    def elaborate(self, platform):
        m = Module()
        low_bits = max(1, (self.block_depth - 1).bit_length())
        if self.deep > 1:
            # block_depth is a power of two when it matters (SPRAM_DEPTH), else divide
            if self.block_depth & (self.block_depth - 1) == 0:
                low, high = self.addr[:low_bits], self.addr[low_bits:]
            else:
                low = Signal(range(self.block_depth))
                high = Signal(range(self.deep))
                m.d.comb += [low.eq(self.addr % self.block_depth),
                             high.eq(self.addr // self.block_depth)]
            sel = Signal(range(self.deep))  # the depth slice of the data being read
            with m.If(self.en):
                m.d.sync += sel.eq(high)
        else:
            low, high, sel = self.addr, Const(0), Const(0)
        hardware = is_ice40up(platform)
        if hardware and self.block_depth != SPRAM_DEPTH:
            raise ValueError("an SB_SPRAM256KA block holds 16384 words; block_depth "
                             f"{self.block_depth} only simulates")
        slices = []
        for d in range(self.deep):
            read = Signal(name=f"read{d}")
            m.d.comb += read.eq(self.en & (high == d))
            outs = []
            for k in range(self.wide):
                index = d * self.wide + k
                write = Signal(name=f"write{index}")
                m.d.comb += write.eq(self.load.en & (self.load.block == index))
                out = Signal(SPRAM_WIDTH, name=f"dout{index}")
                if hardware:
                    address = Signal(14, name=f"address{index}")
                    m.d.comb += address.eq(Mux(write, self.load.addr, low))
                    m.submodules[f"spram{index}"] = Instance(
                        "SB_SPRAM256KA",
                        i_ADDRESS=address,
                        i_DATAIN=self.load.data, i_MASKWREN=Const(0b1111, 4), i_WREN=write,
                        i_CHIPSELECT=read | write, i_CLOCK=ClockSignal(),
                        i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                        o_DATAOUT=out)
                else:
                    self._model_block(m, index, self.block_words(d), low, read, write, out)
                outs.append(out)
            slices.append(Cat(*outs))
        if self.deep == 1:
            m.d.comb += self.data.eq(slices[0])
        else:
            with m.Switch(sel):
                for d, value in enumerate(slices):
                    with m.Case(d):
                        m.d.comb += self.data.eq(value)
        return m

    def _model_block(self, m: Module, index: int, words: int, low, read, write, out) -> None:
        """The behavioural model of block ``index``: ``words`` words (those it holds), an
        asynchronous read into a data register that loads on ``read`` and holds otherwise,
        0 at power-on and not reset (as the SB_SPRAM256KA's output register)."""
        mem = Memory(shape=SPRAM_WIDTH, depth=words, init=[])
        m.submodules[f"block{index}"] = mem
        wport = mem.write_port()
        rport = mem.read_port(domain="comb")
        data = Signal(SPRAM_WIDTH, init=0, reset_less=True, name=f"data{index}")
        m.d.comb += [wport.addr.eq(self.load.addr), wport.data.eq(self.load.data),
                     wport.en.eq(write), rport.addr.eq(low), out.eq(data)]
        with m.If(read):
            m.d.sync += data.eq(rport.data)
