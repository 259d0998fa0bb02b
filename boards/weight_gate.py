"""Keeps images from a core whose weights are not (yet, or not rightly) loaded.

:class:`WeightGate` sits in a board top between the frame parser and a core that loads its
weights from flash (:mod:`boards.flash_loader`), on two paths:

* beats (``i`` from the parser, ``o`` to the core): an image goes to the core, whole, if the
  loader's ``status`` was OK (a cycle earlier: it is registered) when its first beat came,
  else its beats are taken and dropped (so the parser never waits on a core that waits for
  weights);
* tags (``tags_i`` from the reply queue, ``tags_o`` to the reply generator): the tag of a
  dropped image loses its ``image`` flag (no class will come for it) and, if its status is
  OK, gets the weight status instead (:func:`reply_status`); other tags pass unchanged.

The loader's status only goes from LOADING to a verdict, and an OK verdict lasts until reset,
so every dropped image comes before every passed one: a counter of dropped images whose tags
have not passed yet is all the bookkeeping needed. An image tag that arrives before its
image's first beat has been seen (possible with one beat per image: the parser queues the
tag while that beat still waits in its output register) is held until then.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol as P
from ._checks import checking
from .core import CoreShape
from .flash_loader import LoadStatus
from .framer import Tag


def reply_status(status):
    """The reply STATUS for an image dropped while the loader's ``status`` is this (OK: it
    was dropped while loading)."""
    return Mux(status == LoadStatus.NO_IMAGE, P.STATUS_NO_WEIGHTS,
               Mux(status == LoadStatus.WRONG_MODEL, P.STATUS_WRONG_WEIGHTS,
                   Mux(status == LoadStatus.BAD_CRC, P.STATUS_BAD_WEIGHTS,
                       P.STATUS_WEIGHTS_LOADING)))


class WeightGate(wiring.Component):
    """See the module docstring. Beats pass with no added latency (a gate and a mux); a tag
    leaves a cycle after it came, from a register."""

    #: Dropped images whose tags may be waiting: the parser's image, the tag queue's two.
    MAX_PENDING = 7

    def __init__(self, shape: CoreShape):
        with checking(self):
            if not isinstance(shape, CoreShape):
                raise TypeError(f"shape must be a CoreShape, not {shape!r}")
        self.shape = shape
        super().__init__({
            "status": In(LoadStatus),
            "i": In(stream.Signature(shape.beat_bits)),
            "o": Out(stream.Signature(shape.beat_bits)),
            "tags_i": In(stream.Signature(Tag)),
            "tags_o": Out(stream.Signature(Tag)),
        })

    def elaborate(self, platform):
        m = Module()
        # Every signal the core's input or the reply generator sees here comes from a
        # register through one or two LUTs: the loader's status is registered first, and
        # the decision for the next image is a register that follows it until that image's
        # first beat is taken.
        ok = Signal()
        m.d.sync += ok.eq(self.status == LoadStatus.OK)
        code = Signal(8)             # the reply STATUS for a dropped image, as of now
        m.d.sync += code.eq(reply_status(self.status))

        beat = Signal(range(self.shape.beats_per_image))   # beats of this image taken so far
        first = Signal(init=1)       # beat == 0
        current = Signal()           # this image goes to the core (decided at its first beat)
        passing = Signal()           # an image has gone to the core: every later one does too
        m.d.comb += [
            self.o.payload.eq(self.i.payload),
            self.o.valid.eq(self.i.valid & current),
            self.i.ready.eq(Mux(current, self.o.ready, 1)),
        ]
        taken = Signal()
        dropped = Signal()           # an image's first beat was dropped this cycle
        m.d.comb += taken.eq(self.i.valid & self.i.ready)
        with m.If(taken):
            with m.If(beat == self.shape.beats_per_image - 1):
                m.d.sync += [beat.eq(0), first.eq(1)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), first.eq(0)]
            with m.If(first):
                m.d.comb += dropped.eq(~current)
                with m.If(current):
                    m.d.sync += passing.eq(1)
        with m.Elif(first):
            m.d.sync += current.eq(ok)

        pending = Signal(range(self.MAX_PENDING + 1))   # dropped images, tags not yet out
        tag = self.tags_i.payload
        rewrite = Signal()
        hold = Signal()
        m.d.comb += [
            rewrite.eq(tag.image & (pending != 0)),
            hold.eq(tag.image & (pending == 0) & ~passing),
        ]
        # the tag leaves from a register (taken when that is empty: tags are rare), so the
        # rewrite stays off the reply generator's paths
        done = Signal()
        with m.If(self.tags_o.ready):
            m.d.sync += self.tags_o.valid.eq(0)
        with m.If(~self.tags_o.valid & ~hold):
            m.d.comb += self.tags_i.ready.eq(1)
            with m.If(self.tags_i.valid):
                m.d.comb += done.eq(rewrite)
                m.d.sync += [
                    self.tags_o.valid.eq(1), self.tags_o.payload.seq.eq(tag.seq),
                    self.tags_o.payload.image.eq(tag.image & ~rewrite),
                    self.tags_o.payload.weights.eq(tag.weights),
                    self.tags_o.payload.status.eq(
                        Mux(rewrite & (tag.status == P.STATUS_OK), code, tag.status)),
                ]
        m.d.sync += pending.eq(pending + dropped - done)
        return m
