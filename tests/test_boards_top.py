"""The board-independent top (UART pins, framer, stand-in core) simulated bit by bit."""

import random

import pytest

from boards import protocol as P
from boards.core import CoreShape, StreamCore
from boards.simulation import SimBoard
from boards.standin import SumCore, predict
from boards.top import UARTInferenceTop

DIVISOR = 8
TIMEOUT = 40 * DIVISOR          # 4 character times
SHAPE = CoreShape(lanes=3, bits=8, beats_per_image=5, class_bits=4, n_values=13)


def make_board(shape=SHAPE, *, stall=True, baud=None, rx_fifo_depth=16):
    core = StreamCore.wrap(SumCore(shape, stall=stall), shape)
    top = UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT, rx_fifo_depth=rx_fifo_depth)
    return SimBoard(top, clock_hz=1e6, baud=baud)


def images(rng, n, shape=SHAPE):
    return [[rng.randrange(1 << shape.bits) for _ in range(shape.n_values)] for _ in range(n)]


def replies(board, n, timeout=None):
    decoder = P.ReplyDecoder()
    got = decoder.feed(board.read(n * P.REPLY_LENGTH, timeout or 20 * board.bit_time * 10))
    return got, decoder.skipped


@pytest.mark.parametrize("rx_fifo_depth", [0, 16])
def test_back_to_back_frames(rx_fifo_depth):
    rng = random.Random(1)
    imgs = images(rng, 4)
    board = make_board(rx_fifo_depth=rx_fifo_depth)
    board.write(b"".join(P.encode_image(10 + k, img) for k, img in enumerate(imgs)))
    got, skipped = replies(board, 4)
    assert got == [P.Reply(P.STATUS_OK, 10 + k, predict(SHAPE, img)) for k, img in enumerate(imgs)]
    assert skipped == 0 and board.framing_errors == 0
    assert board.last_class == predict(SHAPE, imgs[-1])


def test_corrupted_frames_never_hang_the_board():
    """Garbage, a bad checksum, a truncated frame, two overlong frames, a break: every
    frame that got past its sync is answered, and the next valid frame is right."""
    rng = random.Random(2)
    a, b, c, d, e = images(rng, 5)
    bad_crc = bytearray(P.encode_image(2, b))
    bad_crc[-2] ^= 0x40
    overlong_len = P.encode_request(P.CMD_CLASSIFY, 4, bytes(c + [1, 2, 3]))
    overlong_tail = P.encode_image(5, c)[:-2] + bytes([7, 7]) + P.encode_image(5, c)[-2:]

    board = make_board()
    board.write(bytes([0x00, 0xA5, 0x13, 0xFF, 0x5A]) + P.encode_image(1, a))
    board.write(bad_crc + P.encode_image(3, c)[:9])        # truncated: silence follows
    assert replies(board, 3)[0] == [
        P.Reply(P.STATUS_OK, 1, predict(SHAPE, a)),
        P.Reply(P.STATUS_BAD_CHECKSUM, 2, 0),
        P.Reply(P.STATUS_TIMEOUT, 3, 0),
    ]
    board.write(overlong_len)
    got, _ = replies(board, 1)
    assert got == [P.Reply(P.STATUS_BAD_LENGTH, 4, 0)]
    board.idle(2 * TIMEOUT * 1e-6)
    board.write(overlong_tail)
    got, _ = replies(board, 1)
    assert got == [P.Reply(P.STATUS_BAD_CHECKSUM, 5, 0)]
    board.idle(2 * TIMEOUT * 1e-6)
    board.send_break(30 * board.bit_time)
    board.write(P.encode_image(6, d) + P.encode_request(P.CMD_PING, 7) + P.encode_image(8, e))
    got, _ = replies(board, 3)
    assert got == [P.Reply(P.STATUS_OK, 6, predict(SHAPE, d)),
                   P.Reply(P.STATUS_OK, 7, P.PROTOCOL_VERSION),
                   P.Reply(P.STATUS_OK, 8, predict(SHAPE, e))]


@pytest.mark.parametrize("error", [-0.03, 0.03])
def test_host_baud_off_by_3_percent(error):
    rng = random.Random(3)
    imgs = images(rng, 2)
    board = make_board(baud=1e6 / DIVISOR * (1 + error))
    board.write(b"".join(P.encode_image(k, img) for k, img in enumerate(imgs)))
    got, _ = replies(board, 2)
    assert got == [P.Reply(P.STATUS_OK, k, predict(SHAPE, img)) for k, img in enumerate(imgs)]


