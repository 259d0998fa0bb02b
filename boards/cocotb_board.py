"""cocotb test module: drive the board top's UART pins with a scripted byte scenario.

Loaded by cocotb inside the simulator (see ``tests/test_boards_cocotb.py``); configured by
``SBN_BOARD_SCENARIO``, a JSON file: ``divisor`` (clock cycles per bit), ``steps`` (a list of
``["send", hex]``, ``["idle", cycles]``, ``["break", cycles]``), ``expect`` (bytes to wait
for) and ``budget`` (cycles to wait at most). The bytes that came out of ``tx`` are written,
as hex, to the file named by ``SBN_BOARD_OUT``; the pytest side decodes and checks them.
The UART is bit-exact 8N1 at ``divisor`` cycles per bit, driven and sampled on clock edges.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge


async def _drive(dut, steps, divisor):
    for kind, arg in steps:
        if kind == "send":
            for byte in bytes.fromhex(arg):
                for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                    dut.rx.value = bit
                    await ClockCycles(dut.clk, divisor)
        elif kind == "idle":
            dut.rx.value = 1
            await ClockCycles(dut.clk, int(arg))
        elif kind == "break":
            dut.rx.value = 0
            await ClockCycles(dut.clk, int(arg))
            dut.rx.value = 1
            await ClockCycles(dut.clk, divisor)
        else:
            raise ValueError(f"unknown step {kind!r}")


async def _receive(dut, divisor, out):
    while True:
        await FallingEdge(dut.tx)
        await ClockCycles(dut.clk, divisor + divisor // 2)
        value = 0
        for k in range(8):
            value |= int(dut.tx.value) << k
            await ClockCycles(dut.clk, divisor)
        if int(dut.tx.value):
            out.append(value)


@cocotb.test()
async def board_scenario(dut):
    with open(os.environ["SBN_BOARD_SCENARIO"]) as f:
        scenario = json.load(f)
    divisor = scenario["divisor"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rx.value = 1
    if hasattr(dut, "flash_cipo"):   # a top that loads weights: an erased flash reads 1s
        dut.flash_cipo.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    out = []
    cocotb.start_soon(_receive(dut, divisor, out))
    await _drive(dut, scenario["steps"], divisor)
    waited = 0
    while len(out) < scenario["expect"] and waited < scenario["budget"]:
        await ClockCycles(dut.clk, 10 * divisor)
        waited += 10 * divisor
    await ClockCycles(dut.clk, 2 * divisor)
    with open(os.environ["SBN_BOARD_OUT"], "w") as f:
        f.write(bytes(out).hex())
    assert len(out) >= scenario["expect"], f"{len(out)} of {scenario['expect']} bytes came out"
