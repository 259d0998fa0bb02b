"""Sliding windows over a streamed feature map: the front end of a conv2d layer.

A feature map ``[C, H, W]`` arrives as a stream of positions in row-major (H, W) order, one
position per beat, channel ``c`` of a position in element field ``c`` (a field is one bit,
1 for +1 and 0 for -1, for binary activations; or ``element_bits`` bits for raw unsigned
first-layer input). Images follow each other without any separator.

:class:`WindowTaps` keeps the last rows of the map in a line buffer (one
:class:`~amaranth.lib.memory.Memory`, block-RAM friendly: one synchronous write port, one
synchronous read port) and, for every output position ``(oy, ox)`` in row-major order,
reads the ``KH * KW`` positions ("taps") of its window one per cycle in (KH, KW) order,
substituting the padding word for taps outside the map. :class:`SlidingWindow` regroups the
taps into window vectors for the matrix-vector-threshold unit
(:class:`~hwgen.gateware.mvtu.MVTU`), whole or in ``SIMD``-element chunks.

Window element order is (KH, KW, C): element ``(ky*KW + kx)*C + c``. The model stores
weights ``[Cout, Cin, KH, KW]`` and the reference flattens windows in (C, KH, KW) order, so
the generator folds the MVTU over :func:`conv_weight_matrix` of the weight (the same
``acc``, only the order of the terms of each dot product differs).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int, checked_init

from ..fold import (LINE_BUFFER_LOGIC_BITS, ceil_div, line_buffer_brams, line_buffer_in_logic,
                    line_buffer_rows)
from ..layout import (conv_dense_view, conv_weight_matrix, hwc_dense_matrix, pair,
                      window_vectors)
from .repack import Repack, SkidBuffer
from .rom import ram_style

__all__ = ["WindowTaps", "SlidingWindow", "conv_weight_matrix", "conv_dense_view",
           "hwc_dense_matrix", "window_vectors",
           "line_buffer_rows", "line_buffer_in_logic", "line_buffer_brams",
           "LINE_BUFFER_LOGIC_BITS"]



class WindowTaps(wiring.Component):
    """Line buffer and window reader: every window's ``KH * KW`` taps, one per beat.

    Parameters: ``channels`` C, ``height`` H, ``width`` W of the input map; ``kernel``,
    ``stride`` (ints or ``(h, w)`` pairs, at least 1); ``padding`` (at least 0);
    ``pad_word``: the ``C * element_bits``-bit word substituted for taps in the padding.

    ``i``: ``H * W`` beats per image of ``C * element_bits`` bits, positions in row-major
    order. ``o``: payload ``{data, first, last}``: for each output position ``(oy, ox)``
    (``Ho = (H + 2ph - KH) // sh + 1`` rows of ``Wo`` in row-major order) its taps
    ``(ky, kx)`` in row-major order, ``data`` the input position ``(oy*sh + ky - ph,
    ox*sw + kx - pw)`` or ``pad_word`` outside the map, ``first``/``last`` marking a window's
    first and last tap. ``Ho * Wo * KH * KW`` beats per image.

    Storage: ``R = min(KH, H) + sh`` rows of ``W`` words (:func:`line_buffer_rows`), rows of
    consecutive images stored circularly. An input beat is accepted (``i.ready``, a function
    of registers only) while fewer than ``R`` complete rows are held; a window row's taps are
    read once all the input rows it covers are complete.

    Timing: one tap per cycle while the rows are there and ``o`` is not stalled. A tap's
    address is computed and registered, then read (a two-stage pipeline, so that address
    arithmetic and the block RAM read are separate paths); ``o.valid`` and ``o.payload``
    come from registers and the read port; while ``o.valid`` is high and ``o.ready`` low the
    whole reader holds. The first tap of an image is valid 3 cycles after the last beat of
    row ``min(KH - ph, H) - 1`` was accepted (1 cycle for the row counter, 1 for the
    address, 1 for the read), or 2 cycles after the reader becomes free if those rows were
    already there.
    """

    @checked_init
    def __init__(self, channels: int, height: int, width: int, kernel, stride=1, padding=0,
                 pad_word: int = 0, element_bits: int = 1):
        for name, value in (("channels", channels), ("height", height), ("width", width),
                            ("element_bits", element_bits)):
            check_int(name, value, 1)
        self.kernel = pair("kernel", kernel, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        check_int("pad_word", pad_word, 0)
        bits = channels * element_bits
        if pad_word >> bits:
            raise ValueError(f"pad_word {pad_word:#x} does not fit in {bits} bits")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho = (height + 2 * ph - kh) // sh + 1
        wo = (width + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"kernel {kh}x{kw} is larger than the padded {height}x{width} "
                             f"input (padding {ph}x{pw})")
        self.channels, self.height, self.width = channels, height, width
        self.element_bits, self.pad_word = element_bits, pad_word
        self.out_shape = (ho, wo)
        self.rows = line_buffer_rows(height, kh, sh)
        super().__init__({
            "i": In(stream.Signature(bits)),
            "o": Out(stream.Signature(data.StructLayout({
                "data": unsigned(bits), "first": 1, "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        c, h, w, e = self.channels, self.height, self.width, self.element_bits
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho, wo = self.out_shape
        r = self.rows
        bits = c * e

        m.submodules.lines = mem = Memory(shape=unsigned(bits), depth=r * w, init=[],
                                          attrs=ram_style(line_buffer_in_logic(
                                              c, h, w, kh, sh, e)))
        wport = mem.write_port()
        rport = mem.read_port()

        # Complete rows held minus rows released by the reader ("avail"; negative after the
        # reader has released rows of an image that the writer has not delivered yet, rows
        # below the last window, which no window uses: the writer then skips over them),
        # less the rows the current output row needs: a tap may issue when it is >= 0.
        # Kept as one register ``margin`` (below) so that the issue decision is its sign
        # bit, not a compare.
        row_done = Signal()
        release = Signal(range(h + 1))
        # The writer's view: the same count, but a release only counts once the tap that
        # triggered it has been read (it waits in the address stage, maybe stalled), so a
        # released row is never overwritten before its last tap was read.
        avail_w = Signal(range(-r, r + 1))
        read_release = Signal(range(h + 1))

        # ---- writer
        wcol = Signal(range(w))
        wslot = Signal(range(r))
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(avail_w < r),
            take.eq(self.i.valid & self.i.ready),
            wport.addr.eq(wslot * w + wcol),
            wport.data.eq(self.i.payload),
            wport.en.eq(take),
        ]
        with m.If(take):
            with m.If(wcol == w - 1):
                m.d.comb += row_done.eq(1)
                m.d.sync += [wcol.eq(0), wslot.eq(Mux(wslot == r - 1, 0, wslot + 1))]
            with m.Else():
                m.d.sync += wcol.eq(wcol + 1)

        # ---- reader
        oy = Signal(range(ho))
        ox = Signal(range(wo))
        ky = Signal(range(kh))
        kx = Signal(range(kw))
        xbase = Signal(range(-pw, (wo - 1) * sw - pw + 1), init=-pw)  # ox*sw - pw
        bslot = Signal(range(r))  # slot of row `lo`, the first stored row output row oy reads

        # Everything that depends on the output row alone is a constant per row, held in
        # registers loaded from tables when a row ends, instead of computed from the row
        # index (carry chains on the paths into `issue` and `bslot` limited a 28-wide map to
        # 27 MHz on the iCE40): lo/hi: the stored rows the window row covers; need = hi - lo;
        # release: the rows the next output row no longer needs (after the last row, all
        # the rest); off: the map row of tap ky is lo + ky + off; row_ok/col_ok: which taps
        # are inside the map (col_ok is looked up by ox).
        def lo_of(y):
            return min(max(y * sh - ph, 0), h)

        need_t = [min(max(y * sh - ph + kh, 0), h) - lo_of(y) for y in range(ho)]
        rel_t = [(h if y == ho - 1 else lo_of(y + 1)) - lo_of(y) for y in range(ho)]
        # At the end of output row y the margin falls by the rows released and by the
        # growth of the rows needed: dec = rel[y] + need[y + 1] - need[y] (the next image's
        # first row after the last).
        dec_t = [rel_t[y] + need_t[(y + 1) % ho] - need_t[y] for y in range(ho)]
        off_t = [y * sh - ph - lo_of(y) for y in range(ho)]
        row_ok_t = [sum(1 << k for k in range(kh) if 0 <= y * sh - ph + k < h) for y in range(ho)]
        col_ok_t = [sum(1 << k for k in range(kw) if 0 <= x * sw - pw + k < w) for x in range(wo)]
        margin = Signal(range(-r - h, r + 1), init=-need_t[0])
        dec = Signal(range(min(0, min(dec_t)), max(dec_t) + 1), init=dec_t[0])
        release_row = Signal(range(h + 1), init=rel_t[0])
        off = Signal(range(min(off_t), 1), init=off_t[0])
        row_ok = Signal(kh, init=row_ok_t[0])
        row_regs = ((dec, dec_t), (release_row, rel_t), (off, off_t), (row_ok, row_ok_t))
        col_ok = Signal(kw)
        m.d.comb += col_ok.eq(Array(Const(v, kw) for v in col_ok_t)[ox])
        ix = Signal(range(-pw, (wo - 1) * sw - pw + kw))
        inside = Signal()
        slot_raw = Signal(range(min(off_t), 2 * r))
        slot = Signal(range(r))
        m.d.comb += [
            ix.eq(xbase + kx),
            inside.eq(row_ok.bit_select(ky, 1) & col_ok.bit_select(kx, 1)),
            # Taps outside the map read an arbitrary slot (their word is replaced by padding).
            slot_raw.eq(bslot + ky + off),
            slot.eq(Mux(slot_raw >= r, slot_raw - r, slot_raw)),
        ]

        advance = Signal()
        issue = Signal()
        row_end = Signal()
        tap_first = Signal()
        tap_last = Signal()
        # Two-stage read pipeline: the tap's address is computed and registered (stage A),
        # then read (stage B: the read port's register), so the address arithmetic and the
        # block RAM read are not one path. Both stages hold while the output is stalled.
        a_valid, a_inside, a_first, a_last = (Signal(name=f"a_{n}")
                                              for n in ("valid", "inside", "first", "last"))
        a_addr = Signal(range(r * w), name="a_addr")
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            issue.eq(advance & ~margin[-1]),
            rport.addr.eq(a_addr),
            rport.en.eq(advance),
            tap_first.eq((ky == 0) & (kx == 0)),
            tap_last.eq((ky == kh - 1) & (kx == kw - 1)),
        ]
        a_release = Signal(range(h + 1), name="a_release")
        m.d.comb += read_release.eq(Mux(advance, a_release, 0))
        with m.If(advance):
            m.d.sync += [a_valid.eq(issue), a_addr.eq(slot * w + ix[:max(1, (w - 1).bit_length())]),
                         a_inside.eq(inside), a_first.eq(tap_first), a_last.eq(tap_last),
                         a_release.eq(release)]
        with m.If(issue):
            with m.If(kx == kw - 1):
                m.d.sync += kx.eq(0)
                with m.If(ky == kh - 1):
                    m.d.sync += ky.eq(0)
                    with m.If(ox == wo - 1):
                        m.d.sync += [ox.eq(0), xbase.eq(-pw)]
                        # The output row is finished: release the rows the next one no
                        # longer needs (after an image's last row, all the rest of the image).
                        m.d.comb += [release.eq(release_row), row_end.eq(1)]
                        step = Signal(range(2 * r), name="slot_step")  # release < r
                        m.d.comb += step.eq(bslot + release_row)
                        m.d.sync += bslot.eq(Mux(step >= r, step - r, step))
                        for reg, table in row_regs:
                            following = table[1:] + table[:1]  # the next row's value
                            m.d.sync += reg.eq(Array(Const(v, reg.shape())
                                                     for v in following)[oy])
                        with m.If(oy == ho - 1):
                            m.d.sync += oy.eq(0)
                        with m.Else():
                            m.d.sync += oy.eq(oy + 1)
                    with m.Else():
                        m.d.sync += [ox.eq(ox + 1), xbase.eq(xbase + sw)]
                with m.Else():
                    m.d.sync += ky.eq(ky + 1)
            with m.Else():
                m.d.sync += kx.eq(kx + 1)

        # The row end only selects between two sums of registers (no adder behind the issue
        # decision).
        m.d.sync += [margin.eq(Mux(row_end, margin + row_done - dec, margin + row_done)),
                     avail_w.eq(avail_w + row_done - read_release)]

        # ---- output stage: the read port's word, or the padding word
        pad = Signal()
        first = Signal()
        last = Signal()
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(a_valid), pad.eq(~a_inside), first.eq(a_first),
                         last.eq(a_last)]
        m.d.comb += [
            self.o.payload.data.eq(Mux(pad, self.pad_word, rport.data)),
            self.o.payload.first.eq(first),
            self.o.payload.last.eq(last),
        ]
        return m


class SlidingWindow(wiring.Component):
    """The window vectors of a conv2d layer, for the MVTU.

    Parameters: ``channels`` C, ``height`` H, ``width`` W of the input map; ``kernel``,
    ``stride``, ``padding`` (ints or ``(h, w)`` pairs); ``pad_value``; ``element_bits``:
    None for binary activations (``pad_value`` -1 or +1, stored as bit 0 or 1), or the width
    of raw unsigned input values (``pad_value`` in ``[0, 2**element_bits - 1]``); ``simd``:
    elements per output beat, None for the whole window (``N = KH*KW*C`` elements).

    ``i``: ``H * W`` beats per image of ``C`` elements (bit field ``c`` is channel ``c``),
    positions in row-major order. ``o``: for each of the ``Ho * Wo`` output positions in
    row-major order, its window vector of ``N`` elements in (KH, KW, C) order (element
    ``(ky*KW + kx)*C + c``, see :func:`window_vectors`) as ``ceil(N / SIMD)`` beats of
    ``SIMD`` elements, the elements past ``N`` in the last beat zero: exactly the input an
    :class:`~hwgen.gateware.mvtu.MVTU` with that SIMD expects, one window per MVTU "image",
    for the weight matrix :func:`conv_weight_matrix`.

    Throughput: one tap (one input position of the window, ``C`` elements) per cycle and one
    output beat per cycle, so a window takes ``T = max(KH*KW, ceil(N / SIMD))`` cycles
    (:attr:`cycles_per_window`) and an image ``Ho * Wo * T`` cycles plus the waits for input
    rows (:attr:`cycles_per_image` bounds the steady-state interval between images arriving
    without gaps). The output comes through a :class:`~.repack.SkidBuffer` (or, for a
    ``SIMD`` that is not a multiple of ``C``, the repack has one in front), so the MVTU's
    ``ready`` never reaches the reader in the same cycle. Latency: a window's first beat
    leaves 1 cycle after its first tap (``C == SIMD``) or 2 cycles after its chunk's last
    tap (``SIMD`` a multiple of ``C``), see :class:`WindowTaps` for when that is.
    """

    @checked_init
    def __init__(self, channels: int, height: int, width: int, kernel, stride=1, padding=0,
                 pad_value: int = -1, element_bits: int | None = None,
                 simd: int | None = None):
        check_int("channels", channels, 1)
        if element_bits is None:
            if pad_value not in (-1, 1) or isinstance(pad_value, bool):
                raise ValueError(f"pad_value of binary activations must be -1 or +1, "
                                 f"not {pad_value!r}")
            ebits, field = 1, 1 if pad_value == 1 else 0
        else:
            check_int("element_bits", element_bits, 1)
            check_int("pad_value", pad_value, 0)
            if pad_value >> element_bits:
                raise ValueError(f"pad_value {pad_value} does not fit in {element_bits} bits")
            ebits, field = element_bits, pad_value
        pad_word = sum(field << (k * ebits) for k in range(channels))
        kh, kw = pair("kernel", kernel, 1)
        self.n = kh * kw * channels
        if simd is None:
            simd = self.n
        check_int("simd", simd, 1)
        if simd > self.n:
            raise ValueError(f"simd {simd} is wider than the {self.n}-element window")
        self.taps = WindowTaps(channels, height, width, kernel, stride, padding, pad_word, ebits)
        self.channels, self.height, self.width = channels, height, width
        self.kernel, self.stride = self.taps.kernel, self.taps.stride
        self.padding = self.taps.padding
        self.pad_value, self.element_bits, self.simd = pad_value, element_bits, simd
        self.out_shape = self.taps.out_shape
        super().__init__({
            "i": In(stream.Signature(channels * ebits)),
            "o": Out(stream.Signature(simd * ebits)),
        })

    @property
    def beats_per_window(self) -> int:
        return ceil_div(self.n, self.simd)

    @property
    def cycles_per_window(self) -> int:
        return max(self.kernel[0] * self.kernel[1], self.beats_per_window)

    @property
    def cycles_per_image(self) -> int:
        """Upper bound of the steady-state interval between images (no gaps, no stalls): the
        window reads, plus at each image start at most the rows of the first window that the
        writer could not store ahead (``KH * W`` cycles); never less than the ``H * W``
        input beats."""
        ho, wo = self.out_shape
        return max(self.height * self.width,
                   ho * wo * self.cycles_per_window + self.kernel[0] * self.width)

    def elaborate(self, platform):
        m = Module()
        c, ebits, simd = self.channels, self.taps.element_bits, self.simd
        m.submodules.taps = taps = self.taps
        wiring.connect(m, wiring.flipped(self.i), taps.i)
        tap = taps.o.payload
        if simd % c == 0:
            # A skid buffer before the output: its registered ready keeps the MVTU's ready
            # out of the reader's issue logic (the longest path of a CNN on the iCE40).
            m.submodules.skid = skid = SkidBuffer(simd * ebits)
            wiring.connect(m, skid.o, wiring.flipped(self.o))
            out = skid.i
        if simd == c:
            # One tap per beat: the taps are the chunks.
            m.d.comb += [
                out.payload.eq(tap.data),
                out.valid.eq(taps.o.valid),
                taps.o.ready.eq(out.ready),
            ]
        elif simd % c == 0:
            # A chunk is g whole taps: tap j of a chunk is written into slot j of the output
            # register (the other slots cleared by the chunk's first tap), and the register
            # is offered after its g-th tap or the window's last tap. The next chunk's first
            # tap is taken in the cycle the finished chunk leaves.
            g, tbits = simd // c, c * ebits
            count = Signal(range(g), name="slot")
            m.d.comb += taps.o.ready.eq(~out.valid | out.ready)
            with m.If(out.valid & out.ready):
                m.d.sync += out.valid.eq(0)
            with m.If(taps.o.valid & taps.o.ready):
                for j in range(g):
                    slot = out.payload[j * tbits:(j + 1) * tbits]
                    if j == 0:
                        with m.If(count == 0):
                            m.d.sync += slot.eq(tap.data)
                    else:
                        m.d.sync += slot.eq(Mux(count == j, tap.data,
                                                Mux(count == 0, 0, slot)))
                with m.If(tap.last | (count == g - 1)):
                    m.d.sync += [out.valid.eq(1), count.eq(0)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
        else:
            # A skid buffer between the taps and the repack: the repack's ready follows its
            # output's, so without it the MVTU's ready would run through the repack into
            # the reader's issue logic in one cycle (the longest path of a CNN on the iCE40).
            m.submodules.skid = skid = SkidBuffer(c * ebits)
            m.submodules.repack = repack = Repack(self.n, c, simd, ebits)
            m.d.comb += [
                skid.i.payload.eq(tap.data),
                skid.i.valid.eq(taps.o.valid),
                taps.o.ready.eq(skid.i.ready),
            ]
            wiring.connect(m, skid.o, repack.i)
            wiring.connect(m, repack.o, wiring.flipped(self.o))
        return m
