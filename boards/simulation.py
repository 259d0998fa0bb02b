"""Amaranth-simulator helpers: drive and watch UART pins, and a whole simulated board.

:class:`SimBoard` runs a :class:`~boards.top.UARTInferenceTop` in the Amaranth simulator with
a bit-level UART on its pins; ``write`` queues bytes for its ``rx`` pin and ``read`` advances
simulated time until bytes come out of ``tx``. The host client's ``SimTransport`` uses it, so
the same client code runs against the simulated board top and the real board. A top that
loads its core's weights from flash gets a simulated SPI flash (:class:`SPIFlashModel`) on its
flash pins.
"""

from __future__ import annotations

import math
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


class SPIFlashModel:
    """An SPI flash (mode 0) for the Amaranth simulator, cycle-based on the clock: READ
    (``03`` + 24-bit address, then bytes until CS# rises; addresses wrap at 16 MiB) and
    release from deep power-down (``AB``). It starts powered down, as after an iCE40
    configuration that powers the flash down, and takes commands selected (CS# falling)
    ``tres_cycles`` or more after CS# rose at the end of ``AB``; while powered down it ignores
    every other command and its output reads 1. ``image`` lies at ``offset``; every other
    byte reads FF (erased). ``cipo_delay``: register stages between the flash's output and
    the pin the design reads (1: the board's input register); the flash changes its output
    at SCK's falling edge.
    ``commands``: the command bytes received, for tests."""

    SIZE = 1 << 24

    def __init__(self, image: bytes = b"", offset: int = 0x100000, *, tres_cycles: int = 3,
                 cipo_delay: int = 1, asleep: bool = True):
        image = bytes(image)
        if not (0 <= offset and offset + len(image) <= self.SIZE):
            raise ValueError(f"an image of {len(image)} bytes at {offset:#x} does not fit in "
                             f"the 16 MiB flash")
        self.image, self.offset = image, offset
        self.tres_cycles, self.cipo_delay, self.asleep = tres_cycles, cipo_delay, asleep
        self.commands = []

    def byte(self, address: int) -> int:
        k = (address % self.SIZE) - self.offset
        return self.image[k] if 0 <= k < len(self.image) else 0xFF

    def attach(self, sim, sck, cs_n, copi, cipo) -> None:
        """Run the flash on these pins in ``sim`` (a background testbench)."""
        async def flash(ctx):
            await self.run(ctx, sck, cs_n, copi, cipo)
        sim.add_testbench(flash, background=True)

    async def run(self, ctx, sck, cs_n, copi, cipo):
        """The flash on these pins, forever (a background testbench)."""
        pipe = [1] * self.cipo_delay       # register stages, the oldest last
        out = 1
        prev_sck, prev_cs = 0, 1
        state, bits, shift, address, out_bits, out_byte = "idle", 0, 0, 0, 0, 0xFF
        awake = False
        wake_left = None                   # cycles until awake after AB
        ctx.set(cipo, 1)
        while True:
            if prev_cs and ctx.get(cs_n) and wake_left is None and out == 1 \
                    and all(pipe):
                await ctx.changed(cs_n)    # nothing happens until CS# changes
            else:
                await ctx.tick()
            pin = out
            cs, clk, data = ctx.get(cs_n), ctx.get(sck), ctx.get(copi)
            if wake_left is not None:
                wake_left -= 1
                if wake_left <= 0:
                    self.asleep, wake_left = False, None
            if cs and not prev_cs:                         # deselected
                if state == "release":
                    wake_left = self.tres_cycles
                state, out = "idle", 1
            elif not cs and prev_cs:                       # selected: awake by now?
                state, bits, shift = "command", 0, 0
                awake = not self.asleep and wake_left is None
            if not cs:
                if clk and not prev_sck:                   # rising edge: a bit in
                    shift, bits = (shift << 1 | data) & 0xFFFFFFFF, bits + 1
                    if state == "command" and bits == 8:
                        self.commands.append(shift & 0xFF)
                        if shift & 0xFF == 0xAB:
                            state = "release"
                        elif shift & 0xFF == 0x03 and awake:
                            state, bits = "address", 0
                        else:
                            state = "ignore"
                    elif state == "address" and bits == 24:
                        address, state, out_bits = shift & 0xFFFFFF, "data", 0
                elif prev_sck and not clk and state == "data":   # falling edge: a bit out
                    if out_bits == 0:
                        out_byte, address = self.byte(address), address + 1
                    out = out_byte >> (7 - out_bits) & 1
                    out_bits = (out_bits + 1) % 8
            prev_cs, prev_sck = cs, clk
            if pipe:
                pipe = [pin] + pipe[:-1]
                ctx.set(cipo, pipe[-1])
            else:
                ctx.set(cipo, out)


class SimBoard:
    """A simulated board: ``top`` clocked at ``clock_hz``; the host side of the UART runs at
    ``baud`` (default: exactly ``clock_hz / top.divisor``). A top with flash pins gets
    ``flash_image`` at ``top.flash.offset`` in a :class:`SPIFlashModel` (tRES1 of 3 us at
    ``clock_hz``; ``b""``: an erased flash)."""

    def __init__(self, top: UARTInferenceTop, clock_hz: float = 1e6, baud: float | None = None,
                 flash_image: bytes = b""):
        if not isinstance(top, UARTInferenceTop):
            raise TypeError(f"top must be a UARTInferenceTop, not {top!r}")
        self.flash = None
        if top.flash is not None:
            self.flash = SPIFlashModel(flash_image, top.flash.offset,
                                       tres_cycles=math.ceil(3e-6 * clock_hz),
                                       cipo_delay=top.flash.cipo_delay)
        self.top = top
        self.clock_hz = float(clock_hz)
        self.baud = float(baud) if baud is not None else self.clock_hz / top.divisor
        self.bit_time = 1.0 / self.baud
        self.to_board = deque()
        self.from_board = bytearray()
        self.framing_errors = 0
        self.last_class = None   # the board's last_class output, sampled after each reply byte
        self.error_led = 0       # the board's error output, as of the simulated time reached
        self._ticks = 0   # simulated time, in units of one bit time / 4
        self._sim = None   # built on first use

    @property
    def sim(self) -> Simulator:
        if self._sim is None:
            self._sim = Simulator(self.top)
            self._sim.add_clock(1.0 / self.clock_hz)
            self._sim.add_testbench(self._drive, background=True)
            self._sim.add_testbench(self._watch, background=True)
            self._sim.add_testbench(self._watch_error, background=True)
            if self.flash is not None:
                t = self.top
                self.flash.attach(self._sim, t.flash_sck, t.flash_cs_n, t.flash_copi,
                                  t.flash_cipo)
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

    async def _watch_error(self, ctx):
        async for (value,) in ctx.changed(self.top.error):
            self.error_led = value

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
