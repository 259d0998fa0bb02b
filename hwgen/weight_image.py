"""The weight image: what a board loads into SPRAM at power-up, from its SPI flash.

A layer whose weights live in the iCE40UP5K's SPRAM (``PExSIMDs`` in a fold) cannot have
them in the bitstream: SPRAM has no initial contents. ``hwgen build`` writes them to
``weights.bin`` beside the bitstream; it is programmed into the board's flash at
:data:`FLASH_OFFSET` and the board's loader copies it into the SPRAMs after configuration,
checking it first. Layout (multi-byte fields big-endian)::

    offset  size        field
    0       4           magic "SBNW"
    4       1           image format version (1)
    5       3           zero
    8       4           WORDS: the count of 16-bit payload words
    12      8           model id (:func:`model_id`: the model and its fold)
    20      2 * WORDS   payload: the words in ``hwgen.fold.spram.spram_words`` order
    20+2W   4           CRC-32/MPEG-2 of the payload bytes

CRC-32/MPEG-2 is polynomial 0x04C11DB7, initial value 0xFFFFFFFF, most significant bit
first, no reflection and no final xor (check value of ``b"123456789"``: 0x0376E6E7); it
is what a shift register computes from bits in the order the flash sends them. The board
compares the 20 header bytes with :func:`header` of the model it was built for, so an
erased flash (0xFF bytes), an image of another model or fold, or a truncated one is
refused before any weight is used, and a corrupt payload by the CRC.

Pure Python and numpy (no amaranth): the host client and the tests use it too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .fold.storage import SPRAM_DEPTH, UP5K_SPRAM_BLOCKS

__all__ = ["FLASH_OFFSET", "MAGIC", "VERSION", "HEADER_BYTES", "CRC_BYTES", "MAX_WORDS",
           "crc32_mpeg2", "header", "encode", "decode", "model_id", "image_for",
           "write_image", "read_image"]

#: Byte offset of the image in the board's SPI flash: 1 MiB, past the iCE40UP5K's
#: bitstream (about 104 KB) on the iCEBreaker's 16 MB flash.
FLASH_OFFSET = 0x100000
MAGIC = b"SBNW"
VERSION = 1
HEADER_BYTES = 20
CRC_BYTES = 4
#: Four 16K x 16 SPRAM blocks: the most words an image can hold.
MAX_WORDS = UP5K_SPRAM_BLOCKS * SPRAM_DEPTH


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """CRC-32/MPEG-2 of ``data``, continuing from ``crc`` (a byte per step, table-driven)."""
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def _check_words(words: int) -> int:
    if isinstance(words, bool) or not isinstance(words, (int, np.integer)):
        raise TypeError(f"word count must be an integer, not {words!r}")
    if not 1 <= words <= MAX_WORDS:
        raise ValueError(f"word count must be in 1..{MAX_WORDS}, not {words}")
    return int(words)


def _check_id(ident: bytes) -> bytes:
    if not isinstance(ident, (bytes, bytearray)) or len(ident) != 8:
        raise ValueError(f"model id must be 8 bytes, not {ident!r}")
    return bytes(ident)


def header(words: int, ident: bytes) -> bytes:
    """The 20 header bytes of an image of ``words`` words for model id ``ident``."""
    return (MAGIC + bytes([VERSION, 0, 0, 0]) + _check_words(words).to_bytes(4, "big")
            + _check_id(ident))


def encode(words, ident: bytes) -> bytes:
    """A whole image: header, the 16-bit ``words`` big-endian, their CRC."""
    array = np.asarray(words)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError("words must be a 1-D sequence of integers")
    if array.size and (array.min() < 0 or array.max() > 0xFFFF):
        raise ValueError("every word must be in 0..0xFFFF")
    payload = array.astype(">u2").tobytes()
    return header(array.size, ident) + payload + crc32_mpeg2(payload).to_bytes(4, "big")


def declared_size(data: bytes) -> int | None:
    """The bytes (header, words, CRC) the image starting ``data`` says it has, read from its
    header; None unless ``data`` starts with a whole header with the magic."""
    if len(data) < HEADER_BYTES or data[:4] != MAGIC:
        return None
    return HEADER_BYTES + 2 * int.from_bytes(data[8:12], "big") + CRC_BYTES


def decode(data: bytes) -> tuple[bytes, np.ndarray]:
    """``(model id, words)`` of an image; ``ValueError`` naming what is wrong (magic,
    version, length, CRC). Bytes after the CRC (the rest of a flash dump) are ignored."""
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise ValueError(f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    if data[:4] != MAGIC:
        raise ValueError("not a weight image (no SBNW magic)")
    if data[4] != VERSION or data[5:8] != b"\0\0\0":
        raise ValueError(f"weight image format version {data[4]} is not {VERSION}")
    words = int.from_bytes(data[8:12], "big")
    if not 1 <= words <= MAX_WORDS:
        raise ValueError(f"weight image claims {words} words, outside 1..{MAX_WORDS}")
    end = declared_size(data) - CRC_BYTES
    if len(data) < end + CRC_BYTES:
        raise ValueError(f"weight image is truncated: {len(data)} bytes, its header says "
                         f"{end + CRC_BYTES}")
    payload = data[HEADER_BYTES:end]
    if crc32_mpeg2(payload) != int.from_bytes(data[end:end + CRC_BYTES], "big"):
        raise ValueError("weight image CRC mismatch: the payload is corrupt")
    return data[12:20], np.frombuffer(payload, ">u2").astype(np.uint16)


def _spram_words(net) -> np.ndarray:
    from .fold.spram import spram_words

    return np.asarray(spram_words(net), dtype=np.uint16)


def model_id(net) -> bytes:
    """8 bytes naming a folded network (a :class:`~hwgen.fold.NetworkPlan`): the first bytes
    of SHA-256 over every layer's parameters and the SPRAM words (which encode the fold's
    packing). Another model, or the same model folded another way, gets another id."""
    digest = hashlib.sha256(b"sbn-weight-image-1")
    for layer in net.model.layers:
        digest.update(type(layer).__name__.encode())
        for name in ("weight", "threshold", "sign", "bias"):
            value = getattr(layer, name, None)
            if value is not None:
                value = np.ascontiguousarray(value)
                digest.update(f"{name}{value.shape}{value.dtype.str}".encode())
                digest.update(value.tobytes())
    digest.update(_spram_words(net).astype(">u2").tobytes())
    return digest.digest()[:8]


def image_for(net) -> bytes:
    """The weight image of a folded network with SPRAM layers (``ValueError`` without)."""
    words = _spram_words(net)
    if not words.size:
        raise ValueError("this fold keeps no weights in SPRAM: there is no weight image")
    return encode(words, model_id(net))


def write_image(net, path: str | os.PathLike) -> int:
    """Write :func:`image_for` ``net`` to ``path`` (a staging name renamed into place,
    :func:`hwgen.outputs.staged_file`); returns its size in bytes."""
    from .outputs import staged_file

    data = image_for(net)
    with staged_file(path) as staging:
        staging.write_bytes(data)
    return len(data)


def read_image(path: str | os.PathLike, limit: int = 16 << 20) -> bytes:
    """The bytes of a flash image file a user names (``run --sim --weights``): a regular file
    (:func:`hwgen.files.open_regular`: no FIFO or device is waited on) of at most ``limit``
    bytes (a flash dump may hold more than the image); one-line ``UserError`` otherwise.
    Its contents are not checked here: the board (or its simulation) does that."""
    from .files import open_regular, read_upto

    path = Path(path)
    with open_regular(path, what="weight image") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise UserError(f"{path}: {size} bytes is more than a flash image "
                            f"({limit} bytes at most)")
        try:
            return bytes(read_upto(f, limit))
        except OSError as err:
            raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
