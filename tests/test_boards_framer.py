"""Frame parser and reply generator in the Amaranth simulator (bytes in directly, no UART)."""

import random

import pytest
from amaranth.sim import Simulator

from boards import protocol as P
from boards.core import CoreShape
from boards.framer import FrameParser, ReplyGenerator

TIMEOUT = 40


def run_parser(shape, events, *, seed=0, ready_p=1.0, gap_p=0.0, tail=200):
    """Feed ``events`` (ints: bytes; ``("idle", n)``: n idle cycles; ``("overrun",)``: an
    overrun pulse) to a parser; collect (beats, tags, max idle cycles of the byte input)."""
    dut = FrameParser(shape, TIMEOUT)
    rng = random.Random(seed)
    beats, tags = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def feed(ctx):
        for ev in events:
            if isinstance(ev, tuple) and ev[0] == "idle":
                await ctx.tick().repeat(ev[1])
                continue
            if isinstance(ev, tuple) and ev[0] == "overrun":
                ctx.set(dut.overrun, 1)
                await ctx.tick()
                ctx.set(dut.overrun, 0)
                continue
            while rng.random() < gap_p:
                await ctx.tick()
            ctx.set(dut.i.payload, ev)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(tail)

    async def sink(ctx):
        while True:
            ready = int(rng.random() < ready_p)
            ctx.set(dut.beats.ready, ready)
            ctx.set(dut.tags.ready, 1)
            _, _, bv, bp, tv, tp = await ctx.tick().sample(
                dut.beats.valid, dut.beats.payload, dut.tags.valid, dut.tags.payload)
            if bv and ready:
                beats.append(bp)
            if tv:
                tags.append((int(tp.status), int(tp.seq), int(tp.image)))

    sim.add_testbench(feed)
    sim.add_testbench(sink, background=True)
    sim.run()
    return beats, tags


SHAPE = CoreShape(lanes=3, bits=5, beats_per_image=4, class_bits=4, n_values=11)


def image(rng, shape=SHAPE):
    return [rng.randrange(1 << shape.bits) for _ in range(shape.n_values)]


@pytest.mark.parametrize("shape", [
    SHAPE,
    CoreShape(lanes=1, bits=8, beats_per_image=5, class_bits=3),
    CoreShape(lanes=4, bits=1, beats_per_image=3, class_bits=1, n_values=12),
    CoreShape(lanes=7, bits=3, beats_per_image=2, class_bits=8, n_values=8),
])
def test_valid_frames_become_beats(shape):
    rng = random.Random(1)
    images = [image(rng, shape) for _ in range(3)]
    events = [b for k, img in enumerate(images) for b in P.encode_image(k + 7, img, shape.bits)]
    beats, tags = run_parser(shape, events, ready_p=0.5, gap_p=0.3)
    assert beats == [b for img in images for b in shape.pack(img)]
    assert tags == [(P.STATUS_OK, k + 7, 1) for k in range(3)]


def test_pack_layout():
    shape = CoreShape(lanes=3, bits=4, beats_per_image=2, class_bits=2, n_values=4)
    assert shape.pack([1, 2, 3, 4]) == [0x321, 0x004]


def test_garbage_and_false_syncs_are_skipped():
    rng = random.Random(2)
    img = image(rng)
    garbage = [0x00, 0xA5, 0x00, 0x5A, 0xA5, 0xA5]  # ends with A5 A5: sync still found
    events = garbage + list(P.encode_image(3, img, SHAPE.bits))
    beats, tags = run_parser(SHAPE, events)
    assert beats == SHAPE.pack(img)
    assert tags == [(P.STATUS_OK, 3, 1)]


def test_bad_checksum_completes_image_and_flags_it():
    rng = random.Random(3)
    a, b = image(rng), image(rng)
    bad = bytearray(P.encode_image(1, a, SHAPE.bits))
    bad[-1] ^= 0x01
    beats, tags = run_parser(SHAPE, list(bad) + list(P.encode_image(2, b, SHAPE.bits)))
    assert beats == SHAPE.pack(a) + SHAPE.pack(b)
    assert tags == [(P.STATUS_BAD_CHECKSUM, 1, 1), (P.STATUS_OK, 2, 1)]


def test_corrupted_payload_is_bad_checksum():
    rng = random.Random(4)
    a = image(rng)
    bad = bytearray(P.encode_image(5, a, SHAPE.bits))
    bad[8] ^= 0x04
    _, tags = run_parser(SHAPE, list(bad))
    assert tags == [(P.STATUS_BAD_CHECKSUM, 5, 1)]


