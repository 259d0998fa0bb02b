"""Amaranth-simulator helpers: drive and watch UART pins, and a whole simulated board.

:class:`SimBoard` runs a :class:`~boards.top.UARTInferenceTop` in the Amaranth simulator with
a bit-level UART on its pins; ``write`` queues bytes for its ``rx`` pin and ``read`` advances
simulated time until bytes come out of ``tx``. The host client's ``SimTransport`` uses it, so
the same client code runs against the simulated board top and the real board.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from .top import UARTInferenceTop


async def uart_send_byte(ctx, pin, byte: int, bit_time: float, stop_bits: float = 1.0):
    """Drive one 8N1 character on ``pin`` (start, 8 data bits LSB first, stop)."""
    ctx.set(pin, 0)
    await ctx.delay(bit_time)
    for k in range(8):
        ctx.set(pin, (byte >> k) & 1)
        await ctx.delay(bit_time)
    ctx.set(pin, 1)
    await ctx.delay(bit_time * stop_bits)


async def uart_receive_byte(ctx, pin, bit_time: float) -> int | None:
    """Wait for a start bit on ``pin`` and sample one character in the middle of its bits;
    ``None`` on a framing error (low stop bit)."""
    await ctx.negedge(pin)
    await ctx.delay(bit_time * 1.5)
    value = 0
    for k in range(8):
        value |= ctx.get(pin) << k
        await ctx.delay(bit_time)
    return value if ctx.get(pin) else None


class SimBoard:
    """A simulated board: ``top`` clocked at ``clock_hz``; the host side of the UART runs at
    ``baud`` (default: exactly ``clock_hz / top.divisor``)."""

    def __init__(self, top: UARTInferenceTop, clock_hz: float = 1e6, baud: float | None = None):
        if not isinstance(top, UARTInferenceTop):
            raise TypeError(f"top must be a UARTInferenceTop, not {top!r}")
        self.top = top
        self.clock_hz = float(clock_hz)
        self.baud = float(baud) if baud is not None else self.clock_hz / top.divisor
        self.bit_time = 1.0 / self.baud
        self.to_board = deque()
        self.from_board = bytearray()
        self.framing_errors = 0
        self.last_class = None   # the board's last_class output, sampled after each reply byte
        self._ticks = 0   # simulated time, in units of one bit time / 4
        self._sim = None   # built on first use

    @property
    def sim(self) -> Simulator:
        if self._sim is None:
            self._sim = Simulator(self.top)
            self._sim.add_clock(1.0 / self.clock_hz)
            self._sim.add_testbench(self._drive, background=True)
            self._sim.add_testbench(self._watch, background=True)
        return self._sim

    async def _drive(self, ctx):
        ctx.set(self.top.rx, 1)
        while True:
            if not self.to_board:
                await ctx.delay(self.bit_time)
                continue
            item = self.to_board.popleft()
            if isinstance(item, tuple):      # ("low", seconds): hold the line low (a break)
                ctx.set(self.top.rx, 0)
                await ctx.delay(item[1])
                ctx.set(self.top.rx, 1)
                await ctx.delay(self.bit_time)
            else:
                await uart_send_byte(ctx, self.top.rx, item, self.bit_time)

    async def _watch(self, ctx):
        while True:
            byte = await uart_receive_byte(ctx, self.top.tx, self.bit_time)
            if byte is None:
                self.framing_errors += 1
            else:
                self.from_board.append(byte)
            self.last_class = ctx.get(self.top.last_class)

    @property
    def now(self) -> float:
        """Simulated seconds so far."""
        return self._ticks * self.bit_time / 4

    def write(self, data: bytes):
        self.to_board.extend(bytes(data))

    def send_break(self, seconds: float):
        """Hold the board's rx line low for ``seconds`` (after the bytes already queued)."""
        self.to_board.append(("low", float(seconds)))

    def idle(self, seconds: float):
        """Advance simulated time by ``seconds`` (the host sends nothing new meanwhile)."""
        end = self._ticks + max(1, round(seconds / self.bit_time * 4))
        while self._ticks < end:
            self._step()

    def _step(self):
        self._ticks += 1
        self.sim.run_until(self.now)

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes from the board, waiting at most ``timeout`` simulated seconds after
        the host's queued bytes have been sent."""
        deadline = None
        while len(self.from_board) < n:
            if self.to_board:
                deadline = None
            elif deadline is None:
                deadline = self._ticks + max(1, round(timeout / self.bit_time * 4))
            elif self._ticks >= deadline:
                break
            self._step()
        out = bytes(self.from_board[:n])
        del self.from_board[:n]
        return out
