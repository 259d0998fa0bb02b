"""Host client against the simulated board (the same code that drives a real board)."""

import random

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from boards import protocol as P
from boards.core import CoreShape, StreamCore
from boards.host import BoardError, Client, SerialTransport, SimTransport, classify
from boards.standin import SumCore, predict

SHAPE = CoreShape(lanes=4, bits=8, beats_per_image=3, class_bits=4, n_values=10)


def sim_transport(shape=SHAPE, stall=True):
    return SimTransport.for_core(StreamCore.wrap(SumCore(shape, stall=stall), shape))


class Lossy:
    """Wraps a transport and damages chosen frames on their way to the board."""

    def __init__(self, inner, damage):
        self.inner, self.damage, self.count = inner, damage, 0
        self.baud, self.board_timeout, self.latency = inner.baud, inner.board_timeout, 0.0

    def write(self, data):
        self.count += 1
        self.inner.write(self.damage(self.count, bytes(data)))

    def read(self, n, timeout):
        return self.inner.read(n, timeout)

    def idle(self, seconds):
        self.inner.idle(seconds)

    def close(self):
        self.inner.close()


def test_classify_numpy_images():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(6, 1, 2, 5), dtype=np.uint8)   # C, H, W per image
    with sim_transport() as link:
        got = classify(link, imgs)
    assert got == [predict(SHAPE, img.reshape(-1)) for img in imgs]


def test_ping():
    assert Client(sim_transport()).ping() == P.PROTOCOL_VERSION


@pytest.mark.parametrize("kind", ["flip", "truncate", "garbage", "drop"])
def test_client_recovers_from_damaged_frames(kind):
    rng = random.Random(2)
    imgs = [[rng.randrange(256) for _ in range(SHAPE.n_values)] for _ in range(5)]

    def damage(count, frame):
        if count not in (2, 4):
            return frame
        if kind == "flip":
            return frame[:7] + bytes([frame[7] ^ 0x10]) + frame[8:]
        if kind == "truncate":
            return frame[:9]
        if kind == "garbage":
            return bytes([0xA5, 0x5A, 0x01]) + frame
        return b""

    client = Client(Lossy(sim_transport(), damage), window=2)
    assert client.classify(imgs) == [predict(SHAPE, img) for img in imgs]
    assert client.stats.retries >= 1


def test_model_mismatch_is_an_error():
    with pytest.raises(BoardError, match="values per image"):
        classify(sim_transport(), [[1] * (SHAPE.n_values + 1)])


def test_bad_pixels_are_refused_before_sending():
    link = sim_transport()
    with pytest.raises(ValueError, match="outside"):
        classify(link, [[256] + [0] * (SHAPE.n_values - 1)])
    with pytest.raises(ValueError, match="outside"):
        classify(link, [[2] + [0] * (SHAPE.n_values - 1)], bits=1)
    assert link.board.to_board == type(link.board.to_board)()   # nothing was sent
    assert Client(link).ping() == P.PROTOCOL_VERSION


def test_dead_link_gives_up():
    client = Client(Lossy(sim_transport(), lambda count, frame: b""), retries=1)
    with pytest.raises(BoardError, match="retries"):
        client.classify([[0] * SHAPE.n_values])


def test_serial_transport_loopback():
    pytest.importorskip("serial")
    with SerialTransport("loop://", baud=115200) as link:
        link.write(b"\xa5\x5a")
        assert link.read(2, 0.5) == b"\xa5\x5a"


def test_serial_transport_bad_port():
    pytest.importorskip("serial")
    with pytest.raises(BoardError, match="cannot open"):
        SerialTransport("/dev/does-not-exist-sbn")


