"""What every benchmark script shares with the commands: one ``error: ...`` line and exit 2
for bad input (the project's :class:`hwgen.options.Parser` and option types, a
:class:`hwgen.errors.UserError` raised anywhere), Ctrl-C and SIGTERM as one line with exit
130/143 (:func:`hwgen.interrupts.run_entry`), and results written staged.

A script calls :func:`start_script` as its first statement under ``__main__`` and ends with
``sys.exit(run(main))``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, NoReturn


def start_script(base: int | None = None) -> None:
    """The script's first steps, before NumPy loads: Ctrl-C or SIGTERM as one line from
    here on (nothing done yet), then :func:`hwgen.address_space.start_numpy` with ``base``
    (:data:`~hwgen.address_space.HWGEN_BASE` unless given; a script that trains gives
    ``TRAIN_BASE``): OpenBLAS ended a script under ``ulimit -v`` with its own line, and a
    failed import was a traceback."""
    from hwgen.early_signals import install
    install()
    from hwgen.environment import ignore_library_settings
    ignore_library_settings()  # TQDM_*, MPLBACKEND, TORCH_LOGS...: as the commands do
    from hwgen.address_space import HWGEN_BASE, start_numpy

    problem = start_numpy(HWGEN_BASE if base is None else base, sys.argv[0])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)


def fail(message: str) -> NoReturn:
    """Exit 2 with one ``error: ...`` line, as the project's commands do."""
    from hwgen.errors import one_line

    print(one_line(f"error: {message}"), file=sys.stderr)
    sys.exit(2)


def read_text(path: Path, limit: int, what: str, not_text: str) -> str:
    """``path`` (a regular file of at most ``limit`` bytes, read bounded) as UTF-8 text; one
    ``error:`` line and exit 2 otherwise, ``not_text`` followed by the offending byte's
    offset for a file that is not UTF-8."""
    from hwgen.errors import UserError
    from hwgen.files import read_bounded

    try:
        return read_bounded(path, limit, what=what).decode("utf-8")
    except UserError as err:
        fail(str(err))
    except UnicodeDecodeError as err:
        fail(f"{not_text} (byte {err.start})")


def run(main: Callable[[], int | None]) -> int:
    """``main()`` inside the interrupt guard; a UserError it raises is one line, exit 2."""
    from hwgen.errors import UserError, one_line
    from hwgen.interrupts import run_entry

    def guarded() -> int:
        try:
            return main() or 0
        except UserError as err:
            print(one_line(f"error: {err}"), file=sys.stderr)
            return 2

    return run_entry(lambda: guarded)


def write_json(path: Path, data) -> None:
    """``data`` as indented JSON at ``path``, written to a staging name and renamed."""
    from hwgen.outputs import staged_file

    with staged_file(path, final=True) as staging:
        staging.write_text(json.dumps(data, indent=1) + "\n")
