"""The Verilator build cache's integrity and the bound on what Verilator is given.

A cached simulator is trusted only when its digest matches the one written beside it
(``sim.sha256``) when it was published; :func:`publish` stages both and renames them into
place, replacing whatever occupied those names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hwgen.errors import UserError

#: The largest generated Verilog handed to Verilator (``$SBN_MAX_VERILATOR_SOURCE_BYTES``
#: raises it): Verilator's memory grows with the source, up to ~120 bytes a byte for wide
#: line buffers in logic (a 52 MB core took 4.1 GB, a 17 MB one 2 GB; a 4.5 MB dense one
#: about 1.3 GB for the whole sim).
MAX_VERILATOR_SOURCE_BYTES = 10 << 20


#: Characters a build folder's path cannot hold: Verilator's makefiles split paths at
#: whitespace and give ``#$:;%`` and the shell's specials their own meanings.
_UNSAFE_FOR_MAKE = set(" \t\n\r\v\f#$:;%\\'\"*?[]()<>|&`=!~{}")


def _check_buildable(root: Path) -> None:
    """UserError when make cannot build under the folder ``root``."""
    text = os.fspath(root.absolute())
    bad = sorted({c for c in text if c in _UNSAFE_FOR_MAKE or not c.isprintable()
                  or "\udc80" <= c <= "\udcff"})
    if bad:
        raise UserError(f"the simulator cache {text!r} holds {', '.join(map(repr, bad))}, "
                        f"which Verilator's make cannot build under: set $SBN_CACHE_DIR to a "
                        f"folder whose path has none")


def staging_folder(root: Path, prefix: str) -> Path:
    """A new folder to build in under the cache folder ``root`` (made if missing); a
    UserError naming ``root`` when the cache cannot be used (a file in its place, no
    permission, a symlink loop, a path make cannot build under)."""
    _check_buildable(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    except OSError as err:
        raise UserError(f"the simulator cache {root} cannot be used ({err.strerror or err}): "
                        f"set $SBN_CACHE_DIR to a writable folder") from None


#: A cached simulator larger than this is rebuilt, not hashed (the shipped models' are
#: 1-3 MB; the largest network the generator takes compiles to well under this).
MAX_SIMULATOR_BYTES = 1 << 30


def write_sources(folder: Path, files: dict[str, str | bytes], cache: Path) -> None:
    """Write ``files`` (name: text or bytes) into the build folder ``folder`` under the
    cache ``cache``; a UserError naming the cache when they cannot be written (a full disk)."""
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
            else:
                (folder / name).write_text(content)
    except OSError as err:
        raise UserError(f"the simulator cache {cache} cannot take a build "
                        f"({err.strerror or err}): free space there or set $SBN_CACHE_DIR "
                        f"to another folder") from None


def _digest(path: Path) -> str:
    """SHA-256 of the regular file ``path``, read in chunks (bounded memory whatever its
    size); UserError when it is not a regular file."""
    from hwgen.files import open_regular

    with open_regular(path, what="cached simulator") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def intact(exe: Path) -> bool:
    """Whether the cached simulator ``exe`` is a regular file whose digest matches the one
    written beside it when it was built (an emptied, replaced or half-copied entry is
    rebuilt, and so is one whose digest file is not a regular file of one digest: a FIFO or
    a link to ``/dev/zero`` there is never read)."""
    from hwgen.files import read_regular

    try:
        if exe.stat().st_size > MAX_SIMULATOR_BYTES:  # never hashed (a 200 GB sparse file
            return False                              # took minutes to read)
        recorded = read_regular(exe.parent / "sim.sha256", 65, what="simulator digest")
        return len(recorded) == 64 and recorded.decode("ascii") == _digest(exe)
    except (OSError, UnicodeError, UserError):
        return False


def _check_built(built: Path) -> None:
    """UserError unless the build left ``built`` as a non-empty executable file: a make told
    to pretend (``make -t`` touches the target, ``-n`` builds nothing) or a linker replaced
    by a no-op exits 0 without one, and such a file must never enter the cache."""
    try:
        info = os.stat(built)
    except OSError:
        why = "it wrote none"
    else:
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            why = "it is empty"
        elif not os.access(built, os.X_OK):
            why = "it is not executable"
        else:
            return
    raise UserError(f"the Verilator build succeeded but made no simulator ({built.name}: "
                    f"{why}); check the environment of its make and compiler (CXX, LINK, "
                    f"LDFLAGS...)")


def publish(built: Path, exe: Path) -> None:
    """Copy the simulator ``built`` into the cache as ``exe`` with its digest beside it;
    whatever occupied those names is replaced. A UserError if the cache cannot take it."""
    _check_built(built)
    folder = exe.parent
    staged = folder / "sim.tmp"
    try:
        if folder.exists() and not folder.is_dir():
            folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        for old in (exe, folder / "sim.sha256"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
        shutil.copy(built, staged)
        (folder / "sim.sha256.tmp").write_text(_digest(staged))
        os.replace(staged, exe)
        os.replace(folder / "sim.sha256.tmp", folder / "sim.sha256")
    except OSError as err:
        for leftover in (staged, folder / "sim.sha256.tmp"):
            try:
                leftover.unlink()
            except OSError:
                pass
        raise UserError(f"cannot store the simulator in the cache {folder} "
                        f"({err.strerror or err}): set $SBN_CACHE_DIR to a writable "
                        f"folder") from None


def check_verilator_source(size: int) -> None:
    """UserError when ``size`` bytes of generated Verilog are more than
    :data:`MAX_VERILATOR_SOURCE_BYTES` (or ``$SBN_MAX_VERILATOR_SOURCE_BYTES``)."""
    from hwgen.environment import size_limit

    limit = size_limit("SBN_MAX_VERILATOR_SOURCE_BYTES", MAX_VERILATOR_SOURCE_BYTES)
    if size > limit:
        raise UserError(f"the generated Verilog is {size / 2**20:.1f} MiB, more than the "
                        f"{limit / 2**20:g} MiB Verilator is given (its memory grows with "
                        f"the source): give a fold with a smaller PExSIMD, or raise "
                        f"$SBN_MAX_VERILATOR_SOURCE_BYTES")
