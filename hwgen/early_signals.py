"""The first lines of ``python -m hwgen`` and ``python -m train``: until
:mod:`hwgen.interrupts` is imported, Ctrl-C or SIGTERM print one line and exit at once
(nothing has been done yet, so nothing is left behind). Imports only ``os`` and ``signal``,
so that it takes effect as early as possible."""

import os
import signal


def _before_the_guard(signum, frame):
    os.write(2, b"error: interrupted\n")
    os._exit(128 + signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as above (:func:`hwgen.interrupts.run_entry` replaces it)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _before_the_guard)
