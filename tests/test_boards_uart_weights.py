"""Weights over the UART (protocol 4, LOAD_WEIGHTS): the byte loader, the frame parser's
offset rules and refusals, and a board whose flash holds no good image loading its weights
from the host, in the Amaranth simulator and Verilated."""

import random

import pytest
from amaranth.sim import Simulator

from boards import protocol as P
from boards.core import CoreShape, StreamCore
from boards.flash_loader import FlashConfig, LoadStatus
from boards.host import BoardError, Client, SimTransport, WeightsError, WeightsUploadError
from boards.standin import SumCore, predict
from boards.uart_weights import UartWeightLoader, image_bytes
from hwgen.weight_image import HEADER_BYTES, encode, header

IDENT = b"model-01"


def words_for(n, seed=1):
    rng = random.Random(seed)
    return [rng.randrange(1 << 16) for _ in range(n)]


# --- the loader on its own ------------------------------------------------------------------


def run_uart_loader(data: bytes, n_words: int, *, gap=0, ready=lambda cycle: True,
                    ident=IDENT):
    """(status, words delivered, bytes received, busy after the last byte) for a loader fed
    ``data``, a byte every ``gap + 1`` cycles at most."""
    dut = UartWeightLoader(header(n_words, ident), n_words)
    got, result = [], {}

    async def bench(ctx):
        cycle = 0
        for value in data:
            for _ in range(gap):
                ctx.set(dut.w.ready, ready(cycle))
                _, _, valid, taken, word = await ctx.tick().sample(dut.w.valid, dut.w.ready,
                                                                   dut.w.payload)
                if valid and taken:
                    got.append(word)
                cycle += 1
            ctx.set(dut.i.payload, value)
            ctx.set(dut.i.valid, 1)
            while True:
                ctx.set(dut.w.ready, ready(cycle))
                _, _, in_ready, valid, taken, word = await ctx.tick().sample(
                    dut.i.ready, dut.w.valid, dut.w.ready, dut.w.payload)
                cycle += 1
                if valid and taken:
                    got.append(word)
                if in_ready:
                    break
            ctx.set(dut.i.valid, 0)
        for _ in range(40):
            ctx.set(dut.w.ready, 1)
            _, _, valid, taken, word = await ctx.tick().sample(dut.w.valid, dut.w.ready,
                                                               dut.w.payload)
            if valid and taken:
                got.append(word)
        result["status"] = ctx.get(dut.status)
        result["received"] = ctx.get(dut.received)
        result["busy"] = ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result["status"], got, result["received"], result["busy"]


@pytest.mark.parametrize("gap", [0, 3, 39])
def test_loader_good_image(gap):
    words = words_for(23)
    image = encode(words, IDENT)
    status, got, received, busy = run_uart_loader(image, 23, gap=gap)
    assert (status, got, received, busy) == (LoadStatus.OK, words, len(image), 0)


def test_loader_waits_for_a_slow_core():
    words = words_for(9)
    status, got, _, _ = run_uart_loader(encode(words, IDENT), 9,
                                        ready=lambda cycle: cycle % 7 == 0)
    assert (status, got) == (LoadStatus.OK, words)


@pytest.mark.parametrize("change, verdict, delivered", [
    (lambda b: b"\xff" * len(b), LoadStatus.NO_IMAGE, 0),
    (lambda b: b[:2] + b"X" + b[3:], LoadStatus.NO_IMAGE, 0),
    (lambda b: encode(words_for(15), b"model-02"), LoadStatus.WRONG_MODEL, 0),
    (lambda b: b[:HEADER_BYTES + 7] + bytes([b[HEADER_BYTES + 7] ^ 0x10]) + b[HEADER_BYTES + 8:],
     LoadStatus.BAD_CRC, 15),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), LoadStatus.BAD_CRC, 15),
])
def test_loader_verdicts(change, verdict, delivered):
    image = change(encode(words_for(15), IDENT))
    status, got, received, _ = run_uart_loader(image, 15)
    assert status == verdict and len(got) == delivered
    assert received == len(image)   # bytes after a verdict are taken and dropped


def test_loader_arguments():
    with pytest.raises(TypeError, match="header must be bytes"):
        UartWeightLoader("SBNW", 4)
    with pytest.raises(ValueError, match="words"):
        UartWeightLoader(b"SBNW", 0)
    assert image_bytes(header(10, IDENT), 10) == HEADER_BYTES + 20 + 4


# --- the board top --------------------------------------------------------------------------

DIVISOR = 8


