"""Weights from the board's SPI flash into the core's weight port, checked on the way.

A core that keeps a layer's weights in the iCE40UP5K's SPRAM (which a bitstream cannot
initialize) takes them after reset on its ``w`` stream (16-bit words). :class:`FlashWeightLoader`
reads the weight image (:mod:`hwgen.weight_image`: 20-byte header, 16-bit big-endian words,
CRC-32/MPEG-2) from the board's SPI flash and feeds the words to that port.

Sequence after reset (SPI mode 0, one data line each way, SCK idle low):

1. CS# high for ``cs_idle_cycles``;
2. ``AB`` (release from deep power-down: the iCE40's configuration may leave the flash
   powered down), CS# high again for ``wake_cycles`` (the flash's tRES1, 3 us);
3. ``03`` (READ) and the 24-bit byte ``offset``, then, in one continuous read:
4. the header bytes, each compared with ``header`` as it arrives: the first mismatch ends the
   read with ``NO_IMAGE`` when it is in the first ``magic_bytes`` (an erased flash reads FF),
   else ``WRONG_MODEL`` (format version, word count or model id of another build);
5. ``words`` payload words, two bytes each, high byte first, each handed to ``w`` (SCK rests
   while ``w`` holds a word, so a slow core only slows the read);
6. the 4 CRC bytes: CRC-32/MPEG-2 runs bit-serially over payload and CRC bytes, and is zero at
   the end exactly when the CRC matches (a non-reflected CRC without final xor has that
   residue): ``OK``, else ``BAD_CRC`` (the words were delivered; the board refuses images).

``status`` is ``LOADING`` until one of those verdicts (OK and BAD_CRC once the last word has
been taken) and keeps it until the next reset.

Timing: SCK is ``clk / sck_divisor`` (even, default 2: 24 MHz at 48 MHz, inside READ's 50 MHz
limit), low then high for ``sck_divisor / 2`` cycles each bit; CS#, SCK and COPI come from
registers and change only on clock edges, COPI at SCK's falling edge. The flash drives
CIPO after SCK falls; the loader takes the bit from ``cipo`` ``cipo_delay`` cycles after the
first cycle SCK is high, i.e. the pin as it is at the next clock edge when ``cipo`` arrives
through ``cipo_delay`` register stages (default 1: the board's input register; 0 for a
combinational input). That point is half a period of a 24 MHz SCK after its rising edge, the
middle of where the flash's output is stable. Transfers (a byte of the command or header, a
word, half the CRC) run their bits back to back; between two transfers SCK rests low for
``cipo_delay + 4`` cycles at the default divisor (the sequencer's decisions and its requests
to the bit engine are registered, so they stay off the clock's critical paths), and a word is
handed over before the next one is read. So at the default divisor a byte takes ``16 +
cipo_delay + 3`` cycles (20) and a word ``32 + cipo_delay + 5`` (38): 65,536 words (all four
SPRAMs, 1 Mbit) load in about 52 ms at 48 MHz. The word is in ``w`` (``w.payload`` is the
receive register, held until the word is taken) three cycles after the cycle its last bit is
taken in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ._checks import checking, integer

CMD_RELEASE_POWER_DOWN = 0xAB
CMD_READ = 0x03
CRC_POLY = 0x04C11DB7
#: CS# high time after ``AB`` before the flash takes commands (tRES1 is 3 us; margin added).
WAKE_SECONDS = 4e-6
#: CS# high time after reset before the first command.
CS_IDLE_SECONDS = 1e-6
#: The highest SCK :meth:`FlashConfig.for_clock` chooses (READ ``03`` runs to 50 MHz).
MAX_SCK_HZ = 25e6
MAX_HEADER_BYTES = 64
ADDRESS_SPACE = 1 << 24


class LoadStatus(enum.Enum, shape=3):
    LOADING = 0
    OK = 1
    NO_IMAGE = 2      # the magic differs: no image (an erased flash reads FF)
    WRONG_MODEL = 3   # format version, word count or model id differ
    BAD_CRC = 4       # the payload's CRC does not match


def _default_offset() -> int:
    from hwgen.weight_image import FLASH_OFFSET

    return FLASH_OFFSET


def check_loader(header, words, *, offset=None, sck_divisor=2, cipo_delay=1, wake_cycles=192,
                 cs_idle_cycles=48, magic_bytes=4) -> dict:
    """:class:`FlashWeightLoader`'s arguments, checked (TypeError/ValueError), by name."""
    if not isinstance(header, (bytes, bytearray)):
        raise TypeError(f"header must be bytes, not {header!r}")
    if not 1 <= len(header) <= MAX_HEADER_BYTES:
        raise ValueError(f"header must be 1..{MAX_HEADER_BYTES} bytes, not {len(header)}")
    words = integer("words", words, 1, ADDRESS_SPACE // 2)
    offset = integer("offset", _default_offset() if offset is None else offset, 0,
                     ADDRESS_SPACE - 1)
    end = offset + len(header) + 2 * words + 4
    if end > ADDRESS_SPACE:
        raise ValueError(f"an image of {words} words at offset {offset:#x} ends at {end:#x}, "
                         f"past the 24-bit address space")
    integer("sck_divisor", sck_divisor, 2)
    if sck_divisor % 2:
        raise ValueError(f"sck_divisor must be even, not {sck_divisor}")
    return {"header": bytes(header), "words": words, "offset": offset,
            "sck_divisor": sck_divisor, "cipo_delay": integer("cipo_delay", cipo_delay, 0, 4),
            "wake_cycles": integer("wake_cycles", wake_cycles, 1),
            "cs_idle_cycles": integer("cs_idle_cycles", cs_idle_cycles, 1),
            "magic_bytes": integer("magic_bytes", magic_bytes, 0, len(header))}


class FlashWeightLoader(wiring.Component):
    """SPI pins ``sck``, ``cs_n``, ``copi`` (out) and ``cipo`` (in); ``w``: the words out;
    ``status``: a :class:`LoadStatus`. ``header``: the bytes expected at ``offset`` (the
    first ``magic_bytes`` of them the magic); ``words``: the payload words that follow."""

    def __init__(self, header: bytes, words: int, *, offset: int | None = None,
                 sck_divisor: int = 2, cipo_delay: int = 1, wake_cycles: int = 192,
                 cs_idle_cycles: int = 48, magic_bytes: int = 4):
        with checking(self):
            checked = check_loader(header, words, offset=offset, sck_divisor=sck_divisor,
                                   cipo_delay=cipo_delay, wake_cycles=wake_cycles,
                                   cs_idle_cycles=cs_idle_cycles, magic_bytes=magic_bytes)
        for name, value in checked.items():
            setattr(self, name, value)
        super().__init__({
            "sck": Out(1),
            "cs_n": Out(1, init=1),
            "copi": Out(1),
            "cipo": In(1, init=1),
            "w": Out(stream.Signature(16)),
            "status": Out(LoadStatus),
        })

    def elaborate(self, platform):
        m = Module()
        half = self.sck_divisor // 2

        # --- bit engine: `to_issue` SCK periods, `to_sample` bits still to come in ---------
        to_issue = Signal(range(17))
        to_sample = Signal(range(17))
        tx = Signal(8)                  # bits out, MSB first (COPI is its top bit)
        rx = Signal(16)                 # bits in, the latest in bit 0
        rise = Signal()                 # the first cycle SCK is high
        crc = Signal(32, init=0xFFFFFFFF)
        crc_on = Signal()
        m.d.comb += self.copi.eq(tx[7])
        half_end = Signal()
        if half > 1:
            count = Signal(range(half))
            m.d.comb += half_end.eq(count == half - 1)
            with m.If((to_issue != 0) | self.sck):
                m.d.sync += count.eq(Mux(half_end, 0, count + 1))
        else:
            m.d.comb += half_end.eq(1)
        m.d.sync += rise.eq(0)
        with m.If(((to_issue != 0) | self.sck) & half_end):
            with m.If(~self.sck):
                m.d.sync += [self.sck.eq(1), rise.eq(1), to_issue.eq(to_issue - 1)]
            with m.Else():
                m.d.sync += [self.sck.eq(0), tx.eq(tx << 1)]
        sample = rise
        for k in range(self.cipo_delay):
            later = Signal(name=f"sample_{k + 1}")
            m.d.sync += later.eq(sample)
            sample = later
        with m.If(sample):
            m.d.sync += [rx.eq(Cat(self.cipo, rx[:-1])), to_sample.eq(to_sample - 1)]
            with m.If(crc_on):
                shifted = Cat(Const(0, 1), crc[:31])
                m.d.sync += crc.eq(Mux(crc[31] ^ self.cipo, shifted ^ CRC_POLY, shifted))
        # A transfer starts a cycle after the sequencer asks for it (`request`, a register,
        # so the sequencer's decisions stay off the engine's counters): 16 bits once `wide`
        # (payload and CRC), else 8; its COPI byte is the next of the two commands' five
        # bytes (AB; 03 and the address) while any is left, else 0. `idle`: the previous
        # transfer is over, every bit in and SCK low (registered too, so a cycle late;
        # cleared as a transfer is asked for).
        request = Signal()
        wide = Signal()
        idle = Signal()
        m.d.sync += [idle.eq((to_sample == 0) & ~self.sck & ~request), request.eq(0)]
        command = [CMD_RELEASE_POWER_DOWN, CMD_READ, self.offset >> 16,
                   (self.offset >> 8) & 0xFF, self.offset & 0xFF]
        sent = Signal(range(len(command) + 1))     # command bytes sent so far
        with m.If(request):
            bits = Mux(wide, 16, 8)
            m.d.sync += [to_issue.eq(bits), to_sample.eq(bits)]
            with m.Switch(sent):
                for k, byte in enumerate(command):
                    with m.Case(k):
                        m.d.sync += [tx.eq(byte), sent.eq(k + 1)]
                with m.Default():
                    m.d.sync += tx.eq(0)

        def transfer():
            m.d.sync += [request.eq(1), idle.eq(0)]

        # --- sequencer --------------------------------------------------------------------
        # the CS# high times: a down-counter and its registered end
        wait = Signal(range(max(self.wake_cycles, self.cs_idle_cycles) + 1),
                      init=self.cs_idle_cycles)
        waited = Signal()            # wait has run out (a cycle late)
        m.d.sync += [wait.eq(Mux(wait == 0, 0, wait - 1)), waited.eq(wait <= 1)]
        index = Signal(range(len(self.header) + 1))   # the header byte coming in
        # header[index] and facts about index, registered (index is settled long before a
        # byte is in), and the byte's comparison with it, registered (valid with `idle`)
        expect = Signal(8)
        in_magic = Signal()          # index < magic_bytes
        at_last = Signal()           # index == len(header) - 1
        with m.Switch(index):
            for k, byte in enumerate(self.header):
                with m.Case(k):
                    m.d.sync += [expect.eq(byte), in_magic.eq(k < self.magic_bytes),
                                 at_last.eq(k == len(self.header) - 1)]
        differs = Signal()
        m.d.sync += differs.eq(rx[:8] != expect)
        crc_zero = Signal()          # crc == 0, registered (valid with `idle`)
        m.d.sync += crc_zero.eq(crc == 0)
        words_left = Signal(range(self.words + 1))
        last_word = Signal()         # words_left == 1
        final = Signal()             # the word in `w` is the last one
        crc_first = Signal()         # the first of the CRC's two 16-bit halves is coming
        # the word in `w` is `rx`, held until taken: the next word's read starts then
        m.d.comb += self.w.payload.eq(rx)
        with m.If(self.w.ready):
            m.d.sync += self.w.valid.eq(0)

        with m.FSM(name="flash") as fsm:
            with m.State("CS_IDLE"):
                with m.If(waited):
                    m.d.sync += self.cs_n.eq(0)
                    transfer()                      # AB
                    m.next = "WAKE"
            with m.State("WAKE"):
                with m.If(idle):
                    m.d.sync += [self.cs_n.eq(1), wait.eq(self.wake_cycles), waited.eq(0)]
                    m.next = "WAKE_WAIT"
            with m.State("WAKE_WAIT"):
                with m.If(waited):
                    m.d.sync += self.cs_n.eq(0)
                    transfer()                      # 03
                    m.next = "COMMAND"
            with m.State("COMMAND"):   # the address bytes, then the first header byte
                with m.If(idle):
                    transfer()
                    with m.If(sent == len(command)):
                        m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(idle):
                    with m.If(differs):
                        m.d.sync += [self.cs_n.eq(1), self.status.eq(
                            Mux(in_magic, LoadStatus.NO_IMAGE, LoadStatus.WRONG_MODEL))]
                        m.next = "STOP"
                    with m.Else():
                        transfer()
                        m.d.sync += index.eq(index + 1)
                        with m.If(at_last):
                            m.d.sync += [crc_on.eq(1), wide.eq(1), words_left.eq(self.words),
                                         last_word.eq(self.words == 1)]
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(idle):
                    m.d.sync += [self.w.valid.eq(1), words_left.eq(words_left - 1),
                                 last_word.eq(words_left == 2), final.eq(last_word)]
                    m.next = "HANDOVER"
            with m.State("HANDOVER"):   # `w` holds the word in `rx` until taken
                with m.If(~self.w.valid):
                    transfer()
                    with m.If(final):
                        m.d.sync += crc_first.eq(1)
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("CRC"):
                with m.If(idle):
                    with m.If(crc_first):
                        m.d.sync += crc_first.eq(0)
                        transfer()
                    with m.Else():
                        m.d.sync += [self.cs_n.eq(1), self.status.eq(
                            Mux(crc_zero, LoadStatus.OK, LoadStatus.BAD_CRC))]
                        m.next = "STOP"
            with m.State("STOP"):
                pass
        # one-hot: a binary state's decode sat on the longest paths (as in the frame parser)
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m


def load_cycles(header_bytes: int, words: int, *, sck_divisor: int = 2, cipo_delay: int = 1,
                wake_cycles: int = 192, cs_idle_cycles: int = 48) -> int:
    """Clock cycles from reset to the verdict of a good image (the module docstring's
    timing): CS# idle, ``AB`` and the wake-up, ``03`` and its address, the header, the words
    and the CRC; a transfer of ``b`` bits costs ``b * sck_divisor + cipo_delay + 4 -
    sck_divisor / 2`` cycles (the last bit's sample overlaps the next transfer's start), a
    word two more (its hand-over)."""
    turn = cipo_delay + 4 - sck_divisor // 2
    byte = 8 * sck_divisor + turn
    return (cs_idle_cycles + byte + wake_cycles + byte + 3 * byte + header_bytes * byte
            + words * (16 * sck_divisor + turn + 2) + 2 * (16 * sck_divisor + turn))


@dataclass(frozen=True)
class FlashConfig:
    """How a board top loads a core's weights from flash: the expected ``header``
    (:func:`hwgen.weight_image.header`) and the :class:`FlashWeightLoader` timing, in cycles.
    :meth:`for_clock` derives the timing from the clock."""

    header: bytes
    offset: int | None = None           # default: hwgen.weight_image.FLASH_OFFSET
    sck_divisor: int = 2
    cipo_delay: int = 1
    wake_cycles: int = 192
    cs_idle_cycles: int = 48

    def __post_init__(self):
        if not isinstance(self.header, (bytes, bytearray)):
            raise TypeError(f"header must be bytes, not {self.header!r}")
        if self.offset is None:
            object.__setattr__(self, "offset", _default_offset())

    @classmethod
    def for_clock(cls, header: bytes, clock_hz: float, **options) -> "FlashConfig":
        """SCK at most :data:`MAX_SCK_HZ`, :data:`WAKE_SECONDS` and :data:`CS_IDLE_SECONDS`
        in cycles of ``clock_hz``; ``options`` override any field."""
        if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)) \
                or not clock_hz > 0:
            raise ValueError(f"clock_hz must be a positive number, not {clock_hz!r}")
        divisor = max(2, 2 * math.ceil(clock_hz / MAX_SCK_HZ / 2))
        options.setdefault("sck_divisor", divisor)
        options.setdefault("wake_cycles", max(1, math.ceil(WAKE_SECONDS * clock_hz)))
        options.setdefault("cs_idle_cycles", max(1, math.ceil(CS_IDLE_SECONDS * clock_hz)))
        return cls(header, **options)

    def check(self, words: int) -> None:
        """TypeError/ValueError when :meth:`loader` would raise them."""
        check_loader(self.header, words, offset=self.offset, sck_divisor=self.sck_divisor,
                     cipo_delay=self.cipo_delay, wake_cycles=self.wake_cycles,
                     cs_idle_cycles=self.cs_idle_cycles)

    def loader(self, words: int) -> FlashWeightLoader:
        return FlashWeightLoader(self.header, words, offset=self.offset,
                                 sck_divisor=self.sck_divisor, cipo_delay=self.cipo_delay,
                                 wake_cycles=self.wake_cycles,
                                 cs_idle_cycles=self.cs_idle_cycles)
