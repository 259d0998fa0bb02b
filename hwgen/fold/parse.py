"""What a fold is, and reading one: ``--fold`` text, JSON and files, checked against a model.

A :class:`Fold` is ``PExSIMD`` for one dense or conv layer: how many output channels (PE)
and inputs (SIMD) it computes per cycle. For a dense layer with ``N`` inputs and ``M``
outputs, each cycle the matrix-vector-threshold unit multiplies ``SIMD`` inputs with ``PE``
rows, so one image takes ``NF * SF`` cycles with ``NF = ceil(M / PE)`` neuron folds and
``SF = ceil(N / SIMD)`` synapse folds. ``PE`` need not divide ``M`` nor ``SIMD`` divide
``N``: the unit pads.

A conv2d layer is a sliding-window unit feeding the same unit over each window (``N =
Cin*KH*KW``, ``M = Cout``), so it takes ``NF * SF`` cycles per output position (at least the
window's ``KH*KW`` taps); a maxpool2d layer has no fold (one output per ``KH*KW`` cycles).
``docs/conv-hardware.md`` describes the units and the stream order between them.

Contract: :func:`parse_fold` turns a user's ``--fold`` (``"64x32,32x16,10x8"``, JSON, or a
``.json`` file, within :data:`MAX_FOLD_CHARS` and :data:`MAX_FOLD_DEPTH`; ``PExSIMDs``
keeps a layer's weights in SPRAM) into one
:class:`Fold` per model layer (None for a max-pool), each checked by :func:`check_fold`;
:func:`resolve_fold` also takes the words in :data:`FOLD_CHOICES`. Every problem is a
one-line :class:`FoldError` (a :class:`~hwgen.errors.UserError`) naming the layer at fault.
:func:`check_supported` rejects models the generator cannot build. Depends on nothing else
in :mod:`hwgen.fold` at import time (``fastest`` imports :mod:`hwgen.fold_search` lazily).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UserError
from ..model import Conv2d, Dense, MaxPool2d, Model

if TYPE_CHECKING:
    from .default import Budget


class FoldError(UserError):
    """A fold that does not fit the model (zero, too wide, not applicable, malformed)."""


def where(index: int, layer) -> str:
    return f"layer {index} ({getattr(layer, 'op', type(layer).__name__)})"


def check_supported(model: Model) -> None:
    """Raise a one-line :class:`~hwgen.errors.UserError` for layers the generator cannot build."""
    for index, (layer, binary) in enumerate(zip(model.layers, model.binary_inputs())):
        if isinstance(layer, MaxPool2d) and not binary:
            raise UserError(f"{where(index, layer)}: max-pool on raw (non-binary) input is not "
                            f"supported by the generator (it pools binary activations)")
        if not isinstance(layer, (Dense, Conv2d, MaxPool2d)):
            raise UserError(f"{where(index, layer)}: not supported by the generator")


def has_fold(layer) -> bool:
    """Whether ``layer`` is computed by a folded matrix-vector-threshold unit (dense, conv)."""
    return isinstance(layer, (Dense, Conv2d))


@dataclass(frozen=True)
class Fold:
    """``PE x SIMD``; ``spram``: the layer's weights in the iCE40UP5K's SPRAM (loaded at run
    time, see :mod:`hwgen.fold.storage`) instead of a ROM. Text form ``PExSIMD``, with a
    trailing ``s`` for SPRAM (``1x64s``)."""

    pe: int
    simd: int
    spram: bool = False

    def __str__(self):
        return f"{self.pe}x{self.simd}" + ("s" if self.spram else "")


#: Limits on a --fold text or file: far more than any model's layer list needs.
MAX_FOLD_CHARS = 1 << 20
MAX_FOLD_DEPTH = 4
_TEXT_FOLD = re.compile(r"\s*([0-9]{1,12})\s*[xX]\s*([0-9]{1,12})\s*([sS]?)\s*")


#: The ``--fold`` words that choose a fold instead of giving one.
FOLD_CHOICES = ("auto", "fastest")

def fold_keyword(text: str | None) -> str | None:
    """The :data:`FOLD_CHOICES` word ``text`` names (None: ``auto``; spaces around it and
    letter case ignored, as ``--fold " Fastest"``), or None when it is a fold."""
    if text is None:
        return "auto"
    word = text.strip().lower()
    return word if word in FOLD_CHOICES else None


def resolve_fold(text: str | None, model: Model, budget: Budget | None = None):
    """A ``--fold`` argument as :func:`plan` takes it: None (``text`` None or ``auto``: the
    default fold within ``budget``), the :func:`~hwgen.fold_search.fastest_fold` within
    ``budget`` (``fastest``; without one, :func:`~hwgen.fold.default.up5k_budget`, SPRAM
    included), else :func:`parse_fold`'s folds."""
    keyword = fold_keyword(text)
    if keyword == "auto":
        return None
    if keyword == "fastest":
        from ..fold_search import fastest_fold  # it builds on this package
        from .default import up5k_budget

        return fastest_fold(model, budget or up5k_budget())
    return parse_fold(text, model)