def board(image, *, n_words=40, binarize_at=None, backend="amaranth", uart_weights=True):
    shape = CoreShape(lanes=3, bits=8, beats_per_image=5, class_bits=4, n_values=13,
                      binarize_at=binarize_at, weight_words=n_words)
    core = StreamCore.wrap(SumCore(shape, stall=True), shape)
    flash = FlashConfig.for_clock(header(n_words, IDENT), 1e6)
    if backend == "verilator":
        from boards.verilator_board import VerilatorTransport

        from .test_boards_flash import verilator_or_skip
        verilator_or_skip()
        return shape, VerilatorTransport.for_core(core, divisor=DIVISOR, flash=flash,
                                                  flash_image=image, rx_fifo_depth=16,
                                                  uart_weights=uart_weights)
    return shape, SimTransport.for_core(core, divisor=DIVISOR, flash=flash,
                                        flash_image=image, rx_fifo_depth=16,
                                        uart_weights=uart_weights)


def images_for(shape, n, seed=5):
    rng = random.Random(seed)
    return [[rng.randrange(256) for _ in range(shape.n_values)] for _ in range(n)]


def exchange(link, frame: bytes) -> P.Reply:
    link.write(frame)
    replies = P.ReplyDecoder().feed(link.read(P.REPLY_LENGTH, 0.05))
    assert len(replies) == 1, replies
    return replies[0]


