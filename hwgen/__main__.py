"""``python -m hwgen``: :func:`hwgen.cli.main`, imported and run inside the interrupt guard
(:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one line."""

import sys

try:
    from hwgen.interrupts import run_main_of
except KeyboardInterrupt:  # before the guard exists
    sys.exit(130)

sys.exit(run_main_of("hwgen.cli"))
