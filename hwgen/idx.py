"""IDX files (the MNIST family's format), gzip-compressed or raw: one bounded reader, a writer.

An IDX file is ``00 00 TYPE NDIM``, then NDIM big-endian uint32 dimensions, then the values
in row-major order. :func:`read_idx` reads one under these rules, each failure one line
(:class:`~hwgen.errors.DatasetError`) naming the file:

- the path is a regular file (a FIFO, device such as ``/dev/zero`` or directory is refused
  without being opened for reading);
- gzip is detected by its magic bytes, not by the name;
- TYPE is one of ``08`` (uint8), ``09`` (int8), ``0B`` (int16), ``0C`` (int32), ``0D``
  (float32), ``0E`` (float64); NDIM is 1 to 4 (images and labels need no more);
- the data size the header declares (exact Python integers, so ``[2**31, 2**31, 4]``
  cannot overflow) is at most ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, 128 MiB,
  or ``$SBN_MAX_IDX_BYTES``), and only then allocated;
- the data is exactly that size: a raw file's length is checked before reading, and a gzip
  stream is never decompressed past the declared size + 1 byte; a corrupt or truncated gzip
  stream is refused.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .environment import size_limit
from .files import open_regular, read_upto

IDX_DTYPES = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
MAX_NDIM = 4
DEFAULT_MAX_BYTES = 128 << 20  # int16 images of 256 MiB cost 560 MiB: over the promise
MAX_BYTES_VARIABLE = "SBN_MAX_IDX_BYTES"


def read_idx(path: str | os.PathLike, max_bytes: int | None = None,
             integers: str | None = None) -> np.ndarray:
    """An IDX file as a NumPy array in native byte order, under the rules above.
    ``integers`` (``"images"`` or ``"labels"``): the file must hold integers, refused from
    its header (a float file was read whole, up to the limit, before it was refused)."""
    return read_idx_prefix(path, None, max_bytes, integers)[0]


def read_idx_prefix(path: str | os.PathLike, items: int | None,
                    max_bytes: int | None = None,
                    integers: str | None = None) -> tuple[np.ndarray, int]:
    """:func:`read_idx` of only the first ``items`` entries of the first axis (all for
    None), and the number of entries the header declares. The file is still checked whole
    (a raw file's size; a gzip stream decompressed to its end, a chunk at a time, and
    dropped past those entries: a 1 MB file that inflates to 128 MiB cost that much for 256
    images when it was kept)."""
    path = Path(path)
    limit = (size_limit(MAX_BYTES_VARIABLE, DEFAULT_MAX_BYTES, DatasetError)
             if max_bytes is None else max_bytes)
    with open_regular(path, DatasetError) as raw:
        try:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            if gzipped:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read(path, stream, None, limit, integers, items)
            return _read(path, raw, os.fstat(raw.fileno()).st_size, limit, integers, items)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise DatasetError(f"{path}: cannot read (corrupt or truncated gzip stream: "
                               f"{err})") from None
        except OSError as err:
            raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from None


def _read(path: Path, stream, file_size: int | None, limit: int,
          integers: str | None, items: int | None) -> tuple[np.ndarray, int]:
    """Header, then data (the first ``items`` entries, or all), from ``stream``;
    ``file_size`` is known for raw files only."""
    magic = read_upto(stream, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
    name = dtype.newbyteorder("=").name
    if integers == "images" and dtype.kind == "f":
        raise DatasetError(f"{path}: images have dtype {name}; expected unsigned integers")
    if integers == "labels" and dtype.kind == "f":
        raise DatasetError(f"{path}: labels must be integers, got {name} values")
    if not 1 <= ndim <= MAX_NDIM:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions; images and labels "
                           f"have 1 to {MAX_NDIM}")
    head = read_upto(stream, 4 * ndim)
    if len(head) < 4 * ndim:
        raise DatasetError(f"{path}: IDX header is truncated")
    dims = [int.from_bytes(head[4 * i:4 * i + 4], "big") for i in range(ndim)]
    expected = math.prod(dims) * dtype.itemsize
    if expected > limit:
        raise DatasetError(f"{path}: IDX header says {dims} ({expected} bytes), more than the "
                           f"limit of {limit} bytes (${MAX_BYTES_VARIABLE} raises it)")
    if file_size is not None and file_size - 4 - 4 * ndim != expected:
        raise DatasetError(f"{path}: IDX header says {dims} ({expected} bytes) but the file "
                           f"holds {file_size - 4 - 4 * ndim} bytes")
    whole = items is None or dims[0] <= items
    shape = dims if whole else [items, *dims[1:]]
    wanted = expected if whole else expected // dims[0] * items
    data = read_upto(stream, wanted)
    rest = (0 if whole or len(data) != wanted
            else expected - wanted if file_size is not None  # its size was checked above
            else _skip(stream, expected - wanted))
    at_end = whole or (file_size is None and rest == expected - wanted)
    more = at_end and len(data) == wanted and bool(stream.read(1))  # at most one byte past
    if len(data) != wanted or rest != expected - wanted or more:
        held = (f"more than {expected}" if more else str(len(data)) if whole
                else f"{len(data) + rest}")
        raise DatasetError(f"{path}: IDX header says {dims} ({expected} bytes) but the file "
                           f"holds {held} bytes")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1 and dtype.byteorder != "=" and not dtype.isnative:
        # swapped where it lies (``data`` is a bytearray): no second copy of the file
        return array.byteswap(inplace=True).view(dtype.newbyteorder("=")), dims[0]
    return array, dims[0]


def _skip(stream, size: int) -> int:
    """Read and drop up to ``size`` bytes of ``stream`` a chunk at a time (a gzip stream is
    thereby checked to its end, CRC included, in bounded memory); the bytes there were."""
    skipped = 0
    while skipped < size:
        chunk = stream.read(min(1 << 20, size - skipped))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` (uint8 or int8, any shape) as an IDX file, gzip if the name ends in .gz."""
    array = np.ascontiguousarray(array)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    if array.dtype not in codes:
        raise ValueError(f"write_idx supports uint8 and int8, got {array.dtype}")
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