def test_erased_flash_then_weights_over_the_uart():
    """No image in flash: images get NO_WEIGHTS; the host's upload (in chunks, the last one
    answered with the OK verdict) lets them through, with the uploaded words' digest."""
    words = words_for(40, seed=3)
    shape, link = board(b"")
    link.idle(2e-3)
    client = Client(link, loading_poll=0.001)
    assert client.ping() == P.PROTOCOL_VERSION == 4
    imgs = images_for(shape, 4)
    with pytest.raises(WeightsError) as err:
        client.classify(imgs[:1])
    assert err.value.status == P.STATUS_NO_WEIGHTS
    assert link.board.error_led == 1
    upload = client.load_weights(encode(words, IDENT), chunk=17)
    assert upload.loaded and upload.restarts == 0
    assert upload.frames == -(-len(encode(words, IDENT)) // 17)
    assert client.classify(imgs) == [predict(shape, img, words) for img in imgs]
    link.board.idle(1e-3)
    assert link.board.error_led == 0
    # good weights are in: a second upload sends one frame, refused as locked
    again = client.load_weights(encode(words, IDENT), chunk=17)
    assert (again.loaded, again.frames) == (False, 1)


def test_upload_over_good_flash_weights_is_refused_as_locked():
    words = words_for(40, seed=4)
    shape, link = board(encode(words, IDENT))
    link.idle(3e-3)
    assert exchange(link, P.encode_weights(1, 0, b"SBNW")) == \
        P.Reply(P.STATUS_WEIGHTS_LOCKED, 1, 0)
    # a status query (no data) is answered OK with the weight status as CLASS
    assert exchange(link, P.encode_weights(2, 0)) == P.Reply(P.STATUS_OK, 2, P.WEIGHTS_OK)


def test_upload_while_the_flash_load_runs_waits():
    words = words_for(200, seed=6)
    shape, link = board(encode(words, IDENT), n_words=200)
    assert exchange(link, P.encode_weights(1, 0, b"SBNW")) == \
        P.Reply(P.STATUS_WEIGHTS_LOADING, 1, 0)
    client = Client(link, loading_poll=0.001)
    upload = client.load_weights(encode(words, IDENT))
    assert not upload.loaded and client.stats.loading_waits >= 1
    imgs = images_for(shape, 2)
    assert client.classify(imgs) == [predict(shape, img, words) for img in imgs]


def test_offsets_breaks_and_restarts():
    """A chunk must continue the load; a frame that broke mid-data (bad CRC) spoils it until
    a load from offset 0; a wrong image is refused with its verdict and can be replaced."""
    words = words_for(40, seed=8)
    image = encode(words, IDENT)
    shape, link = board(b"")
    link.idle(2e-3)
    ok = P.Reply(P.STATUS_OK, 1, P.WEIGHTS_LOADING)
    assert exchange(link, P.encode_weights(1, 0, image[:10])) == ok
    assert exchange(link, P.encode_weights(2, 11, image[11:20])) == \
        P.Reply(P.STATUS_BAD_OFFSET, 2, 0)
    bad = bytearray(P.encode_weights(3, 10, image[10:30]))
    bad[-1] ^= 0xFF
    assert exchange(link, bytes(bad)) == P.Reply(P.STATUS_BAD_CHECKSUM, 3, 0)
    assert exchange(link, P.encode_weights(4, 30, image[30:40])) == \
        P.Reply(P.STATUS_BAD_OFFSET, 4, 0)
    # another model's image: refused at its header
    other = encode(words, b"model-02")
    assert exchange(link, P.encode_weights(5, 0, other[:HEADER_BYTES])) == \
        P.Reply(P.STATUS_OK, 5, P.WEIGHTS_WRONG_MODEL)
    client = Client(link)
    with pytest.raises(WeightsUploadError, match="the image of another model or fold"):
        client.load_weights(other)
    corrupt = bytearray(image)
    corrupt[HEADER_BYTES + 3] ^= 1
    with pytest.raises(WeightsUploadError, match=r"corrupt \(CRC mismatch\)"):
        client.load_weights(bytes(corrupt))
    with pytest.raises(WeightsError):
        client.classify(images_for(shape, 1))
    assert client.load_weights(image).loaded
    imgs = images_for(shape, 3, seed=9)
    assert client.classify(imgs) == [predict(shape, img, words) for img in imgs]


def test_bad_lengths_and_a_board_without_weights():
    words = words_for(40)
    shape, link = board(b"")
    link.idle(2e-3)
    short = P.encode_request(P.CMD_LOAD_WEIGHTS, 1, b"\x00\x00")
    assert exchange(link, short) == P.Reply(P.STATUS_BAD_LENGTH, 1, 0)
    from boards.host import SimTransport as Transport
    from boards.standin import SumCore as Core
    plain = CoreShape(lanes=3, bits=8, beats_per_image=5, class_bits=4, n_values=13)
    link = Transport.for_core(StreamCore.wrap(Core(plain), plain), divisor=DIVISOR)
    assert exchange(link, P.encode_weights(1, 0, b"x")) == P.Reply(P.STATUS_BAD_COMMAND, 1, 0)
    with pytest.raises(BoardError, match="does not take weights over the UART"):
        Client(link).load_weights(encode(words, IDENT))
    # a board built without the UART weight path (the default) answers the same
    _, flash_only = board(b"", uart_weights=False)
    assert exchange(flash_only, P.encode_weights(1, 0, b"x")) == \
        P.Reply(P.STATUS_BAD_COMMAND, 1, 0)
    with pytest.raises(BoardError, match="hwgen build --uart-weights"):
        Client(flash_only).load_weights(encode(words, IDENT))


def test_client_load_weights_arguments():
    client = Client(board(b"")[1])
    for image, chunk, pattern in ((b"", 8, "empty"), (b"x", 0, "chunk"),
                                  (b"x", 70000, "chunk"), (b"x" * (1 << 24), 8, "24-bit")):
        with pytest.raises(ValueError, match=pattern):
            client.load_weights(image, chunk)
    with pytest.raises(ValueError, match="offset"):
        P.encode_weights(1, 1 << 24)


@pytest.mark.sim
def test_verilated_board_loads_weights_over_the_uart():
    words = words_for(40, seed=11)
    shape, link = board(b"", backend="verilator")
    with link:
        link.idle(2e-3)
        client = Client(link, loading_poll=0.001)
        assert client.ping() == 4
        assert client.load_weights(encode(words, IDENT), chunk=33).loaded
        imgs = images_for(shape, 5)
        assert client.classify(imgs) == [predict(shape, img, words) for img in imgs]


def test_messages_name_the_mend():
    from boards import weights
    from boards.host import WeightsUpload

    line = weights.failure_message(WeightsError(P.STATUS_NO_WEIGHTS), sim=False)
    assert line == ("the board's flash holds no weights for this model (program them with: "
                    "iceprog -o 0x100000 weights.bin, the weights.bin that hwgen build wrote "
                    "beside the bitstream, or send them with hwgen run --load-weights)")
    assert weights.upload_failure_message(WeightsUploadError(P.WEIGHTS_WRONG_MODEL), "w.bin") \
        == ("the board refused the weights in w.bin: the image of another model or fold (its "
            "model id, fold or length differs from the bitstream's: send the weights.bin of "
            "the same build)")
    assert weights.upload_line(WeightsUpload(True, 3, 2100, 1), 0.5) == (
        "weights: 2100 bytes sent over the UART in 3 frames (0.50 s wall clock, 1 restarts), "
        "checked and loaded by the board")
    assert weights.upload_line(WeightsUpload(False, 1), 0.1).startswith(
        "weights: the board holds good weights already")