def test_binary_input_one_lane_per_bit():
    shape = CoreShape(lanes=8, bits=1, beats_per_image=3, class_bits=5, n_values=20)
    rng = random.Random(4)
    imgs = images(rng, 2, shape)
    board = make_board(shape, stall=False)
    board.write(b"".join(P.encode_image(k, img, bits=1) for k, img in enumerate(imgs)))
    got, _ = replies(board, 2)
    assert got == [P.Reply(P.STATUS_OK, k, predict(shape, img)) for k, img in enumerate(imgs)]


def test_top_rejects_bad_arguments():
    inner, stray = SumCore(SHAPE), SumCore(SHAPE)
    core = StreamCore.wrap(inner, SHAPE)
    for obj in (inner, stray, core):   # built only to be rejected: no "never used" warnings
        obj._MustUse__silence = True
    with pytest.raises(TypeError):
        UARTInferenceTop(stray, divisor=8, timeout=10)
    with pytest.raises(ValueError):
        UARTInferenceTop(core, divisor=2, timeout=10)
    with pytest.raises(ValueError):
        UARTInferenceTop(core, divisor=8, timeout=0)
    with pytest.raises(TypeError):
        SimBoard(core)


@pytest.mark.parametrize("depth", [2, 8])
def test_byte_fifo_order_and_backpressure(depth):
    from amaranth.sim import Simulator

    from boards.fifo import ByteFIFO
    dut = ByteFIFO(depth)
    rng = random.Random(depth)
    data = [rng.randrange(256) for _ in range(60)]
    got, max_level = [], [0]
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def source(ctx):
        for byte in data:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(200)

    async def sink(ctx):
        while True:
            ready = rng.random() < 0.25          # slow reader: the FIFO fills up
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload, level = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.level)
            max_level[0] = max(max_level[0], level)
            if valid and ready:
                got.append(payload)

    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run()
    assert got == data
    assert max_level[0] == depth
    with pytest.raises(ValueError, match="power of two"):
        ByteFIFO(6)


@pytest.mark.parametrize("error, depth", [(-0.02, 0), (0.0, 16), (0.02, 0)])
def test_back_to_back_frames_at_4_cycles_per_bit(error, depth):
    """4 cycles per bit (12 Mbaud at 48 MHz), a host whose bit time is 2% short, exact or 2%
    long, no receive FIFO (or one of 16 bytes), a core that stalls: byte frames, bit-packed
    frames and a PING back to back are all answered right, with no error or framing error on
    either side."""
    shape = CoreShape(lanes=3, bits=8, beats_per_image=5, class_bits=4, n_values=13,
                      binarize_at=100)
    core = StreamCore.wrap(SumCore(shape, stall=True), shape)
    top = UARTInferenceTop(core, divisor=4, timeout=4 * 40, rx_fifo_depth=depth)
    board = SimBoard(top, clock_hz=1e6, baud=1e6 / (4 * (1 + error)))
    rng = random.Random(5)
    imgs = images(rng, 6, shape)
    frames, expected = [], []
    for k, img in enumerate(imgs):
        if k % 2:
            frames.append(P.encode_packed_image(k, img, shape.binarize_at))
            expected.append(P.Reply(P.STATUS_OK, k, predict(shape, shape.packed_values(img))))
        else:
            frames.append(P.encode_image(k, img))
            expected.append(P.Reply(P.STATUS_OK, k, predict(shape, img)))
    frames.insert(3, P.encode_request(P.CMD_PING, 99))
    expected.insert(3, P.Reply(P.STATUS_OK, 99, P.PROTOCOL_VERSION))
    board.write(b"".join(frames))
    got, skipped = replies(board, len(expected))
    assert got == expected
    assert skipped == 0 and board.framing_errors == 0
    # the packed images differ from their byte-frame answers (so the test tells them apart)
    assert any(predict(shape, shape.packed_values(img)) != predict(shape, img) for img in imgs)


def test_packed_frames_need_a_binarizing_core():
    """A core without binarize_at answers CLASSIFY_PACKED with BAD_COMMAND; the next byte
    frame is answered normally."""
    rng = random.Random(6)
    a, b = images(rng, 2)
    board = make_board()
    board.write(P.encode_packed_image(1, a, 128))
    got, _ = replies(board, 1)
    assert got == [P.Reply(P.STATUS_BAD_COMMAND, 1, 0)]
    board.idle(2 * TIMEOUT * 1e-6)
    board.write(P.encode_image(2, b))
    got, _ = replies(board, 1)
    assert got == [P.Reply(P.STATUS_OK, 2, predict(SHAPE, b))]
