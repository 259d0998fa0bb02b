"""Training state (nested dicts, lists, tuples, numbers, strings and tensors) as a file that
is read back without unpickling anything.

The file is an uncompressed ``.npz``: member ``state`` holds UTF-8 JSON (as a uint8 array)
``{"format": "sbn-train-checkpoint", "version": 2, "state": ...}``, and each tensor is a
member ``t<N>`` (a ``.npy`` array of a float, integer or bool dtype) that the JSON names
with ``{"$tensor": "t<N>"}``. The other tagged forms: ``{"$tuple": [...]}``,
``{"$dict": [[key, value], ...]}`` (a dict whose keys are not all strings, or one of which
starts with ``$``) and ``{"$float": "inf" | "-inf" | "nan"}``. A plain JSON object never
has a key starting with ``$``.

:func:`read_state` reads through :func:`hwgen.archive.read_npz` (stored members only, so
memory follows the file's size; headers checked before anything is allocated) and
:func:`hwgen.jsontext.parse_json` (bounded length and depth); every tensor member must be
named exactly once. Version 1, ``torch.save``'s pickle, is recognized and refused.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from hwgen.archive import read_npz
from hwgen.errors import ModelFormatError, UserError
from hwgen.files import read_regular
from hwgen.jsontext import parse_json

__all__ = ["read_state", "write_state", "FORMAT", "VERSION"]

FORMAT = "sbn-train-checkpoint"
VERSION = 2
#: Caps whatever the run: json.loads takes ~80 bytes a value, so 2**20 values stay within
#: ~100 MB (a run's history takes a few dozen values an epoch: ~30,000 epochs fit).
#: Tensors in a state archive: a checkpoint holds up to about 20 per layer (weights,
#: batch norm, learnable nu, and the optimizer's moments of each), and a network at most
#: 255 layers; the central directory stays within the reader's 2 MiB.
MAX_STATE_MEMBERS = 1 << 13
MAX_JSON_CHARS = 16 << 20
MAX_JSON_VALUES = 1 << 20
MAX_DEPTH = 24
_MAX_FILE_BYTES = 1 << 40  # members are stored: the file's own size bounds the memory
_KEYS = (str, int, float, bool, type(None))


class StateFileError(UserError):
    """The file is not a training state this module wrote; the text says why."""


def write_state(state, path: str | os.PathLike) -> None:
    """``state`` written to ``path`` (the caller stages it). TypeError for a value of
    another kind than those of the module docstring."""
    tensors: dict[str, np.ndarray] = {}
    body = json.dumps({"format": FORMAT, "version": VERSION,
                       "state": _encoded(state, tensors)}, allow_nan=False)
    arrays = {"state": np.frombuffer(body.encode("utf-8"), dtype=np.uint8), **tensors}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _encoded(value, tensors: dict):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if torch.is_tensor(value):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().cpu().contiguous().numpy()
        return {"$tensor": name}
    if isinstance(value, list):
        return [_encoded(v, tensors) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encoded(v, tensors) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encoded(v, tensors) for k, v in value.items()}
        if not all(isinstance(k, _KEYS) for k in value):
            raise TypeError("a dict key in a training state must be a string or a number")
        return {"$dict": [[_encoded(k, tensors), _encoded(v, tensors)]
                          for k, v in value.items()]}
    raise TypeError(f"a training state cannot hold a {type(value).__name__}")


def read_state(path: str | os.PathLike, what: str = "checkpoint",
               max_chars: int | None = None, max_values: int | None = None):
    """The state :func:`write_state` wrote to ``path``; :class:`StateFileError` (one line
    naming ``path``) for anything else. ``max_chars`` and ``max_values``: the most
    characters and values its JSON may have (default :data:`MAX_JSON_CHARS` and
    :data:`MAX_JSON_VALUES`)."""
    path = Path(path)
    _refuse_pickle(path, what)
    try:
        arrays = read_npz(path, max_bytes=_MAX_FILE_BYTES, what=what, floats=True,
                          stored_only=True, max_members=MAX_STATE_MEMBERS)
    except ModelFormatError as err:
        raise StateFileError(str(err)) from None
    body = arrays.pop("state", None)
    if body is None or body.dtype != np.uint8 or body.ndim != 1:
        raise StateFileError(f"{path}: not a {what} written by train (no 'state' member)")
    try:
        text = body.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise StateFileError(f"{path}: not a {what} written by train (its state is not "
                             f"UTF-8 text)") from None
    root = parse_json(text, f"{path}: its state", max_chars=max_chars or MAX_JSON_CHARS,
                      max_values=max_values or MAX_JSON_VALUES,
                      max_depth=MAX_DEPTH, error=StateFileError)
    if not (isinstance(root, dict) and set(root) == {"format", "version", "state"}
            and root["format"] == FORMAT):
        raise StateFileError(f"{path}: not a {what} written by train")
    if root["version"] != VERSION:
        raise StateFileError(f"{path}: a {what} of version {repr(root['version'])[:20]}; "
                             f"this train reads version {VERSION}")
    used: set[str] = set()
    try:
        state = _decoded(root["state"], arrays, used)
    except (TypeError, ValueError, KeyError) as err:
        raise StateFileError(f"{path}: not a {what} written by train ({err})") from None
    if used != set(arrays):
        extra = sorted(set(arrays) - used)[0]
        raise StateFileError(f"{path}: not a {what} written by train (member {extra!r} is "
                             f"not part of its state)")
    return state


def _decoded(value, arrays: dict, used: set):
    """``value`` with its tags resolved; lists and untagged dicts are changed in place (a
    second copy of a large parse would double its memory)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _decoded(item, arrays, used)
        return value
    if not isinstance(value, dict):
        return value
    tagged = [k for k in value if k.startswith("$")]
    if not tagged:
        for key, item in value.items():
            value[key] = _decoded(item, arrays, used)
        return value
    if len(value) != 1:
        raise ValueError(f"an object mixes the tag {tagged[0][:20]!r} with other keys")
    tag, inner = next(iter(value.items()))
    if tag == "$tuple" and isinstance(inner, list):
        return tuple(_decoded(v, arrays, used) for v in inner)
    if tag == "$float" and inner in ("inf", "-inf", "nan"):
        return float(inner)
    if tag == "$tensor" and isinstance(inner, str):
        if inner not in arrays or inner in used:
            raise ValueError(f"tensor {inner[:20]!r} is missing or named twice")
        used.add(inner)
        array = arrays[inner]
        native = array.dtype.newbyteorder("=")  # ascontiguousarray would make 0-d 1-d
        return torch.from_numpy(array.astype(native, order="C", copy=False))
    if tag == "$dict" and isinstance(inner, list):
        pairs = []
        for pair in inner:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError("a $dict entry is not a [key, value] pair")
            key = _decoded(pair[0], arrays, used)
            if not isinstance(key, _KEYS):
                raise ValueError("a $dict key is not a string or a number")
            pairs.append((key, _decoded(pair[1], arrays, used)))
        result = dict(pairs)
        if len(result) != len(pairs):
            raise ValueError("a $dict has a key twice")
        return result
    raise ValueError(f"unknown or malformed tag {tag[:20]!r}")


def _refuse_pickle(path: Path, what: str) -> None:
    """:class:`StateFileError` when ``path`` is ``torch.save``'s zip of a pickle (what train
    wrote before version 2): it is recognized by its first member's name and never read."""
    head = bytes(read_regular(path, 30 + 256, StateFileError, what))
    if head[:4] == b"PK\x03\x04":
        name_len = int.from_bytes(head[26:28], "little")
        name = head[30:30 + name_len]
        if name.endswith(b"/data.pkl") or name == b"data.pkl":
            raise StateFileError(f"{path}: a {what} of an older train (a pickle, which this "
                                 f"version never reads); remove it, or train without "
                                 f"--resume")
    elif head[:1] == b"\x80":
        raise StateFileError(f"{path}: a pickle, not a {what} written by train (pickles "
                             f"are never read)")
