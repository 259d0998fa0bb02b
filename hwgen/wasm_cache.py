"""Where the WebAssembly tools keep their compiled code, checked before they run.

Yosys (Amaranth's built-in one and YoWASP's) and YoWASP's nextpnr run as WebAssembly; they
compile it once (about 1.5 GB of memory and most of a minute for Yosys) and keep the
machine code in the user's cache folder: YoWASP in ``$YOWASP_CACHE_DIR`` or
``<cache>/YoWASP``, wasmtime in ``<cache>/wasmtime``, where ``<cache>`` is
``$XDG_CACHE_HOME`` or ``~/.cache`` (the platform's user cache folder elsewhere). When that
folder cannot be made (``HOME=/dev/null``), YoWASP compiled every time and then failed in a
traceback; :func:`check_wasm_cache` says so in one line before anything runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def _problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written (None when it can)."""
    try:
        os.lstat(folder)
    except (FileNotFoundError, NotADirectoryError):
        pass  # made when needed, if an existing parent folder allows it (below)
    except (OSError, ValueError) as err:  # a name too long, a folder one may not look into
        return getattr(err, "strerror", None) or str(err)
    path = folder
    while not os.path.lexists(path):
        if path.parent == path:
            return "no existing parent folder"
        path = path.parent
    if not path.is_dir():
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


def cache_folders() -> list[tuple[str, Path]]:
    """(how it was chosen, folder) of each cache folder the tools write to."""
    folders = []
    explicit = os.environ.get("YOWASP_CACHE_DIR")
    if explicit:
        folders.append(("YOWASP_CACHE_DIR", Path(explicit)))
    try:
        import platformdirs
    except ImportError:  # no YoWASP runtime installed: only wasmtime's XDG default
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
    else:
        root = platformdirs.user_cache_dir()
    folders.append(("the user cache folder", Path(root)))
    return folders


def check_wasm_cache() -> None:
    """UserError (one line) when a folder of :func:`cache_folders` cannot be created or
    written."""
    for how, folder in cache_folders():
        problem = _problem(folder)
        if problem:
            fix = ("set YOWASP_CACHE_DIR to a writable folder" if how == "YOWASP_CACHE_DIR"
                   else "set XDG_CACHE_HOME (or HOME) to a writable folder")
            raise UserError(f"the WebAssembly tools (Yosys, nextpnr) cannot keep their "
                            f"compiled code in {how} {str(folder)!r}: {problem}; {fix}")
