"""Weights from SPI flash: the loader against a simulated flash, the board top's answers
while the weights are loading or bad, and the simulated boards booting from a flash image."""

import random

import pytest
from amaranth.sim import Simulator

from boards import protocol as P
from boards.core import CoreShape, StreamCore
from boards.flash_loader import FlashConfig, FlashWeightLoader, LoadStatus, load_cycles
from boards.simulation import SimBoard, SPIFlashModel
from boards.standin import SumCore, predict
from boards.top import UARTInferenceTop
from hwgen.weight_image import FLASH_OFFSET, HEADER_BYTES, encode, header

IDENT = b"model-01"


def words_for(n, seed=1):
    rng = random.Random(seed)
    return [rng.randrange(1 << 16) for _ in range(n)]


def run_loader(image, n_words, *, ident=IDENT, ready=lambda cycle: True, loader_delay=1,
               flash_delay=1, sck_divisor=2, wake_cycles=5, tres_cycles=5, offset=FLASH_OFFSET,
               flash_offset=FLASH_OFFSET, limit=None, monitor=None):
    """(status, words delivered, cycles until the verdict, flash model) for a loader of
    ``n_words`` words reading ``image`` from a simulated flash."""
    dut = FlashWeightLoader(header(n_words, ident), n_words, offset=offset,
                            sck_divisor=sck_divisor, cipo_delay=loader_delay,
                            wake_cycles=wake_cycles, cs_idle_cycles=3)
    flash = SPIFlashModel(image, flash_offset, tres_cycles=tres_cycles, cipo_delay=flash_delay)
    limit = limit or 200 + (n_words * 2 + HEADER_BYTES + 12) * 12 * sck_divisor
    got, result = [], {}

    async def bench(ctx):
        for cycle in range(limit):
            ctx.set(dut.w.ready, ready(cycle))
            # the handshake at this edge (values before it), then the state after it
            _, _, valid, taken, payload = await ctx.tick().sample(dut.w.valid, dut.w.ready,
                                                                   dut.w.payload)
            if valid and taken:
                got.append(payload)
            if monitor:
                monitor(ctx, dut, cycle)
            status = ctx.get(dut.status)
            if status != LoadStatus.LOADING:
                result["status"], result["cycles"] = status, cycle
                return
        result["status"] = LoadStatus.LOADING

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    flash.attach(sim, dut.sck, dut.cs_n, dut.copi, dut.cipo)
    sim.add_testbench(bench)
    sim.run()
    return result["status"], got, result.get("cycles"), flash


@pytest.mark.parametrize("divisor,delay", [(2, 1), (2, 0), (4, 1), (6, 2)])
def test_good_image_delivers_every_word_in_order(divisor, delay):
    words = words_for(37)
    status, got, cycles, flash = run_loader(encode(words, IDENT), len(words),
                                            sck_divisor=divisor, loader_delay=delay,
                                            flash_delay=delay)
    assert status == LoadStatus.OK
    assert got == words
    assert flash.commands == [0xAB, 0x03]
    if (divisor, delay) == (2, 1):
        # the documented timing: 20 cycles a byte, 38 a word, 36 each half of the CRC
        expected = 3 + 20 + 5 + 4 * 20 + HEADER_BYTES * 20 + 37 * 38 + 2 * 36
        assert abs(cycles - expected) <= 2
        assert load_cycles(HEADER_BYTES, 37, wake_cycles=5, cs_idle_cycles=3) == expected
    assert abs(cycles - load_cycles(HEADER_BYTES, 37, sck_divisor=divisor, cipo_delay=delay,
                                    wake_cycles=5, cs_idle_cycles=3)) <= 2


def test_erased_flash_is_no_image():
    status, got, cycles, flash = run_loader(b"", 37)
    assert (status, got) == (LoadStatus.NO_IMAGE, [])
    assert cycles < 200   # stops at the first byte


@pytest.mark.parametrize("what", ["model id", "word count", "version"])
def test_another_models_image_is_wrong_model(what):
    words = words_for(37)
    image = bytearray(encode(words, IDENT))
    if what == "model id":
        image = encode(words, b"model-02")
    elif what == "word count":
        image = encode(words + [5], IDENT)
    else:
        image[4] = 2
    status, got, _, _ = run_loader(bytes(image), 37)
    assert (status, got) == (LoadStatus.WRONG_MODEL, [])


def test_half_a_magic_is_no_image():
    image = bytearray(encode(words_for(5), IDENT))
    image[2] ^= 0x01
    assert run_loader(bytes(image), 5)[:2] == (LoadStatus.NO_IMAGE, [])