def test_bad_length_and_bad_command():
    rng = random.Random(5)
    img = image(rng)
    short = P.encode_request(P.CMD_CLASSIFY, 1, bytes(img[:-1]))
    long = P.encode_request(P.CMD_CLASSIFY, 2, bytes(img + [0]))
    unknown = P.encode_request(0x42, 3, bytes(img))
    ping_with_data = P.encode_request(P.CMD_PING, 4, b"\x01")
    good = P.encode_image(6, img, SHAPE.bits)
    events = [b for f in (short, long, unknown, ping_with_data, good) for b in f]
    beats, tags = run_parser(SHAPE, events)
    assert beats == SHAPE.pack(img)
    assert tags[0] == (P.STATUS_BAD_LENGTH, 1, 0)
    assert tags[1] == (P.STATUS_BAD_LENGTH, 2, 0)
    assert tags[2] == (P.STATUS_BAD_COMMAND, 3, 0)
    assert tags[3] == (P.STATUS_BAD_LENGTH, 4, 0)
    assert tags[-1] == (P.STATUS_OK, 6, 1)  # payload bytes of rejected frames may add junk tags


@pytest.mark.parametrize("cut", [1, 3, 6, 9, 14, 18])
def test_truncated_frame_times_out(cut):
    """A frame cut anywhere after its sync ends in TIMEOUT; a started image is zero-completed."""
    rng = random.Random(6)
    a, b = image(rng), image(rng)
    frame = P.encode_image(1, a, SHAPE.bits)
    events = list(frame[:cut]) + [("idle", TIMEOUT + 5)] + list(P.encode_image(2, b, SHAPE.bits))
    beats, tags = run_parser(SHAPE, events)
    sent = max(0, min(cut - 6, SHAPE.n_values))
    if cut < 2:
        assert tags == [(P.STATUS_OK, 2, 1)]
        assert beats == SHAPE.pack(b)
        return
    partial = SHAPE.pack(a[:sent] + [0] * (SHAPE.n_values - sent)) if sent else []
    assert beats == partial + SHAPE.pack(b)
    assert tags == [(P.STATUS_TIMEOUT, 1 if cut > 3 else 0, int(sent > 0)), (P.STATUS_OK, 2, 1)]


def test_slow_bytes_within_timeout_are_fine():
    rng = random.Random(7)
    a = image(rng)
    events = []
    for byte in P.encode_image(9, a, SHAPE.bits):
        events += [byte, ("idle", TIMEOUT - 3)]
    beats, tags = run_parser(SHAPE, events)
    assert (beats, tags) == (SHAPE.pack(a), [(P.STATUS_OK, 9, 1)])


def test_overrun_is_reported():
    rng = random.Random(8)
    a, b = image(rng), image(rng)
    frame = list(P.encode_image(1, a, SHAPE.bits))
    events = frame[:9] + [("overrun",)] + frame[10:] + [("idle", TIMEOUT + 5)]
    events += list(P.encode_image(2, b, SHAPE.bits))
    beats, tags = run_parser(SHAPE, events)
    assert tags == [(P.STATUS_OVERRUN, 1, 1), (P.STATUS_OK, 2, 1)]
    assert beats[-len(SHAPE.pack(b)):] == SHAPE.pack(b)


def test_ping():
    beats, tags = run_parser(SHAPE, list(P.encode_request(P.CMD_PING, 77)))
    assert (beats, tags) == ([], [(P.STATUS_OK, 77, 0)])


def test_reply_generator():
    dut = ReplyGenerator(class_bits=4)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    tags = [(P.STATUS_OK, 1, 1, 9), (P.STATUS_BAD_CHECKSUM, 2, 1, 5), (P.STATUS_OK, 3, 0, None),
            (P.STATUS_TIMEOUT, 4, 0, None), (P.STATUS_OK, 5, 1, 15)]
    out = bytearray()
    rng = random.Random(9)

    async def source(ctx):
        for status, seq, img, klass in tags:
            ctx.set(dut.tags.payload, {"status": status, "seq": seq, "image": img})
            ctx.set(dut.tags.valid, 1)
            await ctx.tick().until(dut.tags.ready)
            ctx.set(dut.tags.valid, 0)
            if img:
                await ctx.tick().repeat(rng.randrange(1, 5))
                ctx.set(dut.classes.payload, klass)
                ctx.set(dut.classes.valid, 1)
                await ctx.tick().until(dut.classes.ready)
                ctx.set(dut.classes.valid, 0)
        await ctx.tick().repeat(100)

    async def sink(ctx):
        while True:
            ready = rng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                out.append(payload)

    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run()
    expected = [P.Reply(P.STATUS_OK, 1, 9), P.Reply(P.STATUS_BAD_CHECKSUM, 2, 0),
                P.Reply(P.STATUS_OK, 3, P.PROTOCOL_VERSION), P.Reply(P.STATUS_TIMEOUT, 4, 0),
                P.Reply(P.STATUS_OK, 5, 15)]
    decoder = P.ReplyDecoder()
    assert decoder.feed(bytes(out)) == expected
    assert decoder.skipped == 0
    assert bytes(out[:7]) == P.encode_reply(P.STATUS_OK, 1, 9)


def test_bad_parameters():
    with pytest.raises(TypeError):
        FrameParser("shape", 10)
    with pytest.raises(ValueError):
        FrameParser(SHAPE, 0)
    with pytest.raises(ValueError):
        ReplyGenerator(9)
    with pytest.raises(ValueError, match="beats"):
        CoreShape(lanes=3, bits=5, beats_per_image=4, class_bits=4, n_values=9)
    with pytest.raises(ValueError):
        CoreShape(lanes=3, bits=9, beats_per_image=4, class_bits=4)
    with pytest.raises(TypeError):
        CoreShape(lanes=3.0, bits=8, beats_per_image=4, class_bits=4)


