"""``python -m train``: :func:`train.cli.main`, imported (torch and all) and run inside the
interrupt guard (:mod:`hwgen.interrupts`), so Ctrl-C or SIGTERM at any point ends in one
line. PyTorch's C++ warnings (a process group retrying its rendezvous logs a line every two
seconds) are off unless ``$TORCH_CPP_LOG_LEVEL`` asks for them."""

import os
import re
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
    too little memory to import it, or an address-space limit
    (``ulimit -v``) below what training needs (:mod:`hwgen.address_space`)."""
    import importlib
    import re

    from hwgen.address_space import TRAIN_BASE, start_numpy
    from hwgen.environment import IMPORT_FAILURES
    from hwgen.errors import first_line, one_line

    affinity = os.environ.get("GOMP_CPU_AFFINITY")
    item = r"[0-9]+(?:-[0-9]+(?::[0-9]+)?)?"
    stack = _omp_stack_bytes(os.environ.get("OMP_STACKSIZE"))
    if affinity is not None and not re.fullmatch(rf"\s*{item}(?:[\s,]+{item})*\s*", affinity):
        message = (f"error: environment GOMP_CPU_AFFINITY={affinity[:40]!r}: not a list of "
                   f"CPU numbers and ranges (such as '0 2-3 4-15:2')")
    elif stack is not None and stack > _physical_memory():
        # libgomp cannot create its threads, and ends the process with a line of its own
        message = (f"error: environment OMP_STACKSIZE={os.environ['OMP_STACKSIZE'][:40]!r}: "
                   f"a thread stack larger than this machine's memory")
    else:
        message = start_numpy(TRAIN_BASE, "python -m train") or _import_torch()
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


_OPENMP_COMPLAINT = re.compile(rb"libgomp: (?:Invalid|Unknown) value for environment "
                               rb"variable ([A-Z_]+)")
_OPENMP_LINE = re.compile(rb"^libgomp: ([^\n]*)", re.M)


def _import_torch() -> str | None:
    """:func:`hwgen.environment.import_problem` of torch, with what the native libraries
    write to the process's stderr meanwhile held back: the OpenMP runtime (libgomp) that
    torch loads reads ``OMP_*``/``GOMP_*`` as it loads and writes a line of its own for each
    value it cannot parse (then ignores it). Such a line becomes the one-line error; any
    other output (``OMP_DISPLAY_ENV=true``'s listing) is passed on."""
    import tempfile

    from hwgen.environment import import_problem

    try:
        held_file = tempfile.TemporaryFile()
    except OSError as err:  # FileNotFoundError: no candidate folder took a test file
        return f"error: cannot make a temporary file ({_temporary_problem(err)})"
    with held_file as held:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(held.fileno(), 2)
            try:
                message = import_problem("torch", "PYTORCH_*, TORCH*")
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        held.seek(0)
        written = held.read(1 << 20)
    complaint = _OPENMP_COMPLAINT.search(written)
    if complaint:
        name = complaint.group(1).decode()
        return (f"error: environment {name}={os.environ.get(name, '')[:40]!r}: the OpenMP "
                f"runtime torch loads cannot read it")
    other = _OPENMP_LINE.search(written)
    if other:  # a value it parsed but refuses (OMP_STACKSIZE=0), a topology it cannot read
        settings = " ".join(f"{k}={v[:40]!r}" for k, v in sorted(os.environ.items())
                            if k.startswith(("OMP_", "GOMP_")))
        return (f"error: the OpenMP runtime torch loads refused its settings: "
                f"{other.group(1).decode(errors='replace')[:200]}"
                + (f" ({settings[:300]})" if settings else ""))
    if written.strip():
        os.write(2, written)
    return message


def _temporary_problem(err: OSError) -> str:
    """Why no temporary file could be made, with what the user can change."""
    import resource

    why = ("no usable temporary folder" if isinstance(err, FileNotFoundError)
           else err.strerror or str(err))
    size_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if size_limit != resource.RLIM_INFINITY and size_limit < 1 << 20:
        return f"{why}; the file-size limit, ulimit -f, is {size_limit} bytes"
    return f"{why}; set TMPDIR to a writable folder"


def _omp_stack_bytes(value: str | None) -> int | None:
    """OMP_STACKSIZE in bytes (``size[B|K|M|G]``, K the default unit), None when unset or
    not of that form (libgomp then ignores it)."""
    import re

    match = re.fullmatch(r"\s*([0-9]{1,30})\s*([bBkKmMgG]?)\s*", value or "")
    if match is None:
        return None
    scale = {"b": 1, "k": 1 << 10, "": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(match.group(1)) * scale[match.group(2).lower()]


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


sys.exit(run_entry(_load_main))
