"""``python -m train``: :func:`train.cli.main`, imported (torch and all) and run inside the
interrupt guard (:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one
line. PyTorch's C++ warnings (a process group retrying its rendezvous logs a line every two
seconds) are off unless ``$TORCH_CPP_LOG_LEVEL`` asks for them."""

import os
import sys

from hwgen.early_signals import install

install()

from hwgen.environment import ignore_library_settings  # noqa: E402

ignore_library_settings()  # before tqdm is imported: it reads them then

os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

from hwgen.interrupts import run_main_of  # noqa: E402

sys.exit(run_main_of("train.cli"))
