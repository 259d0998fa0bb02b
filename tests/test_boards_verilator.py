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


def _network_link(model, **options):
    """The board top around the generated network for ``model``, at 4 cycles per bit (12 Mbaud
    at 48 MHz), no receive FIFO."""
    try:
        from hwgen.fold import plan
        from hwgen.gateware.network import Network  # noqa: F401
        from sim.toolchain import find_verilator
        find_verilator()
    except Exception as e:  # noqa: BLE001 - generator or Verilator not usable here
        pytest.skip(f"generator or Verilator unavailable: {e}")
    from boards.host import network_sim_transport
    return network_sim_transport(plan(model, None, 3), divisor=4, clock_hz=48e6, **options)


def test_packed_frames_classify_exactly_end_to_end():
    """A model with binarize_at (a multi-channel conv, so the values go in the core's H, W, C
    order): bit-packed frames at 4 cycles per bit give the reference's classes, values at
    the threshold and either side of it included; the board answers PING with version 2."""
    import numpy as np

    from hwgen.fold import input_order
    from hwgen.layout import in_stream_order
    from hwgen.random_models import calibrate_thresholds, conv, dense, random_images, \
        random_model
    from hwgen.reference import Reference

    rng = np.random.default_rng(31)
    model = random_model(rng, (2, 5, 6), [conv(4, 3, padding=1), dense(9)], classes=5,
                         bits=8, binarize_at=100)
    images = random_images(rng, model.input, 40)
    images[:10] = rng.choice([0, 99, 100, 101, 255], size=images[:10].shape)
    model = calibrate_thresholds(model, images)
    expected = [int(c) for c in Reference(model).predict(images)]
    assert len(set(expected)) > 1
    sent = in_stream_order(images, input_order(model))
    with _network_link(model) as link:
        client = Client(link, packed=True, binarize_at=100, window=4)
        assert client.ping() == P.PROTOCOL_VERSION == 4
        assert client.classify(sent) == expected
        assert client.packed and client.stats.retries == 0 and not client.stats.error_replies
        # and one frame by hand: 60 values in 8 bytes
        frame = P.encode_packed_image(42, sent[0].reshape(-1), 100)
        assert len(frame) == P.REQUEST_OVERHEAD + 8
        link.write(frame)
        assert read_replies(link, 1) == [P.Reply(P.STATUS_OK, 42, expected[0])]


def test_packed_frame_to_a_model_without_binarize_at():
    """A model that does not binarize its input: CLASSIFY_PACKED is answered BAD_COMMAND, the
    byte frame after it is classified as the reference does."""
    import numpy as np

    from hwgen.random_models import dense, random_images, random_model
    from hwgen.reference import Reference

    rng = np.random.default_rng(32)
    model = random_model(rng, (1, 4, 5), [dense(6)], classes=3, bits=4, binarize_at=None)
    images = random_images(rng, model.input, 2)
    expected = [int(c) for c in Reference(model).predict(images)]
    with _network_link(model) as link:
        link.write(P.encode_packed_image(1, images[0].reshape(-1), 8, bits=4))
        assert read_replies(link, 1) == [P.Reply(P.STATUS_BAD_COMMAND, 1, 0)]
        link.idle(2 * link.board_timeout)
        link.write(P.encode_image(2, images[1].reshape(-1), bits=4))
        assert read_replies(link, 1) == [P.Reply(P.STATUS_OK, 2, expected[1])]
