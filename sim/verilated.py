"""A compiled Verilator harness that streams whole test sets through a generated core.

The harness is C++ generated from ``interface.json``: it reads every input beat from a
binary file, drives the input stream (optionally with random ``valid`` gaps), accepts
outputs (optionally with random ``ready`` backpressure), and writes one line per image:
``<class> <cycle of the output handshake>``. No Python runs per beat, so a 10,000-image
test set takes seconds. Builds are cached by a hash of the Verilog, the interface and
the harness, under ``$SBN_CACHE_DIR`` (default ``~/.cache/sbn-hwgen/verilator``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwgen.errors import UserError

from .toolchain import find_verilator
from .vectors import pack_beats

_HARNESS = r"""
#include "V{top}.h"
#include "verilated.h"
#ifdef SBN_TRACE
#include SBN_TRACE_HEADER
#endif
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

// usage: sim BEATS.bin IMAGES OUT.txt SEED VALID_PERCENT READY_PERCENT MAX_CYCLES [WAVES.fst]
int main(int argc, char **argv) {{
    if (argc < 8) {{ std::fprintf(stderr, "bad arguments\n"); return 2; }}
    const char *beats_path = argv[1];
    const uint64_t images = std::strtoull(argv[2], nullptr, 10);
    const char *out_path = argv[3];
    std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
    const unsigned valid_pct = std::atoi(argv[5]), ready_pct = std::atoi(argv[6]);
    const uint64_t max_cycles = std::strtoull(argv[7], nullptr, 10);
    const uint64_t beats = images * {beats_per_image};
    std::vector<uint32_t> words(beats * {words});
    FILE *in = std::fopen(beats_path, "rb");
    if (!in || std::fread(words.data(), 4, words.size(), in) != words.size()) {{
        std::fprintf(stderr, "cannot read %s\n", beats_path); return 2;
    }}
    std::fclose(in);
    FILE *out = std::fopen(out_path, "w");
    if (!out) {{ std::fprintf(stderr, "cannot write %s\n", out_path); return 2; }}

    VerilatedContext *context = new VerilatedContext;
    V{top} *top = new V{top}{{context}};
#ifdef SBN_TRACE
    SBN_TRACE *trace = nullptr;
    if (argc > 8) {{
        context->traceEverOn(true); trace = new SBN_TRACE; top->trace(trace, 99);
        trace->open(argv[8]);
    }}
#endif
    uint64_t cycle = 0, beat = 0, done = 0;
    bool valid = false;
    auto tick = [&]() {{
        top->{clock} = 0; top->eval();
#ifdef SBN_TRACE
        if (trace) trace->dump(2 * cycle);
#endif
        top->{clock} = 1; top->eval();
#ifdef SBN_TRACE
        if (trace) trace->dump(2 * cycle + 1);
#endif
        cycle++;
    }};
    top->{reset} = 1; top->{in_valid} = 0; top->{out_ready} = 0;
    for (int i = 0; i < 4; i++) tick();
    top->{reset} = 0;
    cycle = 0;
    while (done < images && cycle < max_cycles) {{
        if (!valid && beat < beats && (valid_pct >= 100 || rng() % 100 < valid_pct)) {{
            valid = true;
            const uint32_t *w = &words[beat * {words}];
{set_data}
        }}
        top->{in_valid} = valid;
        top->{out_ready} = ready_pct >= 100 || rng() % 100 < ready_pct;
        top->{clock} = 0; top->eval();
        const bool in_fire = valid && top->{in_ready};
        if (top->{out_valid} && top->{out_ready}) {{
            std::fprintf(out, "%llu %llu\n",
                         (unsigned long long)({out_low} & {class_mask}ULL),
                         (unsigned long long)cycle);
            done++;
        }}
        tick();
        if (in_fire) {{ beat++; valid = false; }}
    }}
#ifdef SBN_TRACE
    if (trace) trace->close();
#endif
    std::fclose(out);
    top->final();
    delete top;
    if (done < images) {{
        std::fprintf(stderr, "timeout: %llu of %llu images out after %llu cycles\n",
                     (unsigned long long)done, (unsigned long long)images,
                     (unsigned long long)cycle);
        return 3;
    }}
    return 0;
}}
"""


@dataclass
class SimResult:
    classes: np.ndarray  # int64 [K]
    out_cycles: np.ndarray  # int64 [K], cycle of each output handshake (0 = first after reset)

    def steady_cycles_per_image(self) -> float:
        """Mean spacing of the outputs after the first (back-to-back input assumed)."""
        if len(self.out_cycles) < 2:
            return float("nan")
        return float(np.diff(self.out_cycles).mean())


def verilator_name(name: str) -> str:
    """The C++ member name Verilator gives a port: each ``__`` becomes ``___05F``."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "_" and name[i + 1:i + 2] == "_":
            out.append("___05F")
            i += 2
        elif name[i].isalnum() or name[i] == "_":
            out.append(name[i])
            i += 1
        else:
            out.append(f"__0{ord(name[i]):02X}")
            i += 1
    return "".join(out)


