"""Whole numbers from environment variables, under one rule.

A variable that is set must hold ASCII digits only (as launchers such as torchrun write
them: no sign, no spaces, no other scripts' digits) with a value in the range the caller
gives; otherwise the command ends with one line naming the variable. Unset, the default
applies.

- :func:`environment_integer`: counts, ranks, ports.
- :func:`size_limit`: a byte limit that a ``$SBN_MAX_*`` variable may override.
- :func:`ignore_library_settings`: the variables of libraries whose output the commands
  own (progress bars, plots), which those libraries would read and fail on.
"""

from __future__ import annotations

import os
import re

from .errors import UserError

_DIGITS = re.compile(r"[0-9]{1,30}")
MAX_SIZE_LIMIT = 1 << 62  # bytes: any limit a variable sets is at most this


def environment_integer(name: str, default: int | None, low: int, high: int,
                        error: type[UserError] = UserError, unit: str = "") -> int | None:
    """``$name`` as a whole number in ``[low, high]``, ``default`` when unset; ``error``
    (one line, ``unit`` naming what it counts) otherwise."""
    text = os.environ.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        what = f"a whole number of {unit}" if unit else "a whole number"
        raise error(f"environment {name}={text[:40]!r}: expected {what} in {low}..{high}")
    return int(text)


def size_limit(variable: str, default: int, error: type[UserError] = UserError) -> int:
    """``$variable`` as a number of bytes (1 .. :data:`MAX_SIZE_LIMIT`) when set, else
    ``default``."""
    return environment_integer(variable, default, 1, MAX_SIZE_LIMIT, error, "bytes")


#: Variables that set up what the commands fix themselves: tqdm's ``TQDM_*`` defaults for
#: every bar (``TQDM_MININTERVAL=abc`` ended a run in a ValueError traceback) and
#: matplotlib's backend and settings files (the plots are always drawn with Agg at
#: matplotlib's defaults; ``MPLBACKEND=bogus`` failed the run after training, when the plots
#: were drawn, and ``MATPLOTLIBRC=/etc/passwd`` printed that file's lines as warnings).
LIBRARY_SETTINGS = ("MPLBACKEND", "MATPLOTLIBRC", "MPLCONFIGDIR",
                    # which Yosys Amaranth converts with: Amaranth's default order (a
                    # Yosys named by $YOSYS or on PATH, else its built-in one; a bad value
                    # was a YosysError traceback)
                    "AMARANTH_USE_YOSYS")
#: ... and torch's developer logging (``TORCH_LOGS=bogus`` was a ValueError at ``import
#: torch``; ``TORCH_LOGS_OUT``, ``TORCH_LOGS_FORMAT`` go with it).
LIBRARY_PREFIXES = ("TQDM_", "TORCH_LOGS")


def ignore_library_settings() -> None:
    """Remove :data:`LIBRARY_SETTINGS` and the :data:`LIBRARY_PREFIXES` variables from this
    process's environment (children inherit the cleaned one), and let standard output and
    error write what their encoding cannot hold as backslash escapes (``PYTHONIOENCODING=ascii``
    and an output path with an accent made the ``wrote ...`` line a UnicodeEncodeError)."""
    import sys

    for name in list(os.environ):
        if name in LIBRARY_SETTINGS or name.startswith(LIBRARY_PREFIXES):
            del os.environ[name]
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


#: What importing a library raises when the environment or the machine stops it: a variable
#: it cannot parse (``NUMPY_MADVISE_HUGEPAGE=x``: ValueError), or too little address space
#: (``ulimit -v``: MemoryError, or an ImportError/SystemError from a failed allocation).
IMPORT_FAILURES = (ValueError, TypeError, RuntimeError, AttributeError, OSError, ImportError,
                   SystemError, MemoryError)


def import_problem(module: str, variables: str) -> str | None:
    """Import ``module``; the one-line ``error: ...`` to print when it cannot be (None when
    it can). ``variables`` names the environment variables it reads (``"NUMPY_*"``)."""
    import importlib

    from .errors import first_line, one_line

    try:
        importlib.import_module(module)
    except IMPORT_FAILURES as err:
        hint = ("too little memory?" if isinstance(err, (MemoryError, ImportError, SystemError))
                else f"is one of its variables in the environment ({variables}) set to a "
                     f"value it cannot read?")
        return one_line(f"error: {module} could not be imported ({type(err).__name__}: "
                        f"{first_line(err)}); {hint}")
    return None
