"""A compiled Verilator harness that streams whole test sets through a generated core.

The harness is C++ generated from ``interface.json``: it reads every input beat from a
binary file, drives the input stream (optionally with random ``valid`` gaps), accepts
outputs (optionally with random ``ready`` backpressure), and writes one line per image:
``<class> <cycle of the output handshake>``. No Python runs per beat, so a 10,000-image
test set takes seconds; :meth:`VerilatedCore.run` can shard the images across several
processes of one build (``jobs``). Builds are cached by a hash of the compiled Verilog, the
interface, the harness and the Verilator options, under ``$SBN_CACHE_DIR`` (default
``~/.cache/sbn-hwgen/verilator``). ``VerilatedCore(..., x_random=True)`` is the X-randomized
build (random power-on state, see the class).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwgen.errors import UserError

from .toolchain import build_jobs, find_verilator
from .cache import check_verilator_source, intact, publish, staging_folder, write_sources
from .power_on import without_power_on_values
from .vectors import packed_chunks

#: Make variables of the C++ build: the per-cycle code and the harness at -O2, the run-once
#: ("slow": initial values, ROM contents) code unoptimized, in files of at most ~4000 lines
#: and functions of ~1000 statements (``VERILATOR_SPLIT``): compiler memory then follows
#: the largest file, not the whole design (fmnist-mlp-best at -j 2: 1243 -> 642 MiB peak,
#: 34 -> 16 s cold, same simulated speed).
HARNESS_MAKEFLAGS = "OPT_FAST=-O2 OPT_GLOBAL=-O2"
VERILATOR_SPLIT = ("--output-split", "4000", "--output-split-cfuncs", "1000")

_LOAD = r"""
    uint64_t loaded = 0;
    bool w_valid = false;
    while (loaded < {weight_words} && cycle < max_cycles) {{
        if (!w_valid && (valid_pct >= 100 || rng() % 100 < valid_pct)) {{
            w_valid = true;
            top->{w_data} = weights[loaded];
        }}
        top->{w_valid} = w_valid;
        fall();
        const bool w_fire = w_valid && top->{w_ready};
#ifdef SBN_XRANDOM
        digest = (digest ^ ((top->{w_ready} ? 1 : 0) | (top->{in_ready} ? 2 : 0)
                            | (top->{out_valid} ? 4 : 0))) * 1099511628211ULL;
#endif
        rise();
        if (w_fire) {{ loaded++; w_valid = false; }}
    }}
    top->{w_valid} = 0;
    if (loaded < {weight_words}) {{
        std::fprintf(stderr, "timeout: %llu of %llu weight words loaded after %llu cycles\n",
                     (unsigned long long)loaded, (unsigned long long){weight_words},
                     (unsigned long long)cycle);
        return 3;
    }}
    std::printf("load %llu\n", (unsigned long long)cycle);
    cycle = 0;
