"""The weight image from the UART into the core's weight port, checked on the way.

:class:`UartWeightLoader` takes the bytes of a weight image (:mod:`hwgen.weight_image`: the
20-byte header, 16-bit big-endian words, CRC-32/MPEG-2), as the frame parser hands them over
from LOAD_WEIGHTS frames (``docs/uart-protocol.md``), and does with them what
:class:`~boards.flash_loader.FlashWeightLoader` does with the flash's:

1. the header bytes are compared with ``header`` as they arrive: the first mismatch is the
   verdict ``NO_IMAGE`` when it is in the first ``magic_bytes`` (the magic), else
   ``WRONG_MODEL``;
2. ``words`` payload words, two bytes each, high byte first, each handed to ``w``;
3. the 4 CRC bytes: CRC-32/MPEG-2 over payload and CRC bytes is zero exactly when the CRC
   matches: ``OK``, else ``BAD_CRC``.

``status`` is ``LOADING`` until the verdict and keeps it until reset; bytes after the
verdict are taken and dropped. A new load is a reset of this component (the board top
resets it together with the core when a load starts at offset 0).

``received`` counts the bytes taken since reset (the frame parser checks each frame's offset
against it); ``busy`` is high while a taken byte is still being worked on (its CRC bits, or
its word waiting in ``w``), so the verdict of the last byte is settled once ``busy`` falls.
A byte is taken when none is being worked on: the CRC runs a bit a cycle, so a payload byte
takes about 11 cycles (the decisions start from registers: one cycle of them a byte), far
less than a character time at any baud rate the boards run (40 cycles at 12 Mbaud and 48
MHz). ``busy`` is registered (a cycle late; the parser asks for it two bytes later).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import checking, integer
from .flash_loader import CRC_POLY, MAX_HEADER_BYTES, LoadStatus

#: Bytes of an image: the header, two per word, the CRC.
CRC_BYTES = 4


def image_bytes(header: bytes, words: int) -> int:
    return len(header) + 2 * words + CRC_BYTES


class UartWeightLoader(wiring.Component):
    """``i``: image bytes in; ``w``: words out; ``status``: a :class:`LoadStatus`;
    ``received``: bytes taken since reset; ``busy``: a taken byte is still being worked on.
    ``header``: the bytes the image must start with (the first ``magic_bytes`` the magic);
    ``words``: the payload words that follow."""

    def __init__(self, header: bytes, words: int, *, magic_bytes: int = 4):
        with checking(self):
            if not isinstance(header, (bytes, bytearray)):
                raise TypeError(f"header must be bytes, not {header!r}")
            if not 1 <= len(header) <= MAX_HEADER_BYTES:
                raise ValueError(f"header must be 1..{MAX_HEADER_BYTES} bytes, not "
                                 f"{len(header)}")
            self.header = bytes(header)
            self.words = integer("words", words, 1, 1 << 23)
            self.magic_bytes = integer("magic_bytes", magic_bytes, 0, len(header))
        self.total = image_bytes(self.header, self.words)
        super().__init__({
            "i": In(stream.Signature(8)),
            "w": Out(stream.Signature(16)),
            "status": Out(LoadStatus),
            "received": Out(range(self.total + 1)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        byte = Signal(8)
        have = Signal()              # `byte` holds a taken byte the FSM has not used yet
        index = Signal(range(len(self.header) + 1))
        expect = Signal(8)           # header[index], registered (index settles long before)
        use = Signal()               # the FSM uses `byte` this cycle
        m.d.comb += self.i.ready.eq(~have)
        with m.If(use):
            m.d.sync += have.eq(0)
        with m.If(self.i.valid & ~have):
            m.d.sync += [byte.eq(self.i.payload), have.eq(1)]
            with m.If(self.received != self.total):
                m.d.sync += self.received.eq(self.received + 1)

        # CRC-32/MPEG-2, a bit a cycle, most significant bit first
        crc = Signal(32, init=0xFFFFFFFF)
        shift = Signal(8)
        bits_left = Signal(range(9))
        with m.If(bits_left != 0):
            shifted = Cat(Const(0, 1), crc[:31])
            m.d.sync += [crc.eq(Mux(crc[31] ^ shift[7], shifted ^ CRC_POLY, shifted)),
                         shift.eq(shift << 1), bits_left.eq(bits_left - 1)]

        def crc_byte():
            m.d.sync += [shift.eq(byte), bits_left.eq(8)]

        in_magic = Signal()
        at_last = Signal()           # index == len(header) - 1
        with m.Switch(index):
            for k, value in enumerate(self.header):
                with m.Case(k):
                    m.d.sync += [expect.eq(value), in_magic.eq(k < self.magic_bytes),
                                 at_last.eq(k == len(self.header) - 1)]
        # the header byte's comparison, registered; `settled`: the byte was there (and not
        # used) a cycle ago, so `differs` is its comparison with header[index]
        differs = Signal()
        settled = Signal()
        m.d.sync += [differs.eq(byte != expect), settled.eq(have & ~use)]
        words_left = Signal(range(self.words + 1), init=self.words)
        last_word = Signal(init=self.words == 1)     # words_left == 1 (registered)
        high = Signal(8)             # the word's first byte
        low_next = Signal()          # the next payload byte is a word's second
        crc_left = Signal(range(CRC_BYTES + 1), init=CRC_BYTES)
        with m.If(self.w.ready):
            m.d.sync += self.w.valid.eq(0)
        # `free`: a cycle ago no CRC bits were left, no word waited and no byte was used;
        # then that still holds (only using a byte starts CRC bits or a word), so a byte may
        # be used now. A register: the decision paths start at flip-flops (one cycle a byte).
        free = Signal()
        crc_zero = Signal()          # crc == 0, a cycle ago (settled once `free`)
        ready = Signal()
        m.d.comb += ready.eq(have & free)
        m.d.sync += [free.eq((bits_left == 0) & ~self.w.valid & ~use), crc_zero.eq(crc == 0)]

        with m.FSM(name="weights") as fsm:
            with m.State("HEADER"):
                with m.If(ready & settled):
                    m.d.comb += use.eq(1)
                    with m.If(differs):
                        m.d.sync += self.status.eq(Mux(in_magic, LoadStatus.NO_IMAGE,
                                                       LoadStatus.WRONG_MODEL))
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += index.eq(index + 1)
                        with m.If(at_last):
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(ready):
                    m.d.comb += use.eq(1)
                    crc_byte()
                    m.d.sync += low_next.eq(~low_next)
                    with m.If(~low_next):
                        m.d.sync += high.eq(byte)
                    with m.Else():
                        m.d.sync += [self.w.payload.eq(Cat(byte, high)), self.w.valid.eq(1),
                                     words_left.eq(words_left - 1),
                                     last_word.eq(words_left == 2)]
                        with m.If(last_word):
                            m.next = "CRC"
            with m.State("CRC"):
                with m.If(ready):
                    m.d.comb += use.eq(1)
                    crc_byte()
                    m.d.sync += crc_left.eq(crc_left - 1)
                    with m.If(crc_left == 1):
                        m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(free):
                    m.d.sync += self.status.eq(Mux(crc_zero, LoadStatus.OK,
                                                   LoadStatus.BAD_CRC))
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += use.eq(have)
        # registered: the parser asks only long after its last byte came (two CRC bytes later)
        m.d.sync += self.busy.eq(have | (bits_left != 0) | self.w.valid | fsm.ongoing("CHECK")
                                 | self.i.valid & ~have)
        return m