def _port_setter(port: str, width: int) -> str:
    words = math.ceil(width / 32)
    if width <= 32:
        return f"            top->{port} = w[0];"
    if width <= 64:
        return f"            top->{port} = (uint64_t)w[0] | ((uint64_t)w[1] << 32);"
    return "\n".join(f"            top->{port}[{i}] = w[{i}];" for i in range(words))


def _low_bits(port: str, width: int) -> str:
    return f"top->{port}[0]" if width > 64 else f"(uint64_t)top->{port}"


class VerilatedCore:
    """A generated core (Verilog file + its ``interface.json`` dict), compiled with Verilator.

    ``output_width`` is the width of the output data port (the class is in its low
    ``class_bits`` bits). ``trace`` ``"vcd"`` or ``"fst"`` builds with waveform support
    (FST needs the lz4 headers: Debian's liblz4-dev).
    """

    def __init__(self, verilog: Path, interface: dict, output_width: int | None = None,
                 trace: str | None = None, cache_dir: Path | None = None):
        if trace not in (None, "vcd", "fst"):
            raise ValueError(f"trace must be None, 'vcd' or 'fst', not {trace!r}")
        self.verilog = Path(verilog)
        self.interface = interface
        self.trace = trace
        i, o = interface["input"], interface["output"]
        self.input_width = i["lanes"] * i["bits"]
        self.words = math.ceil(self.input_width / 32)
        self.output_width = output_width or o["class_bits"]
        self.cache_dir = Path(cache_dir or os.environ.get("SBN_CACHE_DIR")
                              or Path.home() / ".cache" / "sbn-hwgen") / "verilator"

    def harness_source(self) -> str:
        i, o = self.interface["input"], self.interface["output"]
        v = verilator_name
        return _HARNESS.format(
            top=self.interface["module"], clock=v(self.interface["clock"]),
            reset=v(self.interface["reset"]), in_valid=v(i["valid"]), in_ready=v(i["ready"]),
            out_valid=v(o["valid"]), out_ready=v(o["ready"]),
            beats_per_image=i["beats_per_image"], words=self.words,
            set_data=_port_setter(v(i["data"]), self.input_width),
            out_low=_low_bits(v(o["data"]), self.output_width),
            class_mask=hex((1 << o["class_bits"]) - 1))

    def build(self, progress=None) -> Path:
        """Compile (or reuse a cached build); returns the simulator executable."""
        harness = self.harness_source()
        key = hashlib.sha256()
        for part in (self.verilog.read_bytes(), harness.encode(),
                     json.dumps(self.interface, sort_keys=True).encode(),
                     str(self.trace).encode()):
            key.update(part)
        folder = self.cache_dir / key.hexdigest()[:24]
        exe = folder / "sim"
        if exe.is_file():
            return exe
        verilator = find_verilator()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.cache_dir))
        try:
            (work / "harness.cpp").write_text(harness)
            shutil.copy(self.verilog, work / "core.v")
            cmd = [verilator.executable, "--cc", "--exe", "--build", "-j", "2",
                   "--top-module", self.interface["module"], "-O3", "--x-assign", "fast",
                   "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint",
                   "-Wno-style", "-CFLAGS", "-O2", "-Mdir", "obj", "-o", "sim",
                   "core.v", "harness.cpp"]
            if self.trace:
                kind = "Fst" if self.trace == "fst" else "Vcd"
                cmd += ["--trace-fst" if self.trace == "fst" else "--trace",
                        "-CFLAGS", f"-DSBN_TRACE=Verilated{kind}C",
                        "-CFLAGS", f"'-DSBN_TRACE_HEADER=\"verilated_{kind.lower()}_c.h\"'"]
            proc = subprocess.run(cmd, cwd=work, env=verilator.env, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                log = work / "verilator.log"
                log.write_text(proc.stdout + proc.stderr)
                raise UserError(f"Verilator build failed (log: {log}): "
                                f"{_last_error(proc.stdout + proc.stderr)}")
            folder.mkdir(parents=True, exist_ok=True)
            built = folder / "sim.tmp"
            shutil.copy(work / "obj" / "sim", built)
            os.replace(built, exe)
        finally:
            if exe.is_file():
                shutil.rmtree(work, ignore_errors=True)
        return exe

    def run(self, images: np.ndarray, seed: int = 0, valid_percent: int = 100,
            ready_percent: int = 100, max_cycles: int | None = None,
            waves: Path | None = None, progress: bool = False) -> SimResult:
        """Stream ``images`` ``[K, ...]`` through the core; returns classes and output cycles.
        ``progress``: a tqdm bar of the images done (the harness writes one line per image)."""
        i = self.interface["input"]
        exe = self.build()
        beats = pack_beats(images, i["lanes"], i["bits"], i.get("order", "CHW"))
        count = beats.shape[0]
        if max_cycles is None:
            per_image = max(self.interface.get("cycles_per_image", 0), i["beats_per_image"])
            slow = 100 / max(1, min(valid_percent, ready_percent))
            max_cycles = int((count * per_image * slow + self.interface.get(
                "latency_cycles", 0) + 1000) * 4)
        with tempfile.TemporaryDirectory(prefix="sbn-sim-") as tmp:
            tmp = Path(tmp)
            beats.tofile(tmp / "beats.bin")
            cmd = [str(exe), str(tmp / "beats.bin"), str(count), str(tmp / "out.txt"),
                   str(seed), str(valid_percent), str(ready_percent), str(max_cycles)]
            if waves is not None:
                if not self.trace:
                    raise UserError("waveforms need a core built with trace='vcd' or 'fst'")
                cmd.append(str(waves))
            proc = _run_with_progress(cmd, tmp / "out.txt", count, progress)
            if proc.returncode != 0:
                raise UserError(f"simulation failed: {proc.stderr.strip() or proc.returncode}")
            table = np.loadtxt(tmp / "out.txt", dtype=np.int64, ndmin=2)
        return SimResult(table[:, 0], table[:, 1])


def _run_with_progress(cmd: list[str], out: Path, count: int, progress: bool):
    """Run the harness; with ``progress``, poll its output file and show images done."""
    if not progress:
        return subprocess.run(cmd, capture_output=True, text=True)
    import time

    from tqdm import tqdm

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc, \
            tqdm(total=count, desc="verilator", unit="image", leave=False) as bar:
        while proc.poll() is None:
            time.sleep(0.5)
            try:
                done = out.read_bytes().count(b"\n")
            except OSError:
                done = 0
            bar.update(max(0, min(done, count) - bar.n))
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _last_error(log: str) -> str:
    errors = [line for line in log.splitlines() if "%Error" in line or "error:" in line]
    return (errors[0] if errors else log.strip().splitlines()[-1] if log.strip() else "?")[:300]
