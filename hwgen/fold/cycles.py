"""Cycle model: when the generated RTL accepts and emits beats, and an image's latency.

:func:`repack_schedule` is an exact model of :class:`hwgen.gateware.repack.Repack`;
:func:`latency` chains it through a dense network's layers (exact: cycles from the first
input beat to the class, checked against simulation by the tests); :func:`latency_bound`
bounds it from above for networks with conv or pool layers.
:attr:`~hwgen.fold.plans.NetworkPlan.latency_cycles` picks between the two. Builds on
:mod:`~hwgen.fold.plans`.
"""

from __future__ import annotations

from .geometry import argmax_latency, ceil_div
from .plans import LayerPlan, NetworkPlan


def repack_schedule(n: int, c: int, s: int, first_offer: int, gaps: list[int]):
    """Exact cycle model of :class:`hwgen.gateware.repack.Repack` for one vector.

    ``n`` elements arrive in beats of ``c`` and leave in words of ``s``; the downstream is
    always ready. Beat 0 is offered at ``first_offer``, beat ``k + 1`` ``gaps[k]`` cycles after
    beat ``k`` was accepted (an upstream that stalls whole while its output waits).
    Returns (accept cycle per beat, cycle per output word).
    """
    beats, words = ceil_div(n, c), ceil_div(n, s)
    if c == s:
        accepts = [first_offer]
        for k in range(beats - 1):
            accepts.append(accepts[-1] + gaps[k])
        return accepts, list(accepts)
    accepts, emits = [], []
    size = ceil_div(2 * s + 2 * c, s) * s
    fill, offer, t = 0, first_offer, first_offer
    while len(emits) < words:
        if fill < s and (len(accepts) == beats or offer > t):
            # Nothing to emit and no beat yet: skip the idle cycles.
            assert len(accepts) < beats, "repack model stuck"
            t = offer
            continue
        out_fire = fill >= s
        in_fire = len(accepts) < beats and offer <= t and fill <= size - c
        if out_fire:
            emits.append(t)
            fill -= s
        if in_fire:
            k = len(accepts)
            accepts.append(t)
            if k == beats - 1:
                fill = ceil_div(fill + n - k * c, s) * s
            else:
                fill += c
                offer = t + gaps[k]
        t += 1
    return accepts, emits


def latency(net: NetworkPlan) -> int:
    """Cycles from the first input beat's transfer (cycle 0) to the class output being valid,
    for an image entering an idle network with back-to-back input and an always-ready output."""
    n0 = net.input_size
    _, word_times = repack_schedule(n0, net.lanes, net.layers[0].simd, 0,
                                    [1] * net.beats_per_image)
    for i, lp in enumerate(net.layers):
        if lp.streaming:  # each word is issued as it is taken: the last one, last
            base = [word_times[-1] + lp.pipeline_latency]
        else:
            start = word_times[-1] + 1  # the reader sees the buffer full the cycle after
            base = [start + k * lp.sf + lp.sf - 1 + lp.pipeline_latency for k in range(lp.nf)]
        gaps = [lp.sf] * lp.nf
        if i + 1 < len(net.layers):
            nxt = net.layers[i + 1]
            _, word_times = repack_schedule(lp.m, lp.pe, nxt.simd, base[0], gaps)
        else:
            # Argmax takes a beat every cycle and shows the class after its compare tree's
            # registers and the running compare.
            return base[-1] + argmax_latency(lp)
    raise AssertionError("unreachable")


def latency_bound(net: NetworkPlan) -> int:
    """An upper bound of :func:`latency` for networks with conv or pool layers: the input's
    beats, then every unit's whole per-image cycles plus its pipeline delays as if each
    started only when the previous one had finished the image (in the hardware they
    overlap, so the real latency is lower; ``hwgen sim`` measures it), two cycles per
    repack, and the argmax."""
    t = net.beats_per_image
    for lp, before in zip(net.layers, net.repacks()):
        t += 2 * len(before) + lp.cycles + lp.pipeline_latency
        if isinstance(lp, LayerPlan):
            t += lp.sf + (4 + lp.window.cycles_per_window if lp.window else 0)
    last = net.layers[-1]
    return t + last.nf + argmax_latency(last)