"""

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

// usage: sim BEATS.bin IMAGES OUT.txt SEED VALID_PERCENT READY_PERCENT MAX_CYCLES X_SEED
//            WEIGHTS.bin [WAVES.fst]
// A core with a weight stream first gets the {weight_words} 16-bit words of WEIGHTS.bin on it
// after reset (with the same valid gaps as the images; no image is offered meanwhile) and
// stdout gets "load <cycles>"; cycles count from the cycle after the last weight's
// handshake from then on (from reset without a weight stream).
// Writes one line per image to OUT.txt: "<class> <cycle of the output handshake>".
// Built with SBN_XRANDOM (and --x-initial unique): every variable without an initial value
// starts random (seeded by X_SEED), and the last line of stdout is
// "digest <hex> <cycles>", a hash of in_ready, out_valid and (when valid) the output data of
// every cycle after reset.
#ifdef VL_USER_FATAL
// A waveform build's fatal errors (a write to a full disk): Verilator's own handler flushes
// the waveform, whose lock the failing write still holds, and the process hung; this one
// reports and ends at once.
void vl_fatal(const char *filename, int linenum, const char *hier, const char *msg) {{
    (void)filename; (void)linenum; (void)hier;
    std::fprintf(stderr, "%s\n", msg);
    std::fflush(stderr);
    std::_Exit(3);
}}
#endif
int main(int argc, char **argv) {{
    if (argc < 10) {{ std::fprintf(stderr, "bad arguments\n"); return 2; }}
    const char *beats_path = argv[1];
    const uint64_t images = std::strtoull(argv[2], nullptr, 10);
    const char *out_path = argv[3];
    std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
    const unsigned valid_pct = std::atoi(argv[5]), ready_pct = std::atoi(argv[6]);
    const uint64_t max_cycles = std::strtoull(argv[7], nullptr, 10);
    const uint64_t beats = images * {beats_per_image};
    // the beats are read as they are offered, one at a time: memory does not grow with images
    std::vector<uint32_t> words({words});
    FILE *in = std::fopen(beats_path, "rb");
    if (!in || std::fseek(in, 0, SEEK_END) != 0
            || (uint64_t)std::ftell(in) != beats * {words} * 4ULL || std::fseek(in, 0, SEEK_SET)) {{
        std::fprintf(stderr, "cannot read %s\n", beats_path); return 2;
    }}
    std::vector<uint16_t> weights({weight_words});
    if ({weight_words} > 0) {{
        FILE *wf = std::fopen(argv[9], "rb");
        if (!wf || std::fread(weights.data(), 2, weights.size(), wf) != weights.size()) {{
            std::fprintf(stderr, "cannot read %s\n", argv[9]); return 2;
        }}
        std::fclose(wf);
    }}
    FILE *out = std::fopen(out_path, "w");
    if (!out) {{ std::fprintf(stderr, "cannot write %s\n", out_path); return 2; }}

    VerilatedContext *context = new VerilatedContext;
#ifdef SBN_XRANDOM
    context->randReset(2);  // values without an initializer start random ...
    context->randSeed(std::atoi(argv[8]));  // ... from this seed
    uint64_t digest = 14695981039346656037ULL;  // FNV-1a over the observable outputs
#endif
    V{top} *top = new V{top}{{context}};
#ifdef SBN_TRACE
    SBN_TRACE *trace = nullptr;
    if (argc > 10) {{
        context->traceEverOn(true); trace = new SBN_TRACE; top->trace(trace, 99);
        trace->open(argv[10]);
    }}
#endif
    uint64_t cycle = 0, tick = 0, beat = 0, done = 0;  // tick: waveform time, never reset
    bool valid = false;
    // One clock cycle is two evaluations: the falling edge with this cycle's inputs (the
    // logic settles, handshakes are sampled), then the rising edge.
    auto fall = [&]() {{
        top->{clock} = 0; top->eval();
#ifdef SBN_TRACE
        if (trace) trace->dump(2 * tick);
#endif
    }};
    auto rise = [&]() {{
        top->{clock} = 1; top->eval();
#ifdef SBN_TRACE
        if (trace) trace->dump(2 * tick + 1);
#endif
        cycle++; tick++;
    }};
    top->{reset} = 1; top->{in_valid} = 0; top->{out_ready} = 0;{reset_weights}
    for (int i = 0; i < 4; i++) {{ fall(); rise(); }}
    top->{reset} = 0;
    cycle = 0;
{load}
    while (done < images && cycle < max_cycles) {{
        if (!valid && beat < beats && (valid_pct >= 100 || rng() % 100 < valid_pct)) {{
            valid = true;
            if (std::fread(words.data(), 4, {words}, in) != {words}) {{
                std::fprintf(stderr, "cannot read %s\n", beats_path); return 2;
            }}
            const uint32_t *w = words.data();
{set_data}
        }}
        top->{in_valid} = valid;
        top->{out_ready} = ready_pct >= 100 || rng() % 100 < ready_pct;
        fall();
        const bool in_fire = valid && top->{in_ready};
        const bool out_valid = top->{out_valid};
#ifdef SBN_XRANDOM
        const uint64_t seen = (uint64_t)(top->{in_ready} ? 1 : 0) | (out_valid ? 2 : 0)
            | (out_valid ? ({out_low} & {class_mask}ULL) << 2 : 0);
        digest = (digest ^ seen) * 1099511628211ULL;
#endif
        if (out_valid && top->{out_ready}) {{
            std::fprintf(out, "%llu %llu\n",
                         (unsigned long long)({out_low} & {class_mask}ULL),
                         (unsigned long long)cycle);
            done++;
        }}
        rise();
        if (in_fire) {{ beat++; valid = false; }}
    }}
#ifdef SBN_TRACE
    if (trace) trace->close();
#endif
    std::fclose(out);
    std::fclose(in);
    top->final();
    delete top;
#ifdef SBN_XRANDOM
    std::printf("digest %016llx %llu\n", (unsigned long long)digest, (unsigned long long)cycle);
#endif
    if (done < images) {{
        std::fprintf(stderr, "timeout: %llu of %llu images out after %llu cycles\n",
                     (unsigned long long)done, (unsigned long long)images,
                     (unsigned long long)cycle);
        return 3;
    }}
    return 0;
}}
"""