@pytest.mark.parametrize("where", ["payload", "crc"])
def test_one_flipped_bit_is_bad_crc(where):
    words = words_for(37)
    image = bytearray(encode(words, IDENT))
    position = HEADER_BYTES + 31 if where == "payload" else len(image) - 1
    image[position] ^= 0x10
    status, got, _, _ = run_loader(bytes(image), len(words))
    assert status == LoadStatus.BAD_CRC
    assert len(got) == len(words) and (got != words) == (where == "payload")


def test_back_pressure_stalls_the_read():
    words = words_for(29)
    rng = random.Random(5)
    pattern = [rng.random() < 0.01 for _ in range(20000)]   # a word every ~100 cycles
    status, got, cycles, _ = run_loader(encode(words, IDENT), len(words), limit=20000,
                                        ready=lambda cycle: pattern[cycle])
    assert (status, got) == (LoadStatus.OK, words)
    _, _, fast, _ = run_loader(encode(words, IDENT), len(words))
    assert cycles > 2 * fast     # the core's pace, not the flash's


def test_the_flash_is_woken_before_reading():
    """The simulated flash starts powered down and ignores READ for tRES1 after AB: a
    loader that waits less reads nothing."""
    words = words_for(5)
    assert run_loader(encode(words, IDENT), 5, wake_cycles=4, tres_cycles=6)[0] \
        == LoadStatus.NO_IMAGE
    assert run_loader(encode(words, IDENT), 5, wake_cycles=6, tres_cycles=6)[0] == LoadStatus.OK


def test_sampling_point_follows_the_input_delay():
    """Told of a register stage that the flash pins do not have, the loader would take
    each bit after the flash moved on to the next: nothing matches. (One stage fewer is
    still right at this divisor: the ideal flash's bit is valid for the whole SCK period.)"""
    words = words_for(5)
    assert run_loader(encode(words, IDENT), 5, loader_delay=1, flash_delay=0)[0] \
        == LoadStatus.NO_IMAGE
    assert run_loader(encode(words, IDENT), 5, loader_delay=2, flash_delay=1)[0] \
        == LoadStatus.NO_IMAGE


def test_reads_at_its_offset():
    words = words_for(5)
    image = encode(words, IDENT)
    assert run_loader(image, 5, offset=0x20000, flash_offset=0x20000)[:2] \
        == (LoadStatus.OK, words)
    assert run_loader(image, 5, offset=0x20000)[0] == LoadStatus.NO_IMAGE


def test_spi_mode_0_timing():
    """SCK idles low, each half period is sck_divisor/2 cycles, CS# changes only while SCK
    is low and a cycle away from its edges, COPI changes only while SCK is low."""
    words = words_for(3)
    seen = {"prev": None, "high": [], "low": [], "run": 0}

    def monitor(ctx, dut, cycle):
        now = (ctx.get(dut.cs_n), ctx.get(dut.sck), ctx.get(dut.copi))
        prev = seen["prev"]
        if prev is not None:
            if now[0] != prev[0]:
                assert now[1] == 0 and prev[1] == 0      # CS# moves with SCK low around it
            if not now[0] and now[2] != prev[2]:
                assert now[1] == 0                       # COPI moves with SCK low
            if now[1] != prev[1]:
                (seen["low"] if now[1] else seen["high"]).append(seen["run"])
                seen["run"] = 0
            assert not (now[0] and now[1])              # SCK low while deselected
        seen["run"] += 1
        seen["prev"] = now

    status, _, _, _ = run_loader(encode(words, IDENT), 3, sck_divisor=4, monitor=monitor)
    assert status == LoadStatus.OK
    assert set(seen["high"]) == {2} and min(seen["low"]) == 2


def test_loader_rejects_bad_arguments():
    with pytest.raises(TypeError, match="header must be bytes"):
        FlashWeightLoader("SBNW", 4)
    with pytest.raises(ValueError, match="sck_divisor must be even"):
        FlashWeightLoader(b"SBNW", 4, sck_divisor=3)
    with pytest.raises(ValueError, match="past the 24-bit address space"):
        FlashWeightLoader(b"SBNW", 4, offset=0xFFFFF4)
    with pytest.raises(TypeError, match="words must be an integer"):
        FlashWeightLoader(b"SBNW", 4.0)
    with pytest.raises(ValueError, match="cipo_delay must be 0..4"):
        FlashWeightLoader(b"SBNW", 4, cipo_delay=5)


