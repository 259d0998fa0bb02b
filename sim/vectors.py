"""Input beats of the core's stream interface (``interface.json``), as NumPy arrays.

An image's values go in C, H, W row-major order (or H, W, C where ``interface.json`` says
``"order": "HWC"``), ``lanes`` values per beat; value ``k`` of a
beat sits in bits ``[k*bits, (k+1)*bits)``; the last beat of an image is zero-padded.
"""

from __future__ import annotations

import math

import numpy as np

from hwgen.layout import in_stream_order


def beats_per_image(values: int, lanes: int) -> int:
    return math.ceil(values / lanes)


#: Bytes of temporaries a chunk of images may take while packed (whole images, at least
#: one): per beat its ``32 * words`` bit bytes, per value about 12 more.
PACK_BYTES = 8 << 20


def pack_beats(images: np.ndarray, lanes: int, bits: int, order: str = "CHW") -> np.ndarray:
    """``images [K, C, H, W]`` -> uint32 words ``[K, beats, ceil(lanes*bits/32)]``,
    little-endian (bit ``i`` of a beat is bit ``i % 32`` of word ``i // 32``); values in
    ``order`` (``"CHW"`` or ``"HWC"``). Memory beyond the result does not grow with ``K``
    or with ``bits`` (see :func:`packed_chunks`)."""
    k = images.shape[0]
    words = math.ceil(lanes * bits / 32)
    out = np.zeros((k, beats_per_image(math.prod(images.shape[1:]), lanes), words),
                   dtype=np.uint32)
    for start, packed in packed_chunks(images, lanes, bits, order):
        out[start:start + len(packed)] = packed
    return out


def packed_chunks(images: np.ndarray, lanes: int, bits: int, order: str = "CHW"):
    """:func:`pack_beats` of ``images`` about :data:`PACK_BYTES` of temporaries (whole
    images, at least one) at a time: yields ``(first image index, words [k, beats, words])``, so a
    writer holds one chunk's words, not every image's."""
    k = images.shape[0]
    beats = beats_per_image(math.prod(images.shape[1:]), lanes)
    words = math.ceil(lanes * bits / 32)
    chunk = max(1, PACK_BYTES // max(1, beats * (32 * words + 12 * lanes)))
    for start in range(0, k, chunk):
        yield start, _pack_chunk(in_stream_order(images[start:start + chunk], order), lanes,
                                 bits, beats, words)


def _pack_chunk(images: np.ndarray, lanes: int, bits: int, beats: int,
                words: int) -> np.ndarray:
    k = images.shape[0]
    flat = images.reshape(k, -1)
    padded = np.zeros((k, beats * lanes), dtype=np.uint64 if bits > 32 else np.uint32)
    padded[:, :flat.shape[1]] = flat
    values = padded.reshape(k, beats, lanes)
    flat_bits = np.zeros((k, beats, words * 32), dtype=np.uint8)
    planes = flat_bits[..., :lanes * bits].reshape(k, beats, lanes, bits)
    for bit in range(bits):  # one bit plane at a time: no ``bits``-fold wide temporary
        planes[..., bit] = (values >> bit) & 1
    packed = np.packbits(flat_bits, axis=-1, bitorder="little")
    return packed.view("<u4").astype(np.uint32).reshape(k, beats, words)


def beats_as_ints(beats: np.ndarray) -> list[list[int]]:
    """Words ``[K, beats, words]`` -> Python ints per beat (for simulator testbenches)."""
    shifts = [32 * i for i in range(beats.shape[-1])]
    return [[sum(int(w) << s for w, s in zip(beat, shifts)) for beat in image]
            for image in beats]
