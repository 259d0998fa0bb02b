"""Bounded, strict JSON parsing of text that came from a user's file.

:func:`parse_json` refuses, with one line, text longer than ``max_chars``, nesting deeper
than ``max_depth`` (checked by a scan *before* parsing, so deep nesting can never reach
Python's recursion limit), and anything that is not strict JSON (``NaN``, ``Infinity``,
numbers that overflow to infinity such as ``1e999``, integers of more than 4300 digits).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from .errors import UserError

MAX_DEPTH = 64
# With escapes gone, a string runs to its closing quote or, unterminated, to the end of the
# text: one character class repeated, so the scan is linear and needs no memory per character
# (a pattern that also matched escapes took ~110 bytes per character of a long string).
_STRING = re.compile(r'"[^"]*(?:"|\Z)')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text``, outside JSON strings.

    Linear in ``len(text)``, in time and memory: escaped backslashes, then escaped quotes,
    are dropped (left to right, as JSON reads them), then strings, then all but brackets;
    a NumPy running sum of the brackets gives the depth."""
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", unescaped)).encode("ascii")
    del unescaped
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), np.int32(1), np.int32(-1))
    return max(0, int(np.cumsum(steps, dtype=np.int32).max()))


def parse_json(text: str, what: str, *, max_chars: int, max_depth: int = MAX_DEPTH,
               error: type[UserError] = UserError):
    """``json.loads(text)`` within the limits above; raises ``error`` naming ``what``."""
    if len(text) > max_chars:
        raise error(f"{what} is {len(text)} characters, more than the limit of {max_chars}")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise error(f"{what} nests {depth} levels deep, more than the limit of {max_depth}")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
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
