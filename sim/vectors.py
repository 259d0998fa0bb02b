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


#: Images packed at a time: the temporaries (about 40 bytes per value) stay near 8 MB for
#: a 28x28 image, whatever the image count.
PACK_CHUNK = 256


def pack_beats(images: np.ndarray, lanes: int, bits: int, order: str = "CHW") -> np.ndarray:
    """``images [K, C, H, W]`` -> uint32 words ``[K, beats, ceil(lanes*bits/32)]``,
    little-endian (bit ``i`` of a beat is bit ``i % 32`` of word ``i // 32``); values in
    ``order`` (``"CHW"`` or ``"HWC"``). Packed :data:`PACK_CHUNK` images at a time, so
    memory beyond the result does not grow with ``K``."""
    k = images.shape[0]
    values = math.prod(images.shape[1:])
    beats = beats_per_image(values, lanes)
    words = math.ceil(lanes * bits / 32)
    out = np.zeros((k, beats, words), dtype=np.uint32)
    for start in range(0, k, PACK_CHUNK):
        out[start:start + PACK_CHUNK] = _pack_chunk(
            in_stream_order(images[start:start + PACK_CHUNK], order), lanes, bits, beats,
            words)
    return out


def _pack_chunk(images: np.ndarray, lanes: int, bits: int, beats: int,
                words: int) -> np.ndarray:
    k = images.shape[0]
    flat = images.reshape(k, -1).astype(np.uint64)
    padded = np.zeros((k, beats * lanes), dtype=np.uint64)
    padded[:, :flat.shape[1]] = flat
    values = padded.reshape(k, beats, lanes)
    bit_planes = ((values[..., None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    flat_bits = np.zeros((k, beats, words * 32), dtype=np.uint8)
    flat_bits[..., :lanes * bits] = bit_planes.reshape(k, beats, lanes * bits)
    packed = np.packbits(flat_bits, axis=-1, bitorder="little")
    return packed.view("<u4").astype(np.uint32).reshape(k, beats, words)


def beats_as_ints(beats: np.ndarray) -> list[list[int]]:
    """Words ``[K, beats, words]`` -> Python ints per beat (for simulator testbenches)."""
    shifts = [32 * i for i in range(beats.shape[-1])]
    return [[sum(int(w) << s for w, s in zip(beat, shifts)) for beat in image]
            for image in beats]
