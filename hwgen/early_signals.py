"""The first lines of ``python -m hwgen`` and ``python -m train``: until
:mod:`hwgen.interrupts` is imported, Ctrl-C, SIGTERM and the other signals it handles
(SIGHUP, SIGXCPU...) print one line and exit at once with ``128 + signal`` (nothing has
been done yet, so nothing is left behind). Imports only ``os`` and ``signal``, so that it
takes effect as early as possible."""

import os
import signal

#: The same names as :data:`hwgen.interrupts.ENDING_SIGNALS` (not imported from there: this
#: module must stay this small).
_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGXCPU", "SIGUSR1", "SIGUSR2",
          "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGPWR", "SIGIO", "SIGSTKFLT")


def _before_the_guard(signum, frame):
    try:
        if signum == getattr(signal, "SIGXCPU", None):
            os.write(2, b"error: interrupted by the CPU-time limit (ulimit -t)\n")
        else:
            os.write(2, b"error: interrupted\n")
    except OSError:  # stderr closed or full: the exit code says it
        pass
    os._exit(128 + signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as above, and the other signals of ``_NAMES`` unless the
    process began with them ignored (``nohup``); :func:`hwgen.interrupts.run_entry`
    replaces these handlers."""
    numbers = [getattr(signal, name) for name in _NAMES if hasattr(signal, name)]
    if hasattr(signal, "SIGRTMIN"):  # the real-time signals end a process by default too
        numbers += range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    for number in numbers:
        if number in (signal.SIGINT, signal.SIGTERM) \
                or signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _before_the_guard)
