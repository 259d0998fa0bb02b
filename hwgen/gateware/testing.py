"""Stream drivers and monitors for Amaranth simulator testbenches (``add_testbench``).

Every helper works cycle by cycle from simulation start, so cycle numbers recorded by a
driver and a monitor of the same simulation are comparable (cycle ``t`` is the ``t``-th
clock period; a transfer "at cycle t" has valid and ready high during it).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from ..layout import in_stream_order

__all__ = ["StreamDriver", "StreamMonitor", "simulate", "pack", "unpack", "run_mvtu"]


def pack(values, width: int) -> int:
    """Fields of ``width`` bits (two's complement) into one integer, value 0 lowest."""
    word = 0
    mask = (1 << width) - 1
    for k, v in enumerate(values):
        word |= (int(v) & mask) << (k * width)
    return word


def unpack(word: int, width: int, count: int, signed: bool = False) -> list[int]:
    """The inverse of :func:`pack`."""
    mask = (1 << width) - 1
    out = []
    for k in range(count):
        v = (int(word) >> (k * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


class StreamDriver:
    """Offers ``payloads`` on a stream, one per transfer; with ``valid_prob < 1`` it idles a
    random number of cycles (valid low) before each. Records the cycle of each transfer."""

    def __init__(self, stream, payloads, rng: np.random.Generator | None = None,
                 valid_prob: float = 1.0):
        self.stream, self.payloads = stream, list(payloads)
        self.rng, self.valid_prob = rng, valid_prob
        self.cycles: list[int] = []

    async def process(self, ctx):
        cycle = 0
        for payload in self.payloads:
            while self.rng is not None and self.rng.random() >= self.valid_prob:
                ctx.set(self.stream.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(self.stream.payload, payload)
            ctx.set(self.stream.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(self.stream.ready)
                cycle += 1
                if ready:
                    self.cycles.append(cycle - 1)
                    break
        ctx.set(self.stream.valid, 0)


class StreamMonitor:
    """Collects ``count`` payloads from a stream; with ``ready_prob < 1`` ready is low on a
    random fraction of cycles. Records each transfer's cycle and the first cycle each
    payload was valid (for latency measurements)."""

    def __init__(self, stream, count: int, rng: np.random.Generator | None = None,
                 ready_prob: float = 1.0, timeout: int = 1_000_000):
        self.stream, self.count = stream, count
        self.rng, self.ready_prob, self.timeout = rng, ready_prob, timeout
        self.payloads: list[int] = []
        self.cycles: list[int] = []
        self.valid_cycles: list[int] = []

    async def process(self, ctx):
        cycle, waiting = 0, False
        while len(self.payloads) < self.count:
            if cycle > self.timeout:
                raise TimeoutError(f"only {len(self.payloads)} of {self.count} payloads "
                                   f"after {cycle} cycles")
            ready = self.rng is None or self.rng.random() < self.ready_prob
            ctx.set(self.stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(self.stream.valid,
                                                          self.stream.payload)
            if valid and not waiting:
                self.valid_cycles.append(cycle)
                waiting = True
            if valid and ready:
                self.payloads.append(payload)
                self.cycles.append(cycle)
                waiting = False
            cycle += 1
        ctx.set(self.stream.ready, 0)


def simulate(dut, *processes, vcd: str | None = None) -> None:
    """Run ``dut`` with a clock and the given testbenches until they all return: async
    functions ``f(ctx)``, or drivers/monitors (anything with an async ``process`` method)."""
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain()  # so purely combinational units simulate too
    sim = Simulator(top)
    sim.add_clock(1e-6)
    for process in processes:
        sim.add_testbench(getattr(process, "process", process))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def image_beats(images, lanes: int, bits: int, order: str = "CHW") -> list[int]:
    """The input beats of ``images [K, C, H, W]``: ``lanes`` values per beat in ``order``
    (``"CHW"`` or ``"HWC"``, see ``NetworkPlan.input_order``), the last beat of each image
    zero-padded."""
    beats = []
    for image in in_stream_order(images, order):
        flat = [int(v) for v in image.reshape(-1)]
        count = -(-len(flat) // lanes)
        flat += [0] * (count * lanes - len(flat))
        beats += [pack(flat[k * lanes:(k + 1) * lanes], bits) for k in range(count)]
    return beats


def simulate_network(net, images, rng: np.random.Generator | None = None,
                     valid_prob: float = 1.0, ready_prob: float = 1.0, scores: bool = False):
    """Run :class:`~hwgen.gateware.network.Network` for ``net`` over ``images``.

    Returns ``(predictions, driver, monitor)``; the driver's ``cycles`` hold each input
    beat's transfer cycle and the monitor's ``cycles``/``valid_cycles`` each output beat's.
    ``scores=True`` simulates the network without its argmax and returns every image's
    scores ``[K, classes]`` instead of the predictions.

    A network with SPRAM layers (``net.spram_words > 0``) gets its weight words
    (:func:`~hwgen.fold.spram.spram_words`) on ``w`` from simulation start, with the same
    gaps as the images, while the image driver already offers its first beat (the network
    takes it only once loaded); the weight driver is ``driver.weights`` (else None).
    """
    from ..fold.spram import spram_words
    from .network import Network

    dut = Network(net, output="scores" if scores else "class")
    driver = StreamDriver(dut.i, image_beats(images, net.lanes, net.bits, net.input_order),
                          rng, valid_prob)
    processes = [driver]
    driver.weights = None
    if net.spram_words:
        driver.weights = StreamDriver(dut.w, [int(v) for v in spram_words(net)], rng,
                                      valid_prob)
        processes.append(driver.weights)
    last = net.layers[-1]
    beats = last.nf if scores else 1
    monitor = StreamMonitor(dut.o, len(images) * beats, rng, ready_prob)
    simulate(dut, *processes, monitor)
    if not scores:
        return np.array(monitor.payloads, dtype=np.int64), driver, monitor
    out = []
    for k in range(len(images)):
        lanes = []
        for beat in monitor.payloads[k * beats:(k + 1) * beats]:
            lanes += unpack(beat, last.score_width, last.pe, signed=True)
        out.append(lanes[:last.m])
    return np.array(out, dtype=np.int64), driver, monitor


def run_mvtu(layer, pe: int, simd: int, input_bits: int | None, xs: np.ndarray,
              rng: np.random.Generator | None = None, valid_prob: float = 1.0,
              ready_prob: float = 1.0, streaming: bool = False):
    """Simulate one MVTU (``streaming``: without its input buffer, one neuron fold) on
    input vectors ``xs [K, N]`` (+-1, or raw unsigned integers).

    Returns ``(outputs [K, M], monitor, plan)``: outputs are 0/1 bits for a hidden layer
    (padded lanes checked to be 0) or signed scores for the output layer.
    """
    from .mvtu import MVTU

    dut = MVTU(layer, pe, simd, input_bits, streaming=streaming)
    p = dut.plan
    words = []
    for x in xs:
        elems = [int(v) for v in (x > 0 if input_bits is None else x)]
        elems += [0] * (p.sf * simd - len(elems))
        words += [pack(elems[k * simd:(k + 1) * simd], p.element_bits) for k in range(p.sf)]
    driver = StreamDriver(dut.i, words, rng, valid_prob)
    monitor = StreamMonitor(dut.o, len(xs) * p.nf, rng, ready_prob)
    simulate(dut, driver, monitor)
    out = []
    for k in range(len(xs)):
        lanes = []
        for beat in monitor.payloads[k * p.nf:(k + 1) * p.nf]:
            lanes += unpack(beat, p.out_element_bits, pe, signed=layer.is_output)
        if not layer.is_output and lanes[p.m:] != [0] * (len(lanes) - p.m):
            raise AssertionError("padded output lanes of a hidden layer must be 0")
        out.append(lanes[:p.m])
    return np.array(out), monitor, p
