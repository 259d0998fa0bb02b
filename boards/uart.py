"""8N1 UART receiver and transmitter (Amaranth components, one clock domain).

The bit period is ``divisor`` clock cycles, 4 or more (:func:`baud_divisor` computes it from the
clock and baud rate: 48 MHz and 12 Mbaud give 4). Bytes are moved as ``lib.stream`` streams
with an 8-bit payload.

Receiver: the ``rx`` pin goes through a 2-flip-flop synchronizer; a falling edge starts a byte
and every byte re-synchronizes on its own start edge. Each bit is decided from samples at fixed
phases of a bit clock that starts on that edge (:func:`sample_points`): a majority vote of
three samples where three fit, else one sample (divisors 4 and 6).

* Start-bit validation: the start bit is checked at its middle (phase ``n // 2``, the majority
  of three around it where they fit); if it is not low there, the edge was a glitch and is
  ignored. A low pulse of at most ``n // 2`` cycles (half a bit for an even divisor: 2 cycles
  at divisor 4) never starts a byte.
* Framing error: the stop bit is decided at the data sample point ``c`` (below), early, so
  that a fast sender's next start edge is seen; if it is low there, the byte is dropped,
  ``frame_error`` pulses, and the receiver waits for the line to go high again (so a stuck-low
  line or a break never produces bytes).
* Overrun: the output holds one byte; if a new byte completes while that one is still
  unconsumed, the new byte is dropped and ``overrun`` pulses for one cycle.
* Latency: a byte is valid at ``o`` about 3 cycles after the pin time of its stop-bit sample
  (``9*n + c`` cycles after its start edge).

Where the receiver samples (``n`` = divisor; a sender whose bit time is ``n*(1+e)`` cycles,
``e > 0`` a slow sender; times in cycles from the start bit's falling edge on the pin). The
synchronizer delays the pin by two cycles and the edge is first caught ``delta`` in ``[0, 1]``
cycles after it happened (by the next clock edge); the bit clock starts at phase 1 on the
cycle after ``line`` is first seen low, so the two cycles of latency delay the start and every
later sample alike and cancel: "phase ``p`` of bit ``b``" samples the pin at ``b*n + p + delta``.
Bit ``b`` (0 start, 1..8 data, 9 stop) is on the pin during ``[b*n*(1+e), (b+1)*n*(1+e))``, so
the sample is inside it for every ``delta`` iff ``b*n*e <= p`` and ``p + 1 <= n + (b+1)*n*e``.
Bit 9 is the worst (its start is 9 bit times, its end 10 bit times from the edge): for
``|e| <= E``::

    9*n*E <= p <= n - 1 - 10*n*E

With the design error ``E = 2%`` (:data:`DESIGN_ERROR`) at divisor 4: ``0.72 <= p <= 2.2``, so
only phases 1 and 2 are safe and a majority of three cannot fit. Data and stop bits therefore
use ``c = (n - 1) // 2`` (phase 1 at divisor 4: the earlier of the two middle phases, since a
fast sender's bit 9 ends 10 bit times after the edge and a slow sender's starts only 9 after),
and a majority of ``c - d, c, c + d`` with the spacing ``d`` (``n // 8``, at least 1) reduced
until all three satisfy the inequality; with no ``d >= 1`` left (divisors 4 and 6) the single
sample at ``c`` decides. The start bit has no drift before it, so it is validated at its middle
``n // 2`` (for glitch rejection). Worst case at divisor 4 and +-2%: the stop bit is sampled at
``37 + delta`` in ``[37, 38]``; a 2% slow sender's stop bit spans ``[36.72, 40.8)`` (0.28
cycles of margin), a 2% fast sender's ``[35.28, 39.2)`` (1.2 cycles), and the receiver looks
for the next start edge again from ``38 + delta <= 39`` on, before a fast sender's next start
(39.2). The error tolerated over 10 bits is
``-(n - 1 - c) / (10*n) .. +c / (9*n)`` (:func:`tolerance`; a majority decides right when its
middle sample and the one on the drifting side are): divisor 4: -5% .. +2.78%; 5: -4% ..
+4.4%; 6: -5% .. +3.7%; 8: -5% .. +4.2%; 16: -5% .. +4.9%. (The previous samples at phases
``n//2 - d, n//2, n//2 + d``, stop bit on the first two, gave -2.5% .. +2.78% at divisor 4.)

Transmitter: idle high, 1 start bit, 8 data bits LSB first, 1 stop bit; ``i.ready`` is high
when idle, a byte is taken on ``i.valid & i.ready`` and its start bit appears on ``tx`` on the
next cycle. Back-to-back bytes leave one idle cycle between a stop bit and the next start
bit (``10*n + 1`` cycles per byte: 41 at divisor 4).
"""

from __future__ import annotations

import math
from fractions import Fraction

from amaranth import Module, Signal, Cat, C
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ._checks import checking, integer

MIN_DIVISOR = 4
#: The host/board clock error (relative, either way) every sample point is chosen to survive,
#: all three samples of a majority included, over the 10 bits of a character.
DESIGN_ERROR = Fraction(1, 50)


