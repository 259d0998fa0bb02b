"""Every file or folder a CLI writes: checked before any work, staged, renamed into place.

The rules (``docs/cli.md``, "Output paths"):

- :func:`output_problem` / :func:`check_output`, before any work starts: the parent folder
  exists, is a folder (no part of the path is a file) and is writable; a file output is not
  an existing folder (nor a FIFO or device), a folder output is not an existing file; the
  name is not empty, ``.``/``..`` or the root, and fits the file system.
- :func:`staged_file` / :func:`staged_folder`, while writing: everything goes to a hidden
  staging name in the same folder (``.<name>.<random>.part``), renamed onto the target only
  when the work succeeded; on any error, Ctrl-C or SIGTERM (which
  :mod:`hwgen.interrupts` turns into an exception) the staging name is removed.
- A folder output that already exists keeps its other files: each staged entry replaces
  the entry of the same name (a folder that did not exist appears in one rename).

Failures raise :class:`OutputError`, one line naming the path.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import secrets
import tempfile
import stat
from pathlib import Path
from typing import Iterator

from .errors import UserError
from .interrupts import deferred_signals, raised_interrupt

_STAGING_ROOM = 100  # bytes of a file name the staging prefix and suffix may add


class OutputError(UserError):
    """An output path that cannot be written, or a write that failed."""


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def resolved(path) -> Path:
    """The absolute path the system would write for ``path``: its folder part resolved as
    the system resolves it (a symlink before a ``..`` that follows it), the last name kept
    as it is (a link there is the output's own business)."""
    text = os.fspath(path)
    head, name = _split(text)
    if name in ("", ".", ".."):
        return Path(os.path.realpath(text))
    return Path(os.path.realpath(head or os.curdir)) / name


def _split(text: str) -> tuple[str, str]:
    """``(folder part, last name)`` of the path ``text`` as written (trailing slashes
    ignored; the folder part is empty for a bare name)."""
    return os.path.split(text.rstrip(os.sep) or text)


def same_path(a, b) -> bool:
    """Whether the paths ``a`` and ``b`` name the same file (existing or not: their folder
    parts resolved as the system resolves them, links and ``..`` included)."""
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def output_problem(path, kind: str = "file", suffixes: tuple[str, ...] = ()) -> str | None:
    """Why ``path`` cannot be written as a ``kind`` (``"file"`` or ``"folder"``) output, or
    ``None``. ``suffixes``: the file name must end in one of them (any case). Folders in
    the message are shown as the user wrote them."""
    text = os.fspath(path)
    if not text:
        return "the path is empty"
    if "\0" in text:
        return "the path holds a NUL character"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "the path holds a control character (a newline, a tab...)"
    if kind == "file" and (Path(os.path.normpath(text)).name in ("", ".", "..")
                           or text.endswith(os.sep)):
        return "needs a file name, not a folder"
    head = _split(text)[0]
    # the folder as the system reaches it: "afile/.." and "missing/.." are no folders
    problem = _folder_problem(head or os.curdir, Path(head or os.curdir))
    if problem:
        return problem
    target = resolved(text)
    if target.parent == target:
        return f"needs a {kind} name, not the root folder"
    if suffixes and target.suffix.lower() not in suffixes:
        return f"give a {kind} name ending in {' or '.join(suffixes)}"
    name_max = _name_max(str(target.parent))
    if len(os.fsencode(target.name)) + _STAGING_ROOM > name_max:
        return f"the name is too long (at most {name_max - _STAGING_ROOM} bytes)"
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        if kind == "folder" and os.path.islink(target):  # the folder would be put in its place
            return ("is a symbolic link to a folder that does not exist; create it or "
                    "remove the link")
        return None
    except OSError as err:
        return f"cannot use it ({err.strerror or err})"
    if kind == "file" and stat.S_ISDIR(mode):
        return "is a folder; give a file name"
    if kind == "file" and not stat.S_ISREG(mode):
        return "exists and is not a regular file"
    if kind == "folder" and not stat.S_ISDIR(mode):
        return "is a file, not a folder"
    return None


def _folder_problem(parent, shown: Path) -> str | None:
    """Why files cannot be made in the folder ``parent`` (as written; ``shown`` is how the
    message names it)."""
    try:
        mode = os.stat(parent).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _missing(shown)
    except OSError as err:
        return f"cannot use the folder {shown} ({err.strerror or err})"
    if not stat.S_ISDIR(mode):
        return f"{shown} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the folder {shown} is not writable"
    # permission bits are not the whole story (sysfs and procfs refuse new files even to
    # root): make and remove an empty file there, as the staging will
    # (joined as written: tempfile would normalize "link/.." lexically, not as the system)
    probe = os.path.join(parent, f".sbn-probe-{secrets.token_hex(8)}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as err:
        return f"cannot make files in the folder {shown} ({err.strerror or err})"
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def _missing(shown: Path) -> str:
    """The message for a parent folder that does not exist: a file on the way, or not."""
    for up in (shown, *shown.parents):
        try:
            mode = os.stat(up).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            return f"{up} is a file, not a folder"
        break
    return f"the folder {shown} does not exist"


def check_output(path, option: str, kind: str = "file",
                 suffixes: tuple[str, ...] = ()) -> Path:
    """``Path(path)`` when :func:`output_problem` finds nothing; else :class:`OutputError`
    ``"<option> <path>: <problem>"``."""
    problem = output_problem(path, kind, suffixes)
    if problem:
        raise OutputError(f"{option} {os.fspath(path)}: {problem}")
    return Path(path)


def output_type(kind: str = "file", suffixes: tuple[str, ...] = ()):
    """An argparse ``type=``: the path, checked by :func:`output_problem` at parse time."""
    def parse(text: str) -> Path:
        problem = output_problem(text, kind, suffixes)
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return Path(text)

    parse.__name__ = f"output {kind}"
    return parse


def _staging_prefix(target: Path) -> str:
    return f".{target.name[:64]}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_file(target, final: bool = False) -> Iterator[Path]:
    """Yields a fresh staging path beside ``target`` (same suffix, so tools that look at it
    see the kind); renames it onto ``target`` when the block succeeds, removes it when the
    block raises anything (interrupts included). ``final``: this is the command's last
    output, so a signal from its rename on no longer interrupts the run
    (:func:`hwgen.interrupts.deferred_signals`)."""
    def make(target: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=_staging_prefix(target),
                                    suffix=".part" + target.suffix[:16], dir=target.parent)
        os.close(fd)
        return Path(name)

    def install(staging: Path, target: Path) -> None:
        _refuse_replacing_an_input(target)
        os.chmod(staging, 0o666 & ~_umask())  # what open() makes, not mkstemp's 0600
        os.replace(staging, target)

    with _staged(target, make, install, "cannot write", final) as staging:
        yield staging


def replace_file(path, data: bytes | str) -> None:
    """``data`` (text as UTF-8) written to a staging name beside ``path`` and renamed onto
    it: whatever ``path`` was (a link, a FIFO that another program left there) is replaced,
    never opened or followed."""
    with staged_file(path) as staging:
        staging.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def staged_folder(target, final: bool = False) -> Iterator[Path]:
    """Yields a fresh, empty staging folder beside ``target`` (inside it when it is an
    existing folder, so that its entries are renamed within one file system); when the
    block succeeds its
    entries replace those of the same names in ``target`` (created by renaming the staging
    folder if it did not exist; signals are held until all are in place); when the block
    raises, the staging folder is removed. ``final`` as for :func:`staged_file`. The block
    may move the staging folder away (a kept failed build); then nothing is installed."""
    def make(target: Path) -> Path:
        # Into an existing folder (or one a link names) the entries are renamed one by one:
        # staged inside it, they stay on its file system (beside a link, they may not).
        where = target if target.is_dir() else target.parent
        return Path(tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=".part",
                                     dir=where))

    def install(staging: Path, target: Path) -> None:
        os.chmod(staging, 0o777 & ~_umask())
        _install_folder(staging, target)

    with _staged(target, make, install, "cannot create a folder here", final,
                 present=Path.exists) as staging:
        yield staging


@contextlib.contextmanager
def _staged(target, make, install, cannot: str, final: bool,
            present=lambda staging: True) -> Iterator[Path]:
    """The staging protocol both of the above follow: ``make(target)`` creates the staging
    name with signals held (an interrupt just then leaves nothing); after the block,
    ``install(staging, target)`` runs with signals held, if ``present(staging)``; any
    error or interrupt removes the staging name. OSErrors become one-line
    :class:`OutputError` s naming ``target`` as given (``cannot`` says what failed first)."""
    shown, target, staging = target, resolved(target), None
    try:
        with deferred_signals():  # no interrupt between creating the name and knowing it
            staging = make(target)
    except OSError as err:
        raise OutputError(f"{shown}: {cannot} ({err.strerror or err})") from None
    except BaseException:  # the interrupt held while the name was made
        if staging is not None:
            _remove(staging)
        raise
    try:
        yield staging
        swallowed = raised_interrupt()
        if swallowed is not None:
            # the run was interrupted, and a library caught the interrupt on its way out (a
            # qonnx ``except`` around an index lookup did): no output of this run goes in
            raise swallowed
        if present(staging):
            with deferred_signals(final=final):
                install(staging, target)
    except BrokenPipeError:  # stdout's reader left during the block: not this file's fault
        _remove(staging)
        raise
    except OSError as err:
        _remove(staging)
        raise OutputError(f"{shown}: cannot write ({err.strerror or err})") from None
    except BaseException:
        _remove(staging)
        raise


def _remove(staging: Path) -> None:
    """Remove a staging file or folder; one that cannot be removed (an append-only folder)
    stays, and the error that is being reported is not replaced by this one."""
    try:
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
    except OSError:
        pass


def _install_folder(staging: Path, target: Path) -> None:
    # The common case, a new folder, is one rename. An existing folder (or a link to one)
    # is merged into, even when empty: renaming onto an empty folder would replace it, and
    # a shell (or this process) whose working folder it is would be left in a deleted one.
    if not os.path.lexists(target):
        try:
            os.rename(staging, target)
            return
        except OSError:
            if not target.is_dir():
                raise
    elif not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
    for entry in staging.iterdir():  # a user's folder is never replaced by an output file
        destination = target / entry.name
        _refuse_replacing_an_input(destination)
        if destination.is_dir() and not destination.is_symlink() and not entry.is_dir():
            raise OutputError(f"{destination} is a folder where this command writes a file: "
                              f"move it, or give another output folder")
    _merge_entries(staging, target)
    staging.rmdir()


def _refuse_replacing_an_input(destination: Path) -> None:
    """OutputError when the name ``destination`` is one of the files the command read
    (:func:`hwgen.files.track_inputs`): an output renamed there would destroy it."""
    from .files import is_read_input

    if is_read_input(destination):
        raise OutputError(f"{destination} is one of this command's inputs, which its output "
                          f"would replace: give another output name or folder")


def _merge_entries(staging: Path, target: Path) -> None:
    """Every entry of ``staging`` renamed into the folder ``target``, all or none: entries
    of the same names are first moved into a folder aside (inside ``target``, on its file
    system) and removed at the end; when a rename fails, what was done is undone (new
    entries back into ``staging``, the earlier ones back in place) and the error raised."""
    aside = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=".old", dir=target))
    moved, placed = [], []
    try:
        for entry in sorted(staging.iterdir()):
            destination = target / entry.name
            if os.path.lexists(destination):
                os.rename(destination, aside / entry.name)
                moved.append(entry.name)
            os.rename(entry, destination)
            placed.append(entry.name)
    except OSError:
        for name in reversed(placed):  # best effort: each undo is one rename
            _quietly(os.rename, target / name, staging / name)
        for name in reversed(moved):
            _quietly(os.rename, aside / name, target / name)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _quietly(action, *args) -> None:
    try:
        action(*args)
    except OSError:
        pass


def save_npy(path, array, final: bool = False) -> None:
    """``array`` written to the ``.npy`` file ``path`` through :func:`staged_file`
    (``final`` as there)."""
    import numpy as np

    with staged_file(path, final) as staging, open(staging, "wb") as f:
        np.save(f, array)
