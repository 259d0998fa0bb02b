"""``hwgen build`` and ``hwgen run`` for a fold that keeps weights in SPRAM.

SPRAM has no initial contents, so such a build writes the weight image
(:mod:`hwgen.weight_image`) as ``weights.bin`` beside the bitstream and the bitstream loads it
from the board's SPI flash at :data:`~hwgen.weight_image.FLASH_OFFSET` after power-up
(:mod:`boards.flash_loader`). This module holds the commands' side of that: the header the
bitstream expects, the build folder's ``weights.bin`` and its report entry, the programming
commands, ``run --sim``'s simulated flash (``--weights FILE``) and the one-line messages for
a board that refuses images for want of good weights.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from hwgen.errors import UserError

from . import protocol

WEIGHTS_FILE = "weights.bin"


def spram_words(net) -> int:
    """The words ``net``'s core loads after reset (0: a fold without SPRAM)."""
    return int(getattr(net, "spram_words", 0) or 0)


def weight_header(net) -> bytes | None:
    """The 20 header bytes the board compares its flash with, or None without SPRAM."""
    if not spram_words(net):
        return None
    from hwgen.weight_image import header, model_id

    return header(spram_words(net), model_id(net))


def check_board(board, net) -> None:
    """UserError unless ``board`` can load ``net``'s SPRAM weights (the iCEBreaker can)."""
    if spram_words(net) and board.family != "ice40":
        raise UserError(f"this fold keeps weights in SPRAM (an iCE40UP5K block), which "
                        f"{board.name} does not have: fold without the 's' suffix")


def flash_offset_text(offset: int) -> str:
    return f"{offset:#x}"


def write_weights(net, folder: Path) -> dict:
    """Write ``folder/weights.bin``; its ``report.json`` entry (``weights_image``)."""
    from hwgen.weight_image import FLASH_OFFSET, write_image

    size = write_image(net, Path(folder) / WEIGHTS_FILE)
    return {"file": WEIGHTS_FILE, "flash_offset": FLASH_OFFSET, "bytes": size,
            "words": spram_words(net)}


def program_commands(outdir: Path, report: dict) -> list[list[str]]:
    """The iceprog commands that put a build on the board: the bitstream, then (a fold with
    SPRAM) the weight image at its flash offset."""
    commands = [["iceprog", str(Path(outdir) / report["bitstream"])]]
    image = report.get("weights_image")
    if image:
        commands.append(["iceprog", "-o", flash_offset_text(image["flash_offset"]),
                         str(Path(outdir) / image["file"])])
    return commands


def program_lines(outdir: Path, report: dict) -> list[str]:
    """What ``hwgen build`` prints for a build with a weight image (nothing without)."""
    image = report.get("weights_image")
    if not image:
        return []
    commands = program_commands(outdir, report)
    return [f"weights      {Path(outdir) / image['file']}: {image['words']} words, "
            f"{image['bytes']} bytes for the flash at {flash_offset_text(image['flash_offset'])}",
            f"program      {shlex.join(commands[0])}",
            f"             {shlex.join(commands[1])}"]


def sim_flash_image(net, path: Path | None, erased: bool = False) -> bytes | None:
    """What ``run --sim`` puts into the simulated flash: ``--weights FILE``'s bytes (size
    checked before reading; one-line UserError on a bad file), else with ``erased`` nothing
    (b"": every byte reads FF), else None (the build's image,
    :func:`hwgen.weight_image.image_for`)."""
    if path is None:
        return b"" if erased and spram_words(net) else None
    if not spram_words(net):
        raise UserError("--weights: this model's fold keeps no weights in SPRAM, so the "
                        "simulated board reads no flash")
    from hwgen.weight_image import read_image

    return read_image(path)  # a regular file only: a FIFO or device is never waited on


def upload_image(net, path: str | None) -> bytes:
    """The image ``run --load-weights`` sends: FILE's bytes (a regular file under 16 MiB;
    the board checks its contents), or with an empty ``path`` the image of ``net`` (the
    model's fold for the board, the weights.bin ``hwgen build`` writes). UserError when
    ``net`` (None when not planned: a real board with FILE) keeps no weights in SPRAM."""
    if net is not None and not spram_words(net):   # None: a real board, which will say
        raise UserError("--load-weights: this model's fold keeps no weights in SPRAM, so the "
                        "board has none to load (its weights are in the bitstream)")
    if path:
        from hwgen.weight_image import read_image

        image = read_image(Path(path), limit=(1 << 24) - 1)
        if not image:
            raise UserError(f"--load-weights {path}: the file is empty (a weight image is "
                            f"the weights.bin that hwgen build writes)")
        _check_complete(image, path)
        return image
    from hwgen.weight_image import image_for

    return image_for(net)


