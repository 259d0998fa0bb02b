"""Ctrl-C and SIGTERM end a CLI with one line, a fixed exit code, and nothing left behind.

So does every other signal whose default action would end the process silently, with its
outputs half-written (:data:`ENDING_SIGNALS`: SIGHUP from a closed terminal, SIGXCPU from a
soft CPU-time limit, SIGQUIT, SIGUSR1...): it is handled as SIGTERM is, with exit code
``128 + signal``, unless the process was started with it ignored (``nohup``).

- :func:`run_entry` is what ``python -m hwgen`` and ``python -m train`` run first: it turns
  SIGTERM into :class:`Terminated` (so ``finally`` blocks and staged outputs are cleaned
  up exactly as for Ctrl-C), then imports and calls the real ``main`` inside the guarded
  region, so an interrupt even during the heavy imports ends in one line.
- The first Ctrl-C or SIGTERM wins: later signals do nothing (the handler returns at once),
  so the cleanup it starts (staged outputs removed, one line printed) cannot be
  interrupted in turn, and the exit code is that of the first signal.
- :func:`deferred_signals` holds Ctrl-C and SIGTERM while a block runs and raises them at
  its end: the imports of C++ extensions (torch, onnx, onnxruntime) run inside it, since
  an exception raised into their initialization aborts the process (SIGABRT).
- :func:`interrupted` is the one way an interrupt is reported: ``error: interrupted`` (or a
  caller's message) on stderr, exit code :data:`SIGINT_EXIT` (130) or :data:`SIGTERM_EXIT`
  (143), and Amaranth's ``UnusedElaboratable`` warnings (a half-built design being garbage
  collected at exit) silenced.
- A reader that closes stdout early (``python -m hwgen info M | head -1``) ends the command
  quietly with exit code :data:`SIGPIPE_EXIT` (141), as the shell reports for other tools.
- Any other failure to write stdout (``> /dev/full``: no space left, an I/O error) ends it
  with one line ``error: cannot write to standard output (<reason>)`` and exit code
  :data:`STDOUT_ERROR_EXIT` (2, as for the other errors that are the user's to fix). stdout
  is flushed before the entry returns, so the error surfaces there and not in the flush at
  interpreter shutdown (after which stdout points at /dev/null, as for a broken pipe).

This module imports only the standard library, so that it is cheap to import first.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import warnings
from typing import Callable

SIGINT_EXIT = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
SIGTERM_EXIT = 143  # 128 + SIGTERM
SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left
#: Signals whose default action ends the process: each ends a guarded run as SIGTERM does
#: (its :class:`Terminated` carries the number; exit code ``128 + number``).
ENDING_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGXCPU", "SIGUSR1", "SIGUSR2", "SIGALRM",
    "SIGVTALRM", "SIGPROF", "SIGPWR", "SIGIO", "SIGSTKFLT") if hasattr(signal, name)) + (
    tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) if hasattr(signal, "SIGRTMIN") else ())
STDOUT_ERROR_EXIT = 2  # stdout cannot be written (a full disk, /dev/full, an I/O error)
OUT_OF_MEMORY_EXIT = 2  # an allocation nothing sized beforehand failed (MemoryError)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another of :data:`ENDING_SIGNALS` but SIGINT: :attr:`signum`), raised in
    the main thread by the handler :func:`run_entry` installs.

    A subclass of :class:`KeyboardInterrupt`, so every cleanup written for Ctrl-C (and no
    ``except Exception``) sees it."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signum = int(signum)


def _interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def guarded_signals() -> tuple[int, ...]:
    """SIGINT, SIGTERM, and the other :data:`ENDING_SIGNALS` that :func:`run_entry` (or
    :mod:`hwgen.early_signals`) handles in this process: those not ignored when it began."""
    return tuple(n for n in ENDING_SIGNALS
                 if n in (signal.SIGINT, signal.SIGTERM) or signal.getsignal(n) not in (
                     signal.SIG_IGN, signal.SIG_DFL, None))


class _StdoutError(Exception):
    """Writing stdout failed (not a broken pipe); ``args[0]`` is the ``OSError``. Not an
    ``OSError`` itself, so that a command's handling of its own files never takes it for
    theirs."""


class _GuardedStream:
    """A text stream whose failed write or flush, other than a broken pipe (a reader that
    left: handled where it surfaces), is handed to :meth:`_failed`."""

    def __init__(self, stream):
        self._stream = stream

    def _guard(self, operation, *args):
        try:
            return operation(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            return self._failed(err)

    def _failed(self, err: OSError):
        raise NotImplementedError

    def write(self, text):
        return self._guard(self._stream.write, text)

    def writelines(self, lines):
        return self._guard(self._stream.writelines, lines)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _GuardedStdout(_GuardedStream):
    """stdout, with a failed write or flush (other than a broken pipe) raised as
    :class:`_StdoutError`: only writes to stdout can raise that, wherever they happen."""

    def _failed(self, err: OSError):
        raise _StdoutError(err) from None


class _GuardedStderr(_GuardedStream):
    """stderr, where a failed write or flush other than a broken pipe (``2>/dev/full``: no
    space, an I/O error) loses the text and nothing else: the command goes on and ends with
    its own exit code, as other tools do (a message that cannot be shown is no reason to
    fail a run, and an error's exit code still says it). After such a failure stderr points
    at /dev/null, so that the flush at exit does not fail again."""

    def _failed(self, err: OSError):
        _to_devnull(self._stream)
        return None

    def write(self, text):
        result = super().write(text)
        return len(text) if result is None else result


_settled = False  # set by the first signal (or a command's final output): later ones do nothing
_lost: int | None = None  # a signal whose interrupt a finalizer swallowed, not yet raised again
_raised: int | None = None  # the signal whose interrupt the handler raised, if any


def _closed_stderr():
    """A text stream to /dev/null on a descriptor above 2 (descriptors 0-2 keep their
    meaning for child processes), standing in for a stderr the process started without."""
    import fcntl

    fd = os.open(os.devnull, os.O_WRONLY)
    if fd < 3:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(fd)
        fd = high
    return open(fd, "w", encoding="utf-8", errors="replace")


class _ClosedStdout:
    """What stdout is when the process started with it closed (``>&-``): Python's
    ``sys.stdout`` is then ``None`` and every print vanishes; here a write fails as a write
    to a closed descriptor does, so the command reports it (and writes no files after it)."""

    def write(self, text):
        raise OSError(errno.EBADF, "standard output is closed")

    def writelines(self, lines):
        self.write("")

    def flush(self):
        pass

    def fileno(self):
        raise OSError(errno.EBADF, "standard output is closed")

    def isatty(self):
        return False


def _first_signal(signum, frame):
    """The handler of both signals under :func:`run_entry`: the first raises, later ones
    are ignored. It changes no handler itself: ``signal.signal`` runs pending handlers
    first, so a second signal arriving just then was handled inside the first's handler,
    or, once its handler was ``SIG_IGN``, reported as an ``OSError`` ("ignored due to race
    condition") that code catching ``OSError`` could swallow."""
    global _settled, _lost, _raised
    if _settled:
        return
    _settled, _lost, _raised = True, None, signum
    raise _interrupt(signum)


def _unraisable(info) -> None:
    """``sys.unraisablehook`` under :func:`run_entry`: an interrupt raised while a finalizer
    ran (an Amaranth object's ``__del__`` during garbage collection) would be printed as
    "Exception ignored" and lost, with the run going on to exit 0. Instead it is remembered
    (:func:`run_entry` reports it if nothing else has when main returns) and its signal is
    sent again shortly, from a thread, to be raised where it can end the run (a signal sent
    from here would be handled at once, inside this hook, and be lost again)."""
    global _settled, _lost
    if isinstance(info.exc_value, KeyboardInterrupt):
        _lost = (info.exc_value.signum if isinstance(info.exc_value, Terminated)
                 else signal.SIGINT)
        _settled = False
        resend = threading.Timer(0.05, os.kill, (os.getpid(), _lost))
        resend.daemon = True
        resend.start()
        return
    sys.__unraisablehook__(info)


@contextlib.contextmanager
def deferred_signals(*, final: bool = False):
    """Ctrl-C and SIGTERM that arrive inside the block are raised when it ends, as
    :func:`run_entry`'s handler raises them (outside the main thread, where handlers cannot
    be changed, the block runs as it is).

    ``final`` is for the block that puts a command's last output in place: once it has
    succeeded under :func:`run_entry`, the run's result is complete, so signals are ignored
    from then on and a held one is dropped: the command ends with its own exit code, not as
    interrupted with its output written. (Elsewhere, as in a test's process, ``final``
    changes nothing.)"""
    global _settled, _lost
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    try:
        previous = {n: signal.signal(n, hold) for n in guarded_signals()}
    except ValueError:  # not the main thread
        yield
        return
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        settle = final and succeeded and previous[signal.SIGINT] is _first_signal
        if settle:
            _settled, _lost = True, None
        for number, handler in previous.items():
            signal.signal(number, handler)
        if settle:
            held.clear()
        if held:
            handler = previous[held[0]]
            if callable(handler):
                handler(held[0], None)
            elif handler != signal.SIG_IGN:
                _first_signal(held[0], None)


def raised_interrupt() -> KeyboardInterrupt | None:
    """The interrupt :func:`run_entry`'s handler raised in this run (a fresh exception of
    its kind), or None. For an error that may be that interrupt in disguise: a C
    extension interrupted while it initializes reports ``ImportError: initialization
    failed``, and the interrupt itself is gone."""
    if _raised is None:
        return None
    return _interrupt(_raised)


def import_deferred(name: str):
    """``importlib.import_module(name)`` inside :func:`deferred_signals`."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    with deferred_signals():
        return importlib.import_module(name)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, ``128 + n`` for another signal ``n``."""
    return 128 + interrupt.signum if isinstance(interrupt, Terminated) else SIGINT_EXIT


def _interrupt_codes() -> set[int]:
    return {128 + n for n in guarded_signals()}


def interrupt_line(signum: int, message: str = "error: interrupted") -> str:
    """``message``, naming the CPU-time limit when that is what ended the run."""
    if signum == getattr(signal, "SIGXCPU", None):
        return message.replace("error: interrupted",
                               "error: interrupted by the CPU-time limit (ulimit -t)", 1)
    return message


def silence_unused_elaboratables() -> None:
    """Stop Amaranth warning about elaboratables that an interrupted build never used."""
    unused = sys.modules.get("amaranth._unused")
    if unused is not None:
        unused.MustUse._MustUse__silence = True
        warnings.simplefilter("ignore", unused.UnusedMustUse)


def interrupted(interrupt: KeyboardInterrupt, message: str = "error: interrupted") -> int:
    """Report ``interrupt`` as one stderr line; returns the exit code (130, 143, or
    ``128 + n`` for another signal ``n``)."""
    silence_unused_elaboratables()
    print(interrupt_line(getattr(interrupt, "signum", signal.SIGINT), message),
          file=sys.stderr)
    return exit_code(interrupt)


def run_entry(load_main: Callable[[], Callable[[], int]]) -> int:
    """``load_main()()`` with Ctrl-C raising KeyboardInterrupt and SIGTERM (and the other
    :data:`ENDING_SIGNALS` not ignored at start) :class:`Terminated`, the first of them
    ignoring any later one; an interrupt anywhere in it returns 130/143 (``128 + n``) after
    one line (one during ``load_main``'s imports is held until they are done). Once main
    has returned or been interrupted, those signals are ignored while the process exits
    (only ``python -m`` entry points call this: it changes the process's handlers)."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = _GuardedStdout(_ClosedStdout() if stdout is None else stdout)
    # started with stderr closed (``2>&-``): Python's sys.stderr is None, and print(...,
    # file=None) wrote the error to stdout; its text is lost instead, as for a stderr that
    # cannot be written
    sys.stderr = _GuardedStderr(_closed_stderr() if stderr is None else stderr)
    sys.unraisablehook = _unraisable
    try:
        for number in ENDING_SIGNALS:
            if number in (signal.SIGINT, signal.SIGTERM) \
                    or signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, _first_signal)
        with deferred_signals():
            main = load_main()
        code = main()
        sys.stdout.flush()  # a write error surfaces here, not in the flush at exit
        # The work is done (or main reported an interrupt itself): a signal from here on
        # would find Python's default handlers restored during shutdown and kill the process
        # with no message, turning a finished run's exit code into -15.
        interrupt_codes = _interrupt_codes()
        _ignore_signals()
        if _lost is not None and code not in interrupt_codes:
            raise _interrupt(_lost)
        if _raised is not None and code not in interrupt_codes:
            raise _interrupt(_raised)   # raised, then swallowed by a library's except
    except KeyboardInterrupt as interrupt:
        _ignore_signals()
        _forget_unhandled_interrupt()
        return interrupted(interrupt)
    except BrokenPipeError:  # the reader of stdout stopped (``| head``): end quietly
        _stdout_to_devnull()
        return SIGPIPE_EXIT
    except _StdoutError as failed:
        _ignore_signals()
        _stdout_to_devnull()
        reason = getattr(failed.args[0], "strerror", None) or failed.args[0]
        try:
            print(f"error: cannot write to standard output ({reason})", file=sys.stderr)
        except (OSError, ValueError):  # stderr is gone too: the exit code says it
            pass
        return STDOUT_ERROR_EXIT
    except MemoryError:
        # an allocation the command did not size beforehand (an import, a library's own
        # buffers) failed: the limits set on the process are below what it needs
        _ignore_signals()
        print(f"error: out of memory{_limit_note()}", file=sys.stderr)
        return OUT_OF_MEMORY_EXIT
    except Exception:
        if raised_interrupt() is None:
            raise
        # the interrupt, wrapped on its way out (a class body's __set_name__ turns it into
        # a RuntimeError): one line, as for the interrupt itself
        _ignore_signals()
        _forget_unhandled_interrupt()
        return interrupted(raised_interrupt())
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    if isinstance(code, int) and code - 128 in ENDING_SIGNALS:
        silence_unused_elaboratables()
    _forget_unhandled_interrupt()
    return code


def _limit_note() -> str:
    from hwgen.address_space import MIB, address_space_limit

    limit = address_space_limit()
    return "" if limit is None else f" (the address-space limit, ulimit -v, is {limit // MIB} MiB)"


def _forget_unhandled_interrupt() -> None:
    """Clear CPython's "a KeyboardInterrupt went unhandled" flag, with signals already
    ignored so that nothing can set it again.

    CPython sets that flag whenever a KeyboardInterrupt leaves code run from a string
    (``exec("...")``: namedtuple, dataclasses and torch run such code during imports and
    training), even when a caller then catches it; ``python -m`` then ends the process by
    SIGINT (exit status -2) instead of with the exit code it was given. Every such run
    resets the flag first, so one ``exec`` of a harmless string clears it."""
    exec("None")


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail a second time."""
    _to_devnull(sys.stdout)


def _to_devnull(stream) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _ignore_signals() -> None:
    for number in guarded_signals():
        signal.signal(number, signal.SIG_IGN)


def run_main_of(module: str) -> int:
    """:func:`run_entry` of ``module``'s ``main`` (the module is imported inside the guard)."""
    return run_entry(lambda: importlib.import_module(module).main)