def test_config_for_clock():
    config = FlashConfig.for_clock(b"SBNW", 48e6)
    assert (config.sck_divisor, config.wake_cycles, config.offset) == (2, 192, FLASH_OFFSET)
    assert FlashConfig.for_clock(b"SBNW", 60e6).sck_divisor == 4     # 15 MHz, not 30
    assert FlashConfig.for_clock(b"SBNW", 12e6, sck_divisor=8).sck_divisor == 8


# --- the board top --------------------------------------------------------------------------

DIVISOR = 8
TIMEOUT = 40 * DIVISOR


def weights_board(image, *, n_words=40, lanes=3, beats=5, n_values=13, binarize_at=None,
                  stall=True):
    shape = CoreShape(lanes=lanes, bits=8, beats_per_image=beats, class_bits=4,
                      n_values=n_values, binarize_at=binarize_at, weight_words=n_words)
    core = StreamCore.wrap(SumCore(shape, stall=stall), shape)
    flash = FlashConfig.for_clock(header(n_words, IDENT), 1e6)
    top = UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT, rx_fifo_depth=16,
                           flash=flash)
    return shape, SimBoard(top, clock_hz=1e6, flash_image=image)


def replies(board, n):
    decoder = P.ReplyDecoder()
    return decoder.feed(board.read(n * P.REPLY_LENGTH, 20 * board.bit_time * 10))


def image_values(shape, seed):
    rng = random.Random(seed)
    return [rng.randrange(256) for _ in range(shape.n_values)]


def test_top_answers_loading_then_classifies():
    """The first frame arrives while the 240 words load (~8,000 cycles): WEIGHTS_LOADING,
    its image never reaches the core; PING works meanwhile; once loaded the classes include
    the weights' digest (so every word arrived, in order)."""
    words = words_for(240)
    shape, board = weights_board(encode(words, IDENT), n_words=240)
    a, b = image_values(shape, 1), image_values(shape, 2)
    board.write(P.encode_image(1, a) + P.encode_request(P.CMD_PING, 2))
    assert replies(board, 2) == [P.Reply(P.STATUS_WEIGHTS_LOADING, 1, 0),
                                 P.Reply(P.STATUS_OK, 2, P.PROTOCOL_VERSION)]
    board.idle(8000e-6)
    board.write(P.encode_image(3, a) + P.encode_image(4, b))
    assert replies(board, 2) == [P.Reply(P.STATUS_OK, 3, predict(shape, a, words)),
                                 P.Reply(P.STATUS_OK, 4, predict(shape, b, words))]
    assert board.error_led == 0


@pytest.mark.parametrize("fault,status", [
    ("erased", P.STATUS_NO_WEIGHTS), ("other model", P.STATUS_WRONG_WEIGHTS),
    ("flipped bit", P.STATUS_BAD_WEIGHTS)])
def test_top_refuses_images_without_good_weights(fault, status):
    words = words_for(40)
    image = {"erased": b"", "other model": encode(words, b"model-02"),
             "flipped bit": bytes([*encode(words, IDENT)[:30], 0x5A ^ encode(words, IDENT)[30],
                                   *encode(words, IDENT)[31:]])}[fault]
    shape, board = weights_board(image, binarize_at=128)
    board.idle(2500e-6)
    values = image_values(shape, 3)
    bad = bytearray(P.encode_image(3, values))
    bad[-1] ^= 1
    board.write(P.encode_image(1, values) + P.encode_packed_image(2, values, 128) + bytes(bad)
                + P.encode_request(P.CMD_PING, 4))
    assert replies(board, 4) == [P.Reply(status, 1, 0), P.Reply(status, 2, 0),
                                 P.Reply(P.STATUS_BAD_CHECKSUM, 3, 0),
                                 P.Reply(P.STATUS_OK, 4, P.PROTOCOL_VERSION)]
    board.idle(1e-3)
    assert board.error_led == 1   # steady, long after the last frame error


def test_top_one_beat_per_image():
    """One beat per image: the parser may queue an image's tag before that beat reached
    the gate; the reply still pairs with the right image."""
    words = words_for(60)
    shape, board = weights_board(encode(words, IDENT), n_words=60, lanes=4, beats=1,
                                 n_values=4, stall=True)
    frames = [image_values(shape, k) for k in range(8)]
    board.write(b"".join(P.encode_image(k, v) for k, v in enumerate(frames)))
    got = replies(board, 8)
    assert [r.seq for r in got] == list(range(8))
    loading = [r for r in got if r.status == P.STATUS_WEIGHTS_LOADING]
    assert loading and got[:len(loading)] == loading   # every refused image comes first
    assert got[len(loading):] == [P.Reply(P.STATUS_OK, k, predict(shape, frames[k], words))
                                  for k in range(len(loading), 8)]


