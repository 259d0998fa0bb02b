"""iCEBreaker (iCE40UP5K) board top and build: PLL clock, safe reset, UART, LEDs.

* Clock: the 12 MHz oscillator (pin 35) feeds ``SB_PLL40_PAD``; its dividers come from
  :func:`boards.pll_ice40.solve` for the requested frequency (closest achievable, within
  ``max_clock_error_mhz``). The achieved frequency is what timing is constrained to and what
  the UART divisor is computed from.
* Reset: ``sync`` is held in reset until the PLL reports lock (through a 2-flip-flop
  synchronizer) and then for ``reset_delay_us`` more (default 20 us, counted on the PLL clock;
  iCE40 block RAMs read as zero for about 3 us after configuration, and lock itself comes
  later than that). A loss of lock asserts reset again. The counter relies on iCE40
  flip-flops powering up as 0, as Amaranth's own iCE40 power-on reset does.
* UART on the FTDI's second channel (``uart`` resource: rx pin 6, tx pin 9), 8N1 at ``baud``
  (:data:`MAX_BAUD` at most: 12 Mbaud, 4 clock cycles per bit at 48 MHz; the rate must be the
  clock over a whole divisor of 4 or more, within 2%). No receive FIFO by default
  (``rx_fifo_depth=0``): the UP5K's 30 block RAMs are the core's.
* LEDs: green = UART activity, red = a frame ended with an error (each held ~50 ms; steady
  while the core's weights are bad, below); with ``pmod_leds`` the break-off PMOD's five LEDs
  show the last class in binary (LED2 = bit 0).
* Weights (a core that keeps weights in SPRAM, ``weight_header`` given: the header of its
  weight image, :func:`hwgen.weight_image.header`): after reset the top reads the image from
  the board's SPI flash (``spi_flash_1x``: CS# pin 16, SCK 15, COPI 14, CIPO 17; WP# and
  HOLD# held high) at :data:`hwgen.weight_image.FLASH_OFFSET` into the core
  (:mod:`boards.flash_loader`: SCK at 24 MHz from 48 MHz, CIPO through the pin's input
  register) and answers image frames with the weight statuses until it is loaded and checked
  (:mod:`boards.weight_gate`).
"""

from __future__ import annotations


from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io

from ._checks import checking
from .clocking import hold_reset_until_lock
from .build import build_and_report
from .core import StreamCore
from .pll_ice40 import ICEBREAKER_CLOCK_MHZ, solve
from .targets import BOARDS
from .top import check_board_baud, configure_board_top, connect_flash_pins, connect_uart_pins

DEFAULT_CLOCK_MHZ = 48
DEFAULT_BAUD = 3_000_000
#: The highest UART rate the top supports at :data:`DEFAULT_CLOCK_MHZ`: 48 MHz / 4 cycles per
#: bit (the receiver's minimum, see :mod:`boards.uart`), which is also the FT2232H's highest
#: rate (12 Mbaud). Higher requests are refused, at any clock.
MAX_BAUD = BOARDS["icebreaker"].max_baud  # 12 Mbaud
DEFAULT_TIMEOUT_US = 10_000
LED_HOLD_S = 0.05


class ICEBreakerTop(Elaboratable):
    """The whole iCEBreaker design around a :class:`~boards.core.StreamCore`."""

    def __init__(self, core: StreamCore, *, clock_mhz=DEFAULT_CLOCK_MHZ, baud=DEFAULT_BAUD,
                 timeout_us=DEFAULT_TIMEOUT_US, reset_delay_us=20, max_clock_error_mhz=1.0,
                 pmod_leds=True, rx_fifo_depth=0, weight_header: bytes | None = None,
                 uart_weights: bool = False):
        with checking(self):
            check_board_baud(baud, MAX_BAUD, BOARDS["icebreaker"].usb_serial)
            pll = solve(clock_mhz, ICEBREAKER_CLOCK_MHZ, max_error_mhz=max_clock_error_mhz)
            configure_board_top(self, core, pll, baud=baud, timeout_us=timeout_us,
                                reset_delay_us=reset_delay_us, led_hold_s=LED_HOLD_S,
                                rx_fifo_depth=rx_fifo_depth, weight_header=weight_header,
                                uart_weights=uart_weights)
            self.pmod_leds = bool(pmod_leds)

    def elaborate(self, platform):
        m = Module()

        # clock: 12 MHz pad -> PLL -> global network
        clk12 = platform.request("clk12", dir="-")
        m.domains.sync = cd_sync = ClockDomain("sync")
        lock = Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", **self.pll.instance_params(), p_PLLOUT_SELECT="GENCLK",
            i_PACKAGEPIN=clk12.io, i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=cd_sync.clk, o_LOCK=lock)
        # no explicit constraint: nextpnr derives the PLL output's from the 12 MHz pin's (the
        # report shows it), and a named one would not survive synthesis

        # reset: until lock, then reset_cycles more
        hold_reset_until_lock(m, cd_sync, lock, self.reset_cycles)

        # UART and LEDs
        m.submodules.top = top = self.inner
        connect_uart_pins(m, platform, top)
        if top.flash is not None:
            connect_flash_pins(m, platform, top)
        leds = [("led_g", 0, top.activity), ("led_r", 0, top.error)]
        if self.pmod_leds:
            if ("led", 2) not in platform.resources:
                platform.add_resources(platform.break_off_pmod)
            leds += [("led", 2 + bit, top.last_class[bit]) for bit in range(5)]
        for name, number, value in leds:
            buf = io.Buffer("o", platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}"] = buf
            m.d.comb += buf.o.eq(value)
        return m


def build_icebreaker(top: ICEBreakerTop, build_dir, *, name: str = "top",
                     allow_timing_fail: bool = False, seed: int = 1,
                     retry=None) -> dict:
    """Synthesize, place and route ``top`` for the iCEBreaker with the YoWASP tools.

    Returns a report dict: ``bitstream`` (path of the ``.bin``), ``utilization`` ({cell:
    {used, available}}, e.g. ``ICESTORM_LC``, ``ICESTORM_RAM``, ``ICESTORM_SPRAM``),
    ``fmax_mhz`` ({clock: MHz}), ``achieved_mhz`` (slowest clock), ``requested_mhz``,
    ``timing_met``, ``pll`` (dividers), ``baud`` (achieved), ``divisor``. Raises
    :class:`~boards.build.TimingError` when timing is not met, unless ``allow_timing_fail``.
    """
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    if not isinstance(top, ICEBreakerTop):
        raise TypeError(f"top must be an ICEBreakerTop, not {top!r}")
    report = build_and_report(ICEBreakerPlatform(), top, build_dir, name=name,
                              requested_hz=top.clock_hz, seed=seed, retry=retry,
                              bitstream_ext="bin",
                              tools=("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
                              allow_timing_fail=allow_timing_fail)
    report.update({
        "pll": {"divr": top.pll.divr, "divf": top.pll.divf, "divq": top.pll.divq,
                "filter_range": top.pll.filter_range, "f_out_mhz": float(top.pll.f_out)},
        "baud": top.baud,
        "divisor": top.divisor,
    })
    return report
