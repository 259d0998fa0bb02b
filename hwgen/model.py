"""Model files, format version 1 (``docs/model-format.md``): typed objects, load, validate, save.

A :class:`Model` is an :class:`InputSpec`, a list of layers (:class:`Dense`, :class:`Conv2d`,
:class:`MaxPool2d`), the class names and a free-form provenance dict. Every number in it is
an exact integer. :func:`load` reads and validates a file; it never unpickles anything and
raises :class:`~hwgen.errors.ModelFormatError` with a one-line message naming the key or
layer at fault. :func:`save` validates and writes atomically.

Files are read by :func:`hwgen.archive.read_npz` (bounded: 256 MiB of arrays by default,
``load(..., max_bytes=)`` or ``$SBN_MAX_MODEL_BYTES`` to change it) and the graph JSON by
:func:`hwgen.jsontext.parse_json` (at most :data:`MAX_GRAPH_CHARS` characters, nesting at
most 64 deep). :func:`validate` also bounds what the tools can build and run: see
:data:`MAX_SPATIAL` and the limits below it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .archive import read_npz
from .errors import ModelFormatError
from .jsontext import parse_json
from .names import class_name_problem

FORMAT_NAME = "sbn-model"
FORMAT_VERSION = 1
MAX_INPUT_BITS = 24
# What the tools can build and run; validate() refuses models beyond these, naming the key.
MAX_SPATIAL = 4096  # height and width of every activation, every kernel, stride and padding
MAX_INPUT_CHANNELS = 1024
MAX_ACTIVATION = 1 << 24  # values of one image's activation after any layer (or the input)
MAX_TOTAL_ACTIVATION = 1 << 26  # those summed over the input and every layer's output
MAX_WEIGHTS = 1 << 26  # weights summed over all layers
MAX_LAYERS = 256  # `verilog` of 256 tiny layers: ~20 s, ~250 MB
MAX_GRAPH_CHARS = 1 << 20  # the graph JSON, provenance included (shipped models: ~1,500)
MAX_NAME_CHARS = 200  # a layer's optional name

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
    step = max(1, _BLOCK_VALUES // max(n, 1))
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


# ----------------------------------------------------------------------------- validation


#: Values per block when a large array is checked or counted piecewise.
_BLOCK_VALUES = 1 << 22


def _short(value) -> str:
    """``repr(value)`` cut to 60 characters, for messages that quote what a file holds."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(where: str, message: str):
    raise ModelFormatError(f"{where}: {message}" if where else message)


def _check_array(where: str, name: str, array, kinds: tuple[str, ...], shape: tuple[int, ...]):
    if not isinstance(array, np.ndarray):
        _fail(where, f"{name} must be a NumPy array, got {type(array).__name__}")
    if array.dtype.kind not in "iu" or array.dtype.name not in kinds:
        _fail(where, f"{name} has dtype {array.dtype.name}, expected {' or '.join(kinds)}")
    if array.shape != shape:
        _fail(where, f"{name} has shape {list(array.shape)}, expected {list(shape)}")


def _check_pm1(where: str, name: str, array: np.ndarray):
    # a block of values at a time, in memory order: no full-size temporaries
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    flat = array.ravel(order=order)
    for start in range(0, flat.size, _BLOCK_VALUES):
        block = flat[start:start + _BLOCK_VALUES]
        bad = np.flatnonzero((block != 1) & (block != -1))
        if bad.size:
            index = np.unravel_index(start + int(bad[0]), array.shape, order=order)
            index = tuple(int(i) for i in index)
            _fail(where, f"{name} holds {int(array[index])} at index {list(index)}; "
                         f"every entry must be -1 or +1")


