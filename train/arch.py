"""Architecture spec strings: a compact, documented grammar parsed into a list of layers.

Grammar (whitespace is not allowed)::

    spec  := kind ":" items
    kind  := "mlp" | "cnn"
    items := item ("-" item)*
    item  := "c" INT     conv 3x3, stride 1, padding 1, then BN + binary activation
           | "p"         max-pool 2x2, stride 2 (placed after a binary activation: exact OR)
           | "d" INT     dense (fully connected), then BN + binary activation
           | INT         same as "d" INT (only in an ``mlp`` spec)

``mlp`` specs hold only dense items; ``cnn`` specs start with one or more conv items and
may end with dense items (no conv after a dense). The output layer (a dense layer with one
output per class and an integer bias) is always appended; it is not part of the spec.
Examples: ``mlp:256-256``, ``mlp:96-96``, ``cnn:c32-p-c64-p-d256``.

Presets: a name from :data:`PRESETS` may be given instead of a spec (``--arch vgg-small``);
it stands for its spec string.

Whether the first layer sees raw 8-bit pixels or pixels binarized at a threshold is not
part of the spec; it is the ``--binarize-at`` option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwgen.errors import UserError
from hwgen.model import MAX_LAYERS as _MODEL_MAX_LAYERS


class ArchError(UserError):
    """An architecture spec string that does not follow the grammar."""


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer: ``op`` is ``"conv"``, ``"pool"`` or ``"dense"``; ``width`` the
    number of output channels/units (0 for pool)."""

    op: str
    width: int = 0