def parse_fold(text: str, model: Model) -> list[Fold]:
    """A fold for every layer of ``model`` from ``text``.

    ``text`` is ``PExSIMD`` per layer separated by commas (``"64x32,32x16,10x8"``, ASCII
    digits only; ``PExSIMDs`` keeps the layer's weights in SPRAM), or JSON: a list with
    ``[PE, SIMD]``, ``{"pe": PE, "simd": SIMD}`` (optionally ``"spram": true``) or a
    ``"PExSIMD[s]"`` string per layer, or a path to a ``.json`` file holding such a list
    (a regular file of UTF-8 text; text and file at most :data:`MAX_FOLD_CHARS` characters,
    JSON at most :data:`MAX_FOLD_DEPTH` levels deep). Max-pool layers have no fold: either
    leave them out (one entry per dense/conv layer) or give ``-`` (JSON ``null``) in their
    place. Returns one entry per model layer, ``None`` for a pool. Raises
    :class:`FoldError` naming the layer at fault, or what is wrong with the text or file,
    in one line.
    """
    check_supported(model)
    text = text.strip()
    if text[:1] not in "[{" and text.lower().endswith(".json"):
        text = _read_fold_file(text).lstrip("\ufeff").strip()  # a BOM, editors' newlines
    if len(text) > MAX_FOLD_CHARS:
        raise FoldError(f"--fold is {len(text)} characters, more than the limit of "
                        f"{MAX_FOLD_CHARS}")
    if text[:1] in "[{":
        from ..jsontext import parse_json

        items = parse_json(text, "--fold", max_chars=MAX_FOLD_CHARS, max_depth=MAX_FOLD_DEPTH,
                           error=FoldError)
        if not isinstance(items, list):
            raise FoldError("--fold JSON must be a list with one entry per layer")
        entries = [_json_entry(i, item) for i, item in enumerate(items)]
    else:
        entries = [_text_entry(i, part) for i, part in enumerate(text.split(","))]
    folded = [i for i, layer in enumerate(model.layers) if has_fold(layer)]
    if len(entries) == len(folded) and len(folded) != len(model.layers):
        full = [None] * len(model.layers)
        for index, entry in zip(folded, entries):
            full[index] = entry
        entries = full
    elif len(entries) != len(model.layers):
        pools = len(model.layers) - len(folded)
        extra = f" ({len(folded)} without its {pools} max-pool layers)" if pools else ""
        raise FoldError(f"--fold gives {len(entries)} layer folds but the model has "
                        f"{len(model.layers)} layers{extra}")
    folds = []
    for index, (entry, layer) in enumerate(zip(entries, model.layers)):
        if entry is None:
            if has_fold(layer):
                raise FoldError(f"{where(index, layer)}: needs a fold PExSIMD, got '-'")
            folds.append(None)
        else:
            folds.append(check_fold(index, layer, *entry))
    return folds


def _read_fold_file(path: str) -> str:
    """The text of a ``--fold`` ``.json`` file: a regular file, bounded, strict UTF-8."""
    from ..files import read_bounded

    data = read_bounded(path, MAX_FOLD_CHARS, FoldError, "fold file", label=f"--fold {path}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FoldError(f"--fold {path}: not UTF-8 text (byte {err.start})") from None


def _text_entry(index: int, part: str) -> tuple[int, int, bool] | None:
    if part.strip() == "-":
        return None
    if part.strip().lower() == "-s":
        raise FoldError(f"layer {index}: fold '-s': '-' (a max-pool) has no weights to keep "
                        f"in SPRAM")
    match = _TEXT_FOLD.fullmatch(part)
    if not match:
        raise FoldError(f"layer {index}: fold {part.strip()[:40]!r} is not PExSIMD "
                        f"(e.g. 16x32, or 16x32s for weights in SPRAM)")
    return int(match[1]), int(match[2]), bool(match[3])


def _json_entry(index: int, item) -> tuple[int, int, bool] | None:
    if item is None:
        return None
    if isinstance(item, str):
        return _text_entry(index, item)
    spram = False
    if isinstance(item, dict) and set(item) in ({"pe", "simd"}, {"pe", "simd", "spram"}):
        spram = item.get("spram", False)
        if not isinstance(spram, bool):
            raise FoldError(f"layer {index}: fold {json.dumps(item)[:60]}: \"spram\" must be "
                            f"true or false")
        item = [item["pe"], item["simd"]]
    if (not isinstance(item, list) or len(item) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
        raise FoldError(f"layer {index}: fold {json.dumps(item)[:60]} is not [PE, SIMD], "
                        f'{{"pe": PE, "simd": SIMD}} with integers, or "PExSIMD"')
    return item[0], item[1], spram


def check_fold(index: int, layer, pe: int, simd: int, spram: bool = False) -> Fold:
    """Check one layer's fold: PE in ``[1, M]``, SIMD in ``[1, N]`` (a conv's ``N`` is
    ``Cin*KH*KW``); ``spram`` (weights in SPRAM) only on a layer with weights. Whether the
    network's SPRAM layers fit the device is :func:`~hwgen.fold.plan`'s check."""
    if not has_fold(layer):
        if spram:
            raise FoldError(f"{where(index, layer)}: has no weights to keep in SPRAM (give "
                            f"'-' or leave it out)")
        raise FoldError(f"{where(index, layer)}: has no fold (give '-' or leave it out)")
    m, n = layer.out_channels, layer.fan_in
    if pe < 1 or simd < 1:
        raise FoldError(f"{where(index, layer)}: PE and SIMD must be at least 1, "
                        f"got {pe}x{simd}")
    if pe > m:
        raise FoldError(f"{where(index, layer)}: PE {pe} is wider than its {m} output channels")
    if simd > n:
        raise FoldError(f"{where(index, layer)}: SIMD {simd} is wider than its {n} inputs")
    return Fold(pe, simd, bool(spram))
