"""Model files, format version 1 (``docs/model-format.md``): typed objects, load, validate, save.

A :class:`Model` is an :class:`InputSpec`, a list of layers (:class:`Dense`, :class:`Conv2d`,
:class:`MaxPool2d`), the class names and a free-form provenance dict. Every number in it is
an exact integer. :func:`load` reads and validates a file; it never unpickles anything and
raises :class:`~hwgen.errors.ModelFormatError` with a one-line message naming the key or
layer at fault. :func:`save` validates and writes atomically.

The package is split by concern: :mod:`.layers` (the typed objects and their shape and
accumulator arithmetic), :mod:`.limits` (the format's name and version, and what the tools
can build and run), :mod:`.checks` (:func:`validate`) and :mod:`.file` (:func:`load`,
:func:`save` and the arrays of an archive). Everything is importable from here.

Files are read by :func:`hwgen.archive.read_npz` (bounded: 256 MiB of arrays by default,
``load(..., max_bytes=)`` or ``$SBN_MAX_MODEL_BYTES`` to change it) and the graph JSON by
:func:`hwgen.jsontext.parse_json` (at most :data:`MAX_GRAPH_CHARS` characters, nesting at
most 64 deep). :func:`validate` also bounds what the tools can build and run: see
:data:`~.limits.MAX_SPATIAL` and the limits below it.
"""

from .checks import validate
from .file import from_arrays, load, save, to_arrays
from .layers import (Conv2d, Dense, InputSpec, Layer, MaxPool2d, Model, Shape,
                     accumulator_range, channel_ranges, output_shape, signed_width)
from .limits import (FORMAT_NAME, FORMAT_VERSION, MAX_ACTIVATION, MAX_GRAPH_CHARS,
                     MAX_INPUT_BITS, MAX_INPUT_CHANNELS, MAX_LAYERS, MAX_NAME_CHARS,
                     MAX_SPATIAL, MAX_TOTAL_ACTIVATION, MAX_WEIGHTS)

__all__ = [
    "Conv2d", "Dense", "InputSpec", "Layer", "MaxPool2d", "Model", "Shape",
    "accumulator_range", "channel_ranges", "output_shape", "signed_width",
    "validate", "from_arrays", "load", "save", "to_arrays",
    "FORMAT_NAME", "FORMAT_VERSION", "MAX_ACTIVATION", "MAX_GRAPH_CHARS", "MAX_INPUT_BITS",
    "MAX_INPUT_CHANNELS", "MAX_LAYERS", "MAX_NAME_CHARS", "MAX_SPATIAL",
    "MAX_TOTAL_ACTIVATION", "MAX_WEIGHTS",
]