@contextlib.contextmanager
def _temporary_files(folder):
    """The simulation's files in its temporary ``folder`` (beats in, results and logs out)
    that cannot be written or read back (a full $TMPDIR, the folder removed meanwhile): one
    UserError, not an OSError traceback."""
    try:
        yield
    except OSError as err:
        raise UserError(f"the simulation's temporary files in {folder} failed "
                        f"({err.strerror or err}): is $TMPDIR full?") from None


@dataclass
class SimResult:
    """What the harness saw, images in input order.

    ``shard_starts``: the index of the first image of each harness process (``[0]`` for one);
    ``out_cycles`` count from each process's own reset (a core with a weight stream: from
    the end of its weight load, :attr:`load_cycles`). ``digests``: per process, a hash of
    the observable outputs of every cycle after reset and the cycle count (X-randomized
    builds only, else None).
    """

    classes: np.ndarray  # int64 [K]
    out_cycles: np.ndarray  # int64 [K], cycle of each output handshake (0 = first after reset)
    shard_starts: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    digests: list[str] | None = None
    #: Per process, the cycles from reset to the last weight word's handshake (cores with a
    #: weight stream; else None). ``out_cycles`` count from the cycle after it.
    load_cycles: list[int] | None = None

    def _shards(self) -> list[np.ndarray]:
        bounds = [*self.shard_starts.tolist(), len(self.out_cycles)]
        return [self.out_cycles[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

    def steady_cycles_per_image(self) -> float:
        """Mean spacing of the outputs after the first of each process (back-to-back input
        assumed): the same number whether the images ran in one process or several."""
        shards = self._shards()
        gaps = sum(len(c) - 1 for c in shards)
        return sum(int(c[-1] - c[0]) for c in shards) / gaps if gaps else float("nan")

    def simulated_cycles(self) -> int:
        """Clock cycles simulated after reset, all processes together (weight loads
        included)."""
        return sum(int(c[-1]) + 1 for c in self._shards()) + sum(self.load_cycles or [])


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

    ``x_random`` builds the X-randomized variant, which checks that the core's outputs
    after reset depend on nothing but the reset: the Verilog's power-on values are dropped
    (:func:`without_power_on_values`: register initializers, and the initial contents of
    memories the core writes; ROM contents stay), it is compiled with ``--x-initial unique
    --x-assign unique``, so every variable without an initial value (and every explicit
    ``x``) starts from a random value drawn from the ``x_seed`` of :meth:`run` instead of 0,
    and the harness hashes the core's observable outputs of every cycle
    (:attr:`SimResult.digests`). A core whose outputs after reset depend on power-on state
    gives different classes, output cycles or digests for different seeds.
    :attr:`power_on_values_dropped` counts what was dropped (after :meth:`build`). The two
    variants are cached apart.
    """

    def __init__(self, verilog: Path, interface: dict, output_width: int | None = None,
                 trace: str | None = None, cache_dir: Path | None = None,
                 x_random: bool = False):
        if trace not in (None, "vcd", "fst"):
            raise ValueError(f"trace must be None, 'vcd' or 'fst', not {trace!r}")
        self.verilog = Path(verilog)
        self.interface = interface
        self.trace = trace
        self.x_random = bool(x_random)
        self.power_on_values_dropped: int | None = None
        i, o = interface["input"], interface["output"]
        self.input_width = i["lanes"] * i["bits"]
        self.words = math.ceil(self.input_width / 32)
        self.output_width = output_width or o["class_bits"]
        self.cache_dir = Path(cache_dir or os.environ.get("SBN_CACHE_DIR")
                              or Path.home() / ".cache" / "sbn-hwgen") / "verilator"

    @property
    def weight_words(self) -> int:
        """16-bit words the core takes on its weight stream after reset (0: none)."""
        return int(self.interface.get("weights", {}).get("words", 0))

    def harness_source(self) -> str:
        i, o = self.interface["input"], self.interface["output"]
        v = verilator_name
        load = reset_weights = ""
        if self.weight_words:
            w = self.interface["weights"]
            load = _LOAD.format(weight_words=self.weight_words, w_data=v(w["data"]),
                                w_valid=v(w["valid"]), w_ready=v(w["ready"]),
                                in_ready=v(i["ready"]), out_valid=v(o["valid"]))
            reset_weights = f" top->{v(w['valid'])} = 0;"
        return _HARNESS.format(
            weight_words=self.weight_words, load=load, reset_weights=reset_weights,
            top=self.interface["module"], clock=v(self.interface["clock"]),
            reset=v(self.interface["reset"]), in_valid=v(i["valid"]), in_ready=v(i["ready"]),
            out_valid=v(o["valid"]), out_ready=v(o["ready"]),
            beats_per_image=i["beats_per_image"], words=self.words,
            set_data=_port_setter(v(i["data"]), self.input_width),
            out_low=_low_bits(v(o["data"]), self.output_width),
            class_mask=hex((1 << o["class_bits"]) - 1))

    def verilator_options(self) -> list[str]:
        """The Verilator options of this build, sources and output names aside."""
        x = "unique" if self.x_random else "fast"
        options = ["--top-module", self.interface["module"], "-O3", "--x-assign", x,
                   "--x-initial", x, "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                   *VERILATOR_SPLIT]
        if self.x_random:
            options += ["-CFLAGS", "-DSBN_XRANDOM"]
        if self.trace:
            kind = "Fst" if self.trace == "fst" else "Vcd"
            options += ["--trace-fst" if self.trace == "fst" else "--trace",
                        "-CFLAGS", "-DVL_USER_FATAL",
                        "-CFLAGS", f"-DSBN_TRACE=Verilated{kind}C",
                        "-CFLAGS", f"'-DSBN_TRACE_HEADER=\"verilated_{kind.lower()}_c.h\"'"]
        return options

    def build(self, progress=None) -> Path:
        """Compile (or reuse a cached build); returns the simulator executable. The cache key
        covers the Verilog, the harness, the interface and every Verilator option."""
        harness = self.harness_source()
        options = self.verilator_options()
        check_verilator_source(self.verilog.stat().st_size)
        source = self.verilog.read_bytes()
        if self.x_random:
            text, self.power_on_values_dropped = without_power_on_values(source.decode())
            source = text.encode()
        key = hashlib.sha256()
        for part in (source, harness.encode(),
                     json.dumps(self.interface, sort_keys=True).encode(),
                     json.dumps(options).encode()):
            key.update(part)
        folder = self.cache_dir / key.hexdigest()[:24]
        exe = folder / "sim"
        if intact(exe):
            return exe
        verilator = find_verilator()
        work = staging_folder(self.cache_dir, "build-")
        keep = False   # a failed compile keeps its folder for the log; nothing else does
        try:
            write_sources(work, {"harness.cpp": harness, "core.v": source}, self.cache_dir)
            stdout, stderr, returncode = build_verilated(
                verilator, [*options, "-Mdir", "obj", "-o", "sim", "core.v", "harness.cpp"],
                work, "V" + self.interface["module"])
            if returncode != 0:
                log = work / "verilator.log"
                try:
                    log.write_text(stdout + stderr)
                    keep = True
                except OSError:  # a full disk, which is likely why the build failed
                    log = "not kept: it could not be written"
                raise UserError(f"Verilator build failed (log: {log}): "
                                f"{last_error(stdout + stderr)}")
            publish(work / "obj" / "sim", exe)
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
        return exe

    def run(self, images: np.ndarray, seed: int = 0, valid_percent: int = 100,
            ready_percent: int = 100, max_cycles: int | None = None,
            waves: Path | None = None, progress: bool = False, jobs: int = 1,
            x_seed: int = 1, weights=None) -> SimResult:
        """Stream ``images`` ``[K, ...]`` through the core; returns classes and output cycles.

        A core with a weight stream (``interface.json`` ``"weights"``) first gets
        ``weights`` (its ``words`` 16-bit words, :func:`hwgen.fold.spram.spram_words`) after
        every reset, with the images' valid gaps; output cycles then count from the end of
        that load (:attr:`SimResult.load_cycles`).

        ``jobs``: split the images into that many contiguous shards (at most one per image),
        each streamed by its own harness process (each from reset, with the same gap and
        backpressure ``seed``), run at once; the results are merged in image order. With
        ``waves`` the images run in one process (one waveform). ``max_cycles`` bounds each
        process. ``x_seed`` (X-randomized builds): the seed of the random initial values,
        0 to 2**31 - 1. ``progress``: a tqdm bar of all images done (each harness writes one
        line per image)."""
        if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 1:
            raise UserError(f"jobs must be a whole number at least 1, got {jobs!r}")
        if not 0 <= x_seed < 2 ** 31:
            raise UserError(f"x_seed must be in [0, 2**31), got {x_seed}")
        if waves is not None and not self.trace:
            raise UserError("waveforms need a core built with trace='vcd' or 'fst'")
        i = self.interface["input"]
        words = self._weights(weights)
        exe = self.build()
        count = len(images)
        if count < 1:
            raise UserError("no images to simulate")
        shards = min(jobs if waves is None else 1, count)
        bounds = [count * k // shards for k in range(shards + 1)]
        if max_cycles is None:
            per_image = max(self.interface.get("cycles_per_image", 0), i["beats_per_image"])
            slow = 100 / max(1, min(valid_percent, ready_percent))
            most = max(b - a for a, b in zip(bounds, bounds[1:]))
            max_cycles = int((most * per_image * slow + self.interface.get(
                "latency_cycles", 0) + len(words) * slow + 1000) * 4)
        with tempfile.TemporaryDirectory(prefix="sbn-sim-") as tmp, _temporary_files(tmp):
            tmp = Path(tmp)
            words.astype("<u2").tofile(tmp / "weights.bin")
            cmds, outs = [], []
            for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
                with open(tmp / f"beats{k}.bin", "wb") as f:  # a chunk's words at a time
                    for _, beats in packed_chunks(images[a:b], i["lanes"], i["bits"],
                                                  i.get("order", "CHW")):
                        beats.tofile(f)
                outs.append(tmp / f"out{k}.txt")
                cmds.append([str(exe), str(tmp / f"beats{k}.bin"), str(b - a), str(outs[-1]),
                             str(seed), str(valid_percent), str(ready_percent),
                             str(max_cycles), str(x_seed), str(tmp / "weights.bin")])
            if waves is not None:
                cmds[0].append(str(waves))
            stdouts = _run_shards(cmds, outs, tmp, count, progress)
            try:
                with warnings.catch_warnings():  # an empty file is reported below, once
                    warnings.simplefilter("ignore")
                    tables = [np.loadtxt(out, dtype=np.int64, ndmin=2).reshape(-1, 2)
                              for out in outs]
            except ValueError as err:
                raise UserError(f"the simulator {exe} wrote no readable results ({err}); "
                                f"remove {exe.parent} to rebuild it") from None
            for k, (table, a, b) in enumerate(zip(tables, bounds, bounds[1:])):
                if len(table) != b - a:   # never broadcast a short table against the images
                    raise UserError(f"simulation process {k + 1} returned {len(table)} "
                                    f"results for {b - a} images (its results file in "
                                    f"{tmp} was cut short: is $TMPDIR full?)")
        table = np.concatenate(tables)
        digests = None
        if self.x_random:
            digests = [line.split(None, 1)[1] for text in stdouts
                       for line in text.splitlines() if line.startswith("digest ")]
        loads = [int(line.split()[1]) for text in stdouts for line in text.splitlines()
                 if line.startswith("load ")] if len(words) else None
        return SimResult(table[:, 0], table[:, 1], np.array(bounds[:-1], np.int64), digests,
                         loads)

    def _weights(self, weights) -> np.ndarray:
        """``weights`` checked against the interface's weight stream: uint16 words."""
        need = self.weight_words
        if weights is None:
            if need:
                raise UserError(f"this core loads {need} weight words after reset; give them "
                                f"(hwgen.fold.spram.spram_words)")
            return np.zeros(0, np.uint16)
        words = np.asarray(weights)
        if words.ndim != 1 or len(words) != need or (
                len(words) and (words.min() < 0 or words.max() > 0xFFFF)):
            raise UserError(f"the core takes {need} 16-bit weight words, got "
                            f"{words.shape} values")
        return words.astype(np.uint16)


def default_jobs() -> int:
    """The number of CPUs this process may run on (the default of ``hwgen sim -j``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _run_shards(cmds: list[list[str]], outs: list[Path], tmp: Path, count: int,
                progress: bool) -> list[str]:
    """Run every harness command at once (stdout and stderr to files in ``tmp``); with
    ``progress``, a tqdm bar of the images done in all of them (lines in ``outs``). Returns
    each process's stdout; the first failure (the others are stopped) is a UserError."""
    procs, logs = [], []
    bar = None
    try:
        for k, cmd in enumerate(cmds):
            logs.append((tmp / f"stdout{k}.txt", tmp / f"stderr{k}.txt"))
            with open(logs[-1][0], "w") as stdout, open(logs[-1][1], "w") as stderr:
                try:  # SIGXFSZ stays ignored, as Python set it: a write past ``ulimit -f``
                    # fails in the harness as one to a full disk does, reported, not a kill
                    procs.append(subprocess.Popen(cmd, stdout=stdout, stderr=stderr,
                                                  restore_signals=False))
                except OSError as err:
                    raise UserError(f"cannot run the simulator {cmd[0]} ({err.strerror or err})"
                                    f"; remove {Path(cmd[0]).parent} to rebuild it") from None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=count, desc="verilator", unit="image", leave=False)
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [k for k, code in enumerate(codes) if code not in (None, 0)]
            if failed or all(code == 0 for code in codes):
                break
            if bar is not None:
                done = sum(_lines(out) for out in outs)
                bar.update(max(0, min(done, count) - bar.n))
            time.sleep(0.5 if bar is not None else 0.02)
        if failed:
            k = failed[0]
            message = logs[k][1].read_text().strip() or f"exit code {codes[k]}"
            shard = f" (process {k + 1} of {len(procs)})" if len(procs) > 1 else ""
            raise UserError(f"simulation failed{shard}: {message}")
        return [stdout.read_text() for stdout, _ in logs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if bar is not None:
            bar.close()


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def last_error(log: str) -> str:
    errors = [line for line in log.splitlines() if "%Error" in line or "error:" in line]
    return (errors[0] if errors else log.strip().splitlines()[-1] if log.strip() else "?")[:300]


def build_verilated(verilator, args: list[str], cwd: Path, prefix: str) -> tuple[str, str, int]:
    """``verilator --cc --exe ARGS`` (sources and ``-Mdir obj`` among ``args``) run in
    ``cwd``, then the C++ compile of the executable by the makefile it wrote
    (``obj/PREFIX.mk``, :func:`build_jobs` jobs, :data:`HARNESS_MAKEFLAGS`); returns the
    (stdout, stderr, return code) of both. Two steps rather than ``--build``: Verilator
    waits for its make holding all of its memory (~200 MiB for a shipped CNN's board top)
    while the compiler runs beside it."""
    stdout, stderr, code = run_group([verilator.executable, "--cc", "--exe", *args], cwd=cwd,
                                     env=verilator.env)
    if code != 0:
        return stdout, stderr, code
    more_out, more_err, code = run_group(
        ["make", "-C", "obj", "-f", f"{prefix}.mk", "-j", str(build_jobs()),
         *shlex.split(HARNESS_MAKEFLAGS)], cwd=cwd, env=verilator.env)
    return stdout + more_out, stderr + more_err, code


def run_group(cmd: list, **kwargs) -> tuple[str, str, int]:
    """``cmd``'s (stdout, stderr, return code), run in its own process group; an exception
    here (Ctrl-C, SIGTERM) kills the whole group (Verilator's make and compilers too), so
    nothing runs on after the command has stopped."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", start_new_session=True, **kwargs)
    except OSError as err:  # e.g. a VERILATOR script without its interpreter
        raise UserError(f"cannot run {cmd[0]}: {err.strerror or err}") from None
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return stdout, stderr, proc.returncode