@dataclass(frozen=True)
class Arch:
    kind: str
    hidden: tuple[LayerSpec, ...]
    spec: str

    def shapes(self, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
        """Activation shapes (C, H, W) after each hidden layer, starting with the input."""
        shapes = [tuple(input_shape)]
        for layer in self.hidden:
            c, h, w = shapes[-1]
            if layer.op == "conv":
                shapes.append((layer.width, h, w))
            elif layer.op == "pool":
                shapes.append((c, h // 2, w // 2))
            else:
                shapes.append((layer.width, 1, 1))
        return shapes


# Named architectures (``--arch NAME``). The VGG-style CIFAR-10 networks of BinaryNet
# (Courbariaux et al. 2016; also the VGG-like nets of the Self-Binarizing Networks paper):
# pairs of 3x3 convs, each pair followed by a 2x2 max-pool, then dense layers.
PRESETS = {
    # BinaryNet's CIFAR-10 VGG: 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10.
    "vgg-small": "cnn:c128-c128-p-c256-c256-p-c512-c512-p-d1024-d1024",
    # Half the channels and one dense layer of 512: about 1/4 of vgg-small's work.
    "vgg-tiny": "cnn:c64-c64-p-c128-c128-p-c256-c256-p-d512",
}

MAX_WIDTH = 1 << 16
#: The most weights the hidden layers may hold (float32 with gradients and Adam's two
#: moments: 16 bytes each, 512 MiB), and the most activation values one image may produce
#: in them (a batch keeps several tensors of these per layer for the backward pass).
MAX_WEIGHTS = 1 << 25
MAX_ACTIVATIONS = 1 << 21
MAX_LAYERS = _MODEL_MAX_LAYERS  # what the model format's readers take
_ITEM = re.compile(r"(?:(c|d)?([0-9]+)|(p))")  # whole items only (fullmatch)
_SHOWN = 60  # characters of a spec quoted in an error


def parse_arch(spec: str, input_shape: tuple[int, int, int] = (1, 28, 28)) -> Arch:
    """Parse ``spec`` (see the module docstring; a :data:`PRESETS` name stands for its spec);
    raise :class:`ArchError` naming the fault. ``Arch.spec`` is the expanded spec string."""
    if isinstance(spec, str) and spec in PRESETS:
        spec = PRESETS[spec]
    shown = repr(spec if not isinstance(spec, str) or len(spec) <= _SHOWN
                 else spec[:_SHOWN] + "...")
    if not isinstance(spec, str) or ":" not in spec:
        raise ArchError(f"architecture {shown} must look like 'mlp:256-256' or "
                        f"'cnn:c32-p-c64-p-d256', or be a preset ({', '.join(PRESETS)})")
    kind, _, body = spec.partition(":")
    if kind not in ("mlp", "cnn"):
        raise ArchError(f"architecture {shown}: kind must be 'mlp' or 'cnn', got {kind!r}")
    if not body:
        raise ArchError(f"architecture {shown}: no layers after '{kind}:'")
    items = body.split("-")
    if len(items) >= MAX_LAYERS:   # the output layer comes on top of the items
        raise ArchError(f"architecture {spec[:40]!r}...: {len(items)} items; a model holds "
                        f"at most {MAX_LAYERS} layers, the output layer included")
    hidden: list[LayerSpec] = []
    for item in items:
        m = _ITEM.fullmatch(item)
        if not m:
            raise ArchError(f"architecture {shown}: cannot parse item {item[:20]!r} "
                            f"(expected cN, p, dN or N)")
        prefix, number, pool = m.groups()
        if pool:
            hidden.append(LayerSpec("pool"))
            continue
        width = int(number) if len(number) <= 9 else MAX_WIDTH + 1
        if not 1 <= width <= MAX_WIDTH:
            raise ArchError(f"architecture {shown}: width {number[:12]}"
                            f"{'...' if len(number) > 12 else ''} must be in [1, {MAX_WIDTH}]")
        if prefix == "c":
            hidden.append(LayerSpec("conv", width))
        elif prefix == "d" or (prefix is None and kind == "mlp"):
            hidden.append(LayerSpec("dense", width))
        else:
            raise ArchError(f"architecture {shown}: bare width {item[:20]!r} is only allowed "
                            f"in an mlp spec; write d{width} for a dense layer")
    _check(spec, kind, hidden, input_shape)
    arch = Arch(kind, tuple(hidden), spec)
    _check_size(arch, input_shape)
    return arch


def _check_size(arch: Arch, input_shape) -> None:
    """ArchError when the hidden layers hold more than :data:`MAX_WEIGHTS` weights or produce
    more than :data:`MAX_ACTIVATIONS` values per image (checked before anything is built)."""
    shapes = arch.shapes(input_shape)
    weights = 0
    for layer, (c, h, w) in zip(arch.hidden, shapes):
        if layer.op == "conv":
            weights += c * 9 * layer.width
        elif layer.op == "dense":
            weights += c * h * w * layer.width
    values = sum(c * h * w for c, h, w in shapes[1:])
    short = arch.spec if len(arch.spec) <= 60 else arch.spec[:57] + "..."
    if weights > MAX_WEIGHTS:
        raise ArchError(f"architecture {short!r}: {weights} weights in the hidden layers, more "
                        f"than the {MAX_WEIGHTS} training takes")
    if values > MAX_ACTIVATIONS:
        raise ArchError(f"architecture {short!r}: {values} activation values per image, more "
                        f"than the {MAX_ACTIVATIONS} training takes")


def _check(spec: str, kind: str, hidden: list[LayerSpec], input_shape) -> None:
    if kind == "mlp" and any(layer.op != "dense" for layer in hidden):
        raise ArchError(f"architecture {spec!r}: an mlp holds only dense layers; use 'cnn:' "
                        f"for conv and pool")
    if kind == "cnn" and hidden[0].op != "conv":
        raise ArchError(f"architecture {spec!r}: a cnn must start with a conv item (cN)")
    seen_dense = False
    _, h, w = input_shape
    for index, layer in enumerate(hidden):
        if layer.op == "dense":
            seen_dense = True
        elif seen_dense:
            raise ArchError(f"architecture {spec!r}: item {index + 1} ({layer.op}) follows a "
                            f"dense layer; conv and pool must come before dense")
        if layer.op == "pool":
            if index == 0 or hidden[index - 1].op not in ("conv", "pool"):
                raise ArchError(f"architecture {spec!r}: pool at item {index + 1} must follow "
                                f"a conv or pool")
            if h < 2 or w < 2:
                raise ArchError(f"architecture {spec!r}: pool at item {index + 1} gets a "
                                f"{h}x{w} input, too small for 2x2")
            h, w = h // 2, w // 2
