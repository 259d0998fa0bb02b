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

A core that loads its weights from flash (``shape.weight_words``; ``flash``: a
:class:`~boards.flash_loader.FlashConfig`) gets a :class:`~boards.flash_loader.FlashWeightLoader`
on the pins ``flash_sck``, ``flash_cs_n``, ``flash_copi`` (out) and ``flash_cipo`` (in, through
``flash.cipo_delay`` register stages on the board), feeding the core's ``w``, and a
:class:`~boards.weight_gate.WeightGate` between parser and core: until the loader's
``weights_status`` is OK, image frames are answered with the weight statuses and their
images never reach the core; PING is answered as always. The ``error`` LED is on steadily
while the verdict is a failure (no image, another model's, bad CRC). A top without weights
is exactly the one described above.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, ResetInserter, Signal
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
                 rx_fifo_depth: int = 0, flash=None, uart_weights: bool = False):
        from .flash_loader import FlashConfig, LoadStatus

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
            if flash is not None and not isinstance(flash, FlashConfig):
                raise TypeError(f"flash must be a FlashConfig, not {flash!r}")
            if self.shape.weight_words and flash is None:
                raise ValueError(f"the core takes {self.shape.weight_words} weight words: "
                                 f"give flash=FlashConfig(...) to load them")
            if flash is not None and not self.shape.weight_words:
                raise ValueError("flash is for a core with weight words (shape.weight_words)")
            self.flash = flash
            if flash is not None:
                flash.check(self.shape.weight_words)
            if not isinstance(uart_weights, bool):
                raise TypeError(f"uart_weights must be True or False, not {uart_weights!r}")
            if uart_weights and flash is None:
                raise ValueError("uart_weights is for a core that loads weights (give flash)")
            self.uart_weights = uart_weights
        members = {
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "activity": Out(1),
            "error": Out(1),
            "last_class": Out(8),
        }
        if flash is not None:
            members.update({
                "flash_sck": Out(1), "flash_cs_n": Out(1, init=1), "flash_copi": Out(1),
                "flash_cipo": In(1, init=1), "weights_status": Out(LoadStatus),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTReceiver(self.divisor)
        m.submodules.uart_tx = tx = UARTTransmitter(self.divisor)
        weight_bytes = 0
        if self.uart_weights:
            from .uart_weights import image_bytes
            weight_bytes = image_bytes(self.flash.header, self.shape.weight_words)
        m.submodules.parser = parser = FrameParser(self.shape, self.timeout, weight_bytes)
        m.submodules.reply = reply = ReplyGenerator(self.shape.class_bits,
                                                    weights=bool(weight_bytes))
        core = self.core
        if weight_bytes:
            # a load over the UART from offset 0 resets the core (no image has reached it:
            # images pass only once the weights are good, and then no load is taken)
            m.submodules.core = ResetInserter(parser.w_restart)(core)
        else:
            m.submodules.core = core
        m.submodules.tag_queue = queue = SyncFIFO(width=Tag.size,
                                                  depth=TAG_QUEUE_DEPTH)

        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), parser.overrun.eq(rx.overrun)]
        if self.rx_fifo_depth:
            m.submodules.rx_fifo = fifo = ByteFIFO(self.rx_fifo_depth)
            wiring.connect(m, rx.o, fifo.i)
            wiring.connect(m, fifo.o, parser.i)
        else:
            wiring.connect(m, rx.o, parser.i)
        weights_bad = None
        if self.flash is not None:
            from .flash_loader import LoadStatus
            from .weight_gate import WeightGate

            m.submodules.flash_loader = loader = self.flash.loader(self.shape.weight_words)
            m.submodules.weight_gate = gate = WeightGate(self.shape)
            status = self._weight_sources(m, parser, reply, core, loader) if weight_bytes \
                else loader.status
            if not weight_bytes:
                wiring.connect(m, loader.w, core.w)
            wiring.connect(m, parser.beats, gate.i)
            wiring.connect(m, gate.o, core.i)
            m.d.comb += [
                self.flash_sck.eq(loader.sck), self.flash_cs_n.eq(loader.cs_n),
                self.flash_copi.eq(loader.copi), loader.cipo.eq(self.flash_cipo),
                self.weights_status.eq(status), gate.status.eq(status),
            ]
            weights_bad = (status != LoadStatus.LOADING) & (status != LoadStatus.OK)
        else:
            wiring.connect(m, parser.beats, core.i)
        self._finish(m, rx, tx, parser, reply, core, queue, gate if self.flash is not None
                     else None, weights_bad)
        return m

    def _weight_sources(self, m, parser, reply, core, loader):
        """The UART weight path (``uart_weights``): LOAD_WEIGHTS bytes from the parser into
        a :class:`~boards.uart_weights.UartWeightLoader`, and the switch of the core's
        weights and the weight status from the flash loader to it; returns the status."""
        from .flash_loader import LoadStatus
        from .framer import W_FLASH_BUSY, W_LOCKED, W_OPEN
        from .uart_weights import UartWeightLoader

        uart_loader = UartWeightLoader(self.flash.header, self.shape.weight_words)
        m.submodules.uart_loader = ResetInserter(parser.w_restart)(uart_loader)
        # The weights come from the flash, until a load over the UART starts (taken only
        # once the flash's verdict is a failure): from then on from the UART.
        from_uart = Signal()
        with m.If(parser.w_restart):
            m.d.sync += from_uart.eq(1)
        status = Signal(LoadStatus)
        m.d.comb += status.eq(Mux(from_uart, uart_loader.status, loader.status))
        m.d.comb += [
            core.w.payload.eq(Mux(from_uart, uart_loader.w.payload, loader.w.payload)),
            core.w.valid.eq(Mux(from_uart, uart_loader.w.valid, loader.w.valid)),
            loader.w.ready.eq(core.w.ready & ~from_uart),
            uart_loader.w.ready.eq(core.w.ready & from_uart),
        ]
        wiring.connect(m, parser.wb, uart_loader.i)
        w_state = Signal(2)      # registered: the parser decides a cycle later
        m.d.sync += w_state.eq(Mux(status == LoadStatus.OK, W_LOCKED,
                                   Mux(~from_uart & (status == LoadStatus.LOADING),
                                       W_FLASH_BUSY, W_OPEN)))
        m.d.comb += [parser.w_received.eq(uart_loader.received),
                     parser.w_busy.eq(uart_loader.busy), parser.w_state.eq(w_state),
                     reply.weights_status.eq(status)]
        return status

    def _finish(self, m, rx, tx, parser, reply, core, queue, gate, weights_bad):
        """Classes to replies, the tag queue (through the weight gate when there is one), and
        the LEDs."""
        m.submodules.class_skid = skid = SkidBuffer(self.shape.class_bits)
        wiring.connect(m, core.o, skid.i)
        wiring.connect(m, skid.o, reply.classes)
        wiring.connect(m, reply.o, tx.i)
        m.d.comb += [
            queue.w_data.eq(parser.tags.payload), queue.w_en.eq(parser.tags.valid),
            parser.tags.ready.eq(queue.w_rdy),
            self.last_class.eq(reply.last_class),
        ]
        tags = reply.tags
        if self.flash is not None:
            wiring.connect(m, gate.tags_o, reply.tags)
            tags = gate.tags_i
        m.d.comb += [tags.payload.eq(queue.r_data), tags.valid.eq(queue.r_rdy),
                     queue.r_en.eq(tags.ready)]

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
        for led, event, steady in ((self.activity, rx.busy | tx.busy, None),
                                   (self.error, parser.frame_error | rx.frame_error,
                                    weights_bad)):   # steady on while the weights are bad
            hold = Signal(range(ticks + 1))
            with m.If(event):
                m.d.sync += hold.eq(ticks)
            with m.Elif(tick & (hold != 0)):
                m.d.sync += hold.eq(hold - 1)
            m.d.comb += led.eq(hold != 0 if steady is None else (hold != 0) | steady)


