"""What a board build reports: ``report.json`` (:func:`build_report`: resources used
against the estimate, clock and Fmax, cycles per image and the block-RAM read-port bound,
inferences per second compute- and UART-bound, place-and-route attempts) and the
``summary.txt`` lines made from it (:func:`format_summary`)."""

from __future__ import annotations

from pathlib import Path

from . import protocol


def build_report(model, net, board, raw: dict, luts_estimate: int, brams_estimate: int,
                 fold_text: str) -> dict:
    """The ``report.json`` contents from the board build's raw report."""
    util = raw["utilization"]
    lut_cell = "ICESTORM_LC" if board.family == "ice40" else "TRELLIS_COMB"
    ram_cell = "ICESTORM_RAM" if board.family == "ice40" else "DP16KD"
    luts = util.get(lut_cell, {}).get("used")
    clock_hz = raw["requested_mhz"] * 1e6
    achieved_hz = (raw["achieved_mhz"] or 0) * 1e6
    shapes = model.shapes()
    macs = sum(layer.weight.size * shapes[i + 1][1] * shapes[i + 1][2]
               for i, layer in enumerate(model.layers) if hasattr(layer, "weight"))
    frame = protocol.REQUEST_OVERHEAD + protocol.image_payload_length(
        model.input.size, model.input.binarize_at is not None)
    baud = raw.get("baud")
    return {
        "model": model.provenance,
        "board": board.name, "device": board.device, "fold": fold_text,
        "utilization": util,
        "luts_used": luts, "luts_available": util.get(lut_cell, {}).get("available"),
        "brams_used": util.get(ram_cell, {}).get("used"),
        "brams_available": util.get(ram_cell, {}).get("available"),
        "spram_used": util.get("ICESTORM_SPRAM", {}).get("used"),
        "spram_available": util.get("ICESTORM_SPRAM", {}).get("available"),
        "estimate": {"luts": luts_estimate, "brams_4k": brams_estimate},
        "clock_mhz": raw["requested_mhz"], "fmax_mhz": raw["achieved_mhz"],
        "timing_met": raw["timing_met"],
        "cycles_per_image": net.cycles_per_image, "latency_cycles": net.latency_cycles,
        "read_port_bound": _port_bound(net, board),
        "latency_is_bound": net.has_windows,
        # a lower bound of the interval, so the compute-bound rates are upper bounds
        "cycles_per_image_is_bound": net.interval_is_bound,
        "inferences_per_s_compute": clock_hz / net.cycles_per_image,
        "inferences_per_s_at_fmax": achieved_hz / net.cycles_per_image,
        "baud": baud,
        "inferences_per_s_uart": (baud / 10 / frame) if baud else None,
        "synapse_ops_per_cycle_per_lut": (macs / net.cycles_per_image / luts) if luts else None,
        "bitstream": Path(raw["bitstream"]).name,
        "pll": raw.get("pll"),
        "place_and_route": raw.get("place_and_route"),
    }


def _port_bound(net, board) -> dict:
    """The block-RAM read-port bound (see :meth:`hwgen.fold.NetworkPlan.read_port_bound`)
    on ``board``, and the fraction of it ``net`` reaches."""
    blocks = board.bram_blocks - board.board_brams
    sprams = board.spram_blocks if net.spram_blocks else 0  # counted when the fold uses them
    cycles = net.read_port_bound(blocks, board.bram_port_bits, sprams)
    return {"cycles_per_image": cycles, "block_rams": blocks, "sprams": sprams,
            "port_bits": board.bram_port_bits, "synapse_reads": net.synapse_reads,
            "fraction_reached": cycles / net.cycles_per_image}  # rounded only when shown


def format_summary(report: dict) -> str:
    """The human-readable lines of ``summary.txt`` for a :func:`build_report`."""
    def pct(used, avail):
        return f"{used}/{avail} ({100 * used / avail:.0f}%)" if used is not None and avail \
            else f"{used}"

    lines = [
        f"board        {report['board']} ({report['device']}), fold {report['fold']}",
        f"LUTs         {pct(report['luts_used'], report['luts_available'])}  "
        f"(estimate {report['estimate']['luts']})",
        f"block RAMs   {pct(report['brams_used'], report['brams_available'])}",
    ]
    if report.get("spram_used") is not None:
        lines.append(f"SPRAMs       {pct(report['spram_used'], report.get('spram_available'))}"
                     + (" (weights, loaded from flash)" if report["spram_used"] else ""))
    lines += [
        f"clock        {report['clock_mhz']:.2f} MHz requested, Fmax {report['fmax_mhz']:.2f} MHz "
        f"({'met' if report['timing_met'] else 'NOT met'})",
        f"throughput   {'at least ' if report.get('cycles_per_image_is_bound') else ''}"
        f"{report['cycles_per_image']} cycles/image, latency "
        f"{'at most ' if report.get('latency_is_bound') else ''}"
        f"{report['latency_cycles']} cycles; "
        f"{'at most ' if report.get('cycles_per_image_is_bound') else ''}"
        f"{report['inferences_per_s_compute']:.0f} "
        f"inferences/s compute-bound at the clock "
        f"({report['inferences_per_s_at_fmax']:.0f} at Fmax)",
    ]
    bound = report.get("read_port_bound")
    if bound:
        lines.append(f"port bound   {bound['cycles_per_image']} cycles/image if all "
                     f"{bound['block_rams']} block RAMs"
                     + (f" and {bound['sprams']} SPRAMs" if bound.get("sprams") else "")
                     + f" delivered {bound['port_bits']} bits a cycle; "
                     + (f"this fold reaches {bound['fraction_reached']:.1%}"
                        if bound["fraction_reached"] <= 1 else
                        "this fold is faster (weights in logic too, not only in block RAM)"))
    pnr = report.get("place_and_route")
    if pnr and len(pnr["attempts"]) > 1:
        tried = ", ".join(f"seed {a['seed']}{' ' + a['options'] if a.get('options') else ''} "
                          f"{a['achieved_mhz']:.2f} MHz" for a in pnr["attempts"])
        lines.append(f"place&route  kept seed {pnr['seed']} ({tried})")
    if report["inferences_per_s_uart"]:
        lines.append(f"UART         {report['baud']:.0f} baud: "
                     f"{report['inferences_per_s_uart']:.0f} inferences/s UART-bound")
    if report["synapse_ops_per_cycle_per_lut"]:
        lines.append(f"efficiency   {report['synapse_ops_per_cycle_per_lut']:.3f} binary "
                     f"synapse-ops per cycle per LUT")
    lines.append(f"bitstream    {report['bitstream']}")
    return "\n".join(lines)
