"""The typed objects of a model file (:class:`InputSpec`, :class:`Dense`, :class:`Conv2d`,
:class:`MaxPool2d`, :class:`Model`) and the arithmetic on them: output shapes and the ranges
and widths of accumulators. No validation here (:mod:`.checks`) and no file access
(:mod:`.file`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Values per block when a large array is checked or counted piecewise.
BLOCK_VALUES = 1 << 22

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class InputSpec:
    """The network input: ``shape`` is ``(C, H, W)``; values are unsigned ``bits``-bit integers.

    When ``binarize_at`` is an integer ``b``, a value ``x`` becomes +1 if ``x >= b`` else -1
    before the first layer; when it is None, the first layer sees the raw integers.
    """

    shape: Shape
    bits: int
    binarize_at: int | None = None

    @property
    def binary(self) -> bool:
        return self.binarize_at is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def max_value(self) -> int:
        return (1 << self.bits) - 1


@dataclass(eq=False)
class Dense:
    """``acc[j] = sum_i weight[j, i] * x[i]`` over the flattened (C, H, W) input.

    ``weight`` int8 ``[M, N]`` in {-1, +1}. A hidden layer has ``threshold`` (int64 ``[M]``)
    and ``sign`` (int8 ``[M]``): ``y[j] = +1 if sign[j] * acc[j] >= threshold[j] else -1``.
    The output layer has neither and gives ``score[j] = acc[j] + bias[j]`` (bias int32 or None).
    """

    weight: np.ndarray
    threshold: np.ndarray | None = None
    sign: np.ndarray | None = None
    bias: np.ndarray | None = None
    op = "dense"

    @property
    def is_output(self) -> bool:
        return self.threshold is None and self.sign is None

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def fan_in(self) -> int:
        return self.weight.shape[1]


@dataclass(eq=False)
class Conv2d:
    """Binary convolution, thresholded per output channel like a hidden :class:`Dense`.

    ``weight`` int8 ``[Cout, Cin, KH, KW]``; the input is padded by ``padding`` with
    ``pad_value`` and sampled every ``stride`` positions.
    """

    weight: np.ndarray
    threshold: np.ndarray
    sign: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pad_value: int = -1
    op = "conv2d"
    is_output = False

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    @property
    def fan_in(self) -> int:
        return math.prod(self.weight.shape[1:])


@dataclass(eq=False)
class MaxPool2d:
    """Max-pool on binary values: +1 if any value in the window is +1 (OR of the bits)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    op = "maxpool2d"
    is_output = False


Layer = Dense | Conv2d | MaxPool2d


@dataclass(eq=False)
class Model:
    input: InputSpec
    layers: list[Layer]
    classes: list[str]
    provenance: dict = field(default_factory=dict)

    def shapes(self) -> list[Shape]:
        """Activation shapes ``[input, after layer 0, ..., after last layer]`` as (C, H, W)."""
        shapes = [self.input.shape]
        for layer in self.layers:
            shapes.append(output_shape(layer, shapes[-1]))
        return shapes

    def binary_inputs(self) -> list[bool]:
        """For each layer, whether its input is +-1 (True) or raw unsigned integers (False)."""
        return [self.input.binary or i > 0 for i in range(len(self.layers))]

    def validate(self) -> "Model":
        """:func:`hwgen.model.validate` this model; returns it."""
        from .checks import validate

        validate(self)
        return self


def output_shape(layer: Layer, shape: Shape) -> Shape:
    """The (C, H, W) output shape of ``layer`` for an input of ``shape`` (no validation)."""
    c, h, w = shape
    if isinstance(layer, Dense):
        return (layer.out_channels, 1, 1)
    if isinstance(layer, Conv2d):
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        return (layer.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)


def channel_ranges(weight: np.ndarray, binary_input: bool,
                   input_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the closed range ``[lo, hi]`` (int64 arrays ``[M]``) that the
    accumulator of +-1 ``weight`` (``[M, ...]``) can reach: ``[-N, N]`` on binary input, the
    sums of negative and positive weights times ``input_max`` on raw input."""
    m = weight.shape[0]
    n = weight.size // m if m else 0
    if binary_input:
        full = np.full(m, n, dtype=np.int64)
        return -full, full
    # counted a block of channels at a time: no full-size temporaries for a large layer
    negative = np.zeros(m, dtype=np.int64)
    positive = np.zeros(m, dtype=np.int64)
    step = max(1, BLOCK_VALUES // max(n, 1))
    for start in range(0, m, step):
        block = weight[start:start + step].reshape(-1, n)
        negative[start:start + step] = np.count_nonzero(block < 0, axis=1)
        positive[start:start + step] = np.count_nonzero(block > 0, axis=1)
    return -negative * input_max, positive * input_max


def accumulator_range(layer: Dense | Conv2d, binary_input: bool, input_max: int) -> tuple[int, int]:
    """The closed range ``[lo, hi]`` that ``acc`` of ``layer`` can reach over all inputs.

    Binary inputs: each product is +-1, so the range is ``[-N, N]``. Raw inputs in
    ``[0, input_max]``: ``hi`` is the sum of positive weights times ``input_max`` and
    ``lo`` the sum of negative ones (per channel; this returns the widest over channels).
    """
    lo, hi = channel_ranges(layer.weight, binary_input, input_max)
    return int(lo.min()), int(hi.max())


def signed_width(lo: int, hi: int) -> int:
    """Bits of a two's-complement number that holds every integer in ``[lo, hi]``."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width

