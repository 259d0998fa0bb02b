"""cocotb test module: stream images through a core described by ``interface.json``.

Loaded by cocotb inside the simulator; configured by the environment variable
``SBN_VECTORS``, a .npz with ``beats`` (uint32 words ``[K, beats, words]``), ``expected``
(int64 ``[K]``), ``interface`` (JSON text), ``seed``, ``valid_percent``, ``ready_percent``,
and ``weights`` (uint16): the words a core with a weight stream (``interface.json``
``"weights"``) gets on it from reset on, with the same gaps, while images are offered
(the core takes none before its weights are loaded).
Inputs change right after a rising edge; handshakes are read once the logic has settled
(``ReadOnly``), so no read races the design's registers. On a mismatch the test fails
naming the first differing image; every received class is written to ``got.npy`` beside
the vectors for the caller's diagnosis.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def stream_images(dut):
    path = os.environ["SBN_VECTORS"]
    data = np.load(path, allow_pickle=False)
    iface = json.loads(str(data["interface"]))
    i, o = iface["input"], iface["output"]
    words = data["beats"]
    beats = [sum(int(w) << (32 * k) for k, w in enumerate(beat))
             for image in words for beat in image]
    expected = [int(c) for c in data["expected"]]
    rng = random.Random(int(data["seed"]))
    p_valid, p_ready = int(data["valid_percent"]), int(data["ready_percent"])
    clk, rst = getattr(dut, iface["clock"]), getattr(dut, iface["reset"])
    in_data, in_valid, in_ready = (getattr(dut, i[k]) for k in ("data", "valid", "ready"))
    out_data, out_valid, out_ready = (getattr(dut, o[k]) for k in ("data", "valid", "ready"))
    mask = (1 << o["class_bits"]) - 1
    w = iface.get("weights")
    weights = [int(v) for v in data["weights"]] if w else []
    if w:
        assert len(weights) == w["words"], f"{len(weights)} weight words for {w['words']}"
        w_data, w_valid, w_ready = (getattr(dut, w[k]) for k in ("data", "valid", "ready"))
        w_valid.value = 0

    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    rst.value, in_valid.value, out_ready.value = 1, 0, 0
    for _ in range(4):
        await RisingEdge(clk)
    rst.value = 0

    per_image = max(iface.get("cycles_per_image", 1), i["beats_per_image"])
    budget = (len(expected) * per_image * 100 // max(1, min(p_valid, p_ready))
              + iface.get("latency_cycles", 0) + 2 * len(weights) + 1000) * 4
    got, beat, offered = [], 0, False
    word, w_offered = 0, False
    for _ in range(budget):
        await RisingEdge(clk)
        if not offered and beat < len(beats) and rng.randrange(100) < p_valid:
            in_data.value, offered = beats[beat], True
        in_valid.value = int(offered)
        if w:
            if not w_offered and word < len(weights) and rng.randrange(100) < p_valid:
                w_data.value, w_offered = weights[word], True
            w_valid.value = int(w_offered)
        out_ready.value = int(rng.randrange(100) < p_ready)
        await ReadOnly()
        if offered and in_ready.value:
            beat, offered = beat + 1, False
        if w and w_offered and w_ready.value:
            word, w_offered = word + 1, False
        if out_valid.value and out_ready.value:
            got.append(int(out_data.value) & mask)
            if len(got) == len(expected):
                break
    np.save(os.path.join(os.path.dirname(path), "got.npy"), np.array(got, dtype=np.int64))
    assert len(got) == len(expected), (
        f"timeout: {len(got)} of {len(expected)} images out after {budget} cycles")
    for index, (hw, ref) in enumerate(zip(got, expected)):
        assert hw == ref, f"image {index}: hardware class {hw}, reference class {ref}"
