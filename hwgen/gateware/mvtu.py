"""The folded matrix-vector-threshold unit (MVTU) of a dense layer."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import (Fold, FoldError, LayerPlan, ceil_div, check_fold, dense_plan,
                    output_offsets, raw_negatives)
from ..model import Dense, channel_ranges, signed_width
from .popcount import adder_tree
from .rom import pack_lanes, pack_weights, ram_style, rom
from .spram import SPRAMBank, load_signature

__all__ = ["MVTU", "comparator_params"]


def comparator_params(layer: Dense, plan: LayerPlan) -> tuple[list[int], list[int]]:
    """Per-channel ``(t, invert)`` with ``y = (acc >= t) XOR invert`` equal to the model's
    ``sign * acc_model >= threshold``, where ``acc`` is what the unit accumulates.

    Binary input: the unit counts XNOR ones ``p`` and ``acc_model = 2p - N``; so for
    sign +1, ``t = ceil((T + N) / 2)``, and for sign -1, ``p <= floor((N - T) / 2)``, i.e.
    ``t = floor((N - T) / 2) + 1`` inverted. Raw input: ``acc_model = acc + neg`` (the unit
    adds ``~v = -v - 1`` for each of its ``neg`` terms led by a -1 weight,
    :func:`~hwgen.fold.raw_negatives`); ``t = T``, or ``t =
    1 - T`` inverted, clamped, then less ``neg``. Every ``t`` is clamped to ``[lo, hi + 1]``
    of ``acc_model`` (always true / never true beyond), which is what sizes the threshold ROM.
    """
    n = plan.n
    lo, hi = plan.acc_range
    negs = [0] * len(layer.sign) if plan.binary_input else raw_negatives(layer, plan.simd)
    ts, invs = [], []
    for threshold, sign, neg in zip(layer.threshold.astype(np.int64), layer.sign, negs):
        threshold = int(threshold)
        if plan.binary_input:
            t = -((-(threshold + n)) // 2) if sign > 0 else (n - threshold) // 2 + 1
        else:
            t = threshold if sign > 0 else 1 - threshold
        ts.append(min(max(t, lo), hi + 1) - int(neg))
        invs.append(0 if sign > 0 else 1)
    return ts, invs


class MVTU(wiring.Component):
    """A dense layer ``acc[j] = sum_i weight[j, i] * x[i]`` folded ``PE x SIMD``, thresholded
    (hidden layer) or turned into scores (output layer), bit-exact with the model.

    Parameters: ``layer`` (a validated :class:`~hwgen.model.Dense`), ``pe``, ``simd``,
    ``input_bits``: None for +-1 inputs (bit 1 = +1), or the width of raw unsigned inputs,
    and ``spram``: read the weights from a :class:`~.spram.SPRAMBank` (the same words, same
    addresses, same read latency as the ROM) that the unit's writer fills first.

    ``load`` (only with ``spram``, :func:`~.spram.load_signature` of
    ``plan.spram_blocks`` blocks): the bank's write side. Its blocks, in load order, hold
    16-bit slices of the weight ROM's words (:func:`hwgen.fold.spram.layer_spram_words` is
    what to write, block by block from address 0); all of them must be written before the
    unit's first input beat, and nothing after.

    ``i``: ``SF = ceil(N / SIMD)`` beats per image of ``SIMD`` elements (``SIMD`` bits, or
    ``SIMD * input_bits`` for raw input; element ``k`` in the ``k``-th field); elements past
    ``N`` in the last beat must be zero (:class:`~.repack.Repack` guarantees it).
    ``o``: ``NF = ceil(M / PE)`` beats per image of ``PE`` lanes, lane ``p`` of beat ``k``
    being channel ``k*PE + p``: one bit (hidden; padded lanes 0) or a signed score of
    ``plan.score_width`` bits (output layer; padded lanes undefined).

    Timing: the input is stored in a double buffer, so one image is received while the
    previous one is computed. Computation starts the cycle after an image's last input beat
    was written and issues one (neuron fold, synapse fold) pair per cycle, ``NF * SF``
    cycles per image; output beat ``k`` is valid ``plan.pipeline_latency`` cycles after its
    last pair was issued. ``i.ready`` is a register (a free buffer); the pipeline stalls as
    a whole while ``o.valid`` is high and ``o.ready`` low.
    """

    @checked_init
    def __init__(self, layer: Dense, pe: int, simd: int, input_bits: int | None = None,
                 spram: bool = False, streaming: bool = False):
        if not isinstance(layer, Dense):
            raise TypeError(f"layer must be a Dense layer, not {type(layer).__name__}")
        check_int("pe", pe)
        check_int("simd", simd)
        if input_bits is not None:
            check_int("input_bits", input_bits, 1)
        if not isinstance(spram, bool):
            raise TypeError(f"spram must be True or False, not {spram!r}")
        if not isinstance(streaming, bool):
            raise TypeError(f"streaming must be True or False, not {streaming!r}")
        try:
            check_fold(0, layer, pe, simd)
        except FoldError as err:  # the message without its "layer 0 (dense): " prefix
            raise ValueError(str(err).split(": ", 1)[-1]) from None
        self.layer = layer
        if streaming and ceil_div(layer.weight.shape[0], pe) != 1:
            raise ValueError(f"a streaming unit computes all {layer.weight.shape[0]} outputs "
                             f"at once: pe must be at least that, not {pe}")
        self.plan = dense_plan(layer, Fold(pe, simd, spram), input_bits, streaming=streaming)
        p = self.plan
        members = {
            "i": In(stream.Signature(p.simd * p.element_bits)),
            "o": Out(stream.Signature(p.pe * p.out_element_bits)),
        }
        if spram:
            members["load"] = In(load_signature(p.spram_blocks))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p, layer = self.plan, self.layer
        pe, simd, nf_count, sf_count, ebits = p.pe, p.simd, p.nf, p.sf, p.element_bits

        # ---- parameters
        if p.spram:
            m.submodules.weights = wread = SPRAMBank(16 * ceil_div(pe * simd, 16),
                                                     nf_count * sf_count)
            wiring.connect(m, wiring.flipped(self.load), wread.load)
        else:
            m.submodules.weights = wrom = rom(pack_weights(layer.weight, pe, simd), pe * simd,
                                              p.weight_logic)
            wread = wrom.read_port()
        pread = None
        if p.is_output:
            offsets = [int(v) for v in output_offsets(layer, p.binary_input, simd)]
            params = pack_lanes(offsets, p.param_width, pe)
        elif not p.preloaded:
            ts, invs = comparator_params(layer, p)
            tw = p.param_width - 1
            fields = [(t & ((1 << tw) - 1)) | (inv << tw) for t, inv in zip(ts, invs)]
            never = (p.acc_range[1] + 1) & ((1 << tw) - 1)  # padded channels output 0
            params = pack_lanes(fields, p.param_width, pe, pad=never)
        if not p.preloaded:
            m.submodules.params = prom = rom(params, pe * p.param_width, p.param_logic)
            pread = prom.read_port()

        # ---- the input: a double buffer, or (streaming) the word in flight
        advance = Signal()
        issue = Signal()
        sf = Signal(range(sf_count))
        sf_first = Signal(init=1)                       # sf == 0
        sf_last = Signal(init=int(sf_count == 1))       # sf == sf_count - 1
        nf = Signal(range(nf_count))
        w_addr = Signal(range(nf_count * sf_count))     # nf * sf_count + sf
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        if p.streaming:
            x = self._streaming_input(m, advance, issue, sf, sf_first, sf_last, w_addr)
        else:
            x = self._buffered_input(m, advance, issue, sf, sf_first, sf_last, nf, w_addr)
        if p.paired:
            # the weights are read a cycle after the buffer word, beside its pair sums
            w_read_addr = Signal.like(w_addr, name="w_addr_pairs")
            with m.If(advance):
                m.d.sync += w_read_addr.eq(w_addr)
        else:
            w_read_addr = w_addr
        m.d.comb += [wread.addr.eq(w_read_addr), wread.en.eq(advance)]

        # ---- stage 1: buffer word and weight word arrive (flags follow the data)
        def stage(valid, first, last, index, name):
            regs = (Signal(name=f"{name}_valid"), Signal(name=f"{name}_first"),
                    Signal(name=f"{name}_last"), Signal(range(nf_count), name=f"{name}_nf"))
            with m.If(advance):
                m.d.sync += [r.eq(v) for r, v in zip(regs, (valid, first, last, index))]
            return regs

        flags = stage(issue, sf_first, sf_last, nf, "s1")
        w = wread.data
        if p.paired:
            # ---- stage 2 (paired raw input): each pair's sum and difference, once for all
            # lanes, registered (the block RAM output reaches no adder in its own cycle).
            x = self._pair_values(m, x, advance, simd, ebits, p.centered)
            flags = stage(*flags, "pairs")
        vw = ebits + (1 if p.centered else 2)  # a pair's value (and its ~)
        sums = []
        for lane in range(pe):
            wl = w[lane * simd:(lane + 1) * simd]
            # Terms are registered (the XNOR/XOR and its flip-flop share a logic cell), so
            # that the block RAM outputs (and the multiplexer of a ROM deeper than one block)
            # reach no adder in the same cycle.
            terms = []
            for k in range(p.terms):
                if p.paired:
                    # the pair's value (sum when its weights agree, else difference), XORed
                    # into ~v = -v - 1 when its leading weight is -1: one LUT4 a bit
                    pair_sum, pair_diff = x[k]
                    wa = wl[2 * k]
                    v = pair_sum if pair_diff is None else Mux(wa == wl[2 * k + 1], pair_sum,
                                                               pair_diff)
                    shape, value = signed(vw), v ^ (~wa).replicate(vw)
                elif p.binary_input:
                    shape, value = 1, ~(x[k] ^ wl[k])
                else:
                    # x for a +1 weight, ~x = -x - 1 for a -1 weight: an XOR, no negation
                    # (the parameters add back the channel's count of -1 weights).
                    xk = x[k * ebits:(k + 1) * ebits]
                    xk = _centered(xk) if p.centered else Cat(xk, 0).as_signed()
                    shape = signed(len(xk))
                    value = (xk ^ (~wl[k]).replicate(len(xk))).as_signed()
                term = Signal(shape, name=f"pe{lane}_x{k}")
                with m.If(advance):
                    m.d.sync += term.eq(value)
                terms.append(term)
            total = adder_tree(m, terms, advance, p.tree_levels_per_stage, name=f"pe{lane}")
            if p.root_registered:
                # The root is registered too: the accumulator adds a registered sum.
                root = Signal(total.shape(), name=f"pe{lane}_sum")
                with m.If(advance):
                    m.d.sync += root.eq(total)
                total = root
            sums.append(total)
        flags = stage(*flags, "terms")
        for level in range(p.tree_stages):
            flags = stage(*flags, f"t{level}")
        if p.root_registered:
            flags = stage(*flags, "root")

        valid, first, last, index = flags
        if p.preloaded:
            self._preloaded_outputs(m, advance, valid, last, sums)
            return m

        # ---- accumulate; the parameter word is read alongside
        m.d.comb += [pread.addr.eq(index), pread.en.eq(advance)]
        accs = [Signal(p.acc_width, name=f"acc{lane}") if not p.acc_signed else
                Signal(signed(p.acc_width), name=f"acc{lane}") for lane in range(pe)]
        done = Signal()
        with m.If(advance):
            m.d.sync += done.eq(valid & last)
            with m.If(valid):
                for acc, s in zip(accs, sums):
                    m.d.sync += acc.eq(Mux(first, s, acc + s))

        # ---- output register: threshold comparators or scores
        lanes = []
        pw = p.param_width
        for lane, acc in enumerate(accs):
            field = pread.data[lane * pw:(lane + 1) * pw]
            if p.is_output:
                score = Signal(signed(p.score_width), name=f"score{lane}")
                value = (acc << 1) if p.binary_input else acc
                m.d.comb += score.eq(value + field.as_signed())
                lanes.append(score)
            else:
                t = field[:pw - 1].as_signed() if p.acc_signed else field[:pw - 1]
                lanes.append((acc >= t) ^ field[pw - 1])
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(done), self.o.payload.eq(Cat(*lanes))]
        return m

    def _buffered_input(self, m, advance, issue, sf, sf_first, sf_last, nf, w_addr):
        """The double buffer: the writer fills the free half while the reader issues
        (neuron fold, synapse fold) pairs from the full one. Returns the read word."""
        p = self.plan
        simd, nf_count, sf_count, ebits = p.simd, p.nf, p.sf, p.element_bits
        m.submodules.buffer = ibuf = Memory(shape=simd * ebits, depth=2 * sf_count, init=[],
                                            attrs=ram_style(p.buffer_brams == 0))
        wport = ibuf.write_port()
        xport = ibuf.read_port()

        # ---- writer: fills the free half of the double buffer. Addresses and "last" flags
        # are kept in registers beside the counters (no multiply-add or compare on the paths).
        full = Signal(2)
        wr_buf = Signal()
        wr_addr = Signal(range(sf_count))
        wr_last = Signal(init=int(sf_count == 1))  # wr_addr == sf_count - 1
        wr_ptr = Signal(range(2 * sf_count))  # wr_buf * sf_count + wr_addr
        set_full = Signal(2)
        clr_full = Signal(2)
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~Mux(wr_buf, full[1], full[0])),
            take.eq(self.i.valid & self.i.ready),
            wport.addr.eq(wr_ptr),
            wport.data.eq(self.i.payload),
            wport.en.eq(take),
        ]
        with m.If(take):
            with m.If(wr_last):
                m.d.sync += [wr_addr.eq(0), wr_buf.eq(~wr_buf), wr_last.eq(int(sf_count == 1)),
                             wr_ptr.eq(Mux(wr_buf, 0, sf_count))]
                m.d.comb += set_full.eq(Mux(wr_buf, 0b10, 0b01))
            with m.Else():
                m.d.sync += [wr_addr.eq(wr_addr + 1), wr_last.eq(wr_addr == sf_count - 2),
                             wr_ptr.eq(wr_ptr + 1)]

        # ---- reader: issues (neuron fold, synapse fold) pairs from the full half
        rd_buf = Signal()
        nf_last = Signal(init=int(nf_count == 1))       # nf == nf_count - 1
        x_addr = Signal(range(2 * sf_count))            # rd_buf * sf_count + sf
        m.d.comb += [
            issue.eq(Mux(rd_buf, full[1], full[0]) & advance),
            xport.addr.eq(x_addr),
            xport.en.eq(advance),
        ]
        with m.If(issue):
            with m.If(sf_last):
                m.d.sync += [sf.eq(0), sf_first.eq(1), sf_last.eq(int(sf_count == 1))]
                with m.If(nf_last):
                    m.d.sync += [nf.eq(0), nf_last.eq(int(nf_count == 1)), rd_buf.eq(~rd_buf),
                                 x_addr.eq(Mux(rd_buf, 0, sf_count)), w_addr.eq(0)]
                    m.d.comb += clr_full.eq(Mux(rd_buf, 0b10, 0b01))
                with m.Else():
                    m.d.sync += [nf.eq(nf + 1), nf_last.eq(nf == nf_count - 2),
                                 x_addr.eq(Mux(rd_buf, sf_count, 0)), w_addr.eq(w_addr + 1)]
            with m.Else():
                m.d.sync += [sf.eq(sf + 1), sf_first.eq(0), sf_last.eq(sf == sf_count - 2),
                             x_addr.eq(x_addr + 1), w_addr.eq(w_addr + 1)]
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        return xport.data

    def _streaming_input(self, m, advance, issue, sf, sf_first, sf_last, w_addr):
        """One neuron fold, no buffer: each input word is issued as it is taken (``i.ready``
        is ``advance``), and registered, as the buffer's read port would, beside the weight
        word read at its synapse fold. Returns the registered word."""
        sf_count = self.plan.sf
        word = Signal(len(self.i.payload), name="x_word")
        m.d.comb += [self.i.ready.eq(advance), issue.eq(self.i.valid & advance)]
        with m.If(advance):
            m.d.sync += word.eq(self.i.payload)
        with m.If(issue):
            with m.If(sf_last):
                m.d.sync += [sf.eq(0), sf_first.eq(1), sf_last.eq(int(sf_count == 1)),
                             w_addr.eq(0)]
            with m.Else():
                m.d.sync += [sf.eq(sf + 1), sf_first.eq(0), sf_last.eq(sf == sf_count - 2),
                             w_addr.eq(w_addr + 1)]
        return word

    def _preloaded_outputs(self, m, advance, valid, last, sums):
        """The accumulators of a :attr:`~hwgen.fold.LayerPlan.preloaded` layer: lane ``j``
        starts at ``-t[j]`` (:func:`comparator_params`) and adds its sums; with the image's
        last sum the output register takes ``(acc + sum >= 0) XOR invert[j]``, and the
        accumulator returns to ``-t[j]`` (constant synchronous set/reset values of its
        flip-flops: no parameter ROM, no comparator)."""
        p, layer = self.plan, self.layer
        ts, invs = comparator_params(layer, p)  # one per lane: PE == M
        # Each lane's own bounds of what it accumulates (its partial sums stay within them:
        # every term's sign is fixed by its weights), and its constant, moved by the
        # centring of raw inputs (x - 2^(bits-1): sum w*x = sum w*(x - h) + h * sum w).
        n = layer.weight.shape[1]
        plus = np.count_nonzero(layer.weight > 0, axis=1).astype(np.int64)
        minus = n - plus
        if p.binary_input:
            lows, highs = np.zeros(p.pe, np.int64), np.full(p.pe, n, np.int64)
        else:
            negs = raw_negatives(layer, simd=p.simd)
            top = (1 << p.element_bits) - 1
            if p.centered:
                h = 1 << (p.element_bits - 1)
                lows, highs = -h * plus - (h - 1) * minus - negs, (h - 1) * plus + h * minus
                ts = [int(t) - h * int(w) for t, w in zip(ts, plus - minus)]
            else:
                lows, highs = channel_ranges(layer.weight, False, top)
                lows = lows - negs
        widths = [signed_width(min(int(lo) - t, -t), max(int(hi) - t, -t))
                  for lo, hi, t in zip(lows, highs, ts)]
        # The accumulators power up at 0 (iCE40 flip-flops can only: a start value of 1
        # would cost an inverter on each side) and take -t in the first cycle after reset.
        prime = Signal(init=1, name="acc_prime")
        m.d.sync += prime.eq(0)
        bits = []
        for lane, (s, t, inv, width) in enumerate(zip(sums, ts, invs, widths)):
            acc = Signal(signed(width), name=f"acc{lane}")
            total = Signal(signed(width), name=f"acc{lane}_next")
            m.d.comb += total.eq(acc + s)
            with m.If((advance & valid) | prime):
                with m.If(last | prime):
                    m.d.sync += acc.eq(-t)
                with m.Else():
                    m.d.sync += acc.eq(total)
            bits.append(~total[-1] ^ inv)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid & last), self.o.payload.eq(Cat(*bits))]

    @staticmethod
    def _pair_values(m, x, advance, simd: int, ebits: int, centered: bool = False) -> list:
        """Registered ``(x_a + x_b, x_a - x_b)`` for each pair of input elements
        ``(2k, 2k + 1)`` of the buffer word ``x``, and ``(x_last, None)`` for an odd
        ``SIMD``'s last element; values ``signed(ebits + 2)``, or with ``centered`` of the
        elements less ``2^(ebits-1)`` (their top bit inverted), ``signed(ebits + 1)``."""
        width = ebits + (1 if centered else 2)
        values = []
        for k in range(0, simd, 2):
            a = x[k * ebits:(k + 1) * ebits]
            if centered:
                a = _centered(a)
            if k + 1 == simd:
                single = Signal(signed(width), name=f"single{k}")
                with m.If(advance):
                    m.d.sync += single.eq(a)
                values.append((single, None))
                continue
            b = x[(k + 1) * ebits:(k + 2) * ebits]
            if centered:
                b = _centered(b)
            total = Signal(signed(width), name=f"pair{k // 2}_sum")
            diff = Signal(signed(width), name=f"pair{k // 2}_diff")
            with m.If(advance):
                m.d.sync += [total.eq(a + b), diff.eq(a - b)]
            values.append((total, diff))
        return values


def _centered(value):
    """An unsigned value less half its range, ``x - 2^(bits-1)``, as signed: its top bit
    inverted (no adder)."""
    return Cat(value[:-1], ~value[-1]).as_signed()
