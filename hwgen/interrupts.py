"""Ctrl-C and SIGTERM end a CLI with one line, a fixed exit code, and nothing left behind.

- :func:`run_entry` is what ``python -m hwgen`` and ``python -m train`` run first: it turns
  SIGTERM into :class:`Terminated` (so ``finally`` blocks and staged outputs are cleaned
  up exactly as for Ctrl-C), then imports and calls the real ``main`` inside the guarded
  region, so an interrupt even during the heavy imports ends in one line.
- :func:`interrupted` is the one way an interrupt is reported: ``error: interrupted`` (or a
  caller's message) on stderr, exit code :data:`SIGINT_EXIT` (130) or :data:`SIGTERM_EXIT`
  (143), and Amaranth's ``UnusedElaboratable`` warnings (a half-built design being garbage
  collected at exit) silenced.
- A reader that closes stdout early (``python -m hwgen info M | head -1``) ends the command
  quietly with exit code :data:`SIGPIPE_EXIT` (141), as the shell reports for other tools.

This module imports only the standard library, so that it is cheap to import first.
"""

from __future__ import annotations

import importlib
import signal
import sys
import warnings
from typing import Callable

SIGINT_EXIT = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
SIGTERM_EXIT = 143  # 128 + SIGTERM
SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the handler :func:`run_entry` installs.

    A subclass of :class:`KeyboardInterrupt`, so every cleanup written for Ctrl-C (and no
    ``except Exception``) sees it."""


def _raise_terminated(signum, frame):
    raise Terminated()


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return SIGTERM_EXIT if isinstance(interrupt, Terminated) else SIGINT_EXIT


def silence_unused_elaboratables() -> None:
    """Stop Amaranth warning about elaboratables that an interrupted build never used."""
    unused = sys.modules.get("amaranth._unused")
    if unused is not None:
        unused.MustUse._MustUse__silence = True
        warnings.simplefilter("ignore", unused.UnusedMustUse)


def interrupted(interrupt: KeyboardInterrupt, message: str = "error: interrupted") -> int:
    """Report ``interrupt`` as one stderr line; returns the exit code (130 or 143)."""
    silence_unused_elaboratables()
    print(message, file=sys.stderr)
    return exit_code(interrupt)


def run_entry(load_main: Callable[[], Callable[[], int]]) -> int:
    """``load_main()()`` with SIGTERM raising :class:`Terminated`; an interrupt anywhere in
    it (the imports ``load_main`` does included) returns 130/143 after one line. Once main
    has returned or been interrupted, Ctrl-C and SIGTERM are ignored while the process
    exits (only ``python -m`` entry points call this: it changes the process's handlers)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
        code = load_main()()
        # The work is done (or main reported an interrupt itself): a signal from here on
        # would find Python's default handlers restored during shutdown and kill the process
        # with no message, turning a finished run's exit code into -15.
        _ignore_signals()
    except KeyboardInterrupt as interrupt:
        _ignore_signals()
        return interrupted(interrupt)
    except BrokenPipeError:  # the reader of stdout stopped (``| head``): end quietly
        _stdout_to_devnull()
        return SIGPIPE_EXIT
    if code in (SIGINT_EXIT, SIGTERM_EXIT):
        silence_unused_elaboratables()
    return code


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail a second time."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _ignore_signals() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


def run_main_of(module: str) -> int:
    """:func:`run_entry` of ``module``'s ``main`` (the module is imported inside the guard)."""
    return run_entry(lambda: importlib.import_module(module).main)