def baud_divisor(clock_hz, baud, max_error: float = 0.02) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``: ``round(clock_hz / baud)``.
    ``ValueError`` (naming the rates that are allowed) if that is below 4 (the highest rate is
    ``clock_hz / 4``), or if the achieved rate ``clock_hz / divisor`` is more than ``max_error``
    (relative) off ``baud``."""
    for name, value in (("clock frequency", clock_hz), ("baud rate", baud)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {value!r}")
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    mhz = f"{clock_hz / 1e6:g} MHz"
    highest = clock_hz / MIN_DIVISOR
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud rate {baud:.0f} is too high for a {mhz} clock: at most "
                         f"{highest:.0f} ({MIN_DIVISOR} cycles per bit)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > max_error:
        near = sorted({d for d in (math.floor(clock_hz / baud), math.ceil(clock_hz / baud))
                       if d >= MIN_DIVISOR})
        rates = " and ".join(f"{clock_hz / d:.0f} ({d} cycles per bit)" for d in near)
        raise ValueError(f"baud rate {baud:.0f} cannot be made from a {mhz} clock: closest is "
                         f"{clock_hz / divisor:.0f} ({error:.1%} off, more than {max_error:.0%});"
                         f" allowed are {mhz} / N for a whole N >= {MIN_DIVISOR} (within "
                         f"{max_error:.0%}), the nearest {rates}")
    return divisor


def check_divisor(divisor) -> int:
    return integer("divisor (cycles per bit)", divisor, MIN_DIVISOR)


def _majority_points(centre: int, spread: int, low: int, high: int) -> tuple[int, int, int]:
    """``(centre - d, centre, centre + d)`` with ``d <= spread`` as large as keeps all three in
    ``low..high`` (``d = 0``, one sample, when none fits)."""
    d = max(0, min(spread, centre - low, high - centre))
    return (centre - d, centre, centre + d)


def sample_points(divisor: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The receiver's bit-clock phases ``(start, data)``, three each (all equal: one sample):
    ``start`` validates the start bit, ``data`` decides data bits (majority) and the stop bit
    (its middle one). See the module docstring for the analysis."""
    n = check_divisor(divisor)
    spread = max(1, n // 8)
    e = DESIGN_ERROR
    # data and stop bits: 9*n*E <= p and p + 1 <= n - 10*n*E for every sample p
    data = _majority_points((n - 1) // 2, spread, math.ceil(9 * n * e),
                            math.floor(n - 1 - 10 * n * e))
    # the start bit: no drift before it; p + 1 <= n*(1 - E)
    start = _majority_points(n // 2, spread, 0, math.floor(n * (1 - e) - 1))
    return start, data


def tolerance(divisor: int) -> tuple[float, float]:
    """``(fast, slow)``: the sender clock errors the receiver decodes exactly, from
    ``-fast`` to ``+slow`` (relative bit-time error; worst case over the sub-cycle phase of
    every start edge). The middle data sample (the stop bit's) binds: see the module
    docstring."""
    n = check_divisor(divisor)
    start, data = sample_points(n)
    c = data[1]
    fast = min(Fraction(n - 1 - c, 10 * n), Fraction(n - 1 - start[1], n))
    return float(fast), float(Fraction(c, 9 * n))


class UARTReceiver(wiring.Component):
    """8N1 receiver. ``rx``: the pin (asynchronous); ``o``: received bytes (stream, 8 bits);
    ``frame_error`` / ``overrun``: one-cycle pulses (registered); ``busy``: a byte is being
    received. Sample points: :func:`sample_points` (module docstring)."""

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
        start_points, data_points = sample_points(n)

        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        phase = Signal(range(n))
        index = Signal(range(8))
        shift = Signal(8)
        got_byte = Signal()

        # the bit clock: phase counts 0..n-1 within a bit; its comparisons with the sample
        # points are registered along with it (flags valid for the current phase)
        phase_next = Signal(range(n))
        start = Signal()      # comb: a start edge, the bit clock starts at phase 1
        counting = Signal()   # comb: the bit clock runs
        at_wrap = Signal()
        with m.If(start):
            m.d.comb += phase_next.eq(1)
        with m.Elif(at_wrap):
            m.d.comb += phase_next.eq(0)
        with m.Else():
            m.d.comb += phase_next.eq(phase + 1)
        flags = {}

        def at(point):
            if point not in flags:
                flags[point] = Signal(name=f"at_{point}")
            return flags[point]

        for point in start_points + data_points:
            at(point)
        with m.If(start | counting):
            m.d.sync += [phase.eq(phase_next), at_wrap.eq(phase_next == n - 1)]
            m.d.sync += [flag.eq(phase_next == point) for point, flag in flags.items()]

        def voter(name, points):
            """(decide, bit): ``decide`` is high on the last sample point, ``bit`` is then the
            majority of the three samples (or the single sample)."""
            if points[0] == points[2]:
                return at(points[1]), line
            early = Signal(2, name=f"{name}_early")
            with m.If(at(points[0])):
                m.d.sync += early[0].eq(line)
            with m.If(at(points[1])):
                m.d.sync += early[1].eq(line)
            bit = Signal(name=f"{name}_bit")
            m.d.comb += bit.eq((early[0] & early[1]) | (early[0] & line) | (early[1] & line))
            return at(points[2]), bit

        start_decide, start_bit = voter("start", start_points)
        data_decide, data_bit = voter("data", data_points)
        at_stop = at(data_points[1])

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

        with m.FSM(name="uart_rx"):
            with m.State("WAIT-HIGH"):
                with m.If(line):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.comb += start.eq(1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [self.busy.eq(1), counting.eq(1)]
                with m.If(start_decide):
                    with m.If(start_bit):  # not low in its middle: a glitch
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += index.eq(0)
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.busy.eq(1), counting.eq(1)]
                with m.If(data_decide):
                    m.d.sync += [shift.eq(Cat(shift[1:], data_bit)), index.eq(index + 1)]
                    with m.If(index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += [self.busy.eq(1), counting.eq(1)]
                # decided early, on the middle data sample alone, so that a fast sender's
                # next start edge is not missed
                with m.If(at_stop):
                    with m.If(line):
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
