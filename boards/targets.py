"""The boards ``hwgen build --board`` supports: one registry, so the CLI lists and resolves
them without knowing each board's module.

Each :class:`Board` gives its FPGA's resources and what the board logic itself uses
(``board_luts``, ``board_brams``, measured with a stand-in core; add them to the core's
estimate to refuse a model that cannot fit before synthesis), its default clock and UART
rate (``default_baud``: 3 Mbaud on both boards, the highest rate both boards' FTDI chips
make exactly and within the ULX3S FT231X's rating; the iCEBreaker's FT2232H also runs
12 Mbaud, ``--baud 12000000``, tested in simulation only), the block RAMs' read-port
width (``bram_port_bits``, for the read-port bound), its SPRAM blocks (``spram_blocks``, with
``flash_loader_luts`` the logic a design that uses them adds: the flash loader and the image
gate, about 300 logic cells; ``uart_weights_luts`` what ``build --uart-weights`` adds, the
UART weight path: LOAD_WEIGHTS parsing, its loader, the source switch, 401 more on the
shipped SPRAM CNN's fold), and two callables:
``make_top(core, **options)`` (the board
top around a :class:`~boards.core.StreamCore`; options: ``clock_mhz``, ``baud``,
``timeout_us``, ``weight_header`` for a core that loads SPRAM weights from flash, ...) and
``build(top, build_dir, **options)`` (bitstream and report dict).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hwgen.fold.default import UP5K_FLASH_LOADER_LUTS

from . import protocol


def check_baud(baud, max_baud: int, usb_serial: str) -> None:
    """``TypeError`` unless ``baud`` is a number; ``ValueError`` when it is above
    ``max_baud``, the highest rate the board's USB-serial chip (``usb_serial``) runs at."""
    if isinstance(baud, bool) or not isinstance(baud, (int, float)):
        raise TypeError(f"baud rate must be a number, not {baud!r}")
    if baud > max_baud:
        raise ValueError(f"baud rate {baud:.0f} is above {max_baud} baud, the highest "
                         f"{usb_serial} runs at")


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    family: str              # "ice40" or "ecp5"
    device: str
    luts: int                # logic cells (LUT4s)
    bram_blocks: int         # block RAMs
    bram_block_bits: int     # bits per block RAM
    default_clock_mhz: float
    bitstream_ext: str
    board_luts: int          # what the board logic (UART, framer, reset, LEDs) adds to a core
    board_brams: int
    bram_port_bits: int      # widest read port of one block RAM (bits per cycle)
    default_baud: int        # the UART rate `hwgen build`/`run` use without --baud
    max_baud: int            # the highest UART rate the board's USB-serial chip runs at
    usb_serial: str          # that chip, as messages name it
    _top: str                # "module:callable"
    _build: str
    _build_kwargs: tuple = ()
    spram_blocks: int = 0    # SPRAM blocks a fold may keep weights in (loaded from flash)
    flash_loader_luts: int = 0   # what the flash loader and image gate add when it does
    uart_weights_luts: int = 0   # what build --uart-weights adds to that

    def _load(self, ref: str):
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)

    def check_baud(self, baud) -> None:
        """:func:`check_baud` with this board's limit (before anything is built)."""
        check_baud(baud, self.max_baud, self.usb_serial)

    def make_top(self, core, **options):
        options.setdefault("clock_mhz", self.default_clock_mhz)
        return self._load(self._top)(core, **options)

    def build(self, top, build_dir, **options):
        return self._load(self._build)(top, build_dir, **dict(self._build_kwargs), **options)


BOARDS = {
    "icebreaker": Board(
        "icebreaker", "1BitSquared iCEBreaker (Lattice iCE40UP5K-SG48)", "ice40", "iCE40UP5K",
        luts=5280, bram_blocks=30, bram_block_bits=4096, default_clock_mhz=48,
        bitstream_ext="bin", board_luts=750, board_brams=0, bram_port_bits=16,
        default_baud=protocol.DEFAULT_BAUD, max_baud=12_000_000,
        usb_serial="the iCEBreaker's FT2232H",
        _top="boards.icebreaker:ICEBreakerTop",
        _build="boards.icebreaker:build_icebreaker", spram_blocks=4,
        flash_loader_luts=UP5K_FLASH_LOADER_LUTS, uart_weights_luts=400),
    "ulx3s-85f": Board(
        "ulx3s-85f", "Radiona ULX3S with ECP5 LFE5U-85F", "ecp5", "LFE5U-85F",
        luts=83640, bram_blocks=208, bram_block_bits=18432, default_clock_mhz=50,
        bitstream_ext="bit", board_luts=800, board_brams=1, bram_port_bits=36,
        default_baud=protocol.DEFAULT_BAUD, max_baud=3_000_000,
        usb_serial="the ULX3S's FT231X",
        _top="boards.ulx3s:ULX3STop", _build="boards.ulx3s:build_ulx3s",
        _build_kwargs=(("device", "85F"),)),
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; supported: {', '.join(BOARDS)}") from None