def _check_pair(where: str, name: str, value, minimum: int):
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(_is_int(v) for v in value)):
        _fail(where, f"{name} must be a pair of integers, got {_short(value)}")
    if min(value) < minimum:
        _fail(where, f"{name} must be at least {minimum}, got {_short(list(value))}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_limit(where: str, name: str, value, limit: int):
    if max(value) > limit:
        _fail(where, f"{name} {_short(list(value))} is above the limit of {limit}")


class _Budget:
    """Running totals of activation values and weights against MAX_TOTAL_ACTIVATION and
    MAX_WEIGHTS (exact Python integers: no overflow, however large the declared shapes)."""

    def __init__(self):
        self.activations = self.weights = 0

    def activation(self, where: str, name: str, shape: Shape):
        if shape[1] > MAX_SPATIAL or shape[2] > MAX_SPATIAL:
            _fail(where, f"{name} {_short(list(shape))} is larger than "
                         f"{MAX_SPATIAL}x{MAX_SPATIAL}")
        values = math.prod(shape)
        if values > MAX_ACTIVATION:
            _fail(where, f"{name} {_short(list(shape))} has {values} values, more than the "
                         f"limit of {MAX_ACTIVATION} per image")
        self.activations += values
        if self.activations > MAX_TOTAL_ACTIVATION:
            _fail(where, f"activations up to here hold {self.activations} values per image, "
                         f"more than the limit of {MAX_TOTAL_ACTIVATION}")

    def weight(self, where: str, weight: np.ndarray):
        self.weights += weight.size
        if self.weights > MAX_WEIGHTS:
            _fail(where, f"weights up to here number {self.weights}, more than the limit of "
                         f"{MAX_WEIGHTS}")


def validate(model: Model) -> None:
    """Check every rule of format version 1; raise :class:`ModelFormatError` on the first break.

    Beyond the format, it refuses what the tools cannot build or run: an input with more
    than :data:`MAX_INPUT_CHANNELS` channels; any activation (the input included) higher or
    wider than :data:`MAX_SPATIAL` or holding more than :data:`MAX_ACTIVATION` values, or
    all of them together more than :data:`MAX_TOTAL_ACTIVATION`; more than
    :data:`MAX_WEIGHTS` weights or :data:`MAX_LAYERS` layers; a stride or conv kernel above
    :data:`MAX_SPATIAL`; and a padded conv input above those limits (as high, wide or
    large).
    """
    spec = model.input
    if (not isinstance(spec.shape, tuple) or len(spec.shape) != 3
            or not all(_is_int(d) for d in spec.shape)):
        _fail("input", f"shape must be [C, H, W] of integers, got {_short(spec.shape)}")
    if min(spec.shape) < 1:
        _fail("input", f"shape {_short(list(spec.shape))} has a dimension below 1")
    if spec.shape[0] > MAX_INPUT_CHANNELS:
        _fail("input", f"shape {_short(list(spec.shape))} has more than "
                       f"{MAX_INPUT_CHANNELS} channels")
    budget = _Budget()
    budget.activation("input", "shape", spec.shape)
    if not _is_int(spec.bits) or not 1 <= spec.bits <= MAX_INPUT_BITS:
        _fail("input", f"bits must be an integer in [1, {MAX_INPUT_BITS}], "
                       f"got {_short(spec.bits)}")
    if spec.binarize_at is not None and (not _is_int(spec.binarize_at)
                                         or not 0 <= spec.binarize_at <= spec.max_value + 1):
        _fail("input", f"binarize_at must be null or an integer in [0, {spec.max_value + 1}], "
                       f"got {_short(spec.binarize_at)}")
    if not model.layers:
        _fail("graph", "layers is empty; the last layer must be a dense output layer")
    if len(model.layers) > MAX_LAYERS:
        _fail("graph", f"{len(model.layers)} layers, more than the limit of {MAX_LAYERS}")

    shape = spec.shape
    binary = spec.binary
    for index, layer in enumerate(model.layers):
        where = f"layer {index} ({getattr(layer, 'op', type(layer).__name__)})"
        last = index == len(model.layers) - 1
        if isinstance(layer, Dense):
            n = math.prod(shape)
            if not isinstance(layer.weight, np.ndarray) or layer.weight.ndim != 2:
                _fail(where, "weight must be a 2-D array [M, N]")
            m = layer.weight.shape[0]
            _check_array(where, "weight", layer.weight, ("int8",), (m, n))
            if m < 1:
                _fail(where, "weight has no output channels")
            budget.weight(where, layer.weight)
            _check_pm1(where, "weight", layer.weight)
            if layer.is_output:
                if not last:
                    _fail(where, "an output layer (no threshold/sign) must be the last layer")
                if layer.bias is not None:
                    _check_array(where, "bias", layer.bias, ("int32",), (m,))
            else:
                if last:
                    _fail(where, "the last layer must be an output layer "
                                 "(threshold and sign null)")
                _check_threshold_sign(where, layer, m)
                if layer.bias is not None:
                    _fail(where, "a hidden layer (with threshold and sign) must have bias null")
        elif isinstance(layer, Conv2d):
            if last:
                _fail(where, "the last layer must be a dense output layer")
            if not isinstance(layer.weight, np.ndarray) or layer.weight.ndim != 4:
                _fail(where, "weight must be a 4-D array [Cout, Cin, KH, KW]")
            cout, _, kh, kw = layer.weight.shape
            _check_array(where, "weight", layer.weight, ("int8",), (cout, shape[0], kh, kw))
            if min(cout, kh, kw) < 1:
                _fail(where, f"weight shape {list(layer.weight.shape)} has a zero dimension")
            budget.weight(where, layer.weight)
            _check_pm1(where, "weight", layer.weight)
            _check_threshold_sign(where, layer, cout)
            _check_pair(where, "stride", layer.stride, 1)
            _check_pair(where, "padding", layer.padding, 0)
            _check_limit(where, "stride", layer.stride, MAX_SPATIAL)
            _check_limit(where, "kernel", (kh, kw), MAX_SPATIAL)
            _check_limit(where, "padding", layer.padding, MAX_SPATIAL)
            if not _is_int(layer.pad_value):
                _fail(where, f"pad_value must be an integer, got {_short(layer.pad_value)}")
            if binary and layer.pad_value not in (-1, 1):
                _fail(where, f"pad_value {layer.pad_value} on binary input must be -1 or +1")
            if not binary and not 0 <= layer.pad_value <= spec.max_value:
                _fail(where, f"pad_value {layer.pad_value} on raw input must lie in "
                             f"[0, {spec.max_value}]")
            for axis, size, k, p in (("height", shape[1], kh, layer.padding[0]),
                                     ("width", shape[2], kw, layer.padding[1])):
                if size + 2 * p < k:
                    _fail(where, f"kernel {axis} {k} exceeds the padded input {axis} "
                                 f"{size + 2 * p}")
                if size + 2 * p > MAX_SPATIAL:
                    _fail(where, f"the padded input {axis} {size + 2 * p} is above the limit "
                                 f"of {MAX_SPATIAL}")
            padded = shape[0] * (shape[1] + 2 * layer.padding[0]) * (shape[2]
                                                                     + 2 * layer.padding[1])
            if padded > MAX_ACTIVATION:
                _fail(where, f"the padded input holds {padded} values, above the limit of "
                             f"{MAX_ACTIVATION}")
        elif isinstance(layer, MaxPool2d):
            if last:
                _fail(where, "the last layer must be a dense output layer")
            _check_pair(where, "kernel", layer.kernel, 1)
            _check_pair(where, "stride", layer.stride, 1)
            _check_limit(where, "stride", layer.stride, MAX_SPATIAL)
            if not binary:
                _fail(where, "maxpool2d needs binary input; set input.binarize_at or put a "
                             "conv2d/dense layer first")
            if layer.kernel[0] > shape[1] or layer.kernel[1] > shape[2]:
                _fail(where, f"kernel {list(layer.kernel)} exceeds the input "
                             f"{shape[1]}x{shape[2]}")
        else:
            _fail(where, f"unknown layer type {type(layer).__name__}")
        shape = output_shape(layer, shape)
        budget.activation(where, "output", shape)
        binary = True

    if (not isinstance(model.classes, list)
            or not all(isinstance(c, str) for c in model.classes)):
        _fail("graph", "classes must be a list of strings")
    for i, name in enumerate(model.classes):
        problem = class_name_problem(name)
        if problem:
            _fail("graph", f"classes[{i}] {problem}")
    if len(model.classes) != shape[0]:
        _fail("graph", f"classes has {len(model.classes)} names but the output layer has "
                       f"{shape[0]} outputs")
    if not isinstance(model.provenance, dict):
        _fail("graph", "provenance must be a JSON object")


def _check_threshold_sign(where: str, layer, m: int):
    if layer.threshold is None or layer.sign is None:
        _fail(where, "threshold and sign must both be given (hidden layer) or both be null "
                     "(output layer)")
    _check_array(where, "threshold", layer.threshold, ("int32", "int64"), (m,))
    _check_array(where, "sign", layer.sign, ("int8",), (m,))
    _check_pm1(where, "sign", layer.sign)


# ----------------------------------------------------------------------------- loading


def load(path: str | os.PathLike, *, max_bytes: int | None = None) -> Model:
    """Read and validate a model file. Raises :class:`ModelFormatError` naming what is wrong.

    The archive is read by :func:`hwgen.archive.read_npz` with at most ``max_bytes`` of
    arrays in all (default 256 MiB, or ``$SBN_MAX_MODEL_BYTES``); ``format`` and ``version``
    may hold at most 4 KiB and ``graph`` at most :data:`MAX_GRAPH_CHARS` characters.
    """
    path = Path(path)
    caps = {"format": 4096, "version": 4096, "graph": 4 * MAX_GRAPH_CHARS + 4096}
    arrays = read_npz(path, max_bytes=max_bytes, caps=caps)
    try:
        return from_arrays(arrays)
    except ModelFormatError as err:
        raise ModelFormatError(f"{path}: {err}") from None


def _scalar_str(arrays: dict, key: str) -> str:
    if key not in arrays:
        raise ModelFormatError(f"missing key {key!r}")
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise ModelFormatError(f"key {key!r} must be a 0-d string, got {value.dtype.name} "
                               f"shape {list(value.shape)}")
    try:
        value = value.item()
    except (SystemError, ValueError, UnicodeError):  # a code point past U+10FFFF
        raise ModelFormatError(f"key {key!r} holds a character that is not Unicode") from None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"key {key!r} is not UTF-8") from None
    return value


