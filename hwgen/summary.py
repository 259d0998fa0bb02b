"""Per-layer facts about a model: shapes, parameter bits, accumulator ranges and widths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model import Conv2d, MaxPool2d, Model, accumulator_range, signed_width


@dataclass(frozen=True)
class LayerSummary:
    index: int
    op: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    binary_input: bool
    weight_bits: int  # one bit per +-1 weight
    extra_bits: int  # thresholds (clamped to the accumulator range) + sign bits, or the bias
    acc_range: tuple[int, int] | None  # None for max-pool
    acc_width: int | None
    detail: str

    @property
    def parameter_bits(self) -> int:
        return self.weight_bits + self.extra_bits


def summarize(model: Model) -> list[LayerSummary]:
    shapes = model.shapes()
    rows = []
    for index, (layer, binary) in enumerate(zip(model.layers, model.binary_inputs())):
        in_shape, out_shape = shapes[index], shapes[index + 1]
        if isinstance(layer, MaxPool2d):
            rows.append(LayerSummary(index, layer.op, in_shape, out_shape, binary, 0, 0, None,
                                     None, f"kernel {_pair(layer.kernel)} stride "
                                           f"{_pair(layer.stride)}"))
            continue
        lo, hi = accumulator_range(layer, binary, model.input.max_value)
        width = signed_width(lo, hi)
        channels = layer.out_channels
        if layer.is_output:
            extra = 0 if layer.bias is None else channels * signed_width(
                int(np.min(layer.bias)), int(np.max(layer.bias)))
            detail = "output" + ("" if layer.bias is None else " + bias")
        else:
            # Thresholds outside [lo - 1, hi + 1] act like the clamped value.
            extra = channels * (signed_width(lo - 1, hi + 1) + 1)
            detail = "threshold"
        if isinstance(layer, Conv2d):
            detail = (f"k {_pair(layer.kernel)} s {_pair(layer.stride)} p "
                      f"{_pair(layer.padding)} pad {layer.pad_value:+d}, {detail}")
        rows.append(LayerSummary(index, layer.op, in_shape, out_shape, binary,
                                 int(layer.weight.size), extra, (lo, hi), width, detail))
    return rows


def _pair(p) -> str:
    return f"{p[0]}x{p[1]}"


def _shape(s) -> str:
    return "x".join(map(str, s))


def format_table(model: Model) -> str:
    """The text that ``python -m hwgen info`` prints."""
    spec = model.input
    rows = summarize(model)
    binarized = (f"binarized at {spec.binarize_at}" if spec.binary
                 else "raw into the first layer")
    lines = [f"input  {_shape(spec.shape)}, {spec.bits}-bit unsigned, {binarized}",
             f"{'#':>2}  {'op':<9} {'in':>10} {'out':>10}  {'input':<6} {'weight bits':>11} "
             f"{'param bits':>10}  {'acc range':>17} {'acc bits':>8}  detail"]
    for r in rows:
        acc = "" if r.acc_range is None else f"[{r.acc_range[0]}, {r.acc_range[1]}]"
        lines.append(f"{r.index:>2}  {r.op:<9} {_shape(r.in_shape):>10} {_shape(r.out_shape):>10}"
                     f"  {'binary' if r.binary_input else 'raw':<6} {r.weight_bits:>11} "
                     f"{r.parameter_bits:>10}  {acc:>17} {r.acc_width or '':>8}  {r.detail}")
    weights = sum(r.weight_bits for r in rows)
    total = sum(r.parameter_bits for r in rows)
    lines.append(f"total  {weights} weight bits, {total} parameter bits "
                 f"({total / 1024:.1f} Kbit), {len(model.classes)} classes")
    macs = sum(math.prod(r.out_shape) * (r.weight_bits // max(1, r.out_shape[0]))
               for r in rows if r.acc_range is not None)
    lines.append(f"ops    {macs} multiply-accumulates per image")
    return "\n".join(lines)