def test_top_needs_flash_for_a_weights_core():
    shape = CoreShape(lanes=3, bits=8, beats_per_image=5, class_bits=4, n_values=13,
                      weight_words=4)
    plain = CoreShape(lanes=3, bits=8, beats_per_image=5, class_bits=4, n_values=13)
    inner, plain_inner = SumCore(shape), SumCore(plain)
    core, plain_core = StreamCore.wrap(inner, shape), StreamCore.wrap(plain_inner, plain)
    for obj in (inner, plain_inner, core, plain_core):   # built only to be rejected
        obj._MustUse__silence = True
    with pytest.raises(ValueError, match="give flash=FlashConfig"):
        UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT)
    with pytest.raises(ValueError, match="flash is for a core with weight words"):
        UARTInferenceTop(plain_core, divisor=DIVISOR, timeout=TIMEOUT,
                         flash=FlashConfig(b"SBNW"))
    with pytest.raises(ValueError, match="has no input stream 'w'"):
        StreamCore.wrap(plain_inner, shape)
    with pytest.raises(TypeError, match="flash must be a FlashConfig"):
        UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT, flash=b"SBNW")


# --- the Verilated board booting from its simulated flash -----------------------------------

VSHAPE = CoreShape(lanes=4, bits=8, beats_per_image=25, class_bits=4, n_values=100,
                   weight_words=300)


def verilator_or_skip():
    """Skip without a usable Verilator, except in CI, where it must be there."""
    import os

    try:
        from sim.toolchain import find_verilator
        find_verilator()
    except Exception as e:  # noqa: BLE001 - any reason Verilator is unusable here
        if os.environ.get("CI"):
            pytest.fail(f"Verilator is unusable in CI: {e}")
        pytest.skip(f"Verilator unavailable: {e}")


def verilated_board(image):
    from boards.verilator_board import VerilatorTransport

    verilator_or_skip()
    core = StreamCore.wrap(SumCore(VSHAPE, stall=True), VSHAPE)
    flash = FlashConfig.for_clock(header(VSHAPE.weight_words, IDENT), 1e6)
    return VerilatorTransport.for_core(core, divisor=DIVISOR, flash=flash, flash_image=image)


@pytest.mark.sim
def test_verilated_board_boots_from_flash():
    """The client's first frames meet a board still loading (10,000 cycles for 300 words);
    it waits, and every class then carries the loaded words' digest."""
    from boards.host import Client

    words = words_for(300, seed=7)
    rng = random.Random(8)
    imgs = [[rng.randrange(256) for _ in range(100)] for _ in range(6)]
    with verilated_board(encode(words, IDENT)) as link:
        client = Client(link, window=2, loading_poll=0.002)
        assert client.ping() == P.PROTOCOL_VERSION == 4
        assert client.classify(imgs) == [predict(VSHAPE, img, words) for img in imgs]
        assert client.stats.loading_waits >= 1 and client.stats.retries == 0


@pytest.mark.sim
@pytest.mark.parametrize("fault,status", [
    ("erased", P.STATUS_NO_WEIGHTS), ("other model", P.STATUS_WRONG_WEIGHTS),
    ("flipped bit", P.STATUS_BAD_WEIGHTS)])
def test_verilated_board_refuses_bad_flash(fault, status):
    from boards.host import Client, WeightsError

    words = words_for(300, seed=7)
    image = bytearray(encode(words, IDENT))
    if fault == "erased":
        image = b""
    elif fault == "other model":
        image = encode(words, b"model-02")
    else:
        image[HEADER_BYTES + 401] ^= 0x04
    with verilated_board(bytes(image)) as link:
        link.idle(0.02)    # loaded (or refused) by now
        client = Client(link)
        assert client.ping() == 4
        with pytest.raises(WeightsError) as err:
            client.classify([[0] * 100])
        assert err.value.status == status


