"""Format version 1's rules and the tools' limits, checked on a :class:`~.layers.Model`
(:func:`validate`); every break is a :class:`~hwgen.errors.ModelFormatError` with one line
naming the key or layer at fault."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ModelFormatError
from ..names import class_name_problem
from . import limits
from .layers import BLOCK_VALUES, Conv2d, Dense, MaxPool2d, Model, Shape, output_shape

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
    for start in range(0, flat.size, BLOCK_VALUES):
        block = flat[start:start + BLOCK_VALUES]
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
        if shape[1] > limits.MAX_SPATIAL or shape[2] > limits.MAX_SPATIAL:
            _fail(where, f"{name} {_short(list(shape))} is larger than "
                         f"{limits.MAX_SPATIAL}x{limits.MAX_SPATIAL}")
        values = math.prod(shape)
        if values > limits.MAX_ACTIVATION:
            _fail(where, f"{name} {_short(list(shape))} has {values} values, more than the "
                         f"limit of {limits.MAX_ACTIVATION} per image")
        self.activations += values
        if self.activations > limits.MAX_TOTAL_ACTIVATION:
            _fail(where, f"activations up to here hold {self.activations} values per image, "
                         f"more than the limit of {limits.MAX_TOTAL_ACTIVATION}")

    def weight(self, where: str, weight: np.ndarray):
        self.weights += weight.size
        if self.weights > limits.MAX_WEIGHTS:
            _fail(where, f"weights up to here number {self.weights}, more than the limit of "
                         f"{limits.MAX_WEIGHTS}")


def validate(model: Model) -> None:
    """Check every rule of format version 1; raise :class:`ModelFormatError` on the first break.

    Beyond the format, it refuses what the tools cannot build or run (the limits of
    :mod:`.limits`): an input with more than ``MAX_INPUT_CHANNELS`` channels; any activation
    (the input included) higher or wider than ``MAX_SPATIAL`` or holding more than
    ``MAX_ACTIVATION`` values, or all of them together more than ``MAX_TOTAL_ACTIVATION``;
    more than ``MAX_WEIGHTS`` weights or ``MAX_LAYERS`` layers; a stride or conv kernel above
    ``MAX_SPATIAL``; and a padded conv input above those limits (as high, wide or large).
    """
    spec = model.input
    if (not isinstance(spec.shape, tuple) or len(spec.shape) != 3
            or not all(_is_int(d) for d in spec.shape)):
        _fail("input", f"shape must be [C, H, W] of integers, got {_short(spec.shape)}")
    if min(spec.shape) < 1:
        _fail("input", f"shape {_short(list(spec.shape))} has a dimension below 1")
    if spec.shape[0] > limits.MAX_INPUT_CHANNELS:
        _fail("input", f"shape {_short(list(spec.shape))} has more than "
                       f"{limits.MAX_INPUT_CHANNELS} channels")
    budget = _Budget()
    budget.activation("input", "shape", spec.shape)
    if not _is_int(spec.bits) or not 1 <= spec.bits <= limits.MAX_INPUT_BITS:
        _fail("input", f"bits must be an integer in [1, {limits.MAX_INPUT_BITS}], "
                       f"got {_short(spec.bits)}")
    if spec.binarize_at is not None and (not _is_int(spec.binarize_at)
                                         or not 0 <= spec.binarize_at <= spec.max_value + 1):
        _fail("input", f"binarize_at must be null or an integer in [0, {spec.max_value + 1}], "
                       f"got {_short(spec.binarize_at)}")
    if not model.layers:
        _fail("graph", "layers is empty; the last layer must be a dense output layer")
    if len(model.layers) > limits.MAX_LAYERS:
        _fail("graph", f"{len(model.layers)} layers, more than the limit of {limits.MAX_LAYERS}")

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
            _check_limit(where, "stride", layer.stride, limits.MAX_SPATIAL)
            _check_limit(where, "kernel", (kh, kw), limits.MAX_SPATIAL)
            _check_limit(where, "padding", layer.padding, limits.MAX_SPATIAL)
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
                if size + 2 * p > limits.MAX_SPATIAL:
                    _fail(where, f"the padded input {axis} {size + 2 * p} is above the limit "
                                 f"of {limits.MAX_SPATIAL}")
            padded = shape[0] * (shape[1] + 2 * layer.padding[0]) * (shape[2]
                                                                     + 2 * layer.padding[1])
            if padded > limits.MAX_ACTIVATION:
                _fail(where, f"the padded input holds {padded} values, above the limit of "
                             f"{limits.MAX_ACTIVATION}")
        elif isinstance(layer, MaxPool2d):
            if last:
                _fail(where, "the last layer must be a dense output layer")
            _check_pair(where, "kernel", layer.kernel, 1)
            _check_pair(where, "stride", layer.stride, 1)
            _check_limit(where, "stride", layer.stride, limits.MAX_SPATIAL)
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
