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

from hwgen.interrupts import run_entry  # noqa: E402


def _load_main():
    """``train.cli.main``, or a main that prints one line when torch cannot be imported: a
    variable torch reads as it starts holds a value it cannot parse (``PYTORCH_JIT=abc``
    was a ValueError traceback), or ``GOMP_CPU_AFFINITY`` is one that hangs the OpenMP
    runtime torch loads (``x``: an endless loop inside ``import torch``, deaf to SIGTERM), or
    too little memory to import it (``ulimit -v``)."""
    import importlib
    import re

    from hwgen.environment import IMPORT_FAILURES, import_problem
    from hwgen.errors import first_line, one_line

    affinity = os.environ.get("GOMP_CPU_AFFINITY")
    item = r"[0-9]+(?:-[0-9]+(?::[0-9]+)?)?"
    if affinity is not None and not re.fullmatch(rf"\s*{item}(?:[\s,]+{item})*\s*", affinity):
        message = (f"error: environment GOMP_CPU_AFFINITY={affinity[:40]!r}: not a list of "
                   f"CPU numbers and ranges (such as '0 2-3 4-15:2')")
    else:
        message = (import_problem("numpy", "NUMPY_*")
                   or import_problem("torch", "PYTORCH_*, TORCH*"))
        if message is None:
            try:
                return importlib.import_module("train.cli").main
            except IMPORT_FAILURES as err:
                message = f"error: train could not be imported ({type(err).__name__}: " \
                          f"{first_line(err)})"

    def refuse() -> int:
        print(one_line(message), file=sys.stderr)
        return 2
    return refuse


sys.exit(run_entry(_load_main))