def test_icebreaker_top_wires_the_flash_pins():
    """Elaborated for the real platform (no tools run): the flash pins, CIPO through the
    pin's input register, WP#/HOLD# driven; 48 MHz gives SCK at 24 MHz and 192 wake-up
    cycles (4 us). A core without weights gets no flash pins."""
    import re

    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from boards.icebreaker import ICEBreakerTop

    shape = CoreShape(lanes=1, bits=8, beats_per_image=784, class_bits=4, weight_words=500)
    top = ICEBreakerTop(StreamCore.wrap(SumCore(shape), shape),
                        weight_header=header(500, IDENT))
    assert (top.inner.flash.sck_divisor, top.inner.flash.wake_cycles) == (2, 192)
    pcf = ICEBreakerPlatform().prepare(top, name="top").files["top.pcf"]
    pcf = pcf if isinstance(pcf, str) else pcf.decode()
    for name, pin in (("cs", 16), ("clk", 15), ("copi", 14), ("cipo", 17), ("wp", 12),
                      ("hold", 13)):
        assert re.search(rf"set_io spi_flash_1x_0__{name}__io {pin}\n", pcf), name
    plain = CoreShape(lanes=1, bits=8, beats_per_image=784, class_bits=4)
    top = ICEBreakerTop(StreamCore.wrap(SumCore(plain), plain))
    pcf = ICEBreakerPlatform().prepare(top, name="top").files["top.pcf"]
    assert "spi_flash" not in (pcf if isinstance(pcf, str) else pcf.decode())


@pytest.mark.sim
def test_verilog_core_with_weights_from_its_interface(tmp_path):
    """A generated network with an SPRAM layer as Verilog + interface.json ("weights"):
    StreamCore.from_verilog wires its weight port; booted from the build's image, the
    Verilated board agrees with the reference."""
    import numpy as np

    from boards.host import Client
    from boards.verilator_board import VerilatorTransport
    from hwgen.fold import input_order, parse_fold, plan
    from hwgen.gateware.network import write_verilog
    from hwgen.layout import in_stream_order
    from hwgen.random_models import calibrate_thresholds, dense, random_images, random_model
    from hwgen.reference import Reference
    from hwgen.weight_image import image_for, model_id

    verilator_or_skip()
    rng = np.random.default_rng(41)
    model = random_model(rng, (1, 8, 9), [dense(32), dense(10)], classes=4)
    images = random_images(rng, model.input, 8)
    model = calibrate_thresholds(model, images)
    net = plan(model, parse_fold("2x8s,1x16,1x10", model))
    verilog, interface = write_verilog(net, tmp_path, "spram_core")
    core = StreamCore.from_verilog(interface, verilog)
    assert core.shape.weight_words == net.spram_words == 144
    flash = FlashConfig.for_clock(header(net.spram_words, model_id(net)), 1e6)
    with VerilatorTransport.for_core(core, divisor=DIVISOR, flash=flash,
                                     flash_image=image_for(net)) as link:
        got = Client(link, loading_poll=0.002).classify(in_stream_order(images,
                                                                        input_order(model)))
    assert got == [int(c) for c in Reference(model).predict(images)]


def test_interface_weights_entry():
    base = {"input": {"lanes": 2, "bits": 8, "beats_per_image": 3},
            "output": {"class_bits": 4}}
    assert CoreShape.from_interface(base).weight_words == 0
    weights = {"data": "w__payload", "valid": "w__valid", "ready": "w__ready", "bits": 16,
               "words": 77}
    assert CoreShape.from_interface({**base, "weights": weights}).weight_words == 77
    with pytest.raises(ValueError, match="16-bit words"):
        CoreShape.from_interface({**base, "weights": {**weights, "bits": 8}})
    with pytest.raises(ValueError, match="lacks 'words'"):
        CoreShape.from_interface({**base, "weights": {"bits": 16}})


class LoadingBoard:
    """A transport whose board answers every image frame WEIGHTS_LOADING for ``loading``
    simulated seconds, then classifies (class = SEQ % 7)."""

    baud, board_timeout, latency = 1e6, 1e-3, 0.0

    def __init__(self, loading: float):
        self.loading, self.now, self.out = loading, 0.0, bytearray()

    def write(self, data):
        seq = data[3]
        self.now += len(data) * 10 / self.baud
        status = P.STATUS_WEIGHTS_LOADING if self.now < self.loading else P.STATUS_OK
        self.out += P.encode_reply(status, seq, 0 if status else seq % 7)

    def read(self, n, timeout):
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data

    def idle(self, seconds):
        self.now += seconds

    def close(self):
        pass


def test_client_waits_for_loading_weights_then_gives_up():
    from boards.host import BoardError, Client

    client = Client(LoadingBoard(0.05), window=3, retries=0, loading_poll=0.01)
    got = client.classify([[1] * 4] * 5)
    assert len(got) == 5 and client.stats.retries == 0 and client.stats.loading_waits >= 4
    client = Client(LoadingBoard(10.0), retries=0, weights_wait=0.05, loading_poll=0.01)
    with pytest.raises(BoardError, match="still loading its weights after 0.05 s"):
        client.classify([[1] * 4])
