"""Model files on disk: :func:`load` (a bounded archive read, the graph JSON, then
:func:`~.checks.validate`) and :func:`save` (validated, written atomically), and the arrays
of an archive both ways (:func:`from_arrays`, :func:`to_arrays`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..archive import read_npz
from ..errors import ModelFormatError
from ..jsontext import parse_json
from .checks import _fail, _is_int, _short, validate
from .layers import Conv2d, Dense, InputSpec, MaxPool2d, Model
from .limits import FORMAT_NAME, FORMAT_VERSION, MAX_GRAPH_CHARS, MAX_LAYERS, MAX_NAME_CHARS

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
        text = json.dumps(graph, allow_nan=False)
    except ValueError as err:
        raise ModelFormatError(f"graph is not valid JSON ({err})") from None
    if len(text) > MAX_GRAPH_CHARS:  # a file no reader would take back
        raise ModelFormatError(f"the graph JSON is {len(text)} characters, more than the "
                               f"{MAX_GRAPH_CHARS} a reader takes (a long provenance?)")
    arrays["graph"] = np.array(text)
    return arrays


def save(model: Model, path: str | os.PathLike, final: bool = False) -> Path:
    """Validate ``model`` and write it to ``path`` atomically (no partial file on failure);
    ``final``: it is the command's last output (:func:`hwgen.outputs.staged_file`)."""
    from ..outputs import resolved, staged_file

    path = Path(path)
    arrays = to_arrays(model)
    resolved(path).parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path, final) as staging, open(staging, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path
