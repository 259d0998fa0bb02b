"""The board top in cocotb + Verilator: UART bytes in and out at the pins, with valid,
corrupted, truncated, overlong and back-to-back frames (issue 6's board-top simulation)."""

import json
import os
import random
from pathlib import Path

import pytest

from boards import protocol as P
from boards.core import CoreShape, StreamCore
from boards.standin import SumCore, predict
from boards.top import UARTInferenceTop

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim

SHAPE = CoreShape(lanes=3, bits=8, beats_per_image=9, class_bits=4, n_values=25)
DIVISOR = 8
TIMEOUT = 40 * DIVISOR


def run_scenario(workdir: Path, steps, expect: int, top=None) -> list:
    try:
        from sim.toolchain import find_verilator
        verilator = find_verilator()
        from cocotb_tools.runner import get_runner
    except Exception as e:  # noqa: BLE001 - any reason the simulator is unusable here
        pytest.skip(f"cocotb/Verilator unavailable: {e}")
    from boards.verilator_board import board_verilog

    os.environ.update({k: v for k, v in verilator.env.items()
                       if k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")})
    if top is None:
        core = StreamCore.wrap(SumCore(SHAPE, stall=True), SHAPE)
        top = UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT, rx_fifo_depth=32)
    text, extra = board_verilog(top)
    source = workdir / "board_top.v"
    source.write_text(text)
    scenario, out = workdir / "scenario.json", workdir / "out.hex"
    scenario.write_text(json.dumps({"divisor": DIVISOR, "steps": steps, "expect": expect,
                                    "budget": 200 * 10 * DIVISOR}))
    runner = get_runner("verilator")
    runner.build(sources=[source, *extra], hdl_toplevel="board_top",
                 build_dir=workdir / "build",
                 build_args=[*getattr(verilator, "extra_args", ()), "-Wno-fatal", "-Wno-lint",
                             "-Wno-style"])
    runner.test(test_module="boards.cocotb_board", hdl_toplevel="board_top",
                build_dir=workdir / "build", test_dir=workdir,
                extra_env={"SBN_BOARD_SCENARIO": str(scenario), "SBN_BOARD_OUT": str(out),
                           "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    decoder = P.ReplyDecoder()
    return decoder.feed(bytes.fromhex(out.read_text()) if out.exists() else b"")


def test_board_top_in_cocotb(tmp_path):
    rng = random.Random(5)
    a, b, c, d = ([rng.randrange(256) for _ in range(SHAPE.n_values)] for _ in range(4))
    bad = bytearray(P.encode_image(2, b))
    bad[-1] ^= 0x80
    overlong = P.encode_image(5, d)
    overlong = overlong[:-2] + b"\x00\x00" + overlong[-2:]
    steps = [
        ["send", (b"\x00\xa5\x17" + P.encode_image(1, a) + bytes(bad)).hex()],
        ["send", P.encode_image(3, c)[:12].hex()], ["idle", 2 * TIMEOUT],       # truncated
        ["send", P.encode_request(P.CMD_CLASSIFY, 4, bytes(d[:-1])).hex()],   # short LEN
        ["idle", 2 * TIMEOUT],
        ["send", overlong.hex()], ["idle", 2 * TIMEOUT],
        ["break", 30 * DIVISOR],
        ["send", (P.encode_image(6, d) + P.encode_image(7, c)).hex()],       # back to back
    ]
    got = run_scenario(tmp_path, steps, expect=7 * P.REPLY_LENGTH)
    assert got == [
        P.Reply(P.STATUS_OK, 1, predict(SHAPE, a)),
        P.Reply(P.STATUS_BAD_CHECKSUM, 2, 0),
        P.Reply(P.STATUS_TIMEOUT, 3, 0),
        P.Reply(P.STATUS_BAD_LENGTH, 4, 0),
        P.Reply(P.STATUS_BAD_CHECKSUM, 5, 0),
        P.Reply(P.STATUS_OK, 6, predict(SHAPE, d)),
        P.Reply(P.STATUS_OK, 7, predict(SHAPE, c)),
    ]


def test_weights_over_the_uart_in_cocotb(tmp_path):
    """A board whose flash is erased (CIPO reads 1s): images get NO_WEIGHTS; LOAD_WEIGHTS
    frames with a bad checksum, a wrong offset, then the image in three chunks (the last
    answered with the OK verdict); images are then classified with the loaded words."""
    from boards.flash_loader import FlashConfig
    from hwgen.weight_image import encode, header

    words = [random.Random(9).randrange(1 << 16) for _ in range(30)]
    ident = b"cocotb-1"
    image = encode(words, ident)
    shape = CoreShape(lanes=3, bits=8, beats_per_image=9, class_bits=4, n_values=25,
                      weight_words=len(words))
    core = StreamCore.wrap(SumCore(shape, stall=True), shape)
    top = UARTInferenceTop(core, divisor=DIVISOR, timeout=TIMEOUT, rx_fifo_depth=32,
                           flash=FlashConfig.for_clock(header(len(words), ident), 1e6),
                           uart_weights=True)
    a = [random.Random(10).randrange(256) for _ in range(shape.n_values)]
    broken = bytearray(P.encode_weights(3, 0, image[:20]))
    broken[-2] ^= 0x01
    steps = [
        ["idle", 400],                                                # the flash says no image
        ["send", P.encode_image(1, a).hex()],
        ["send", P.encode_weights(2, 5, image[5:9]).hex()],           # no load started: offset
        ["send", bytes(broken).hex()],
        ["send", P.encode_weights(4, 20, image[20:30]).hex()],        # spoiled by the broken one
        ["send", P.encode_weights(5, 0, image[:25]).hex()],
        ["send", P.encode_weights(6, 25, image[25:50]).hex()],
        ["send", P.encode_weights(7, 50, image[50:]).hex()],
        ["send", P.encode_image(8, a).hex()],
        ["send", P.encode_weights(9, 0, image[:4]).hex()],            # good weights are in
    ]
    got = run_scenario(tmp_path, steps, expect=9 * P.REPLY_LENGTH, top=top)
    assert got == [
        P.Reply(P.STATUS_NO_WEIGHTS, 1, 0),
        P.Reply(P.STATUS_BAD_OFFSET, 2, 0),
        P.Reply(P.STATUS_BAD_CHECKSUM, 3, 0),
        P.Reply(P.STATUS_BAD_OFFSET, 4, 0),
        P.Reply(P.STATUS_OK, 5, P.WEIGHTS_LOADING),
        P.Reply(P.STATUS_OK, 6, P.WEIGHTS_LOADING),
        P.Reply(P.STATUS_OK, 7, P.WEIGHTS_OK),
        P.Reply(P.STATUS_OK, 8, predict(shape, a, words)),
        P.Reply(P.STATUS_WEIGHTS_LOCKED, 9, 0),
    ]