def from_arrays(arrays: dict[str, np.ndarray]) -> Model:
    """Build and validate a :class:`Model` from the arrays of an .npz archive."""
    fmt = _scalar_str(arrays, "format")
    if fmt != FORMAT_NAME:
        raise ModelFormatError(f"format is {_short(fmt)}, expected {FORMAT_NAME!r}")
    if "version" not in arrays:
        raise ModelFormatError("missing key 'version'")
    version = arrays["version"]
    if version.ndim != 0 or version.dtype.kind not in "iu":
        raise ModelFormatError("key 'version' must be a 0-d integer")
    version = int(version)
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"version {version} is newer than this reader supports "
                               f"({FORMAT_VERSION}); upgrade hwgen")
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"version {version} is not a valid format version")
    text = _scalar_str(arrays, "graph")
    graph = parse_json(text, "graph", max_chars=MAX_GRAPH_CHARS, error=ModelFormatError)
    return _from_graph(graph, arrays).validate()


def _get(where: str, obj: dict, key: str, default=KeyError):
    if key not in obj:
        if default is KeyError:
            _fail(where, f"missing {key!r}")
        return default
    return obj[key]


def _expect_keys(where: str, obj, allowed: set[str]):
    if not isinstance(obj, dict):
        _fail(where, f"must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        _fail(where, f"unknown key {_short(unknown[0])}")


def _array(where: str, arrays: dict, obj: dict, role: str, optional: bool = False):
    key = _get(where, obj, role, None if optional else KeyError)
    if key is None:
        if optional:
            return None
        _fail(where, f"{role} must name an array")
    if not isinstance(key, str):
        _fail(where, f"{role} must be an array name (string), got {_short(key)}")
    if key not in arrays:
        _fail(where, f"{role} names array {_short(key)}, which is missing from the file")
    return arrays[key]


def _pair(where: str, obj: dict, key: str):
    value = _get(where, obj, key)
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) for v in value):
        _fail(where, f"{key} must be a pair of integers, got {_short(value)}")
    return tuple(value)


