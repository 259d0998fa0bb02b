"""The flash weight image container (hwgen.weight_image): layout, CRC, refusals."""

import numpy as np
import pytest

from hwgen import weight_image as wi

IDENT = bytes(range(1, 9))


def test_crc_matches_the_catalogued_check_value():
    assert wi.crc32_mpeg2(b"123456789") == 0x0376E6E7
    assert wi.crc32_mpeg2(b"") == 0xFFFFFFFF
    # continuing from a partial CRC equals the CRC of the concatenation
    assert wi.crc32_mpeg2(b"6789", wi.crc32_mpeg2(b"12345")) == 0x0376E6E7


def test_crc_equals_a_bit_serial_shift_register():
    """What the board computes: one bit per SPI clock, MSB first."""
    data = bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8))
    crc = 0xFFFFFFFF
    for byte in data:
        for k in range(7, -1, -1):
            feedback = ((crc >> 31) ^ (byte >> k)) & 1
            crc = ((crc << 1) & 0xFFFFFFFF) ^ (0x04C11DB7 if feedback else 0)
    assert wi.crc32_mpeg2(data) == crc


def test_layout_is_the_documented_one():
    image = wi.encode([0x1234, 0xABCD], IDENT)
    assert image[:4] == b"SBNW" and image[4] == wi.VERSION and image[5:8] == b"\0\0\0"
    assert image[8:12] == (2).to_bytes(4, "big")
    assert image[12:20] == IDENT
    assert image[20:24] == bytes([0x12, 0x34, 0xAB, 0xCD])
    assert image[24:] == wi.crc32_mpeg2(image[20:24]).to_bytes(4, "big")
    assert image[:20] == wi.header(2, IDENT)
    assert len(image) == wi.HEADER_BYTES + 4 + wi.CRC_BYTES


def test_round_trip_ignores_what_follows_in_a_flash_dump():
    words = np.random.default_rng(1).integers(0, 1 << 16, 1000).astype(np.uint16)
    ident, back = wi.decode(wi.encode(words, IDENT) + b"\xff" * 100)
    assert ident == IDENT and np.array_equal(back, words)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\xff" * len(b), "no SBNW magic"),
    (lambda b: b[:4] + b"\x02" + b[5:], "version 2"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:8] + (0).to_bytes(4, "big") + b[12:], "claims 0 words"),
    (lambda b: b[:21] + bytes([b[21] ^ 1]) + b[22:], "CRC mismatch"),
    (lambda b: b[:10], "shorter than"),
])
def test_decode_refuses_damaged_images(mutate, message):
    image = wi.encode([1, 2, 3], IDENT)
    with pytest.raises(ValueError, match=message):
        wi.decode(mutate(image))


@pytest.mark.parametrize("words, ident, error", [
    ([], IDENT, ValueError),
    ([1 << 16], IDENT, ValueError),
    ([-1], IDENT, ValueError),
    ([1], b"short", ValueError),
    (np.zeros(wi.MAX_WORDS + 1, int), IDENT, ValueError),
])
def test_encode_checks_its_arguments(words, ident, error):
    with pytest.raises(error):
        wi.encode(words, ident)


def test_read_image_bounds_the_file(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 101)
    with pytest.raises(wi.UserError, match="more than a flash image"):
        wi.read_image(big, limit=100)
    assert wi.read_image(big, limit=101) == b"\0" * 101
    with pytest.raises(wi.UserError, match="no such weight image"):
        wi.read_image(tmp_path / "missing.bin")
    with pytest.raises(wi.UserError, match="is a directory"):
        wi.read_image(tmp_path)


def test_image_of_a_network_carries_its_spram_words_and_an_id_of_model_and_fold():
    from hwgen.fold import Fold, plan
    from hwgen.fold.spram import spram_words

    from .test_spram import _dense_model

    model = _dense_model(seed=0)
    folds = [Fold(1, 16, spram=True), Fold(1, 4)]
    net = plan(model, folds)
    ident, words = wi.decode(wi.image_for(net))
    assert ident == wi.model_id(net) and np.array_equal(words, spram_words(net))
    # another packing of the same layer, or other weights, is another model id
    other_fold = plan(model, [Fold(2, 8, spram=True), Fold(1, 4)])
    other_model = plan(_dense_model(seed=1), folds)
    ids = {wi.model_id(n) for n in (net, other_fold, other_model)}
    assert len(ids) == 3
    with pytest.raises(ValueError, match="no weights in SPRAM"):
        wi.image_for(plan(model, [Fold(1, 16), Fold(1, 4)]))
