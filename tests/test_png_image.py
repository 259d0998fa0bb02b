"""``hwgen run``'s PNG reader (:mod:`boards.png_image`): whole PNGs of every colour type map
onto the model input exactly; truncated, padded, damaged or mis-sized files are one error."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from boards.png_image import load_png
from hwgen import model as model_io
from hwgen.errors import UserError

from .test_hostile_inputs import cli_rejects

Image = pytest.importorskip("PIL.Image")

RNG = np.random.default_rng(7)


def spec(shape, bits=8):
    return model_io.InputSpec(tuple(shape), bits, None)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width, height, depth, colour, raw, *, interlace=0, plte=None, tail=b"") -> bytes:
    """A PNG assembled chunk by chunk from filtered scanlines ``raw``."""
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                            colour, 0, 0, interlace))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"") + tail


def saved(tmp_path, array, mode=None, name="i.png"):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_grey_8_bit_is_the_input_itself(tmp_path):
    grey = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    got = load_png(saved(tmp_path, grey), spec((1, 8, 8)))
    assert got.dtype == np.int64 and (got == grey[None]).all()


def test_fewer_bits_round_the_scaled_sample(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    got = load_png(saved(tmp_path, grey), spec((1, 16, 16), bits=4))
    assert (got[0] == np.rint(grey.astype(np.int64) * 15 / 255)).all()
    assert got.max() == 15 and got.min() == 0


def test_colour_is_averaged_for_one_channel_and_split_for_three(tmp_path):
    rgb = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path = saved(tmp_path, rgb)
    assert (load_png(path, spec((1, 6, 5)))[0]
            == np.rint(rgb.astype(np.int64).sum(axis=2) / 3)).all()
    assert (load_png(path, spec((3, 6, 5))) == rgb.transpose(2, 0, 1)).all()


def test_alpha_is_ignored_and_grey_fills_three_channels(tmp_path):
    rgba = RNG.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    assert (load_png(saved(tmp_path, rgba), spec((3, 4, 4))) == rgba[..., :3].transpose(2, 0, 1)
            ).all()
    grey_alpha = RNG.integers(0, 256, (4, 4, 2), dtype=np.uint8)
    got = load_png(saved(tmp_path, grey_alpha, name="la.png"), spec((3, 4, 4)))
    assert (got == grey_alpha[None, ..., 0]).all()


def test_a_palette_gives_its_colours(tmp_path):
    grey = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(grey).convert("P").save(path)
    assert (load_png(path, spec((3, 8, 8))) == grey[None]).all()


def test_16_bit_grey_and_1_bit_grey(tmp_path):
    deep = RNG.integers(0, 65536, (4, 4)).astype(np.uint16)
    got = load_png(saved(tmp_path, deep), spec((1, 4, 4)))
    assert (got[0] == np.rint(deep.astype(np.int64) * 255 / 65535)).all()
    bits = RNG.integers(0, 2, (4, 8)).astype(bool)
    assert (load_png(saved(tmp_path, bits, name="b.png"), spec((1, 4, 8)))[0]
            == bits * 255).all()


def test_2_bit_grey_and_an_interlaced_png(tmp_path):
    # 4 pixels a byte: 0b00011011 is 0, 1, 2, 3
    (tmp_path / "g2.png").write_bytes(raw_png(4, 2, 2, 0, b"\0\x1b" * 2))
    assert (load_png(tmp_path / "g2.png", spec((1, 2, 4)))[0] == [[0, 85, 170, 255]] * 2).all()
    # Adam7 of a 2x2 grey image: pass 1 (0,0), pass 6 (1,0), pass 7 row 1; filter 0 each
    (tmp_path / "i.png").write_bytes(raw_png(2, 2, 8, 0, b"\0\x0a" + b"\0\x0b" + b"\0\x0c\x0d",
                                             interlace=1))
    assert (load_png(tmp_path / "i.png", spec((1, 2, 2)))[0] == [[10, 11], [12, 13]]).all()


def test_a_flat_input_takes_any_shape_of_its_pixel_count(tmp_path):
    grey = RNG.integers(0, 256, (4, 16), dtype=np.uint8)
    got = load_png(saved(tmp_path, grey), spec((64, 1, 1)))
    assert (got.reshape(-1) == grey.reshape(-1)).all()
    with pytest.raises(UserError, match="4x4 pixels, but the model takes 64 values"):
        load_png(saved(tmp_path, grey[:4, :4], name="s.png"), spec((64, 1, 1)))


def _rows(n, width=8):
    return b"".join(b"\0" + bytes(range(width)) for _ in range(n))


@pytest.mark.parametrize("case, message", [
    ("truncated file", "runs past the end of the file"),
    ("junk after IEND", "4 bytes after IEND"),
    ("no IEND", "no IEND"),
    ("bad CRC", "bad CRC"),
    ("short image data", "ends short of the 64 bytes the header declares"),
    ("long image data", "inflates past the 64 bytes the header declares"),
    ("palette without PLTE", "without a palette"),
    ("unfinished zlib stream", "ends short of the 64 bytes"),
    ("bytes after the zlib stream", "data after the end of the image data stream"),
    ("split IDAT", "not consecutive"),
    ("no IHDR first", "the first chunk is not IHDR"),
    ("bad depth", "colour type 2 with bit depth 4"),
    ("not a PNG", "not a PNG file"),
])
def test_a_damaged_png_is_refused(tmp_path, case, message):
    good = raw_png(7, 8, 8, 0, _rows(8, 7))
    data = {
        "truncated file": good[:-30],
        "junk after IEND": good + b"junk",
        "no IEND": good[:-12],
        "bad CRC": good[:45] + bytes([good[45] ^ 1]) + good[46:],
        "short image data": raw_png(7, 8, 8, 0, _rows(7, 7)),
        "long image data": raw_png(7, 8, 8, 0, _rows(9, 7)),
        "palette without PLTE": raw_png(7, 8, 8, 3, _rows(8, 7)),
        "unfinished zlib stream": (raw_png(7, 8, 8, 0, b"")[:33]
                                   + chunk(b"IDAT", zlib.compress(_rows(8, 7))[:-6])
                                   + chunk(b"IEND", b"")),
        "bytes after the zlib stream": (raw_png(7, 8, 8, 0, b"")[:33]
                                        + chunk(b"IDAT", zlib.compress(_rows(8, 7)) + b"xx")
                                        + chunk(b"IEND", b"")),
        "split IDAT": (raw_png(7, 8, 8, 0, b"")[:33]
                       + chunk(b"IDAT", zlib.compress(_rows(8, 7))[:10]) + chunk(b"tEXt", b"a\0b")
                       + chunk(b"IDAT", zlib.compress(_rows(8, 7))[10:]) + chunk(b"IEND", b"")),
        "no IHDR first": b"\x89PNG\r\n\x1a\n" + chunk(b"tEXt", b"a\0b") + good[8:],
        "bad depth": raw_png(7, 8, 4, 2, _rows(8, 7)),
        "not a PNG": b"GIF89a" + good[6:],
    }[case]
    assert raw_png(7, 8, 8, 0, b"")[:33] == good[:33]   # signature and IHDR
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    with pytest.raises(UserError, match="not a readable PNG") as caught:
        load_png(path, spec((1, 8, 7)))
    assert message in str(caught.value)
    # the same file whole is read
    path.write_bytes(good)
    assert load_png(path, spec((1, 8, 7))).shape == (1, 8, 7)


def _png_with(width, height, depth, colour, raw, before=(), after=()) -> bytes:
    """A PNG with extra chunks ``(kind, data)`` before and after its IDAT."""
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                            colour, 0, 0, 0))
    out += b"".join(chunk(k, d) for k, d in before) + chunk(b"IDAT", zlib.compress(raw))
    return out + b"".join(chunk(k, d) for k, d in after) + chunk(b"IEND", b"")


_GREY = (4, 2, 8, 0, b"\0\1\2\3\4" * 2)
_PALETTE = (4, 2, 8, 3, b"\0\0\1\0\1" * 2)


@pytest.mark.parametrize("case, png, message", [
    ("unknown critical chunk", _png_with(*_GREY, before=[(b"ABCD", b"")]),
     "unknown critical chunk ABCD"),
    ("chunk type not letters", _png_with(*_GREY, before=[(b"a\x01cd", b"")]),
     "is not four letters"),
    ("IEND with data", _png_with(*_GREY)[:-12] + chunk(b"IEND", b"xy"), "IEND with data"),
    ("PLTE in grey", _png_with(*_GREY, before=[(b"PLTE", b"\0" * 6)]),
     "PLTE in a colour type 0 image"),
    ("PLTE beyond the bit depth", _png_with(2, 1, 1, 3, b"\0\x40",
                                            before=[(b"PLTE", b"\0" * 9)]),
     "PLTE of 9 bytes for bit depth 1"),
    ("two PLTE", _png_with(*_PALETTE, before=[(b"PLTE", b"\0" * 6)] * 2),
     "a second or misplaced PLTE"),
    ("tRNS in RGBA", _png_with(1, 1, 8, 6, b"\0" + bytes(4), before=[(b"tRNS", b"\0\0")]),
     "tRNS of 2 bytes in a colour type 6 image"),
    ("tRNS longer than the palette", _png_with(*_PALETTE, before=[(b"PLTE", b"\0" * 6),
                                                                  (b"tRNS", b"\0" * 3)]),
     "tRNS of 3 entries for a palette of 2"),
    ("gAMA after IDAT", _png_with(*_GREY, after=[(b"gAMA", b"\0\0\xb1\x8f")]),
     "gAMA after the image data"),
    ("palette index outside the palette", _png_with(*_PALETTE, before=[(b"PLTE", b"\0" * 3)]),
     "palette index 1 of a palette of 1"),
    ("reserved bit", _png_with(*_GREY, before=[(b"abcd", b"")]), "has the reserved bit set"),
    ("two gAMA", _png_with(*_GREY, before=[(b"gAMA", b"\0\0\xb1\x8f")] * 2), "a second gAMA"),
    ("gAMA after PLTE", _png_with(*_PALETTE, before=[(b"PLTE", b"\0" * 6),
                                                     (b"gAMA", b"\0\0\xb1\x8f")]),
     "gAMA after PLTE"),
    ("bKGD before PLTE", _png_with(*_PALETTE, before=[(b"bKGD", b"\0"), (b"PLTE", b"\0" * 6)]),
     "bKGD before PLTE"),
    ("bKGD index", _png_with(*_PALETTE, before=[(b"PLTE", b"\0" * 6), (b"bKGD", b"\7")]),
     "bKGD not an index into the palette of 2"),
    ("hIST without PLTE", _png_with(*_GREY, before=[(b"hIST", b"\0\0")]),
     "hIST of 2 bytes for a palette of 0"),
    ("sRGB intent", _png_with(*_GREY, before=[(b"sRGB", b"\x09")]), "sRGB rendering intent 9"),
    ("gAMA size", _png_with(*_GREY, before=[(b"gAMA", b"")]), "gAMA of 0 bytes, not 4"),
    ("sBIT past the depth", _png_with(*_GREY, before=[(b"sBIT", b"\x09")]),
     "values past 8 bits"),
    ("tIME", _png_with(*_GREY, after=[(b"tIME", struct.pack(">HBBBBB", 2026, 13, 1, 0, 0, 0))]),
     "tIME holds an impossible date"),
    ("tEXt without keyword", _png_with(*_GREY, after=[(b"tEXt", b"no separator")]),
     "tEXt without a keyword"),
    ("zTXt damaged", _png_with(*_GREY, after=[(b"zTXt", b"k\0\0" + b"not zlib")]),
     "zTXt: damaged compressed data"),
    ("zTXt bomb", _png_with(*_GREY, after=[(b"zTXt", b"k\0\0" + zlib.compress(bytes(2 << 20)))]),
     "zTXt: inflates past 1048576 bytes"),
    ("tRNS grey sample", _png_with(4, 2, 1, 0, b"\0\xf0" * 2, before=[(b"tRNS", b"\0\5")]),
     "tRNS holds a sample past 1 bits"),
])
def test_a_png_against_the_chunk_rules_is_refused(tmp_path, case, png, message):
    path = tmp_path / "bad.png"
    path.write_bytes(png)
    with pytest.raises(UserError, match="not a readable PNG") as caught:
        load_png(path, spec((3, 2, 4)))
    assert message in str(caught.value)


def test_chunks_in_their_place_are_read(tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(_png_with(*_PALETTE, before=[(b"gAMA", b"\0\0\xb1\x8f"),
                                                  (b"PLTE", b"\x0a\x0b\x0c\x14\x15\x16"),
                                                  (b"tRNS", b"\xff")],
                               after=[(b"tEXt", b"k\0v")]))
    got = load_png(path, spec((3, 2, 4)))
    assert got[:, 0, :].T.tolist() == [[10, 11, 12], [20, 21, 22], [10, 11, 12], [20, 21, 22]]


def test_sizes_and_channels_the_model_does_not_take_are_refused(tmp_path):
    grey = saved(tmp_path, np.zeros((8, 24), np.uint8))
    with pytest.raises(UserError, match="more pixels than the model takes"):
        load_png(grey, spec((3, 8, 8)))
    with pytest.raises(UserError, match="8x7 pixels, but the model takes 7x8"):
        load_png(saved(tmp_path, np.zeros((7, 8), np.uint8), name="t.png"), spec((1, 8, 7)))
    with pytest.raises(UserError, match="the model takes 2 channels; a PNG gives 1"):
        load_png(saved(tmp_path, np.zeros((8, 8), np.uint8), name="c.png"), spec((2, 8, 8)))


def test_the_cli_refuses_a_truncated_png_in_one_line(tmp_path):
    from .conftest import ROOT

    grey = saved(tmp_path, RNG.integers(0, 256, (28, 28), dtype=np.uint8))
    data = grey.read_bytes()
    grey.write_bytes(data[:len(data) // 2])
    line = cli_rejects("run", "--sim", ROOT / "models/fmnist-mlp-up5k.npz", grey)
    assert line.startswith(f"error: {grey}: not a readable PNG (")
