"""UART receiver/transmitter in the Amaranth simulator, and the baud divisor helper."""

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from boards.simulation import uart_receive_byte, uart_send_byte
from boards.uart import UARTReceiver, UARTTransmitter, baud_divisor

CLOCK = 1e-6  # 1 MHz simulated clock


def run_receiver(divisor, stream_bytes, bit_time, *, glitches=(), ready=True, after=20):
    """Send bytes (or ``("stop0", b)``: a byte with a low stop bit, or ``("break", t)``) to a
    receiver; return (bytes received, frame errors, overruns)."""
    dut = UARTReceiver(divisor)
    got, events = [], {"frame_error": 0, "overrun": 0}
    sim = Simulator(dut)
    sim.add_clock(CLOCK)

    async def drive(ctx):
        ctx.set(dut.rx, 1)
        await ctx.delay(3 * bit_time)
        for glitch in glitches:  # a short low pulse, then idle
            ctx.set(dut.rx, 0)
            await ctx.delay(glitch)
            ctx.set(dut.rx, 1)
            await ctx.delay(2 * bit_time)
        for item in stream_bytes:
            if isinstance(item, tuple) and item[0] == "break":
                ctx.set(dut.rx, 0)
                await ctx.delay(item[1])
                ctx.set(dut.rx, 1)
                await ctx.delay(2 * bit_time)
            elif isinstance(item, tuple):
                ctx.set(dut.rx, 0)
                await ctx.delay(bit_time)
                for k in range(8):
                    ctx.set(dut.rx, (item[1] >> k) & 1)
                    await ctx.delay(bit_time)
                ctx.set(dut.rx, 0)
                await ctx.delay(bit_time)
                ctx.set(dut.rx, 1)
                await ctx.delay(2 * bit_time)
            else:
                await uart_send_byte(ctx, dut.rx, item, bit_time)
        await ctx.delay(after * bit_time)

    async def watch(ctx):
        ctx.set(dut.o.ready, int(ready))
        async for _, _, valid, payload, fe, ov in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.frame_error, dut.overrun):
            if valid and ready:
                got.append(payload)
            events["frame_error"] += fe
            events["overrun"] += ov

    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run()
    return got, events["frame_error"], events["overrun"]


@pytest.mark.parametrize("divisor", [4, 8, 13])
def test_receiver_exact_baud(divisor):
    data = [0x00, 0xFF, 0x55, 0xAA, 0xA5, 0x5A, 0x01, 0x80]
    got, fe, ov = run_receiver(divisor, data, divisor * CLOCK)
    assert (got, fe, ov) == (data, 0, 0)


@pytest.mark.parametrize("error", [-0.04, -0.03, 0.03, 0.04])
def test_receiver_tolerates_baud_error(error):
    """A sender whose bit time is off by up to 4% is still received (16 cycles per bit)."""
    divisor = 16
    data = [0x00, 0xFF, 0x0F, 0xF0, 0x55, 0xAA, 0x80, 0x01, 0x7E]
    got, fe, _ = run_receiver(divisor, data, divisor * CLOCK * (1 + error))
    assert (got, fe) == (data, 0)


def test_receiver_rejects_far_baud_error():
    divisor = 16
    data = [0x00, 0x00, 0x00]  # 10% slow: the stop bit is sampled inside bit 8... not 0x00
    got, fe, _ = run_receiver(divisor, data, divisor * CLOCK * 1.12)
    assert got != data or fe


def test_receiver_ignores_start_glitch():
    divisor = 16
    got, fe, _ = run_receiver(divisor, [0x3C], divisor * CLOCK,
                              glitches=[3 * CLOCK, 6 * CLOCK])
    assert (got, fe) == ([0x3C], 0)


def test_receiver_framing_error_and_break():
    divisor = 8
    bit = divisor * CLOCK
    got, fe, _ = run_receiver(divisor, [0x11, ("stop0", 0x22), ("break", 40 * bit), 0x33], bit)
    assert got == [0x11, 0x33]
    assert fe >= 2


def test_receiver_overrun_keeps_first_byte():
    divisor = 8
    dut_bytes = [0x12, 0x34]
    got, fe, ov = run_receiver(divisor, dut_bytes, divisor * CLOCK, ready=False)
    assert (got, fe, ov) == ([], 0, 1)


def test_transmitter_to_receiver_loopback():
    divisor = 6
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += [rx.rx.eq(tx.tx), rx.o.ready.eq(1)]
    data = list(range(0, 256, 7)) + [0xFF, 0x00]
    got = []
    sim = Simulator(m)
    sim.add_clock(CLOCK)

    async def send(ctx):
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)
        await ctx.tick().repeat(30 * divisor)

    async def watch(ctx):
        async for _, _, valid, payload in ctx.tick().sample(rx.o.valid, rx.o.payload):
            if valid:
                got.append(payload)

    sim.add_testbench(send)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert got == data


def test_transmitter_waveform():
    divisor = 5
    dut = UARTTransmitter(divisor)
    sim = Simulator(dut)
    sim.add_clock(CLOCK)
    got = []

    async def tb(ctx):
        assert ctx.get(dut.tx) == 1
        ctx.set(dut.i.payload, 0xA5)
        ctx.set(dut.i.valid, 1)  # sent over and over; the first one is checked
        got.append(await uart_receive_byte(ctx, dut.tx, divisor * CLOCK))

    sim.add_testbench(tb)
    sim.run()
    assert got == [0xA5]


def test_baud_divisor():
    assert baud_divisor(48e6, 1_000_000) == 48
    assert baud_divisor(12e6, 3_000_000) == 4
    assert baud_divisor(50.25e6, 115200) == 436
    with pytest.raises(ValueError, match="too high"):
        baud_divisor(12e6, 4_000_000)
    with pytest.raises(ValueError, match="off"):
        baud_divisor(10e6, 1_800_000)  # 10/1.8 = 5.56 -> 5 -> 11% off
    with pytest.raises(ValueError):
        baud_divisor(48e6, 0)
    with pytest.raises(TypeError):
        baud_divisor("48e6", 1e6)


def test_bad_divisor():
    with pytest.raises(ValueError):
        UARTReceiver(3)
    with pytest.raises(TypeError):
        UARTTransmitter(8.0)
