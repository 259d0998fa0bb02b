"""Golden vectors: input beats and expected classes as ``$readmemh`` files, plus a plain
Verilog testbench that replays them against the core in any simulator.

Files written to the output folder:

- ``inputs.hex``: one beat per line (``lanes * bits`` bits, hex), images back to back;
- ``expected.hex``: one expected class per line;
- ``weights.hex`` (only for a core with a weight stream, ``interface.json`` ``"weights"``):
  its 16-bit weight words (:func:`hwgen.fold.spram.spram_words`), one per line, which the
  testbench streams in after reset (images are offered meanwhile: the core takes none
  before its weights are loaded);
- ``tb.v``: module ``tb``: drives the beats with a fixed pseudo-random ``valid`` gap pattern,
  applies pseudo-random ``ready`` backpressure, compares every output with
  ``expected.hex`` and ends with ``PASS k/k`` or ``FAIL image i: got x expected y``
  (and ``$fatal`` on failure or timeout);
- ``vectors.json``: counts, widths and the interface it was made for.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .vectors import packed_chunks

_TESTBENCH = """`timescale 1ns/1ps
// Golden-vector testbench for {module}: {images} images, {beats} beats each.
// Run e.g.: iverilog -g2012 -o tb.vvp tb.v {module}.v && vvp tb.vvp
module tb;
    localparam IMAGES = {images};
    localparam BEATS = {beats};
    localparam WIDTH = {width};
    localparam CLASS_BITS = {class_bits};
    localparam MAX_CYCLES = {max_cycles};

    reg clk = 0;
    reg rst = 1;
    reg [WIDTH-1:0] in_data = 0;
    reg in_valid = 0;
    wire in_ready;
    wire [{out_msb}:0] out_data;
    wire out_valid;
    reg out_ready = 0;

    reg [WIDTH-1:0] beats_mem [0:IMAGES*BEATS-1];
    reg [CLASS_BITS-1:0] expected [0:IMAGES-1];
    integer beat = 0, done = 0, cycle = 0, failures = 0;
    reg [31:0] lfsr = 32'h1;
{w_decl}
    {module} dut (
        .{clock}(clk), .{reset}(rst),
        .{in_data}(in_data), .{in_valid}(in_valid), .{in_ready}(in_ready),
        .{out_data}(out_data), .{out_valid}(out_valid), .{out_ready}(out_ready){w_ports}
    );

    always #5 clk = ~clk;

    initial begin
        $readmemh("inputs.hex", beats_mem);
        $readmemh("expected.hex", expected);
{w_init}        repeat (4) @(posedge clk);
        #1 rst = 0;
    end

    // Inputs change at the falling edge; 1 ns later (logic settled) the handshakes that
    // the next rising edge will perform are recorded. No race with the DUT's registers.
    reg in_fire = 0;
    always @(negedge clk) if (!rst) begin
        if (in_fire) beat = beat + 1;
        cycle = cycle + 1;
        if (cycle > MAX_CYCLES) $fatal(1, "timeout: %0d of %0d images out", done, IMAGES);
        lfsr = {{lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]}};
        out_ready = lfsr[3:0] != 0;  // backpressure 1 cycle in 16
        if (!in_valid || in_fire) begin  // a beat once offered stays until taken
            in_valid = beat < IMAGES*BEATS && lfsr[7:4] != 0;  // a gap 1 cycle in 16
            if (in_valid) in_data = beats_mem[beat];
        end
{w_step}        #1;
        in_fire = in_valid && in_ready;
{w_fire}
        if (out_valid && out_ready) begin
            if (out_data[CLASS_BITS-1:0] !== expected[done]) begin
                $display("FAIL image %0d: got %0d expected %0d", done,
                         out_data[CLASS_BITS-1:0], expected[done]);
                failures = failures + 1;
            end
            done = done + 1;
            if (done == IMAGES) begin
                if (failures == 0) $display("PASS %0d/%0d", IMAGES, IMAGES);
                else $fatal(1, "FAIL %0d of %0d images differ", failures, IMAGES);
                $finish;
            end
        end
    end
endmodule
"""


_W_DECL = """    localparam WORDS = {words};
    reg [15:0] w_data = 0;
    reg w_valid = 0;
    wire w_ready;
    reg [15:0] weights_mem [0:WORDS-1];
    integer word = 0;
    reg w_fire = 0;
"""
_W_STEP = """        if (w_fire) word = word + 1;
        if (!w_valid || w_fire) begin  // the weights, from reset, with gaps 1 cycle in 16
            w_valid = word < WORDS && lfsr[11:8] != 0;
            if (w_valid) w_data = weights_mem[word];
        end
"""


def _weight_parts(interface: dict, weights) -> dict:
    """The testbench's weight-stream pieces (all empty for a core without one)."""
    spec = interface.get("weights")
    if not spec:
        return {"w_decl": "", "w_ports": "", "w_init": "", "w_step": "", "w_fire": ""}
    if weights is None or len(weights) != spec["words"]:
        raise ValueError(f"the core loads {spec['words']} weight words; give them")
    return {"w_decl": _W_DECL.format(words=spec["words"]),
            "w_ports": f",\n        .{spec['data']}(w_data), .{spec['valid']}(w_valid), "
                       f".{spec['ready']}(w_ready)",
            "w_init": '        $readmemh("weights.hex", weights_mem);\n',
            "w_step": _W_STEP, "w_fire": "        w_fire = w_valid && w_ready;\n"}


def write_golden_vectors(folder: Path, interface: dict, images: np.ndarray,
                         expected: np.ndarray, output_width: int | None = None,
                         weights=None) -> Path:
    """Write ``inputs.hex``, ``expected.hex``, ``tb.v`` and ``vectors.json`` into ``folder``
    (and ``weights.hex`` from ``weights``, the core's weight words, when it has a weight
    stream)."""
    parts = _weight_parts(interface, weights)
    shape = tuple(interface["input"].get("shape", np.shape(images)[1:]))
    if tuple(np.shape(images)[1:]) != shape:  # the stream order depends on [C, H, W]
        raise ValueError(f"images are {list(np.shape(images))}; the core takes [K, "
                         f"{', '.join(map(str, shape))}]")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    i, o = interface["input"], interface["output"]
    width = i["lanes"] * i["bits"]
    digits = math.ceil(width / 4)
    with open(folder / "inputs.hex", "w") as f:  # an image at a time: no list of every line
        for _, beats in packed_chunks(images, i["lanes"], i["bits"], i.get("order", "CHW")):
            for image in beats:
                f.write("".join(
                    f"{sum(int(w) << (32 * k) for k, w in enumerate(beat)):0{digits}x}\n"
                    for beat in image))
    with open(folder / "expected.hex", "w") as f:
        for start in range(0, len(expected), 4096):
            f.write("".join(f"{int(c):x}\n" for c in expected[start:start + 4096]))
    words = interface.get("weights", {}).get("words", 0)
    if words:
        (folder / "weights.hex").write_text("".join(f"{int(v):04x}\n" for v in weights))
    count = len(expected)
    per_image = max(interface.get("cycles_per_image", 0), i["beats_per_image"])
    max_cycles = (count * per_image + interface.get("latency_cycles", 0) + 2 * words
                  + 100) * 4
    (folder / "tb.v").write_text(_TESTBENCH.format(
        module=interface["module"], images=count, beats=i["beats_per_image"], width=width,
        class_bits=o["class_bits"], max_cycles=max_cycles,
        out_msb=(output_width or o["class_bits"]) - 1, clock=interface["clock"],
        reset=interface["reset"], in_data=i["data"], in_valid=i["valid"],
        in_ready=i["ready"], out_data=o["data"], out_valid=o["valid"], out_ready=o["ready"],
        **parts))
    (folder / "vectors.json").write_text(json.dumps(
        {"images": count, "beats_per_image": i["beats_per_image"], "beat_width": width,
         "interface": interface}, indent=2) + "\n")
    return folder