PACKED_SHAPES = [
    CoreShape(lanes=3, bits=5, beats_per_image=4, class_bits=4, n_values=11, binarize_at=9),
    CoreShape(lanes=1, bits=8, beats_per_image=17, class_bits=3, binarize_at=128),
    CoreShape(lanes=4, bits=1, beats_per_image=3, class_bits=1, n_values=12, binarize_at=1),
    CoreShape(lanes=7, bits=3, beats_per_image=2, class_bits=8, n_values=8, binarize_at=0),
    CoreShape(lanes=2, bits=2, beats_per_image=5, class_bits=2, n_values=9, binarize_at=4),
]


@pytest.mark.parametrize("shape", PACKED_SHAPES)
def test_packed_frames_become_thresholded_beats(shape):
    """CLASSIFY_PACKED frames (1 bit per value, LSB first) become beats of ``2**bits - 1`` /
    0 values, interleaved with byte frames and a PING, under random back-pressure."""
    rng = random.Random(11)
    images = [image(rng, shape) for _ in range(4)]
    frames = [P.encode_packed_image(1, images[0], shape.binarize_at, shape.bits),
              P.encode_image(2, images[1], shape.bits),
              P.encode_request(P.CMD_PING, 3),
              P.encode_packed_image(4, images[2], shape.binarize_at, shape.bits),
              P.encode_packed_image(5, images[3], shape.binarize_at, shape.bits)]
    beats, tags = run_parser(shape, [b for f in frames for b in f], ready_p=0.6, gap_p=0.2)
    expected = (shape.pack(shape.packed_values(images[0])) + shape.pack(images[1])
                + shape.pack(shape.packed_values(images[2]))
                + shape.pack(shape.packed_values(images[3])))
    assert beats == expected
    assert tags == [(P.STATUS_OK, 1, 1), (P.STATUS_OK, 2, 1), (P.STATUS_OK, 3, 0),
                    (P.STATUS_OK, 4, 1), (P.STATUS_OK, 5, 1)]


def test_packed_values_binarize_like_the_originals():
    """What the core gets for a packed image compares against binarize_at exactly as the
    original values do, for every threshold (0 and 2**bits included)."""
    for bits in (1, 3, 8):
        values = list(range(1 << bits))
        for t in range((1 << bits) + 1):
            shape = CoreShape(lanes=1, bits=bits, beats_per_image=len(values), class_bits=1,
                              binarize_at=t)
            assert [v >= t for v in shape.packed_values(values)] == [v >= t for v in values]
    assert P.pack_bits([0, 200, 128, 127, 255, 1, 1, 1, 130], 128) == bytes([0b00010110, 1])


def test_packed_frame_errors():
    """Packed frames: wrong LEN is BAD_LENGTH, a bad CRC is BAD_CHECKSUM (image completed), a
    truncated payload times out with the image zero-completed; to a core that does not
    binarize, CLASSIFY_PACKED is an unknown command (BAD_COMMAND)."""
    shape = PACKED_SHAPES[0]           # 11 values: 2 payload bytes
    rng = random.Random(12)
    a, b, c = image(rng, shape), image(rng, shape), image(rng, shape)
    t = shape.binarize_at
    wrong_len = P.encode_request(P.CMD_CLASSIFY_PACKED, 1, P.pack_bits(a, t, 5) + b"\x00")
    bad_crc = bytearray(P.encode_packed_image(2, b, t, 5))
    bad_crc[-1] ^= 0x01
    truncated = P.encode_packed_image(3, c, t, 5)[:7]       # header and the first byte
    # (the idle timer starts once the parser is done with a byte: 8 cycles for a packed one)
    events = list(wrong_len) + [("idle", TIMEOUT + 20)] + list(bad_crc) + list(truncated)
    events += [("idle", TIMEOUT + 20)] + list(P.encode_packed_image(4, a, t, 5))
    beats, tags = run_parser(shape, events)
    first8 = shape.packed_values(c)[:8] + [0] * 3
    assert tags[0] == (P.STATUS_BAD_LENGTH, 1, 0)
    assert tags[-3:] == [(P.STATUS_BAD_CHECKSUM, 2, 1), (P.STATUS_TIMEOUT, 3, 1),
                         (P.STATUS_OK, 4, 1)]
    assert beats == (shape.pack(shape.packed_values(b)) + shape.pack(first8)
                     + shape.pack(shape.packed_values(a)))

    plain = CoreShape(lanes=3, bits=5, beats_per_image=4, class_bits=4, n_values=11)
    beats, tags = run_parser(plain, list(P.encode_packed_image(5, a, 9, 5))
                             + [("idle", TIMEOUT + 20)] + list(P.encode_image(6, a, 5)))
    assert tags[0] == (P.STATUS_BAD_COMMAND, 5, 0)
    assert tags[-1] == (P.STATUS_OK, 6, 1) and beats == plain.pack(a)