def test_reply_decoder_resyncs():
    good = P.encode_reply(P.STATUS_OK, 3, 7)
    bad = bytearray(P.encode_reply(P.STATUS_OK, 4, 1))
    bad[-1] ^= 1
    decoder = P.ReplyDecoder()
    stream = b"\x00\xa5" + bytes(bad) + good[:3]
    assert decoder.feed(stream) == []
    assert decoder.feed(good[3:]) == [P.Reply(P.STATUS_OK, 3, 7)]
    assert decoder.skipped == 2 + len(bad)


def test_protocol_encoding():
    assert P.crc16(b"123456789") == 0x29B1
    frame = P.encode_request(P.CMD_CLASSIFY, 9, b"\x01\x02")
    assert frame[:6] == bytes([0xA5, 0x5A, 1, 9, 0, 2]) and len(frame) == 10
    assert int.from_bytes(frame[-2:], "big") == P.crc16(frame[2:-2])
    with pytest.raises(ValueError):
        P.encode_request(0x100, 0)
    with pytest.raises(ValueError):
        P.encode_request(1, 0, bytes(70000))


PACKED_SHAPE = CoreShape(lanes=4, bits=8, beats_per_image=3, class_bits=4, n_values=10,
                         binarize_at=128)


def test_packed_client_sends_one_bit_per_value():
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(5, 10))
    link = sim_transport(PACKED_SHAPE)
    sent = []
    link_write = link.write
    link.write = lambda data: (sent.append(bytes(data)), link_write(data))
    client = Client(link, packed=True, binarize_at=128, window=3)
    got = client.classify(imgs)
    assert got == [predict(PACKED_SHAPE, PACKED_SHAPE.packed_values(img)) for img in imgs]
    assert client.packed and not client.stats.packed_refused
    assert [len(f) for f in sent] == [P.REQUEST_OVERHEAD + 2] * 5
    assert {f[2] for f in sent} == {P.CMD_CLASSIFY_PACKED}


def test_packed_client_falls_back_to_byte_frames():
    """A board that does not take packed frames answers BAD_COMMAND: the client resends those
    images as byte frames and keeps to them."""
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, size=(4, 10))
    client = Client(sim_transport(), packed=True, binarize_at=128, window=2)
    assert client.classify(imgs) == [predict(SHAPE, img) for img in imgs]
    assert not client.packed and client.stats.packed_refused
    assert client.stats.error_replies == {"bad command": 2}
    assert client.stats.retries == 0


def test_client_bad_arguments():
    link = object()   # never used: the arguments are refused first
    with pytest.raises(ValueError, match="binarize_at"):
        Client(link, packed=True)
    with pytest.raises(ValueError, match="binarize_at"):
        Client(link, binarize_at=257)
    with pytest.raises(TypeError):
        Client(link, packed=1)
    with pytest.raises(ValueError, match="bits"):
        Client(link, bits=9)


def test_packed_encoding():
    values = [0, 200, 128, 127, 255, 1, 1, 1, 130]
    frame = P.encode_packed_image(7, values, 128)
    assert frame[:6] == bytes([0xA5, 0x5A, P.CMD_CLASSIFY_PACKED, 7, 0, 2])
    assert frame[6:8] == bytes([0b00010110, 0b1])
    assert int.from_bytes(frame[-2:], "big") == P.crc16(frame[2:-2])
    assert P.packed_length(784) == 98 and P.packed_length(8) == 1 and P.packed_length(9) == 2
    with pytest.raises(ValueError, match="outside"):
        P.encode_packed_image(1, [256], 128)
    with pytest.raises(ValueError, match="binarize_at"):
        P.pack_bits([1, 2], 300)
    with pytest.raises(ValueError, match="binarize_at"):
        P.pack_bits([1], 3, bits=1)


