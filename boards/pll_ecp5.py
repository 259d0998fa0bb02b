"""Divider solver for the ECP5 PLL (``EHXPLLL``), primary output fed back (``FEEDBK_PATH``
``CLKOP``), the same search as prjtrellis' ``ecppll``.

With feedback from CLKOP, ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and the VCO runs at
``f_out * CLKOP_DIV``. Constraints: phase detector ``f_in / CLKI_DIV`` 3.125..400 MHz, VCO
400..800 MHz, ``CLKI_DIV`` 1..128, ``CLKFB_DIV`` 1..80, ``CLKOP_DIV`` 1..128. :func:`solve`
returns the configuration closest to the request; among equally close ones, the one whose
VCO is closest to 600 MHz (then the first in ``CLKI_DIV, CLKFB_DIV, CLKOP_DIV`` order).
Arithmetic is exact (:class:`fractions.Fraction`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .pll_ice40 import _as_mhz

PFD_MIN_MHZ, PFD_MAX_MHZ = Fraction(3125, 1000), 400
VCO_MIN_MHZ, VCO_MAX_MHZ = 400, 800
OUT_MIN_MHZ, OUT_MAX_MHZ = 10, 400


@dataclass(frozen=True)
class ECP5PLLConfig:
    f_in: Fraction
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def f_pfd(self) -> Fraction:
        return self.f_in / self.clki_div

    @property
    def f_out(self) -> Fraction:
        return self.f_pfd * self.clkfb_div

    @property
    def f_vco(self) -> Fraction:
        return self.f_out * self.clkop_div

    @property
    def f_out_hz(self) -> float:
        return float(self.f_out * 1_000_000)

    def instance_params(self) -> dict:
        """``p_`` parameters for ``Instance("EHXPLLL", ...)`` (connect ``CLKFB`` to ``CLKOP``)."""
        return {
            "p_PLLRST_ENA": "DISABLED", "p_INTFB_WAKE": "DISABLED",
            "p_STDBY_ENABLE": "DISABLED", "p_DPHASE_SOURCE": "DISABLED",
            "p_OUTDIVIDER_MUXA": "DIVA", "p_CLKOP_ENABLE": "ENABLED",
            "p_CLKOP_DIV": self.clkop_div, "p_CLKOP_CPHASE": self.clkop_div - 1,
            "p_CLKOP_FPHASE": 0, "p_CLKFB_DIV": self.clkfb_div, "p_CLKI_DIV": self.clki_div,
            "p_FEEDBK_PATH": "CLKOP",
            # loop-filter settings ecppll writes for every configuration
            "a_ICP_CURRENT": "12", "a_LPF_RESISTOR": "8", "a_MFG_ENABLE_FILTEROPAMP": "1",
            "a_MFG_GMCREF_SEL": "2",
        }


def solve(f_out_mhz, f_in_mhz=25, *, max_error_mhz=None) -> ECP5PLLConfig:
    """The configuration closest to ``f_out_mhz``; ``ValueError`` when the input or output is
    out of range, or the closest is further than ``max_error_mhz``."""
    f_in = _as_mhz("input frequency", f_in_mhz)
    f_req = _as_mhz("output frequency", f_out_mhz)
    if not 8 <= f_in <= 400:
        raise ValueError(f"ECP5 PLL input frequency {float(f_in):.3f} MHz is outside 8..400 MHz")
    if not OUT_MIN_MHZ <= f_req <= OUT_MAX_MHZ:
        raise ValueError(f"ECP5 PLL output frequency {float(f_req):.3f} MHz is outside "
                         f"{OUT_MIN_MHZ}..{OUT_MAX_MHZ} MHz")
    best, best_key = None, None
    for clki in range(1, 129):
        f_pfd = f_in / clki
        if not PFD_MIN_MHZ <= f_pfd <= PFD_MAX_MHZ:
            continue
        for clkfb in range(1, 81):
            f_out = f_pfd * clkfb
            # every CLKOP_DIV gives the same output; the VCO range allows an interval of them
            # and the best is the first one whose VCO is closest to 600 MHz
            lo = max(1, math.ceil(VCO_MIN_MHZ / f_out))
            hi = min(128, math.floor(VCO_MAX_MHZ / f_out))
            if lo > hi:
                continue
            clkop = min(range(lo, hi + 1), key=lambda d: abs(f_out * d - 600))
            key = (abs(f_out - f_req), abs(f_out * clkop - 600))
            if best_key is None or key < best_key:
                best, best_key = (clki, clkfb, clkop), key
    if best is None:
        raise ValueError(f"no ECP5 PLL configuration reaches {float(f_req):.3f} MHz")
    config = ECP5PLLConfig(f_in, *best)
    if max_error_mhz is not None and best_key[0] > _as_mhz("max_error_mhz", max_error_mhz):
        raise ValueError(f"closest ECP5 PLL output to {float(f_req):.3f} MHz is "
                         f"{float(config.f_out):.3f} MHz, more than {max_error_mhz} MHz away")
    return config
