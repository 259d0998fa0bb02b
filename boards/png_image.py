"""Strict, bounded PNG reading for ``hwgen run``: a PNG file as one model input.

A PNG is accepted only when it is whole and follows the specification's chunk rules: the
signature, every chunk's length and CRC, IHDR first, no unknown critical chunk, one PLTE
(not in grey images, no more entries than the bit depth allows) before the image data
when the colours are a palette, tRNS and the other chunks that must precede the image data
in their place and size, consecutive IDAT chunks whose zlib stream ends exactly where the
pixels the header declares end, palette indices inside the palette, and an empty IEND
last with nothing after it. Everything is checked from the bytes before Pillow decodes a pixel,
and the pixel count is checked against the model before anything is inflated, so a
truncated, padded or damaged file is one error, never an image silently filled with zeros.

Mapping onto the model input ``[C, H, W]`` of ``bits``-bit values (``max_value`` the
largest), with ``p`` a sample of a PNG of bit depth ``d``: ``round(p * max_value /
(2**d - 1))``, halves to even.

- ``C == 1``: a ``W x H`` PNG; colour is averaged to grey (mean of R, G, B).
- ``C == 3``: a ``W x H`` PNG; R, G, B are the three channels, a grey PNG gives each.
- a flat input ``[N, 1, 1]``: a grey PNG of ``N`` pixels in any shape, rows in order.
- alpha is ignored; any other channel count is refused.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from hwgen.errors import UserError

#: The largest PNG file ``run`` reads (a model takes at most 2**20 input values).
MAX_PNG_BYTES = 64 << 20

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: samples per pixel of each PNG colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
#: Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


class _Header:
    """The IHDR fields that fix the size of the image data."""

    def __init__(self, data: bytes):
        if len(data) != 13:
            raise ValueError(f"IHDR of {len(data)} bytes, not 13")
        (self.width, self.height, self.depth, self.colour, compression, filtering,
         self.interlace) = struct.unpack(">IIBBBBB", data)
        if not (0 < self.width < 2**31 and 0 < self.height < 2**31):
            raise ValueError(f"{self.width}x{self.height} pixels")
        if self.depth not in _DEPTHS.get(self.colour, ()):
            raise ValueError(f"colour type {self.colour} with bit depth {self.depth}")
        if compression or filtering or self.interlace not in (0, 1):
            raise ValueError("unknown compression, filter or interlace method")

    def raw_length(self) -> int:
        """Bytes of filtered scanlines the zlib stream must inflate to."""
        bits = _SAMPLES[self.colour] * self.depth
        passes = (((0, 0, 1, 1),) if self.interlace == 0 else _ADAM7)
        total = 0
        for x0, y0, dx, dy in passes:
            width = max(0, -(-(self.width - x0) // dx))
            height = max(0, -(-(self.height - y0) // dy))
            if width and height:
                total += height * (1 + (width * bits + 7) // 8)
        return total


def _chunks(data: bytes):
    """(type, payload) of every chunk after the signature up to IEND, lengths and CRCs
    checked; nothing may follow IEND."""
    at = len(_SIGNATURE)
    while at < len(data):
        if at + 12 > len(data):
            raise ValueError("truncated chunk")
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 8 + length
        if length >= 2**31 or end + 4 > len(data):
            raise ValueError(f"{kind!r} chunk runs past the end of the file")
        if zlib.crc32(data[at + 4:end]) != struct.unpack(">I", data[end:end + 4])[0]:
            raise ValueError(f"{kind!r} chunk has a bad CRC")
        yield kind, data[at + 8:end]
        at = end + 4
        if kind == b"IEND" and at != len(data):
            raise ValueError(f"{len(data) - at} bytes after IEND")


#: Ancillary chunks the PNG specification places before the image data.
_BEFORE_IDAT = {b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"bKGD", b"hIST", b"tRNS",
                b"pHYs", b"sPLT", b"cICP", b"mDCV", b"cLLI", b"eXIf", b"acTL"}


#: Ancillary chunks that may appear at most once, and those that must precede PLTE.
_ONCE = {b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"bKGD", b"hIST", b"tRNS", b"pHYs",
         b"tIME", b"cICP", b"mDCV", b"cLLI", b"eXIf", b"acTL"}
_BEFORE_PLTE = {b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP", b"mDCV", b"cLLI"}
#: Fixed payload sizes of ancillary chunks.
_SIZES = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"tIME": 7, b"cICP": 4,
          b"cLLI": 8, b"mDCV": 24}
#: The most a compressed text or profile chunk may inflate to.
_MAX_TEXT_BYTES = 1 << 20


def _inflate_whole(data: bytes, what: str) -> None:
    """ValueError unless ``data`` is one complete zlib stream of at most
    :data:`_MAX_TEXT_BYTES` with nothing after it."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, _MAX_TEXT_BYTES + 1)
    except zlib.error as err:
        raise ValueError(f"{what}: damaged compressed data ({err})") from None
    if len(out) > _MAX_TEXT_BYTES or inflater.unconsumed_tail:
        raise ValueError(f"{what}: inflates past {_MAX_TEXT_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise ValueError(f"{what}: incomplete or padded compressed data")


def _keyword(payload: bytes, what: str) -> bytes:
    """The text after a chunk's keyword and its NUL; ValueError for a bad keyword."""
    keyword, nul, rest = payload.partition(b"\0")
    if not nul or not 1 <= len(keyword) <= 79 or any(
            not (32 <= c <= 126 or 161 <= c <= 255) for c in keyword):
        raise ValueError(f"{what} without a keyword of 1 to 79 Latin-1 letters and a NUL")
    return rest


def _check_ancillary(kind: bytes, payload: bytes, header: "_Header", palette: int) -> None:
    """The size and value rules of the ancillary chunks the specification defines."""
    name = kind.decode()
    if kind in _SIZES and len(payload) != _SIZES[kind]:
        raise ValueError(f"{name} of {len(payload)} bytes, not {_SIZES[kind]}")
    if kind == b"sRGB" and payload[0] > 3:
        raise ValueError(f"sRGB rendering intent {payload[0]}")
    if kind == b"pHYs" and payload[8] > 1:
        raise ValueError(f"pHYs unit {payload[8]}")
    if kind == b"tIME":
        _, month, day, hour, minute, second = struct.unpack(">HBBBBB", payload)
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59
                and second <= 60):
            raise ValueError("tIME holds an impossible date")
    if kind == b"sBIT":
        count = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}[header.colour]
        top = 8 if header.colour == 3 else header.depth
        if len(payload) != count or not all(1 <= v <= top for v in payload):
            raise ValueError(f"sBIT of {len(payload)} bytes or values past {top} bits")
    if kind == b"bKGD":
        if header.colour == 3:
            if len(payload) != 1 or payload[0] >= palette:
                raise ValueError(f"bKGD not an index into the palette of {palette}")
        elif len(payload) != (2 if header.colour in (0, 4) else 6):
            raise ValueError(f"bKGD of {len(payload)} bytes in a colour type "
                             f"{header.colour} image")
    if kind == b"tRNS":
        expected = {0: 2, 2: 6}.get(header.colour)
        if header.colour in (4, 6) or (expected is not None and len(payload) != expected):
            raise ValueError(f"tRNS of {len(payload)} bytes in a colour type "
                             f"{header.colour} image")
        if header.colour == 3 and not 0 < len(payload) <= palette:
            raise ValueError(f"tRNS of {len(payload)} entries for a palette of {palette}")
    if kind in (b"bKGD", b"tRNS") and header.colour in (0, 2, 4, 6):
        samples = struct.unpack(f">{len(payload) // 2}H", payload[:len(payload) // 2 * 2])
        if any(v >> header.depth for v in samples):
            raise ValueError(f"{name} holds a sample past {header.depth} bits")
    if kind == b"hIST" and (not palette or len(payload) != 2 * palette):
        raise ValueError(f"hIST of {len(payload)} bytes for a palette of {palette}")
    if kind == b"tEXt":
        _keyword(payload, "tEXt")
    if kind in (b"zTXt", b"iCCP"):
        rest = _keyword(payload, name)
        if not rest or rest[0] != 0:
            raise ValueError(f"{name} with an unknown compression method")
        _inflate_whole(rest[1:], name)
    if kind == b"iTXt":
        rest = _keyword(payload, "iTXt")
        if len(rest) < 2 or rest[0] > 1 or rest[1] != 0:
            raise ValueError("iTXt with a bad compression flag or method")
        compressed = rest[0] == 1
        _, nul1, rest = rest[2:].partition(b"\0")
        _, nul2, text = rest.partition(b"\0")
        if not (nul1 and nul2):
            raise ValueError("iTXt without its language tag and translated keyword")
        if compressed:
            _inflate_whole(text, "iTXt")
    if kind == b"eXIf" and payload[:4] not in (b"MM\0*", b"II*\0"):
        raise ValueError("eXIf without a TIFF header")


def _check_chunk(kind: bytes, payload: bytes, header: "_Header", palette: int, idat: bool,
                 seen: set):
    """The rules of one chunk after IHDR (``palette``: PLTE entries so far; ``idat``:
    whether image data came before it; ``seen``: the chunk types before it)."""
    if not all(65 <= c <= 90 or 97 <= c <= 122 for c in kind):
        raise ValueError(f"chunk type {kind!r} is not four letters")
    if not kind[0] & 0x20 and kind not in (b"PLTE", b"IDAT", b"IEND"):
        raise ValueError(f"unknown critical chunk {kind.decode()}")
    if kind[2] & 0x20:
        raise ValueError(f"chunk {kind.decode()} has the reserved bit set (a lower-case third "
                         f"letter)")
    if kind in _BEFORE_IDAT and idat:
        raise ValueError(f"{kind.decode()} after the image data")
    if kind in _ONCE and kind in seen:
        raise ValueError(f"a second {kind.decode()}")
    if kind in _BEFORE_PLTE and palette:
        raise ValueError(f"{kind.decode()} after PLTE")
    if kind in (b"bKGD", b"hIST", b"tRNS") and header.colour == 3 and not palette:
        raise ValueError(f"{kind.decode()} before PLTE")
    if kind not in (b"PLTE", b"IDAT", b"IEND"):
        _check_ancillary(kind, payload, header, palette)
    if kind == b"IEND" and payload:
        raise ValueError("IEND with data")
    if kind == b"PLTE":
        entries = len(payload) // 3
        if palette or idat:
            raise ValueError("a second or misplaced PLTE")
        if header.colour in (0, 4):
            raise ValueError(f"PLTE in a colour type {header.colour} image")
        if len(payload) % 3 or not 1 <= entries <= 256 or (
                header.colour == 3 and entries > 1 << header.depth):
            raise ValueError(f"PLTE of {len(payload)} bytes for bit depth {header.depth}")


def _check_structure(data: bytes, pixels_allowed: int) -> tuple[_Header, int]:
    """The header and palette size of a whole PNG; raises :class:`ValueError` naming the
    first defect and :class:`OverflowError` for more than ``pixels_allowed`` pixels
    (before inflating)."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    header = None
    palette = 0
    seen_iend = False
    idat: list[bytes] = []
    idat_closed = False
    seen: set = set()
    for kind, payload in _chunks(data):
        if header is not None and kind != b"IHDR":
            _check_chunk(kind, payload, header, palette, bool(idat), seen)
            seen.add(kind)
        if header is None:
            if kind != b"IHDR":
                raise ValueError("the first chunk is not IHDR")
            header = _Header(payload)
            if header.width * header.height > pixels_allowed:
                raise OverflowError
            continue
        if kind == b"IHDR":
            raise ValueError("a second IHDR")
        if kind == b"IDAT":
            if idat_closed:
                raise ValueError("IDAT chunks that are not consecutive")
            idat.append(payload)
        elif idat:
            idat_closed = True
        if kind == b"PLTE":
            palette = len(payload) // 3
        elif kind == b"IEND":
            seen_iend = True
    if header is None:
        raise ValueError("no IHDR")
    if not seen_iend:
        raise ValueError("no IEND (the file is truncated)")
    if not idat:
        raise ValueError("no image data (IDAT)")
    if header.colour == 3 and not palette:
        raise ValueError("a palette image without a palette (PLTE)")
    expected = header.raw_length()
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error as err:
        raise ValueError(f"damaged image data ({err})") from None
    if len(raw) > expected or inflater.unconsumed_tail:
        raise ValueError(f"image data inflates past the {expected} bytes the header declares")
    if not inflater.eof or len(raw) < expected:
        raise ValueError(f"image data ends short of the {expected} bytes the header declares "
                         f"(the file is truncated)")
    if inflater.unused_data:
        raise ValueError("data after the end of the image data stream")
    return header, palette


def _decode(data: bytes, palette: int) -> tuple[np.ndarray, int]:
    """Samples as ``(H, W, samples)`` integers (a palette expanded to RGB[A]) and the
    largest sample value (Pillow widens 2- and 4-bit grey to 8 bits and narrows 16-bit
    colour and 16-bit grey with alpha to 8 bits; 16-bit grey without alpha stays 16 bits)."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            if image.mode == "P":
                index = int(np.asarray(image).max(initial=0))
                if index >= palette:
                    raise ValueError(f"palette index {index} of a palette of {palette}")
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            top = {"1": 1, "I": 65535, "I;16": 65535, "I;16B": 65535}.get(image.mode, 255)
            pixels = np.asarray(image).astype(np.int64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > top:
        raise ValueError(f"samples outside 0..{top}")
    return pixels, top


def load_png(path: Path, input_spec) -> np.ndarray:
    """One image for a model input (:class:`hwgen.model.InputSpec`): ``int64`` of shape
    ``input_spec.shape``; raises :class:`UserError` (one line) for any file that is not a
    whole PNG of the model's size and channels. Needs Pillow."""
    from hwgen.files import read_bounded
    if importlib.util.find_spec("PIL") is None:
        raise UserError("reading PNG files needs Pillow (pip install pillow)") from None
    channels, height, width = input_spec.shape
    data = read_bounded(path, MAX_PNG_BYTES, what="PNG file",
                        reason=", more than any PNG of a model's input")
    flat = height == width == 1
    try:
        header, palette = _check_structure(data, channels if flat else height * width)
    except OverflowError:
        raise UserError(f"{path}: a PNG of more pixels than the model takes "
                        f"({list(input_spec.shape)})") from None
    except ValueError as err:
        raise UserError(f"{path}: not a readable PNG ({err})") from None
    if flat:
        if header.width * header.height != channels:
            raise UserError(f"{path}: {header.width}x{header.height} pixels, but the model "
                            f"takes {channels} values")
    elif (header.width, header.height) != (width, height):
        raise UserError(f"{path}: {header.width}x{header.height} pixels, but the model takes "
                        f"{width}x{height}")
    if channels not in (1, 3) and not flat:
        raise UserError(f"{path}: the model takes {channels} channels; a PNG gives 1 (grey) "
                        f"or 3 (RGB)")
    try:
        samples, top = _decode(data, palette)
    except (OSError, ValueError, SyntaxError, MemoryError) as err:
        raise UserError(f"{path}: not a readable PNG ({err})") from None
    colour = samples[:, :, :3] if samples.shape[2] >= 3 else samples[:, :, :1]
    scale = input_spec.max_value / top
    if flat or channels == 1:
        if colour.shape[2] == 3:
            values = np.rint(colour.sum(axis=2) * (scale / 3))
        else:
            values = np.rint(colour[:, :, 0] * scale)
        return values.astype(np.int64).reshape(input_spec.shape)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    values = np.rint(colour.astype(np.float64) * scale)
    return values.astype(np.int64).transpose(2, 0, 1).reshape(input_spec.shape)
