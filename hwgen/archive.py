"""The one reader of ``.npz`` archives of model files: checked before anything is inflated.

:func:`read_npz` returns ``{key: ndarray}`` for a zip of ``.npy`` members, or raises
:class:`~hwgen.errors.ModelFormatError` with one line naming the file and, where one is at
fault, the member. It never unpickles, never trusts a declared size, and never allocates
more than the declared (and limited) size of a member. Before reading any member's data:

- the path is a regular file (no FIFO, device or directory) of at most
  ``max_bytes + max_bytes // 8 + 1 MiB`` (deflate can grow incompressible data a little);
- the central directory is at most 2 MiB, with at most :data:`MAX_MEMBERS` members, each
  named ``<key>.npy`` once, where ``key`` matches ``[A-Za-z0-9_][A-Za-z0-9_.+-]*`` and
  has at most 200 characters;
- every member is stored (method 0) or deflated (method 8), without encryption flags;
- each member's declared size, and the sum of them, is at most ``max_bytes`` (default
  :data:`DEFAULT_MAX_BYTES`, 256 MiB; ``$SBN_MAX_MODEL_BYTES`` overrides the default), and
  at most ``caps[key]`` for the keys in ``caps``;
- each member's local header agrees with the directory (name, method, no encryption) and
  its compressed bytes lie inside the file.

Reading a member, its ``.npy`` header (version 1.0 or 2.0) is parsed first, and the data is
allocated only once the header checks out: the dtype is an integer of 1 to 8 bytes or a
string (``U``/``S``), nothing else (no objects, records or void); the shape is a tuple of
non-negative integers; and header + count * itemsize (exact Python integers) equals the
member's declared size. Inflating produces at most the declared size + 1 bytes; a member
that inflates past its declared size, ends early, has bytes after its deflate stream, or
fails its CRC-32 is refused.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from .errors import ModelFormatError, first_line
from .environment import size_limit
from .files import open_regular

DEFAULT_MAX_BYTES = 256 << 20
MAX_BYTES_VARIABLE = "SBN_MAX_MODEL_BYTES"
MAX_MEMBERS = 4096
MAX_KEY_CHARS = 200
_MAX_DIRECTORY_BYTES = 2 << 20
_MAX_NPY_HEADER = 1 << 16  # numpy itself refuses headers over 10000 bytes
_CHUNK = 1 << 16
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_ENCRYPTED = 0x1 | 0x40 | 0x2000  # traditional, strong, masked central directory
_METHODS = {1: "shrink", 6: "implode", 9: "deflate64", 12: "bzip2", 14: "LZMA", 19: "LZ77",
            93: "zstd", 95: "xz", 98: "PPMd", 99: "AES encryption"}
_LOCAL_HEADER = struct.Struct("<4s2xHHHHIIIHH")  # zip "local file header", 30 bytes


class _Bad(Exception):
    """A broken rule inside one member; :func:`read_npz` adds the file name."""


def default_max_bytes() -> int:
    """:data:`DEFAULT_MAX_BYTES`, or ``$SBN_MAX_MODEL_BYTES`` when that is set."""
    return size_limit(MAX_BYTES_VARIABLE, DEFAULT_MAX_BYTES, ModelFormatError)


def read_npz(path: str | os.PathLike, *, max_bytes: int | None = None,
             caps: dict[str, int] | None = None, what: str = "model file",
             floats: bool = False, stored_only: bool = False,
             max_members: int = MAX_MEMBERS) -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` at ``path`` as an array, by key (member name less
    ``.npy``), under the limits of the module docstring. Raises :class:`ModelFormatError`.

    For other archives than model files: ``what`` names the kind of file in messages;
    ``floats`` admits float (2, 4, 8 bytes) and bool arrays too; ``stored_only`` refuses
    compressed members, so that reading takes no more memory than the file's size;
    ``max_members`` replaces :data:`MAX_MEMBERS` (a training checkpoint has a few dozen
    tensors per layer)."""
    path = Path(path)
    limit = default_max_bytes() if max_bytes is None else max_bytes
    with open_regular(path, ModelFormatError, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit + limit // 8 + (1 << 20):
            raise ModelFormatError(f"{path}: {size} bytes is more than a {what} within the "
                                   f"{_mib(limit)} limit can take (${MAX_BYTES_VARIABLE})")
        infos = _directory(path, f, max_members)
        _check_members(path, infos, size, limit, caps or {}, what, stored_only, max_members)
        arrays = {}
        for info in infos:
            key = info.filename[:-4]
            try:
                arrays[key] = _read_member(f, info, what, floats)
            except _Bad as err:
                raise ModelFormatError(f"{path}: {err}") from None
            except zlib.error as err:
                raise ModelFormatError(f"{path}: member {info.filename!r}: corrupt deflate "
                                       f"stream ({err})") from None
            except (OSError, EOFError, ValueError, struct.error) as err:
                raise ModelFormatError(f"{path}: member {info.filename!r}: cannot read "
                                       f"({err})") from None
    return arrays


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _directory(path: Path, f: BinaryIO,
               max_members: int = MAX_MEMBERS) -> list[zipfile.ZipInfo]:
    """The central directory, after checking its size from the end record."""
    end_record = getattr(zipfile, "_EndRecData", None)  # private; only a pre-check
    try:
        end = end_record(f) if end_record else None  # the record ZipFile itself trusts
        if end_record and end is None:
            raise zipfile.BadZipFile("no end of central directory record")
        if end is not None and end[zipfile._ECD_SIZE] > _MAX_DIRECTORY_BYTES:
            raise zipfile.BadZipFile(f"central directory of {end[zipfile._ECD_SIZE]} bytes")
        if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > max_members:
            raise zipfile.BadZipFile(f"{end[zipfile._ECD_ENTRIES_TOTAL]} members, more than "
                                     f"{max_members}")
        f.seek(0)
        infos = zipfile.ZipFile(f).infolist()
        if infos and min(info.header_offset for info in infos) != 0:
            # zipfile tolerates bytes before the archive (self-extractors); numpy does not
            raise zipfile.BadZipFile("bytes before its first member")
        return infos
    except Exception as err:  # noqa: BLE001 - zipfile parsing hostile bytes may raise anything
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFormatError(f"{path}: not a readable .npz archive ({reason})") from None


def _check_members(path: Path, infos: list[zipfile.ZipInfo], file_size: int, limit: int,
                   caps: dict[str, int], what: str, stored_only: bool,
                   max_members: int = MAX_MEMBERS) -> None:
    """Names, methods, flags and declared sizes, before any member is read."""
    if len(infos) > max_members:
        raise ModelFormatError(f"{path}: {len(infos)} members, more than {max_members}")
    seen, total = set(), 0
    for info in infos:
        name = info.orig_filename
        where = f"{path}: member {name!r}"
        if not name.endswith(".npy"):
            raise ModelFormatError(f"{where} is not a .npy array")
        key = name[:-4]
        if name != info.filename or len(key) > MAX_KEY_CHARS or not _KEY.fullmatch(key):
            raise ModelFormatError(f"{where}: an array name must be 1 to {MAX_KEY_CHARS} of "
                                   f"A-Z a-z 0-9 _ . + - (not starting with . + -)")
        if name in seen:
            raise ModelFormatError(f"{where} appears twice")
        seen.add(name)
        if info.flag_bits & _ENCRYPTED:
            raise ModelFormatError(f"{where} is encrypted; a {what} is not")
        if stored_only and info.compress_type != zipfile.ZIP_STORED:
            raise ModelFormatError(f"{where} is compressed; a {what} stores its members")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _METHODS.get(info.compress_type, "unknown")
            raise ModelFormatError(f"{where} uses compression method {info.compress_type} "
                                   f"({method}); only stored (0) and deflate (8) are read")
        cap = min(limit, caps.get(key, limit))
        if info.file_size > cap:
            raise ModelFormatError(f"{where} unpacks to {info.file_size} bytes, more than "
                                   f"the {cap}-byte limit ({_limit_hint(key, caps)})")
        total += info.file_size
        if total > limit:
            raise ModelFormatError(f"{path}: members unpack to more than the {_mib(limit)} "
                                   f"limit (${MAX_BYTES_VARIABLE} raises it)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ModelFormatError(f"{where} is stored but its sizes differ "
                                   f"({info.compress_size} and {info.file_size})")
        if info.header_offset + _LOCAL_HEADER.size + info.compress_size > file_size:
            raise ModelFormatError(f"{where} extends past the end of the file "
                                   f"(truncated or a damaged directory)")
    if sum(info.compress_size for info in infos) > file_size:
        # members nested in one another: each would be read (and held) in full
        raise ModelFormatError(f"{path}: its members' data add up to more than the file's "
                               f"{file_size} bytes (members overlap)")


def _limit_hint(key: str, caps: dict[str, int]) -> str:
    if key in caps:
        return f"the most a {key!r} member needs"
    return f"${MAX_BYTES_VARIABLE} raises it"


def _read_member(f: BinaryIO, info: zipfile.ZipInfo, what: str, floats: bool) -> np.ndarray:
    """Parse the local header, then the .npy header, then fill the array from the stream."""
    name = info.filename
    f.seek(info.header_offset)
    raw = f.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size:
        raise _Bad(f"member {name!r}: local header is truncated")
    magic, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
    encoding = "utf-8" if flags & 0x800 else "cp437"
    if magic != b"PK\x03\x04" or f.read(name_len).decode(encoding, "replace") != name:
        raise _Bad(f"member {name!r}: local header does not match the central directory")
    if method != info.compress_type or flags & _ENCRYPTED:
        raise _Bad(f"member {name!r}: local header disagrees with the central directory "
                   f"on compression or encryption")
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.compress_size > os.fstat(f.fileno()).st_size:
        raise _Bad(f"member {name!r} extends past the end of the file (truncated)")
    chunks = _inflate(f, info, start)
    head = bytearray()
    for chunk in chunks:
        head += chunk
        header_len = _npy_header_length(name, head, info.file_size)
        if header_len is not None and len(head) >= header_len:
            break
    else:
        raise _Bad(f"member {name!r}: not a .npy array (header is truncated)")
    dtype, shape, fortran = _npy_header(name, bytes(head[:header_len]), what, floats)
    count = math.prod(shape)
    if header_len + count * dtype.itemsize != info.file_size:
        raise _Bad(f"member {name!r}: .npy header declares {dtype.str} {list(shape)} "
                   f"({count * dtype.itemsize} bytes) but the member holds "
                   f"{info.file_size - header_len} bytes of data")
    data = bytearray(count * dtype.itemsize)
    filled = len(head) - header_len
    data[:filled] = head[header_len:]
    del head
    for chunk in chunks:  # never past the declared size: _inflate refuses that
        data[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def _inflate(f: BinaryIO, info: zipfile.ZipInfo, start: int) -> Iterator[bytes]:
    """The member's bytes in chunks, never more than its declared size + 1 in all; raises
    :class:`_Bad` if it ends early, inflates past that size, has trailing data or a bad CRC."""
    name, size = info.filename, info.file_size
    f.seek(start)
    left, out, crc = info.compress_size, 0, 0
    inflater = None if info.compress_type == zipfile.ZIP_STORED else zlib.decompressobj(-15)
    while inflater is None and left:
        piece = f.read(min(_CHUNK, left))
        if not piece:
            raise _Bad(f"member {name!r} is truncated")
        left -= len(piece)
        out += len(piece)
        crc = zlib.crc32(piece, crc)
        yield piece
    while inflater is not None and not inflater.eof:
        data = inflater.unconsumed_tail
        if not data and left:
            data = f.read(min(_CHUNK, left))
            if not data:
                raise _Bad(f"member {name!r} is truncated")
            left -= len(data)
        piece = inflater.decompress(data, min(_CHUNK, size - out + 1))
        if not piece and not data:
            raise _Bad(f"member {name!r}: deflate stream ends early (truncated or corrupt)")
        out += len(piece)
        if out > size:
            raise _Bad(f"member {name!r} inflates past its declared size of {size} bytes")
        crc = zlib.crc32(piece, crc)
        if piece:
            yield piece
    if inflater is not None and (left or inflater.unused_data):
        raise _Bad(f"member {name!r} has data after the end of its deflate stream")
    if out != size:
        raise _Bad(f"member {name!r} holds {out} bytes, not the {size} its directory declares")
    if crc != info.CRC:
        raise _Bad(f"member {name!r} fails its CRC-32 check (corrupt)")


def _npy_header_length(name: str, head: bytearray, member_size: int) -> int | None:
    """Bytes of the .npy header at the start of ``head`` (None until they are known)."""
    if len(head) < 8:
        return None
    if head[:6] != b"\x93NUMPY" or bytes(head[6:8]) not in (b"\x01\x00", b"\x02\x00"):
        raise _Bad(f"member {name!r} is not a .npy array of version 1.0 or 2.0 (bad magic)")
    prefix = 10 if head[6] == 1 else 12
    if len(head) < prefix:
        return None
    length = prefix + int.from_bytes(head[8:prefix], "little")
    if length > min(member_size, _MAX_NPY_HEADER):
        raise _Bad(f"member {name!r}: .npy header of {length} bytes is too long")
    return length


def _npy_header(name: str, header: bytes, what: str,
                floats: bool) -> tuple[np.dtype, tuple[int, ...], bool]:
    """``(dtype, shape, fortran_order)`` of a complete .npy header, checked."""
    stream = io.BytesIO(header)
    try:
        version = np.lib.format.read_magic(stream)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(stream)
    except Exception as err:  # noqa: BLE001 - literal_eval of hostile text may raise anything
        first = first_line(err)
        raise _Bad(f"member {name!r}: not a valid .npy header ({first})") from None
    key = repr(name[:-4])
    if dtype.hasobject:
        raise _Bad(f"array {key} holds Python objects (needs pickle); refusing to load it")
    if dtype.names is not None or dtype.subdtype is not None or not (
            (dtype.kind in "iu" and dtype.itemsize in (1, 2, 4, 8))
            or (dtype.kind in "US" and dtype.itemsize > 0)
            or (floats and dtype.kind == "f" and dtype.itemsize in (2, 4, 8))
            or (floats and dtype.kind == "b")):
        held = "integer, float, bool" if floats else "integer"
        raise _Bad(f"array {key} has dtype {dtype.str}; a {what} holds only {held} "
                   f"and string arrays")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise _Bad(f"array {key} has an invalid shape {shape!r}")
    return dtype, shape, bool(fortran)
