"""Starting under an address-space limit (``ulimit -v``, ``RLIMIT_AS``).

Under a small limit the libraries the commands load fail in ways Python cannot catch:
OpenBLAS, which NumPy's matrix products use, prints its own lines and ends the process
(exit 1) when it cannot create its threads at import or allocate its per-thread buffers at
the first product; CPython raises ``MemoryError`` or ``SystemError`` halfway through an
import. So each entry point checks the limit first (:func:`startup_problem`), and once
NumPy is imported, has OpenBLAS allocate its buffers at once (:func:`allocate_blas_buffers`)
while memory is still free, instead of at a product deep inside a command.

Imports only ``os`` and ``resource``: it runs before NumPy.
"""

from __future__ import annotations

import os

MIB = 1 << 20
#: what ``python -m hwgen`` needs beside OpenBLAS's threads: the interpreter, NumPy and the
#: command's own bounded work (``hwgen eval`` of the shipped models on the full test set
#: measured 222 MiB with one BLAS thread)
HWGEN_BASE = 192 * MIB
#: what ``python -m train`` needs beside them: PyTorch, its threads and a small network
#: (measured 830 MiB with two BLAS threads for `--arch mlp:8`)
TRAIN_BASE = 1024 * MIB
#: each OpenBLAS thread: its stack and its buffer (measured 38 MiB from one thread to two)
PER_BLAS_THREAD = 48 * MIB
#: each of train's ``--threads`` (torch's OpenMP threads): a stack and its per-thread state
#: (`--arch mlp:8` ran with 64 threads under a 2 GiB limit; 128 ended in libgomp's own
#: "Thread creation failed" line, as 256 did under 4 GiB)
PER_TORCH_THREAD = 12 * MIB
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def address_space_limit() -> int | None:
    """The soft ``RLIMIT_AS`` of this process in bytes, None when unlimited."""
    try:
        import resource
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft < 0 else soft


def blas_threads() -> int:
    """How many threads OpenBLAS starts: the first of its variables that holds a positive
    whole number, else one per CPU."""
    for name in _THREAD_VARIABLES:
        text = os.environ.get(name, "").strip()
        if text.isascii() and text.isdigit() and int(text) > 0:
            return min(int(text), 1024)
    return max(os.cpu_count() or 1, 1)


def needed_bytes(base: int) -> int:
    """``base`` plus :data:`PER_BLAS_THREAD` for each of :func:`blas_threads`."""
    return base + PER_BLAS_THREAD * blas_threads()


def startup_problem(base: int, command: str) -> str | None:
    """The one-line ``error: ...`` when the address-space limit is below what ``command``
    needs (:func:`needed_bytes` of ``base``), else None."""
    limit = address_space_limit()
    needed = needed_bytes(base)
    if limit is None or limit >= needed:
        return None
    threads = blas_threads()
    hint = (f"; with fewer BLAS threads it needs less (OPENBLAS_NUM_THREADS=1: "
            f"{(base + PER_BLAS_THREAD) // MIB} MiB)" if threads > 1 else "")
    return (f"error: the address-space limit (ulimit -v) is {limit // MIB} MiB; {command} "
            f"needs at least {needed // MIB} MiB with {threads} BLAS "
            f"thread{'s' if threads > 1 else ''}{hint}")


def torch_threads_problem(threads: int) -> str | None:
    """Why ``threads`` torch threads cannot start under the address-space limit (they
    would end the process in libgomp's own line, beyond any handler), or None."""
    limit = address_space_limit()
    needed = needed_bytes(TRAIN_BASE) + PER_TORCH_THREAD * threads
    if limit is None or limit >= needed:
        return None
    return (f"--threads {threads}: the address-space limit (ulimit -v) is {limit // MIB} "
            f"MiB; training with {threads} threads needs at least {needed // MIB} MiB: give "
            f"fewer threads or a higher limit")


def allocate_blas_buffers() -> None:
    """When an address-space limit is set, run one matrix product large enough for OpenBLAS
    to use every thread, so that each thread's buffer is allocated now (OpenBLAS keeps them
    for every later product). Call right after NumPy is imported."""
    if address_space_limit() is None:
        return
    import numpy as np

    for dtype in (np.float32, np.float64):
        matrix = np.ones((384, 384), dtype=dtype)
        matrix @ matrix


def _working_folder_problem() -> str | None:
    """The one-line error when the working folder has been removed: libraries then fail in
    their own ways (oneMKL ended ``import torch`` with a line of its own, multiprocessing's
    spawn with a traceback)."""
    try:
        os.getcwd()
    except OSError as err:
        return (f"error: the working folder is gone ({err.strerror or err}): run from an "
                f"existing folder")
    return None


def start_numpy(base: int, command: str) -> str | None:
    """An entry point's first steps, in order: the limit checked (:func:`startup_problem`),
    NumPy imported (:func:`hwgen.environment.import_problem`), OpenBLAS's buffers allocated
    (:func:`allocate_blas_buffers`). The one-line ``error: ...`` of the step that failed,
    or None."""
    from .environment import import_problem

    problem = (_working_folder_problem() or startup_problem(base, command)
               or import_problem("numpy", "NUMPY_*"))
    if problem is None:
        allocate_blas_buffers()
    return problem
