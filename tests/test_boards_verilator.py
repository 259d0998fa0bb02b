"""The whole board top (UART pins in and out) compiled with Verilator: real-size frames,
corrupted frames and back-to-back frames, through the same host client as a real board.

One Verilator build (~25 s, then cached by content) serves every test here."""

import random

import pytest

from boards import protocol as P
from boards.core import CoreShape, StreamCore
from boards.host import Client
from boards.standin import SumCore, predict
from boards.top import UARTInferenceTop

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim

SHAPE = CoreShape(lanes=4, bits=8, beats_per_image=196, class_bits=4, n_values=784)
DIVISOR = 8
TIMEOUT = 40 * DIVISOR


@pytest.fixture(scope="module")
def board():
    try:
        from sim.toolchain import find_verilator
        find_verilator()
    except Exception as e:  # noqa: BLE001 - any reason Verilator is unusable here
        pytest.skip(f"Verilator unavailable: {e}")
    from boards.verilator_board import VerilatorTransport
    core = StreamCore.wrap(SumCore(SHAPE, stall=True), SHAPE)
    top = UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT, rx_fifo_depth=64)
    link = VerilatorTransport(top)   # cached build under $SBN_CACHE_DIR or ~/.cache
    yield link
    link.close()


def images(rng, n):
    return [[rng.randrange(256) for _ in range(SHAPE.n_values)] for _ in range(n)]


def read_replies(link, n):
    decoder = P.ReplyDecoder()
    return decoder.feed(link.read(n * P.REPLY_LENGTH, 40 * DIVISOR * 10 * 1e-6))


def test_back_to_back_through_client(board):
    rng = random.Random(1)
    imgs = images(rng, 12)
    client = Client(board, window=3)
    assert client.classify(imgs) == [predict(SHAPE, img) for img in imgs]
    assert client.stats.retries == 0


def test_corrupted_frames(board):
    rng = random.Random(2)
    a, b, c, d = images(rng, 4)
    bad_crc = bytearray(P.encode_image(2, b))
    bad_crc[100] ^= 0x01
    board.write(bytes([0x5A, 0xA5, 0x00, 0xA5, 0x11]) + P.encode_image(1, a) + bad_crc)
    board.write(P.encode_image(3, c)[:300])          # truncated, then silence
    assert read_replies(board, 3) == [P.Reply(P.STATUS_OK, 1, predict(SHAPE, a)),
                                      P.Reply(P.STATUS_BAD_CHECKSUM, 2, 0),
                                      P.Reply(P.STATUS_TIMEOUT, 3, 0)]
    board.write(P.encode_request(P.CMD_CLASSIFY, 4, bytes(d + [0])))   # overlong: LEN
    assert read_replies(board, 1) == [P.Reply(P.STATUS_BAD_LENGTH, 4, 0)]
    board.idle(2 * TIMEOUT * 1e-6)
    frame = P.encode_image(5, d)
    board.write(frame[:-2] + b"\x01\x02\x03" + frame[-2:])                # overlong: extra bytes
    assert read_replies(board, 1) == [P.Reply(P.STATUS_BAD_CHECKSUM, 5, 0)]
    board.idle(2 * TIMEOUT * 1e-6)
    board.send_break(50 * DIVISOR * 1e-6)
    board.write(P.encode_image(6, d) + P.encode_image(7, a))
    assert read_replies(board, 2) == [P.Reply(P.STATUS_OK, 6, predict(SHAPE, d)),
                                      P.Reply(P.STATUS_OK, 7, predict(SHAPE, a))]


def test_client_recovers_from_damage(board):
    rng = random.Random(3)
    imgs = images(rng, 6)

    class Damaging:
        def __init__(self, inner):
            self.inner, self.count = inner, 0
            self.baud, self.board_timeout, self.latency = inner.baud, inner.board_timeout, 0.0

        def write(self, data):
            self.count += 1
            if self.count == 2:
                data = data[:50]                       # truncated
            elif self.count == 4:
                data = data[:20] + bytes([data[20] ^ 0xFF]) + data[21:]   # corrupted
            self.inner.write(data)

        def read(self, n, timeout):
            return self.inner.read(n, timeout)

        def idle(self, seconds):
            self.inner.idle(seconds)

    client = Client(Damaging(board))
    assert client.classify(imgs) == [predict(SHAPE, img) for img in imgs]
    assert client.stats.retries >= 2
