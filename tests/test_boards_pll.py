"""iCE40 PLL solver, checked against icestorm's icepll (yowasp-icepll from PyPI)."""

import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from boards.pll_ice40 import PLLConfig, filter_range, solve

FREQUENCIES = [16, 20, 24, 25, 30, 33.333, 36, 40, 42, 45, 48, 50, 54, 60, 66, 72, 75, 80,
               100, 120, 133, 150, 200, 275]


def icepll_tool():
    local = Path(sys.executable).parent / "yowasp-icepll"
    if local.exists():
        return str(local)
    found = shutil.which("yowasp-icepll") or shutil.which("icepll")
    if found is None:
        pytest.skip("yowasp-icepll not installed")
    return found


@pytest.fixture(scope="module")
def icepll():
    tool = icepll_tool()

    def run(f_out, f_in=12):
        out = subprocess.run([tool, "-i", str(f_in), "-o", str(f_out)], capture_output=True,
                             text=True, check=True, timeout=120).stdout
        field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", out, re.M).group(1))  # noqa
        achieved = float(re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", out).group(1))
        return (field("DIVR"), field("DIVF"), field("DIVQ"), field("FILTER_RANGE")), achieved
    return run


@pytest.mark.parametrize("f_out", FREQUENCIES)
def test_matches_icepll(icepll, f_out):
    config = solve(f_out)
    (divr, divf, divq, fr), achieved = icepll(f_out)
    assert (config.divr, config.divf, config.divq, config.filter_range) == (divr, divf, divq, fr)
    assert abs(float(config.f_out) - achieved) <= 0.0005 + 1e-9  # icepll prints 3 decimals


def test_matches_icepll_other_input(icepll):
    for f_in, f_out in [(25, 48), (100, 50), (16, 66)]:
        config = solve(f_out, f_in)
        (divr, divf, divq, fr), _ = icepll(f_out, f_in)
        assert (config.divr, config.divf, config.divq, config.filter_range) == \
            (divr, divf, divq, fr)


def test_constraints_hold_everywhere():
    for tenth in range(160, 2751, 7):
        config = solve(Fraction(tenth, 10))
        assert 10 <= config.f_pfd <= 133
        assert 533 <= config.f_vco <= 1066
        assert 0 <= config.divr <= 15 and 0 <= config.divf <= 127 and 1 <= config.divq <= 6
        assert config.filter_range == filter_range(config.f_pfd)
        assert abs(config.f_out - Fraction(tenth, 10)) < 3  # VCO steps of 12 MHz / 2**DIVQ


def test_exact_results():
    config = solve(48)
    assert config == PLLConfig(Fraction(12), 0, 63, 4, 1)
    assert config.f_out == 48 and config.f_out_hz == 48e6
    assert config.instance_params() == {"p_FEEDBACK_PATH": "SIMPLE", "p_DIVR": 0,
                                        "p_DIVF": 63, "p_DIVQ": 4, "p_FILTER_RANGE": 1}


def test_impossible_requests():
    with pytest.raises(ValueError, match="outside"):
        solve(15)
    with pytest.raises(ValueError, match="outside"):
        solve(276)
    with pytest.raises(ValueError, match="input"):
        solve(48, 9)
    with pytest.raises(ValueError, match="away"):
        solve(49.1, max_error_mhz=0.1)  # 12 MHz steps of 0.75 MHz near 49: 48.75 or 49.5
    assert solve(49.1, max_error_mhz=0.5).f_out == Fraction(195, 4)
    with pytest.raises(ValueError):
        solve(float("nan"))
    with pytest.raises(ValueError):
        solve(float("inf"))
    with pytest.raises(TypeError):
        solve("48")
    with pytest.raises(TypeError):
        solve(True)