_LAYER_KEYS = {
    "dense": {"op", "name", "weight", "threshold", "sign", "bias"},
    "conv2d": {"op", "name", "weight", "threshold", "sign", "stride", "padding", "pad_value"},
    "maxpool2d": {"op", "name", "kernel", "stride"},
}


def _from_graph(graph, arrays: dict) -> Model:
    _expect_keys("graph", graph, {"input", "layers", "classes", "provenance"})
    spec = _get("graph", graph, "input")
    _expect_keys("input", spec, {"shape", "bits", "binarize_at"})
    shape = _get("input", spec, "shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(d) for d in shape):
        _fail("input", f"shape must be [C, H, W] of integers, got {_short(shape)}")
    model_input = InputSpec(tuple(shape), _get("input", spec, "bits"),
                            _get("input", spec, "binarize_at", None))
    layers_json = _get("graph", graph, "layers")
    if not isinstance(layers_json, list):
        _fail("graph", "layers must be a list")
    if len(layers_json) > MAX_LAYERS:
        _fail("graph", f"{len(layers_json)} layers, more than the limit of {MAX_LAYERS}")
    layers = []
    for index, obj in enumerate(layers_json):
        if not isinstance(obj, dict):
            _fail(f"layer {index}", "must be a JSON object")
        op = obj.get("op")
        if not isinstance(op, str):
            _fail(f"layer {index}", f"op must be a string naming the layer type "
                                    f"({', '.join(_LAYER_KEYS)}), got {_short(op)}")
        where = f"layer {index} ({op})"
        if op not in _LAYER_KEYS:
            _fail(f"layer {index}",
                  f"unknown op {_short(op)} (known: {', '.join(_LAYER_KEYS)})")
        _expect_keys(where, obj, _LAYER_KEYS[op])
        name = obj.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            _fail(where, f"name must be a string of at most {MAX_NAME_CHARS} characters, got "
                         f"{_short(name)}")
        if op == "dense":
            layers.append(Dense(
                weight=_array(where, arrays, obj, "weight"),
                threshold=_array(where, arrays, obj, "threshold", optional=True),
                sign=_array(where, arrays, obj, "sign", optional=True),
                bias=_array(where, arrays, obj, "bias", optional=True)))
        elif op == "conv2d":
            layers.append(Conv2d(
                weight=_array(where, arrays, obj, "weight"),
                threshold=_array(where, arrays, obj, "threshold"),
                sign=_array(where, arrays, obj, "sign"),
                stride=_pair(where, obj, "stride"),
                padding=_pair(where, obj, "padding"),
                pad_value=_get(where, obj, "pad_value")))
        else:
            layers.append(MaxPool2d(kernel=_pair(where, obj, "kernel"),
                                    stride=_pair(where, obj, "stride")))
    # Thresholds are computed in int64 whichever of int32/int64 the file used.
    model = Model(model_input, layers, _get("graph", graph, "classes"),
                  _get("graph", graph, "provenance", {}))
    validate(model)
    for layer in layers:
        if getattr(layer, "threshold", None) is not None:
            layer.threshold = layer.threshold.astype(np.int64)
    return model


# ----------------------------------------------------------------------------- saving


def to_arrays(model: Model) -> dict[str, np.ndarray]:
    """The arrays of an .npz for ``model`` (validated first), with keys ``l<i>.weight`` etc."""
    validate(model)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
    }
    layers_json = []
    for index, layer in enumerate(model.layers):
        obj: dict = {"op": layer.op}

        def put(role: str, array, dtype):
            if array is None:
                obj[role] = None
                return
            key = f"l{index}.{role}"
            arrays[key] = np.ascontiguousarray(array, dtype=dtype)
            obj[role] = key

        if isinstance(layer, MaxPool2d):
            obj.update(kernel=list(map(int, layer.kernel)), stride=list(map(int, layer.stride)))
        else:
            put("weight", layer.weight, np.int8)
            threshold = None if layer.threshold is None else np.asarray(layer.threshold)
            if threshold is not None:
                fits32 = threshold.min() >= np.iinfo(np.int32).min and \
                    threshold.max() <= np.iinfo(np.int32).max
                put("threshold", threshold, np.int32 if fits32 else np.int64)
            else:
                put("threshold", None, None)
            put("sign", layer.sign, np.int8)
            if isinstance(layer, Dense):
                put("bias", layer.bias, np.int32)
            else:
                obj.update(stride=list(map(int, layer.stride)),
                           padding=list(map(int, layer.padding)), pad_value=int(layer.pad_value))
        layers_json.append(obj)
    graph = {
        "input": {"shape": list(map(int, model.input.shape)), "bits": int(model.input.bits),
                  "binarize_at": (None if model.input.binarize_at is None
                                  else int(model.input.binarize_at))},
        "layers": layers_json,
        "classes": list(model.classes),
        "provenance": model.provenance,
    }
    try:  # the reader takes strict JSON only: no NaN or Infinity, also not in provenance
        arrays["graph"] = np.array(json.dumps(graph, allow_nan=False))
    except ValueError as err:
        raise ModelFormatError(f"graph is not valid JSON ({err})") from None
    return arrays


def save(model: Model, path: str | os.PathLike, final: bool = False) -> Path:
    """Validate ``model`` and write it to ``path`` atomically (no partial file on failure);
    ``final``: it is the command's last output (:func:`hwgen.outputs.staged_file`)."""
    from .outputs import resolved, staged_file

    path = Path(path)
    arrays = to_arrays(model)
    resolved(path).parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path, final) as staging, open(staging, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path
