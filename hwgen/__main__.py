"""``python -m hwgen``: :func:`hwgen.cli.main`, imported and run inside the interrupt guard
(:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one line (before the
guard exists, :mod:`hwgen.early_signals` gives that line)."""

import sys

from hwgen.early_signals import install

install()

from hwgen.environment import ignore_library_settings  # noqa: E402

ignore_library_settings()  # before tqdm is imported: it reads them then

from hwgen.address_space import HWGEN_BASE, startup_problem  # noqa: E402
from hwgen.environment import import_problem  # noqa: E402

problem = (startup_problem(HWGEN_BASE, "python -m hwgen")
           or import_problem("numpy", "NUMPY_*"))  # a traceback otherwise, from hwgen.cli's
if problem:
    print(problem, file=sys.stderr)
    sys.exit(2)

from hwgen.address_space import allocate_blas_buffers  # noqa: E402

allocate_blas_buffers()

from hwgen.interrupts import run_main_of  # noqa: E402

sys.exit(run_main_of("hwgen.cli"))
