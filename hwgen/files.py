"""Opening input files the user names, without trusting them: regular files, bounded reads.

- :func:`open_regular` opens a regular file (after symlinks) for binary reading, and refuses
  directories, FIFOs, sockets and devices (``/dev/zero``) without ever blocking on them.
- :func:`read_upto` reads at most a given number of bytes, in chunks, into a buffer that
  grows with what arrives (so a limit costs nothing for a short file, and the caller
  decides, after checking a header, what may be allocated).

Every failure raises the caller's :class:`~hwgen.errors.UserError` subclass with a one-line
message naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import UserError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))
_CHUNK = 1 << 20  # bytes per read in read_upto


#: The files (device, inode) this process has read through :func:`open_regular`, when
#: :func:`track_inputs` is on (the ``hwgen`` commands): no output may be renamed over a name
#: of one of them (``vectors D/vectors.json -o D`` replaced its own model).
_read_files: set[tuple[int, int]] | None = None


def track_inputs(on: bool = True) -> None:
    """Start (or stop) remembering the files :func:`open_regular` opens."""
    global _read_files
    _read_files = set() if on else None


def is_read_input(path: str | os.PathLike) -> bool:
    """Whether the directory entry ``path`` (not followed: replacing a link loses nothing)
    names a file this process read while :func:`track_inputs` was on."""
    if not _read_files:
        return False
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) in _read_files


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike, error: type[UserError] = UserError,
                 what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading; it must be a regular file (symlinks followed).

    Raises ``error`` (one line naming ``path``) when it is missing (``no such <what>``),
    unreadable, or a directory, FIFO, socket or device. The file is opened non-blocking and
    checked again with ``fstat`` on the open descriptor, so a FIFO or device swapped in
    after the first check is refused too, and nothing ever waits for a FIFO's writer.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        raise error(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    if not stat.S_ISREG(mode):
        raise error(f"{path}: is {_kind(mode)}, not a regular {what}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: is {_kind(mode)}, not a regular {what}")
        os.set_blocking(fd, True)
        if _read_files is not None:
            info = os.fstat(fd)
            _read_files.add((info.st_dev, info.st_ino))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a folder one can look into (``"no such folder"``, ``"not a
    folder"``, or the system's reason: ``"File name too long"``, ``"Permission denied"``),
    or None. Unlike ``Path.is_dir``, raises for nothing."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "no such folder"
    except OSError as err:
        return err.strerror or str(err)
    except ValueError:  # a NUL byte in the name
        return "not a valid path"
    return None if stat.S_ISDIR(mode) else "not a folder"


def read_regular(path: str | os.PathLike, size: int, error: type[UserError] = UserError,
                 what: str = "file") -> bytearray:
    """The first ``size`` bytes of the regular file ``path`` (fewer if it is shorter), as
    :func:`open_regular` and :func:`read_upto` read them; a failing read (``EIO``: a file
    that stats as regular but cannot be read, like ``/proc/self/mem``) is ``error`` too."""
    with open_regular(path, error, what) as stream:
        try:
            return read_upto(stream, size)
        except OSError as err:
            raise error(f"{path}: cannot read ({err.strerror or err})") from None


def read_bounded(path: str | os.PathLike, limit: int, error: type[UserError] = UserError,
                 what: str = "file", *, label: str | None = None, reason: str = "") -> bytes:
    """The whole of the regular file ``path``, which must hold at most ``limit`` bytes.

    Read as :func:`read_regular` reads (never more than ``limit + 1`` bytes, whatever the
    file claims); a longer file is ``error``: ``"<label>: larger than <limit> bytes<reason>"``,
    ``label`` defaulting to ``path``.
    """
    data = read_regular(path, limit + 1, error, what)
    if len(data) > limit:
        raise error(f"{label or path}: larger than {limit} bytes{reason}")
    return bytes(data)


def read_upto(stream: BinaryIO, size: int) -> bytearray:
    """The next ``size`` bytes of ``stream``, fewer if it ends first; never reads more.

    Reads (decompresses, for a compressed stream) in chunks of at most 1 MiB, growing the
    buffer as data arrives: memory follows what the stream actually holds, capped near
    ``size`` (the bytes read, bytearray's growth slack and one chunk), so a generous
    ``size`` (a limit, not a length) costs nothing for a short stream, and a stream that
    lies about its length costs no more than ``size``. To see whether more follows, read
    one more byte.
    """
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(_CHUNK, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer
