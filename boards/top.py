"""Board-independent UART inference top: UART pins in and out, a streaming core in between.

::

    rx pin -> UARTReceiver -> [byte FIFO] -> FrameParser --beats--> core -> skid --> ReplyGenerator
                                               |                                      ^       |
                                               +----- tags -> SyncFIFO(depth 2) -------+       v
                                                                           UARTTransmitter -> tx pin

The byte FIFO (``rx_fifo_depth`` bytes of block RAM; default 0: none) lets the core hold its
input ready low for long (e.g. while it finishes the previous image of back-to-back frames)
without the receiver overrunning: it absorbs ``rx_fifo_depth`` character times (512 bytes, one
iCE40 block RAM: 5 ms at 1 Mbaud). Without it the slack is about ``2 + 2 * lanes`` characters
(receiver, parser input, beat assembly and beat output registers). That is enough for the
generated networks, which take input again within a few thousand cycles (a few characters at
1 Mbaud); a longer stall loses a byte and the frame is answered OVERRUN.

At the highest rate, 4 cycles per bit (12 Mbaud at 48 MHz), a byte arrives every 40 cycles
(39 from a 2% fast host): the receiver (:mod:`boards.uart`), the byte FIFO and the parser (a
byte per 2 cycles, a bit-packed byte per 8 to 16) keep up, the frame timeout counts only while
no byte is pending, and replies leave at 41 cycles per byte. Bit-packed frames
(CLASSIFY_PACKED, taken when the core's ``shape.binarize_at`` is set) bring 8 values per
character, so back-to-back packed frames need a core that takes an image every
``ceil(values / 8) + 8`` characters (the host client otherwise sees OVERRUN replies).

The core's class output reaches the reply generator through a skid buffer
(:class:`~hwgen.gateware.repack.SkidBuffer`, one cycle), so the reply logic's ``ready`` does
not run combinationally into the core's stall logic (that path, from the reply state to a
conv core's output layer, missed 48 MHz on the UP5K).

Everything is in the ``sync`` domain (the board top supplies its clock and reset). The LED
outputs: ``activity`` is high for about ``led_hold`` cycles (rounded up to the LED prescaler's
step, at most 1/64 longer) after any byte received or sent, ``error`` likewise after a frame
ended with an error or a framing error, ``last_class`` is the class of the most recent OK
reply.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hwgen.gateware.repack import SkidBuffer

from ._checks import checking, integer
from .core import StreamCore
from .fifo import ByteFIFO
from .framer import FrameParser, ReplyGenerator, Tag
from .targets import check_baud
from .uart import UARTReceiver, UARTTransmitter, check_divisor

TAG_QUEUE_DEPTH = 2


class UARTInferenceTop(wiring.Component):
    """``rx`` / ``tx``: UART pins (8N1, ``divisor`` cycles per bit); ``activity``, ``error``,
    ``last_class``: LED drivers. ``timeout``: idle cycles that abort a frame."""

    def __init__(self, core: StreamCore, *, divisor: int, timeout: int, led_hold: int = 1,
                 rx_fifo_depth: int = 0):
        with checking(self):
            if not isinstance(core, StreamCore):
                raise TypeError(f"core must be a StreamCore (use StreamCore.wrap), not {core!r}")
            self.core = core
            self.shape = core.shape
            self.divisor = check_divisor(divisor)
            self.timeout = integer("timeout (cycles)", timeout, 1)
            self.led_hold = integer("led_hold (cycles)", led_hold, 1)
            self.rx_fifo_depth = integer("rx_fifo_depth", rx_fifo_depth, 0)
            if rx_fifo_depth & (rx_fifo_depth - 1) or rx_fifo_depth == 1:
                raise ValueError(f"rx_fifo_depth must be 0 or a power of two >= 2, "
                                 f"not {rx_fifo_depth}")
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "activity": Out(1),
            "error": Out(1),
            "last_class": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTReceiver(self.divisor)
        m.submodules.uart_tx = tx = UARTTransmitter(self.divisor)
        m.submodules.parser = parser = FrameParser(self.shape, self.timeout)
        m.submodules.reply = reply = ReplyGenerator(self.shape.class_bits)
        m.submodules.core = core = self.core
        m.submodules.tag_queue = queue = SyncFIFO(width=Tag.size,
                                                  depth=TAG_QUEUE_DEPTH)

        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), parser.overrun.eq(rx.overrun)]
        if self.rx_fifo_depth:
            m.submodules.rx_fifo = fifo = ByteFIFO(self.rx_fifo_depth)
            wiring.connect(m, rx.o, fifo.i)
            wiring.connect(m, fifo.o, parser.i)
        else:
            wiring.connect(m, rx.o, parser.i)
        wiring.connect(m, parser.beats, core.i)
        m.submodules.class_skid = skid = SkidBuffer(self.shape.class_bits)
        wiring.connect(m, core.o, skid.i)
        wiring.connect(m, skid.o, reply.classes)
        wiring.connect(m, reply.o, tx.i)
        m.d.comb += [
            queue.w_data.eq(parser.tags.payload), queue.w_en.eq(parser.tags.valid),
            parser.tags.ready.eq(queue.w_rdy),
            reply.tags.payload.eq(queue.r_data), reply.tags.valid.eq(queue.r_rdy),
            queue.r_en.eq(reply.tags.ready),
            self.last_class.eq(reply.last_class),
        ]

        # LED hold timers: a free-running prescaler whose carry-out ticks (no wide compare, so
        # long holds do not limit Fmax) and a small down-counter per LED
        shift = max(0, (self.led_hold - 1).bit_length() - 6)
        ticks = -(-self.led_hold // (1 << shift))
        tick = Signal()
        if shift:
            prescaler = Signal(shift)
            m.d.sync += Cat(prescaler, tick).eq(prescaler + 1)
        else:
            m.d.comb += tick.eq(1)
        for led, event in ((self.activity, rx.busy | tx.busy),
                           (self.error, parser.frame_error | rx.frame_error)):
            hold = Signal(range(ticks + 1))
            with m.If(event):
                m.d.sync += hold.eq(ticks)
            with m.Elif(tick & (hold != 0)):
                m.d.sync += hold.eq(hold - 1)
            m.d.comb += led.eq(hold != 0)
        return m


# ``ValueError`` above the board's USB-serial limit (the clock's own limit is
# :func:`baud_divisor`'s); one rule with :meth:`boards.targets.Board.check_baud`.
check_board_baud = check_baud


def configure_board_top(top, core, pll, *, baud, timeout_us, reset_delay_us, led_hold_s,
                        rx_fifo_depth) -> None:
    """What every board top derives from its PLL: sets ``top.pll``, ``clock_hz``,
    ``divisor``/``baud`` (the achieved UART rate), ``timeout_cycles`` (frame timeout),
    ``reset_cycles`` (reset held after lock) and ``inner`` (the :class:`UARTInferenceTop`
    around ``core``). Raises TypeError/ValueError on a bad core or timing."""
    import math

    from .core import StreamCore
    from .uart import baud_divisor

    if not isinstance(core, StreamCore):
        raise TypeError(f"core must be a StreamCore, not {core!r}")
    for name, value in (("timeout_us", timeout_us), ("reset_delay_us", reset_delay_us)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    top.pll = pll
    top.clock_hz = pll.f_out_hz
    top.divisor = baud_divisor(top.clock_hz, baud)
    top.baud = top.clock_hz / top.divisor
    top.timeout_cycles = max(1, round(timeout_us * 1e-6 * top.clock_hz))
    top.reset_cycles = max(1, math.ceil(reset_delay_us * 1e-6 * top.clock_hz))
    top.inner = UARTInferenceTop(core, divisor=top.divisor, timeout=top.timeout_cycles,
                                 led_hold=max(1, round(led_hold_s * top.clock_hz)),
                                 rx_fifo_depth=rx_fifo_depth)


def connect_uart_pins(m, platform, top) -> None:
    """Wire ``top.rx``/``top.tx`` to the platform's ``uart`` resource 0 through I/O buffers."""
    from amaranth.lib import io

    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
    m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
    m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
