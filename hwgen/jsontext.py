"""Bounded, strict JSON parsing of text that came from a user's file.

:func:`parse_json` refuses, with one line, text longer than ``max_chars``, nesting deeper
than ``max_depth`` (checked by a scan *before* parsing, so deep nesting can never reach
Python's recursion limit), and anything that is not strict JSON (``NaN``, ``Infinity``,
numbers that overflow to infinity such as ``1e999``, integers of more than 4300 digits).
"""

from __future__ import annotations

import json
import math

import numpy as np

from .errors import UserError, first_line

MAX_DEPTH = 64
_OPEN, _CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text``, outside JSON strings."""
    return _structure(text)[0]


def _structure(text: str) -> tuple[int, int]:
    """``(depth, values)`` of ``text`` before parsing it: the deepest nesting of brackets
    outside strings, and 1 + the commas and opening brackets outside strings (at least the
    values a parse would make). Linear in time, and a few bytes of memory per character
    (NumPy over the UTF-8 bytes; regular-expression substitutions cost ~60 bytes per
    match and a pattern that matched escapes ~110 bytes per character of a string).

    Escaped backslashes, then escaped quotes, are dropped first (left to right, as JSON
    reads them); then every quote toggles being inside a string (an unterminated string
    runs to the end). UTF-8 continuation bytes are >= 0x80, so no byte of a non-ASCII
    character is taken for a bracket, comma or quote."""
    data = text.replace("\\\\", "").replace('\\"', "").encode("utf-8", "surrogatepass")
    codes = np.frombuffer(data, dtype=np.uint8)
    outside = np.bitwise_xor.accumulate((codes == ord('"')).view(np.uint8)) == 0
    opening = ((codes == _OPEN[0]) | (codes == _OPEN[1])) & outside
    closing = ((codes == _CLOSE[0]) | (codes == _CLOSE[1])) & outside
    values = 1 + int(np.count_nonzero(opening)) + int(np.count_nonzero((codes == ord(","))
                                                                         & outside))
    steps = opening.view(np.int8) - closing.view(np.int8)
    steps = steps[steps != 0]
    del data, codes, outside, opening, closing
    depth = max(0, int(np.cumsum(steps, dtype=np.int32).max())) if steps.size else 0
    return depth, values


def parse_json(text: str, what: str, *, max_chars: int, max_depth: int = MAX_DEPTH,
               max_values: int | None = None, error: type[UserError] = UserError):
    """``json.loads(text)`` within the limits above; raises ``error`` naming ``what``.
    ``max_values``: at most this many values (counted before parsing, see
    :func:`_structure`: ``json.loads`` takes ~80 bytes for each ``[]`` of 3 characters)."""
    if len(text) > max_chars:
        raise error(f"{what} is {len(text)} characters, more than the limit of {max_chars}")
    depth, values = _structure(text)
    if depth > max_depth:
        raise error(f"{what} nests {depth} levels deep, more than the limit of {max_depth}")
    if max_values is not None and values > max_values:
        raise error(f"{what} holds about {values} values, more than the limit of "
                    f"{max_values}")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as err:
        first = first_line(err)
        raise error(f"{what} is not valid JSON ({first})") from None


def _unique_keys(pairs: list) -> dict:
    """An object whose keys are all different (JSON leaves a repeated key's meaning open:
    Python keeps the last, other readers the first)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {json.dumps(key)[:60]} appears twice in one object")
            seen.add(key)
    return obj


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit a finite float")
    return value