# ``ValueError`` above the board's USB-serial limit (the clock's own limit is
# :func:`baud_divisor`'s); one rule with :meth:`boards.targets.Board.check_baud`.
check_board_baud = check_baud


def configure_board_top(top, core, pll, *, baud, timeout_us, reset_delay_us, led_hold_s,
                        rx_fifo_depth, weight_header: bytes | None = None,
                        uart_weights: bool = False) -> None:
    """What every board top derives from its PLL: sets ``top.pll``, ``clock_hz``,
    ``divisor``/``baud`` (the achieved UART rate), ``timeout_cycles`` (frame timeout),
    ``reset_cycles`` (reset held after lock) and ``inner`` (the :class:`UARTInferenceTop`
    around ``core``; with ``weight_header``, the header of the core's weight image, its
    flash loader's timing for this clock: :meth:`~boards.flash_loader.FlashConfig.for_clock`).
    Raises TypeError/ValueError on a bad core or timing."""
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
    flash = None
    if weight_header is not None:
        from .flash_loader import FlashConfig
        flash = FlashConfig.for_clock(weight_header, top.clock_hz)
    top.inner = UARTInferenceTop(core, divisor=top.divisor, timeout=top.timeout_cycles,
                                 led_hold=max(1, round(led_hold_s * top.clock_hz)),
                                 rx_fifo_depth=rx_fifo_depth, flash=flash,
                                 uart_weights=uart_weights)


def connect_uart_pins(m, platform, top) -> None:
    """Wire ``top.rx``/``top.tx`` to the platform's ``uart`` resource 0 through I/O buffers."""
    from amaranth.lib import io

    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
    m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
    m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]


def connect_flash_pins(m, platform, top) -> None:
    """Wire ``top``'s flash pins to the platform's ``spi_flash_1x`` resource 0: CS#, SCK and
    COPI through plain output buffers (they come from registers), CIPO through an input
    register (the one stage ``FlashConfig.cipo_delay`` counts), WP# and HOLD# (when the
    resource has them) held inactive."""
    from amaranth.lib import io

    flash = platform.request("spi_flash_1x", 0, dir="-")
    buffers = {name: io.Buffer("o", getattr(flash, name)) for name in ("cs", "clk", "copi")}
    buffers["cipo"] = io.FFBuffer("i", flash.cipo)
    for name, buffer in buffers.items():
        m.submodules[f"flash_{name}"] = buffer
    # `cs` is active-low on the pin (PinsN): the buffer's 1 selects the flash
    m.d.comb += [buffers["cs"].o.eq(~top.flash_cs_n), buffers["clk"].o.eq(top.flash_sck),
                 buffers["copi"].o.eq(top.flash_copi), top.flash_cipo.eq(buffers["cipo"].i)]
    for name in ("wp", "hold"):    # PinsN: 0 drives the pin high (inactive)
        if hasattr(flash, name):
            m.submodules[f"flash_{name}"] = buf = io.Buffer("o", getattr(flash, name))
            m.d.comb += buf.o.eq(0)
