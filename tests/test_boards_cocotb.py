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


def run_scenario(workdir: Path, steps, expect: int) -> list:
    try:
        from sim.toolchain import find_verilator
        verilator = find_verilator()
        from cocotb_tools.runner import get_runner
    except Exception as e:  # noqa: BLE001 - any reason the simulator is unusable here
        pytest.skip(f"cocotb/Verilator unavailable: {e}")
    from boards.verilator_board import board_verilog

    os.environ.update({k: v for k, v in verilator.env.items()
                       if k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")})
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