class PausingCore(wiring.Component):
    """:class:`SumCore` that computes for ``pause`` cycles after each image: its input is not
    ready and its class not valid until then (a core slower than back-to-back frames)."""

    def __init__(self, shape, pause):
        self.shape, self.pause = shape, pause
        super().__init__({"i": In(stream.Signature(shape.beat_bits)),
                          "o": Out(stream.Signature(shape.class_bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = SumCore(self.shape)
        wait = Signal(range(self.pause + 1))
        beat = Signal(range(self.shape.beats_per_image))
        m.d.comb += [inner.i.payload.eq(self.i.payload),
                     inner.i.valid.eq(self.i.valid & ~wait.any()),
                     self.i.ready.eq(inner.i.ready & ~wait.any())]
        m.d.comb += [self.o.payload.eq(inner.o.payload),
                     self.o.valid.eq(inner.o.valid & ~wait.any()),
                     inner.o.ready.eq(self.o.ready & ~wait.any())]
        with m.If(wait.any()):
            m.d.sync += wait.eq(wait - 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == self.shape.beats_per_image - 1):
                m.d.sync += [beat.eq(0), wait.eq(self.pause)]
        return m


def test_overrun_makes_the_client_send_one_frame_at_a_time():
    """Back-to-back frames into a core that pauses 4000 cycles per image (a frame is 1440):
    the receiver overruns, the client gets an OVERRUN reply, drops to one frame in flight and
    every class still comes back right."""
    rng = random.Random(6)
    imgs = [[rng.randrange(256) for _ in range(SHAPE.n_values)] for _ in range(5)]
    core = StreamCore.wrap(PausingCore(SHAPE, 4000), SHAPE)
    client = Client(SimTransport.for_core(core, compute_cycles=4000), window=3)
    assert client.classify(imgs) == [predict(SHAPE, img) for img in imgs]
    assert client.stats.error_replies.get("receiver overrun", 0) >= 1
    assert client.window == 1


class Chattering:
    """A peer that answers every read with a valid reply of one stale sequence number."""

    baud, board_timeout, latency = 3_000_000, 0.0, 0.0

    def __init__(self):
        self.reads = 0

    def write(self, data):
        pass

    def read(self, n, timeout):
        self.reads += 1
        return P.encode_reply(P.STATUS_OK, 0xEE, 1)

    def idle(self, seconds):
        pass

    def close(self):
        pass


def test_a_peer_repeating_a_stale_sequence_number_is_given_up_on():
    """Round 34: replies that match no frame in flight were skipped for ever (a fake board
    repeating seq 0xEE hung `run --port`); after a few such batches they count as silence,
    and the retries run out."""
    from boards.host import MAX_STALE_BATCHES

    link = Chattering()
    with pytest.raises(BoardError, match="no valid answer after 2 retries"):
        Client(link, retries=2).classify([[0] * SHAPE.n_values])
    assert link.reads == 3 * MAX_STALE_BATCHES


def test_a_port_nobody_reads_is_an_error_not_a_hang():
    """Round 34: a write that the other end never drained (loop://'s queue, a pty nobody
    reads) blocked for ever; the port has a write timeout."""
    pytest.importorskip("serial")
    with SerialTransport("loop://", baud=12_000_000) as link:
        with pytest.raises(BoardError, match="the port took no data for 2 s"):
            link.write(bytes(20000))


def test_a_port_whose_other_end_goes_away_is_a_board_error():
    """Round 35: an unplugged adapter (a pty whose other side closed, a reset socket) was a
    traceback: pyserial's SerialException from a read or write, termios.error from the
    flush after a write."""
    serial = pytest.importorskip("serial")
    import termios

    class Gone:
        timeout = 0.1

        def read(self, n):
            raise serial.SerialException("device reports readiness to read but returned no "
                                         "data (device disconnected?)")

        def write(self, data):
            return len(data)

        def flush(self):
            raise termios.error(5, "Input/output error")

        def close(self):
            pass

    with SerialTransport("loop://", baud=12_000_000) as link:
        link._serial.close()
        link._serial = Gone()
        with pytest.raises(BoardError, match="failed while reading .device reports"):
            link.read(7, 0.1)
        with pytest.raises(BoardError, match="failed while writing .* unplugged"):
            link.write(b"\xa5")