def _check_complete(image: bytes, path) -> None:
    """UserError when ``image`` starts as a weight image but is shorter than its header
    says (the board would wait for the rest and give no verdict); anything else is the
    board's to check and refuse."""
    from hwgen.weight_image import declared_size

    need = declared_size(image)
    if need is not None and len(image) < need:
        raise UserError(f"--load-weights {path}: the weight image is truncated: "
                        f"{len(image)} bytes, its header says {need}")


def upload_line(upload, seconds: float) -> str:
    """What ``run --load-weights`` prints once the board has its weights."""
    if not upload.loaded:
        return ("weights: the board holds good weights already (from its flash); none sent "
                "(they stay until the board is reset)")
    again = f", {upload.restarts} restarts" if upload.restarts else ""
    return (f"weights: {upload.bytes_sent} bytes sent over the UART in {upload.frames} "
            f"frames ({seconds:.2f} s wall clock{again}), checked and loaded by the board")


def upload_failure_message(err, path: str | None) -> str:
    """The one-line message for an image the board checked and refused."""
    what = path or "this model's weight image"
    hint = {protocol.WEIGHTS_NO_IMAGE: "it does not start with a weight image header",
            protocol.WEIGHTS_WRONG_MODEL: "its model id, fold or length differs from the "
                                          "bitstream's: send the weights.bin of the same build",
            protocol.WEIGHTS_BAD_CRC: "its words do not match its CRC"}
    return (f"the board refused the weights in {what}: "
            f"{protocol.WEIGHTS_CLASSES.get(err.verdict, err.verdict)} "
            f"({hint.get(err.verdict, 'unexpected verdict')})")


def boot_seconds(net, clock_hz: float) -> float:
    """An upper bound of the time the board needs to load ``net``'s weights at ``clock_hz``
    (:func:`boards.flash_loader.load_cycles` with the timing
    :meth:`~boards.flash_loader.FlashConfig.for_clock` picks, plus 10%): ``run --sim`` lets
    the simulated board boot that long before the first image, as a real board has long
    booted when ``hwgen run`` starts."""
    words = spram_words(net)
    if not words:
        return 0.0
    from hwgen.weight_image import HEADER_BYTES

    from .flash_loader import FlashConfig, load_cycles

    config = FlashConfig.for_clock(b"SBNW", clock_hz)
    cycles = load_cycles(HEADER_BYTES, words, sck_divisor=config.sck_divisor,
                         cipo_delay=config.cipo_delay, wake_cycles=config.wake_cycles,
                         cs_idle_cycles=config.cs_idle_cycles)
    return 1.1 * cycles / clock_hz


def failure_message(err, *, sim: bool, weights_file: Path | None = None) -> str:
    """The one-line message for a board that refuses images (a ``boards.host.WeightsError``):
    what is wrong and how to mend it (``iceprog``), or, simulated, what the flash held."""
    from hwgen.weight_image import FLASH_OFFSET

    program = f"iceprog -o {flash_offset_text(FLASH_OFFSET)} weights.bin"
    if sim:
        hint = {s: f"the simulated flash holds {weights_file}" if weights_file is not None
                else "the simulated flash holds the build's image" for s in _FAILURES}
    else:
        hint = {
            protocol.STATUS_NO_WEIGHTS: f"program them with: {program}, the weights.bin "
                                        f"that hwgen build wrote beside the bitstream, or "
                                        f"send them with hwgen run --load-weights",
            protocol.STATUS_WRONG_WEIGHTS: f"program this build's weights.bin: {program}",
            protocol.STATUS_BAD_WEIGHTS: f"program weights.bin again: {program}",
        }
    return _FAILURES[err.status].format(hint[err.status])


_FAILURES = {
    protocol.STATUS_NO_WEIGHTS: "the board's flash holds no weights for this model ({})",
    protocol.STATUS_WRONG_WEIGHTS: "the board's flash holds weights for another model or "
                                   "fold ({})",
    protocol.STATUS_BAD_WEIGHTS: "the weights in the board's flash are corrupt (CRC mismatch; "
                                 "{})",
}
