"""``python -m hwgen``: :func:`hwgen.cli.main`, imported and run inside the interrupt guard
(:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one line (before the
guard exists, a handler of this module's gives that line)."""

import os
import signal
import sys


def _before_the_guard(signum, frame):
    """Ctrl-C or SIGTERM before :mod:`hwgen.interrupts` is imported: nothing has been done
    yet, so one line and the signal's exit code, at once."""
    os.write(2, b"error: interrupted\n")
    os._exit(128 + signum)


for _number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_number, _before_the_guard)

from hwgen.interrupts import run_main_of  # noqa: E402

sys.exit(run_main_of("hwgen.cli"))
