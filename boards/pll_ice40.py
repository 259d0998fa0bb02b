"""Divider solver for the iCE40 PLL (``SB_PLL40_*``) in SIMPLE feedback mode.

The output frequency is ``f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)`` with the constraints of
the iCE40 sysCLOCK PLL (the same search as icestorm's ``icepll``):

* input 10..133 MHz, phase-detector frequency ``f_in / (DIVR + 1)`` 10..133 MHz;
* VCO ``f_pfd * (DIVF + 1)`` 533..1066 MHz; ``DIVR`` 0..15, ``DIVF`` 0..127, ``DIVQ`` 1..6;
* output 16..275 MHz; ``FILTER_RANGE`` chosen from the phase-detector frequency.

:func:`solve` returns the configuration whose output is closest to the request (ties go to the
first candidate in ``DIVR, DIVF, DIVQ`` order, as in ``icepll``). All arithmetic is exact
(:class:`fractions.Fraction`), so the choice never depends on rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PFD_MIN_MHZ, PFD_MAX_MHZ = 10, 133
VCO_MIN_MHZ, VCO_MAX_MHZ = 533, 1066
OUT_MIN_MHZ, OUT_MAX_MHZ = 16, 275
ICEBREAKER_CLOCK_MHZ = 12

# FILTER_RANGE by phase-detector frequency: the first upper bound (exclusive) that is above it.
_FILTER_RANGES = ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5))


@dataclass(frozen=True)
class PLLConfig:
    """One ``SB_PLL40`` configuration (SIMPLE feedback). Frequencies in MHz (exact)."""

    f_in: Fraction
    divr: int
    divf: int
    divq: int
    filter_range: int

    @property
    def f_pfd(self) -> Fraction:
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self) -> Fraction:
        return self.f_pfd * (self.divf + 1)

    @property
    def f_out(self) -> Fraction:
        return self.f_vco / 2 ** self.divq

    @property
    def f_out_hz(self) -> float:
        return float(self.f_out * 1_000_000)

    def instance_params(self) -> dict:
        """Parameters for ``Instance("SB_PLL40_PAD", **params, ...)`` (``p_`` prefixed)."""
        return {"p_FEEDBACK_PATH": "SIMPLE", "p_DIVR": self.divr, "p_DIVF": self.divf,
                "p_DIVQ": self.divq, "p_FILTER_RANGE": self.filter_range}


def filter_range(f_pfd_mhz) -> int:
    """The PLL loop-filter setting for a phase-detector frequency (MHz)."""
    for bound, value in _FILTER_RANGES:
        if f_pfd_mhz < bound:
            return value
    return 6


def _as_mhz(name: str, value) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TypeError(f"{name} must be a number of MHz, not {value!r}")
    if isinstance(value, float) and value != value:  # NaN
        raise ValueError(f"{name} must be a number of MHz, not NaN")
    try:
        return Fraction(value)
    except (OverflowError, ValueError):
        raise ValueError(f"{name} must be a finite number of MHz, not {value!r}") from None


def solve(f_out_mhz, f_in_mhz=ICEBREAKER_CLOCK_MHZ, *, max_error_mhz=None) -> PLLConfig:
    """The SIMPLE-feedback configuration closest to ``f_out_mhz`` from a ``f_in_mhz`` reference.

    Raises ``ValueError`` when the input or requested output is outside the PLL's range, or
    when ``max_error_mhz`` is given and the closest achievable frequency is further away.
    """
    f_in = _as_mhz("input frequency", f_in_mhz)
    f_req = _as_mhz("output frequency", f_out_mhz)
    if not PFD_MIN_MHZ <= f_in <= PFD_MAX_MHZ:
        raise ValueError(f"PLL input frequency {float(f_in):.3f} MHz is outside "
                         f"{PFD_MIN_MHZ}..{PFD_MAX_MHZ} MHz")
    if not OUT_MIN_MHZ <= f_req <= OUT_MAX_MHZ:
        raise ValueError(f"PLL output frequency {float(f_req):.3f} MHz is outside "
                         f"{OUT_MIN_MHZ}..{OUT_MAX_MHZ} MHz")
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not PFD_MIN_MHZ <= f_pfd <= PFD_MAX_MHZ:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not VCO_MIN_MHZ <= f_vco <= VCO_MAX_MHZ:
                continue
            for divq in range(1, 7):
                error = abs(f_vco / 2 ** divq - f_req)
                if best is None or error < best[0]:
                    best = (error, divr, divf, divq)
    if best is None:  # cannot happen for inputs in range, kept as a guard
        raise ValueError(f"no PLL configuration reaches {float(f_req):.3f} MHz "
                         f"from {float(f_in):.3f} MHz")
    error, divr, divf, divq = best
    config = PLLConfig(f_in, divr, divf, divq, filter_range(f_in / (divr + 1)))
    if max_error_mhz is not None and error > _as_mhz("max_error_mhz", max_error_mhz):
        raise ValueError(f"closest PLL output to {float(f_req):.3f} MHz is "
                         f"{float(config.f_out):.3f} MHz, more than {max_error_mhz} MHz away")
    return config
