"""The trainable network built from an :class:`~train.arch.Arch`.

:class:`Net` takes raw pixels (float ``[B, C, H, W]`` holding integers 0..255) and returns
logits ``[B, classes]``. The input is either binarized (``+1`` where ``pixel >= binarize_at``
else ``-1``) or normalized ``(pixel/255 - mean)/std`` for a first layer on raw pixels.
Padding is explicit and uses the value the exported model will use: raw pixels are padded
with 0 *before* normalization (``pad_value`` 0), binary activations with -1.
Max-pool follows a binary activation, so its exported form (an OR) is exact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .arch import Arch
from .layers import METHODS, BinaryBlock, OutputLayer, activate

# Fashion-MNIST training-set pixel statistics (of pixel/255); folded into the first threshold.
DEFAULT_INPUT_MEAN = 0.2860
DEFAULT_INPUT_STD = 0.3530


class Net(nn.Module):
    def __init__(self, arch: Arch, input_shape=(1, 28, 28), classes: int = 10,
                 method: str = "sbn", binarize_at: int | None = None,
                 input_mean: float = DEFAULT_INPUT_MEAN, input_std: float = DEFAULT_INPUT_STD,
                 init_bound: float | None = None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.arch, self.method, self.binarize_at = arch, method, binarize_at
        self.input_shape, self.classes = tuple(input_shape), classes
        self.input_mean, self.input_std = float(input_mean), float(input_std)
        self.blocks = nn.ModuleList()
        self.ops: list[str] = []  # "conv" | "pool" | "dense" per hidden item
        shapes = arch.shapes(self.input_shape)
        for layer, shape_in in zip(arch.hidden, shapes):
            self.ops.append(layer.op)
            if layer.op == "pool":
                self.blocks.append(nn.Identity())
            elif layer.op == "conv":
                self.blocks.append(BinaryBlock("conv", shape_in[0], layer.width, method,
                                               init_bound))
            else:
                n = shape_in[0] * shape_in[1] * shape_in[2]
                self.blocks.append(BinaryBlock("dense", n, layer.width, method, init_bound))
        c, h, w = shapes[-1]
        self.output = OutputLayer(c * h * w, classes, method, init_bound)

    @property
    def hidden_pad_value(self) -> float:
        return 0.0 if self.method == "float" else -1.0

    def prepare_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Binarized (+-1) or normalized input, float32, same shape as ``pixels``."""
        if self.binarize_at is not None:
            return torch.where(pixels >= self.binarize_at, 1.0, -1.0).to(torch.float32)
        return (pixels.to(torch.float32) / 255.0 - self.input_mean) / self.input_std

    def forward(self, pixels: torch.Tensor, nu: float = 1.0, collect: list | None = None):
        """Logits ``[B, classes]``; with ``collect``, appends each hidden pre-activation."""
        first = True
        x = pixels
        for op, block in zip(self.ops, self.blocks):
            if op == "pool":
                x = F.max_pool2d(x, 2)
                continue
            if op == "conv":
                if first and self.binarize_at is None:
                    x = self.prepare_input(F.pad(x.to(torch.float32), (1, 1, 1, 1), value=0.0))
                else:
                    if first:
                        x = self.prepare_input(x)
                    x = F.pad(x, (1, 1, 1, 1), value=-1.0 if first else self.hidden_pad_value)
            else:
                if first:
                    x = self.prepare_input(x)
                x = x.flatten(1)
            first = False
            y = block.pre_activation(x, nu)
            if collect is not None:
                collect.append(y.detach())
            x = activate(y, self.method, nu)
        if first:
            x = self.prepare_input(x)
        return self.output(x.flatten(1), nu)
