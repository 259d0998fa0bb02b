"""``python -m hwgen``: :func:`hwgen.cli.main`, imported and run inside the interrupt guard
(:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one line (before the
guard exists, :mod:`hwgen.early_signals` gives that line)."""

import sys

from hwgen.early_signals import install

install()

from hwgen.environment import ignore_library_settings  # noqa: E402

ignore_library_settings()  # before tqdm is imported: it reads them then

from hwgen.address_space import HWGEN_BASE, start_numpy  # noqa: E402

problem = start_numpy(HWGEN_BASE, "python -m hwgen")  # a traceback otherwise, in hwgen.cli's
if problem:
    print(problem, file=sys.stderr)
    sys.exit(2)

from hwgen.interrupts import run_main_of  # noqa: E402

sys.exit(run_main_of("hwgen.cli"))
