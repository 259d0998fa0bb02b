"""``python -m train``: :func:`train.cli.main`, imported (torch and all) and run inside the
interrupt guard (:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one
line. PyTorch's C++ warnings (a process group retrying its rendezvous logs a line every two
seconds) are off unless ``$TORCH_CPP_LOG_LEVEL`` asks for them."""

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


os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

from hwgen.interrupts import run_main_of  # noqa: E402

sys.exit(run_main_of("train.cli"))
