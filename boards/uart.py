"""8N1 UART receiver and transmitter (Amaranth components, one clock domain).

The bit period is ``divisor`` clock cycles (:func:`baud_divisor` computes it from the clock and
baud rate). Bytes are moved as ``lib.stream`` streams with an 8-bit payload.

Receiver: the ``rx`` pin goes through a 2-flip-flop synchronizer; a falling edge starts a byte;
each bit (start bit included) is decided by a majority vote of three samples around its middle.
A start bit that is not low at its middle is a glitch and is ignored (start-bit validation). A
stop bit that is low is a framing error: the byte is dropped, ``frame_error`` pulses, and the
receiver waits for the line to go high again (so a stuck-low line or a break never produces
bytes). Every byte re-synchronizes on its start edge, data bits are decided around their
middle and the stop bit at its middle (both samples up to there high), so a sender whose baud
rate differs by up to about +-4% (with 16 or more cycles per bit) is received correctly.
The output holds one byte; if a new byte completes while that one is still unconsumed, the new
byte is dropped and ``overrun`` pulses for one cycle.
Latency: a byte is valid about 3 cycles after the middle of its stop bit.

Transmitter: idle high, 1 start bit, 8 data bits LSB first, 1 stop bit; ``i.ready`` is high
when idle, a byte is taken on ``i.valid & i.ready`` and its start bit appears on ``tx`` on the
next cycle. Back-to-back bytes leave one idle cycle between a stop bit and the next start
bit.
"""

from __future__ import annotations

from amaranth import Module, Signal, Cat, C
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ._checks import checking, integer

MIN_DIVISOR = 4


def baud_divisor(clk_hz, baud, max_error: float = 0.02) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; ``ValueError`` if the rounding error of
    the achieved rate exceeds ``max_error`` (relative) or the divisor is below 4."""
    for name, value in (("clock frequency", clk_hz), ("baud rate", baud)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {value!r}")
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value!r}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud rate {baud} is too high for a {clk_hz / 1e6:g} MHz clock "
                         f"(needs at least {MIN_DIVISOR} cycles per bit)")
    error = abs(clk_hz / divisor - baud) / baud
    if error > max_error:
        raise ValueError(f"baud rate {baud} cannot be made from a {clk_hz / 1e6:g} MHz clock: "
                         f"closest is {clk_hz / divisor:.0f} ({error:.1%} off)")
    return divisor


def check_divisor(divisor) -> int:
    return integer("divisor (cycles per bit)", divisor, MIN_DIVISOR)


class UARTReceiver(wiring.Component):
    """8N1 receiver. ``rx``: the pin (asynchronous); ``o``: received bytes (stream, 8 bits);
    ``frame_error`` / ``overrun``: one-cycle pulses (registered); ``busy``: a byte is being
    received."""

    def __init__(self, divisor: int):
        with checking(self):
            self.divisor = check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.divisor
        mid = n // 2
        d = max(1, n // 8)
        samples = (mid - d, mid, mid + d)

        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        phase = Signal(range(n))
        early = Signal(2)   # the samples taken before the middle one and the middle one
        index = Signal(range(8))
        shift = Signal(8)
        bit = Signal()
        decide = Signal()
        got_byte = Signal()

        # the bit clock: phase counts 0..n-1 within a bit; its comparisons with the sample
        # points are registered along with it (flags valid for the current phase)
        at_s0, at_s1, at_s2, at_wrap = (Signal(name=f"at_{k}") for k in ("s0", "s1", "s2", "wrap"))
        phase_next = Signal(range(n))
        start = Signal()      # comb: a start edge, the bit clock starts at phase 1
        counting = Signal()   # comb: the bit clock runs
        with m.If(start):
            m.d.comb += phase_next.eq(1)
        with m.Elif(at_wrap):
            m.d.comb += phase_next.eq(0)
        with m.Else():
            m.d.comb += phase_next.eq(phase + 1)
        with m.If(start | counting):
            m.d.sync += [phase.eq(phase_next), at_s0.eq(phase_next == samples[0]),
                         at_s1.eq(phase_next == samples[1]), at_s2.eq(phase_next == samples[2]),
                         at_wrap.eq(phase_next == n - 1)]

        m.d.comb += [
            bit.eq((early[0] & early[1]) | (early[0] & line) | (early[1] & line)),  # majority
            decide.eq(at_s2),
        ]
        # pulses are registered (one cycle late) to keep the pin out of long paths
        frame_error = Signal()
        overrun = Signal()
        m.d.sync += [self.frame_error.eq(frame_error), self.overrun.eq(overrun)]

        # output holding register
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(got_byte):
            with m.If(self.o.valid & ~self.o.ready):
                m.d.comb += overrun.eq(1)
            with m.Else():
                m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]

        def count():
            m.d.comb += counting.eq(1)
            with m.If(at_s0):
                m.d.sync += early[0].eq(line)
            with m.If(at_s1):
                m.d.sync += early[1].eq(line)

        with m.FSM(name="uart_rx"):
            with m.State("WAIT-HIGH"):
                with m.If(line):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.comb += start.eq(1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                count()
                with m.If(decide):
                    with m.If(bit):  # not low in its middle: a glitch
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += index.eq(0)
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                count()
                with m.If(decide):
                    m.d.sync += [shift.eq(Cat(shift[1:], bit)), index.eq(index + 1)]
                    with m.If(index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                count()
                # decided early, at the middle (both samples so far high), so that a fast
                # sender's next start bit is not missed
                with m.If(at_s1):
                    with m.If(early[0] & line):
                        m.d.comb += got_byte.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += frame_error.eq(1)
                        m.next = "WAIT-HIGH"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter. ``i``: bytes to send (stream, 8 bits); ``tx``: the pin (registered,
    idle high); ``busy``: a byte is being sent."""

    def __init__(self, divisor: int):
        with checking(self):
            self.divisor = check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.divisor
        timer = Signal(range(n))
        shift = Signal(10, init=1)  # shifted out LSB first; bit 0 drives tx
        left = Signal(range(11))

        m.d.comb += [
            self.tx.eq(shift[0]),
            self.busy.eq(left != 0),
            self.i.ready.eq(left == 0),
        ]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [
                    shift.eq(Cat(C(0, 1), self.i.payload, C(1, 1))),
                    left.eq(10),
                    timer.eq(n - 1),
                ]
        with m.Else():
            with m.If(timer == 0):
                m.d.sync += [timer.eq(n - 1), left.eq(left - 1),
                             shift.eq(Cat(shift[1:], C(1, 1)))]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
