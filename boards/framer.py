"""Gateware side of the UART protocol (``docs/uart-protocol.md``): frame parser and reply
generator.

:class:`FrameParser` takes received bytes and
  * hunts for the sync bytes ``A5 5A`` (anything else is skipped),
  * reads CMD, SEQ, LEN and checks them (unknown command: ``BAD_COMMAND``; LEN other than the
    model's value count for CLASSIFY, other than ``ceil(values / 8)`` for CLASSIFY_PACKED, or
    other than 0 for PING: ``BAD_LENGTH``), then
  * packs payload values into core input beats (``lanes`` values of ``bits`` bits, value k in
    bits ``[k*bits, (k+1)*bits)``, last beat zero-padded) while the bytes arrive: CLASSIFY
    has one byte per value (its low ``bits`` bits); CLASSIFY_PACKED (taken only when the
    core's ``shape.binarize_at`` is set, else it is an unknown command) has one bit per
    value, LSB first, and bit b becomes the value ``2**bits - 1`` if b else 0, which the
    core's ``value >= binarize_at`` turns back into b (:meth:`CoreShape.packed_values`),
  * checks the CRC-16/CCITT-FALSE, and
  * emits one *tag* per frame that got past its sync: ``status``, ``seq`` and ``image`` (1 when
    an image went to the core, whose result must then be paired with this tag).
A gap of ``timeout`` cycles without a byte inside a frame aborts it (``TIMEOUT``); a receiver
overrun inside a frame marks it ``OVERRUN``. Whenever a frame is abandoned after its payload
started, the image is completed with zero values, so the core always sees whole images and
the next frame starts on an image boundary; the tag carries the error and the class is ignored.
Error tags of frames without an image are dropped when the tag stream is not ready (the reply
queue is full); image tags wait for it.

:class:`ReplyGenerator` pairs each tag with the core result (when ``image`` is 1) in order and
sends ``A5 5A STATUS SEQ CLASS CRC_HI CRC_LO`` (CLASS is 0 unless STATUS is OK; a PING reply
carries the protocol version).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Cat, Const
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from . import protocol as P
from ._checks import checking, integer
from .core import CoreShape

CRC = catalog.CRC16_CCITT_FALSE(data_width=8)


#: One per frame that got past its sync: the reply's status and sequence number, whether an
#: image went to the core for it, and whether it was a LOAD_WEIGHTS frame (whose OK reply
#: carries the weight status as its CLASS).
Tag = data.StructLayout({"status": 8, "seq": 8, "image": 1, "weights": 1})

#: ``FrameParser.w_state``: may a LOAD_WEIGHTS frame's bytes be taken now?
W_OPEN = 0          # yes (no weights yet: the flash held none or bad ones, or a UART load runs)
W_LOCKED = 1        # no: good weights are in
W_FLASH_BUSY = 2    # no: the flash load is running


class FrameParser(wiring.Component):
    """Bytes in (``i``), core beats out (``beats``, ``lanes*bits`` wide), tags out (``tags``,
    :data:`Tag`). ``overrun``: pulse from the UART receiver. ``in_frame``: a frame is being
    received. ``frame_error``: one-cycle pulse (registered) when a frame ends with an error.

    Throughput: one byte every two cycles while the beat path is free (a full beat waiting for
    the core stalls the byte input); a packed payload byte takes one cycle per value (8, or
    16 with one lane, whose beats leave at most every other cycle); so a byte every 40 cycles
    (12 Mbaud at 48 MHz) is kept up with while the core takes beats. A beat leaves one cycle
    after its last value arrives, or one cycle after the core took the previous one.
    ``beats.ready`` drives only the ``beats.valid`` register, and ``i.ready`` is a register,
    so the core's and the byte source's handshakes never form long combinational paths
    through the parser. The idle timer counts from when the parser is done with a byte.
    """

    def __init__(self, shape: CoreShape, timeout: int, weight_bytes: int = 0):
        with checking(self):
            if not isinstance(shape, CoreShape):
                raise TypeError(f"shape must be a CoreShape, not {shape!r}")
            self.shape = shape
            self.timeout = integer("timeout (cycles)", timeout, 1)
            self.weight_bytes = integer("weight_bytes", weight_bytes, 0, (1 << 24) - 1)
        members = {
            "i": In(stream.Signature(8)),
            "overrun": In(1),
            "beats": Out(stream.Signature(shape.beat_bits)),
            "tags": Out(stream.Signature(Tag)),
            "in_frame": Out(1),
            "frame_error": Out(1),
        }
        if self.weight_bytes:
            members.update({
                "wb": Out(stream.Signature(8)),
                "w_received": In(range(self.weight_bytes + 1)),
                "w_busy": In(1),
                "w_state": In(2),
                "w_restart": Out(1),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        s = self.shape
        total = s.lanes * s.beats_per_image

        m.submodules.crc = crc = CRC.create()
        seq = Signal(8)
        status = Signal(8)
        crc_hi_ok = Signal()
        image_done = Signal()     # this frame's image went to the core, whole
        frame_error = Signal()
        m.d.sync += self.frame_error.eq(frame_error)  # registered pulse
        timer = Signal(range(self.timeout + 1))
        expired = Signal()   # timer reached timeout (registered: no wide compare on paths)

        # input register: a byte is taken when none is pending (ready is a register, so no
        # combinational path crosses the byte input), with its comparisons precomputed
        byte = Signal(8)
        have = Signal()          # a byte is pending
        consume = Signal()       # the FSM uses the pending byte this cycle
        flags = ("is_sync0", "is_sync1", "is_len_hi", "is_len_lo", "is_zero", "is_classify",
                 "is_ping", "crc_hi_match", "crc_lo_match", "is_packed", "is_plen_hi",
                 "is_weights", "offset_match", "is_offset_len", "is_offset_len_1")
        (is_sync0, is_sync1, is_len_hi, is_len_lo, is_zero, is_classify, is_ping, crc_hi_match,
         crc_lo_match, is_packed, is_plen_hi, is_weights, offset_match, is_offset_len,
         is_offset_len_1) = (Signal(name=n) for n in flags)
        weights = bool(self.weight_bytes)
        offset_index = Signal(range(P.WEIGHT_OFFSET_BYTES))  # LOAD_WEIGHTS: offset byte due
        received = Signal(8 * P.WEIGHT_OFFSET_BYTES)
        if weights:
            m.d.comb += received.eq(self.w_received)
        # the byte of the load's position the offset byte due must equal
        received_byte = Mux(offset_index == 0, received[16:24],
                            Mux(offset_index == 1, received[8:16], received[:8]))
        packed_len = s.packed_bytes
        m.d.comb += self.i.ready.eq(~have)
        with m.If(consume):
            m.d.sync += have.eq(0)
        with m.If(self.i.valid & ~have):
            d = self.i.payload
            m.d.sync += [byte.eq(d), have.eq(1),
                         is_sync0.eq(d == P.SYNC[0]), is_sync1.eq(d == P.SYNC[1]),
                         is_len_hi.eq(d == s.n_values >> 8),
                         is_len_lo.eq(d == (s.n_values & 0xFF)), is_zero.eq(d == 0),
                         is_classify.eq(d == P.CMD_CLASSIFY), is_ping.eq(d == P.CMD_PING),
                         # CLASSIFY_PACKED is an unknown command unless the core binarizes
                         is_packed.eq((d == P.CMD_CLASSIFY_PACKED) if s.packed else 0),
                         is_plen_hi.eq(d == packed_len >> 8),
                         # the CRC register is settled when a byte is taken: the previous
                         # byte was consumed at least one cycle earlier
                         crc_hi_match.eq(d == crc.crc[8:]), crc_lo_match.eq(d == crc.crc[:8]),
                         is_weights.eq((d == P.CMD_LOAD_WEIGHTS) if weights else 0),
                         offset_match.eq(d == received_byte),
                         # LEN_LO of a LOAD_WEIGHTS frame with no data, or one byte
                         is_offset_len.eq(d == P.WEIGHT_OFFSET_BYTES),
                         is_offset_len_1.eq(d == P.WEIGHT_OFFSET_BYTES + 1)]
        cmd_classify = Signal()
        cmd_packed = Signal()
        cmd_ping = Signal()
        cmd_weights = Signal()
        len_hi_ok = Signal()
        plen_hi_ok = Signal()
        len_hi_zero = Signal()
        # the LEN_LO verdict, precomputed when a byte is taken (the command and LEN_HI flags
        # are settled by then: the previous byte was consumed at least one cycle earlier)
        len_ok = Signal()
        with m.If(self.i.valid & ~have):
            d = self.i.payload
            m.d.sync += len_ok.eq(Mux(cmd_classify, len_hi_ok & (d == (s.n_values & 0xFF)),
                                      Mux(cmd_packed, plen_hi_ok & (d == (packed_len & 0xFF)),
                                          Mux(cmd_weights,   # LEN >= the offset's 3 bytes
                                              ~len_hi_zero | (d >= P.WEIGHT_OFFSET_BYTES),
                                              cmd_ping & len_hi_zero & (d == 0)))))

        bit_index = Signal(3)   # CLASSIFY_PACKED: the pending byte's next bit (value)
        # LOAD_WEIGHTS: LEN's high byte, the data bytes to come, the offset's verdicts so far,
        # whether this frame's data goes to the loader, and whether a frame that sent data
        # there broke (then only a load from offset 0 is taken)
        len_hi = Signal(8)
        w_count = Signal(16)
        w_last = Signal()            # w_count == 1 (registered)
        w_none = Signal()            # w_count == 0 (registered: a status query)
        offset_ok = Signal()
        offset_zero = Signal()
        accepted = Signal()
        broken = Signal()
        if weights:
            m.d.sync += self.w_restart.eq(0)

        # beat assembly: values shift in from the top, so value 0 ends in bits [0, bits)
        acc = Signal(s.beat_bits)
        filled = Signal(range(s.lanes + 1))
        values = Signal(range(total + 1))     # values of the current image shifted in so far
        push = Signal()                       # shift one value into acc this cycle
        push_value = Signal(s.bits)
        acc_full = Signal()                   # filled == lanes (registered)
        # registered comparisons of `values`, updated with it (keeps long compares off paths)
        values_zero = Signal()                # values == 0
        values_last = Signal()                # values == n_values - 1 (the last payload value)
        values_full = Signal()                # values == total (the image is complete)
        transfer = Signal()
        # a beat moves to the output register only when that is empty: beats.ready reaches
        # nothing but beats.valid (half rate at most: irrelevant at UART speed)
        m.d.comb += transfer.eq(acc_full & ~self.beats.valid)
        with m.If(self.beats.ready):
            m.d.sync += self.beats.valid.eq(0)
        with m.If(transfer):
            m.d.sync += [self.beats.payload.eq(acc), self.beats.valid.eq(1),
                         filled.eq(0), acc_full.eq(0)]
        with m.If(push):
            m.d.sync += [acc.eq(Cat(acc[s.bits:], push_value)), values.eq(values + 1),
                         values_zero.eq(0), values_full.eq(values == total - 1)]
            if s.n_values >= 2:
                m.d.sync += values_last.eq(values == s.n_values - 2)
            else:
                m.d.sync += values_last.eq(0)
            with m.If(transfer):
                m.d.sync += [filled.eq(1), acc_full.eq(s.lanes == 1)]
            with m.Else():
                m.d.sync += [filled.eq(filled + 1), acc_full.eq(filled == s.lanes - 1)]
        can_push = Signal()  # acc has room, or its beat moves out this cycle; deliberately not
        # a function of beats.ready, so that the core's ready does not reach the byte input
        m.d.comb += can_push.eq(~acc_full | ~self.beats.valid)

        # tag output register
        with m.If(self.tags.ready):
            m.d.sync += self.tags.valid.eq(0)

        failed = Signal()   # status != OK (registered)
        # The first error of a frame is the one reported. Each kind sets its own flag, and
        # the status code is encoded from the flags (when several fire in the same cycle,
        # the later check in the state below wins: checksum or length, then timeout, then
        # overrun), so no priority logic sits in front of an 8-bit status register.
        err_overrun, err_timeout, err_length, err_checksum = (
            Signal(name=n) for n in ("err_overrun", "err_timeout", "err_length",
                                     "err_checksum"))
        # LOAD_WEIGHTS refusals: good weights are in, the flash load runs, a wrong offset
        err_locked, err_busy, err_offset = (
            Signal(name=n) for n in ("err_locked", "err_busy", "err_offset"))
        refusal = Mux(err_locked, P.STATUS_WEIGHTS_LOCKED,
                      Mux(err_busy, P.STATUS_WEIGHTS_LOADING,
                          Mux(err_offset, P.STATUS_BAD_OFFSET, P.STATUS_OK)))
        m.d.comb += status.eq(
            Mux(err_checksum, P.STATUS_BAD_CHECKSUM,
                Mux(err_length, Mux(cmd_classify | cmd_packed | cmd_ping | cmd_weights,
                                    P.STATUS_BAD_LENGTH, P.STATUS_BAD_COMMAND),
                    Mux(err_timeout, P.STATUS_TIMEOUT,
                        Mux(err_overrun, P.STATUS_OVERRUN,
                            refusal if weights else P.STATUS_OK)))))

        def error_if_ok(flag):
            with m.If(~failed):
                m.d.sync += [flag.eq(1), failed.eq(1)]

        # idle timer: runs inside a frame (from CMD to TAG) while no byte is pending; kept out
        # of the state machine so that only `expired` (a register) reaches it
        framing = Signal()
        m.d.comb += self.in_frame.eq(framing)
        with m.If(~framing | have):
            m.d.sync += [timer.eq(0), expired.eq(0)]
        with m.Elif(~expired):
            m.d.sync += [timer.eq(timer + 1), expired.eq(timer == self.timeout - 1)]

        def receive(next_state):
            """Common part of every byte-receiving state: timeout and overrun."""
            with m.If(self.overrun):
                error_if_ok(err_overrun)
            with m.If(expired & ~have):
                error_if_ok(err_timeout)
                m.next = next_state

        with m.FSM(name="frame") as fsm:
            with m.State("HUNT"):
                m.d.comb += consume.eq(have)
                with m.If(have & is_sync0):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                m.d.comb += consume.eq(have)
                with m.If(have):
                    with m.If(is_sync1):
                        m.d.sync += [err_overrun.eq(0), err_timeout.eq(0), err_length.eq(0),
                                     err_checksum.eq(0), err_locked.eq(0), err_busy.eq(0),
                                     err_offset.eq(0), failed.eq(0), framing.eq(1),
                                     offset_index.eq(0), accepted.eq(0),
                                     seq.eq(0), image_done.eq(0), bit_index.eq(0),
                                     values.eq(0), values_zero.eq(1), values_full.eq(0),
                                     values_last.eq(s.n_values == 1)]
                        m.next = "CMD"
                    with m.Elif(~is_sync0):
                        m.next = "HUNT"
            with m.State("CMD"):
                m.d.comb += consume.eq(have)
                receive("TAG")
                with m.If(have):
                    m.d.comb += [crc.start.eq(1), crc.valid.eq(1), crc.data.eq(byte)]
                    m.d.sync += [cmd_classify.eq(is_classify), cmd_packed.eq(is_packed),
                                 cmd_ping.eq(is_ping), cmd_weights.eq(is_weights)]
                    m.next = "SEQ"
            with m.State("SEQ"):
                m.d.comb += consume.eq(have)
                receive("TAG")
                with m.If(have):
                    m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
                    m.d.sync += seq.eq(byte)
                    m.next = "LEN_HI"
            with m.State("LEN_HI"):
                m.d.comb += consume.eq(have)
                receive("TAG")
                with m.If(have):
                    m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
                    m.d.sync += [len_hi_ok.eq(is_len_hi), plen_hi_ok.eq(is_plen_hi),
                                 len_hi_zero.eq(is_zero), len_hi.eq(byte)]
                    m.next = "LEN_LO"
            with m.State("LEN_LO"):
                m.d.comb += consume.eq(have)
                receive("TAG")
                with m.If(have):
                    m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
                    with m.If(len_ok):
                        with m.If(cmd_classify | cmd_packed):
                            m.next = "PAYLOAD"
                        if weights:
                            with m.Elif(cmd_weights):
                                m.d.sync += [
                                    w_count.eq(Cat(byte, len_hi) - P.WEIGHT_OFFSET_BYTES),
                                    w_none.eq(len_hi_zero & is_offset_len),
                                    w_last.eq(len_hi_zero & is_offset_len_1),
                                    offset_ok.eq(1), offset_zero.eq(1)]
                                m.next = "W_OFFSET"
                        with m.Else():
                            m.next = "CRC_HI"
                    with m.Else():
                        error_if_ok(err_length)
                        m.next = "TAG"
            with m.State("PAYLOAD"):
                receive("PAD")
                with m.If(~cmd_packed):   # one byte per value
                    m.d.comb += consume.eq(have & can_push)
                    with m.If(have & can_push):
                        m.d.comb += [crc.valid.eq(1), crc.data.eq(byte),
                                     push.eq(1), push_value.eq(byte[:s.bits])]
                        with m.If(values_last):
                            m.next = "PAD"
                with m.Else():            # one bit per value: `byte` shifts right per value
                    m.d.comb += consume.eq(have & can_push & ((bit_index == 7) | values_last))
                    with m.If(have & can_push):
                        m.d.comb += [crc.valid.eq(bit_index == 0), crc.data.eq(byte),
                                     push.eq(1), push_value.eq(byte[0].replicate(s.bits))]
                        m.d.sync += [byte.eq(byte >> 1), bit_index.eq(bit_index + 1)]
                        with m.If(values_last):
                            m.next = "PAD"
            with m.State("PAD"):
                with m.If(self.overrun):
                    error_if_ok(err_overrun)
                # complete the image with zero values (the last beat's padding, or the rest of
                # an abandoned image), then wait for the last beat to leave
                with m.If(values_zero & failed):
                    m.next = "TAG"  # abandoned before any value: no image
                with m.Elif(~values_full):
                    m.d.comb += [push.eq(can_push), push_value.eq(0)]
                with m.Elif(~acc_full):
                    m.d.sync += image_done.eq(1)
                    with m.If(~failed):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "TAG"
            if weights:
                _weight_states(self, m, receive, error_if_ok, consume, crc, byte, have, failed,
                               is_zero, offset_match, offset_index, offset_ok, offset_zero,
                               w_count, w_last, w_none, accepted, broken,
                               (err_locked, err_busy, err_offset))
            with m.State("CRC_HI"):
                m.d.comb += consume.eq(have)
                receive("TAG")
                with m.If(have):
                    m.d.sync += crc_hi_ok.eq(crc_hi_match)
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += consume.eq(have)
                receive("TAG")
                with m.If(have):
                    with m.If(~crc_hi_ok | ~crc_lo_match):
                        error_if_ok(err_checksum)
                    m.next = "TAG"
            with m.State("TAG"):
                # a LOAD_WEIGHTS reply waits for the loader to settle its verdict
                unsettled = (cmd_weights & self.w_busy) if weights else Const(0, 1)
                with m.If(unsettled):
                    pass
                with m.Elif(~self.tags.valid | self.tags.ready):
                    m.d.sync += [self.tags.valid.eq(1), self.tags.payload.status.eq(status),
                                 self.tags.payload.seq.eq(seq),
                                 self.tags.payload.image.eq(image_done),
                                 self.tags.payload.weights.eq(cmd_weights)]
                    m.d.comb += frame_error.eq(failed)
                    m.d.sync += framing.eq(0)
                    if weights:   # bytes of a broken frame went to the loader
                        with m.If(accepted & failed):
                            m.d.sync += broken.eq(1)
                    m.next = "HUNT"
                with m.Elif(~image_done & ~cmd_weights):
                    m.d.comb += frame_error.eq(1)  # reply queue full: drop the error reply
                    m.d.sync += framing.eq(0)
                    m.next = "HUNT"
        # One-hot state: its decode and next-state logic are the board's longest paths with
        # a binary state (Yosys does not re-encode a register with an initial value itself).
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m


def _weight_states(self, m, receive, error_if_ok, consume, crc, byte, have, failed, is_zero,
                   offset_match, offset_index, offset_ok, offset_zero, w_count, w_last, w_none,
                   accepted, broken, refusals):
    """The LOAD_WEIGHTS states of :class:`FrameParser`'s FSM: the offset's three bytes, the
    decision (take the data, refuse it, or only answer the weight status), then the data,
    each byte to the loader (``wb``) or, refused, dropped; then the CRC states."""
    err_locked, err_busy, err_offset = refusals
    restart = self.w_restart
    with m.State("W_OFFSET"):
        m.d.comb += consume.eq(have)
        receive("TAG")
        with m.If(have):
            m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
            m.d.sync += [offset_ok.eq(offset_ok & offset_match),
                         offset_zero.eq(offset_zero & is_zero),
                         offset_index.eq(offset_index + 1)]
            with m.If(offset_index == P.WEIGHT_OFFSET_BYTES - 1):
                m.next = "W_DECIDE"
    with m.State("W_DECIDE"):   # one cycle; the offset's last verdicts are in
        # every input of the decision is a register (a wide compare here missed 48 MHz)
        receive("TAG")
        with m.If(w_none):                # a status query
            m.next = "CRC_HI"
        with m.Else():
            m.next = "W_DATA"
            with m.If(~failed):
                with m.If(self.w_state == W_LOCKED):
                    error_if_ok(err_locked)
                with m.Elif(self.w_state == W_FLASH_BUSY):
                    error_if_ok(err_busy)
                with m.Elif(offset_zero):     # a new load: the top resets loader and core
                    m.d.sync += [accepted.eq(1), restart.eq(1), broken.eq(0)]
                with m.Elif(broken | ~offset_ok):
                    error_if_ok(err_offset)
                with m.Else():
                    m.d.sync += accepted.eq(1)
    with m.State("W_DATA"):
        receive("TAG")
        take = Signal()
        # nothing goes to the loader in the cycle its reset (restart) is applied
        m.d.comb += [self.wb.valid.eq(have & accepted & ~restart), self.wb.payload.eq(byte),
                     take.eq(have & (~accepted | self.wb.ready & ~restart)),
                     consume.eq(take)]
        with m.If(take):
            m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
            m.d.sync += [w_count.eq(w_count - 1), w_last.eq(w_count == 2)]
            with m.If(w_last):
                m.next = "CRC_HI"


class ReplyGenerator(wiring.Component):
    """Tags in (``tags``), classes in (``classes``, ``class_bits`` wide), reply bytes out
    (``o``). ``last_class`` / ``last_valid``: class of the most recent OK reply; ``reply``:
    one-cycle pulse when a reply starts. With ``weights``, ``weights_status`` (a
    :class:`~boards.flash_loader.LoadStatus`) is the CLASS of an OK LOAD_WEIGHTS reply."""

    def __init__(self, class_bits: int, weights: bool = False):
        with checking(self):
            self.class_bits = integer("class_bits", class_bits, 1, 8)
            if not isinstance(weights, bool):
                raise TypeError(f"weights must be True or False, not {weights!r}")
        self.weights = weights
        members = {
            "tags": In(stream.Signature(Tag)),
            "classes": In(stream.Signature(class_bits)),
            "o": Out(stream.Signature(8)),
            "last_class": Out(8),
            "reply": Out(1),
        }
        if weights:
            members["weights_status"] = In(3)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CRC.create()
        status = Signal(8)
        seq = Signal(8)
        klass = Signal(8)
        index = Signal(range(P.REPLY_LENGTH))
        tag = self.tags.payload

        frame = [Const(P.SYNC[0], 8), Const(P.SYNC[1], 8), status, seq, klass,
                 crc.crc[8:], crc.crc[:8]]
        byte = Signal(8)
        with m.Switch(index):
            for k, value in enumerate(frame):
                with m.Case(k):
                    m.d.comb += byte.eq(value)
        # The byte is sent from a register (the index decode stays off the transmitter's
        # paths); `fresh` says it was loaded for the current index and state: it drops for a
        # cycle after every change, which costs one clock per byte (nothing at UART rates).
        byte_r = Signal(8)
        fresh = Signal()
        m.d.sync += [byte_r.eq(byte), fresh.eq(0)]

        with m.FSM(name="reply"):
            with m.State("IDLE"):
                m.d.comb += self.tags.ready.eq(1)
                with m.If(self.tags.valid):
                    m.d.sync += [status.eq(tag.status), seq.eq(tag.seq), index.eq(0)]
                    with m.If(tag.image):
                        m.next = "RESULT"
                    with m.Else():
                        with m.If(tag.status != P.STATUS_OK):
                            m.d.sync += klass.eq(0)
                        if self.weights:
                            with m.Elif(tag.weights):
                                m.d.sync += klass.eq(self.weights_status)
                        with m.Else():  # PING
                            m.d.sync += klass.eq(P.PROTOCOL_VERSION)
                        m.next = "SEND"
            with m.State("RESULT"):
                m.d.comb += self.classes.ready.eq(1)
                with m.If(self.classes.valid):
                    with m.If(status == P.STATUS_OK):
                        m.d.sync += [klass.eq(self.classes.payload),
                                     self.last_class.eq(self.classes.payload)]
                    with m.Else():
                        m.d.sync += klass.eq(0)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.o.valid.eq(fresh), self.o.payload.eq(byte_r),
                             self.reply.eq(index == 0)]
                with m.If(~fresh | ~self.o.ready):
                    m.d.sync += fresh.eq(1)
                with m.If(fresh & self.o.ready):
                    m.d.comb += [crc.start.eq(index == 2), crc.data.eq(byte_r),
                                 crc.valid.eq((index >= 2) & (index <= 4))]
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == P.REPLY_LENGTH - 1):
                        m.next = "IDLE"
        return m
