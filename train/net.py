"""The trainable network built from an :class:`~train.arch.Arch`.

:class:`Net` takes raw pixels (float ``[B, C, H, W]`` holding integers 0..255) and returns
logits ``[B, classes]``. The input is either binarized (``+1`` where ``pixel >= binarize_at``
else ``-1``) or normalized ``(pixel/255 - mean[c])/std`` for a first layer on raw pixels.
The mean may differ per channel ``c``; the std is one number for all channels, because only
then is the normalized pre-activation a function of the integer accumulator the model
format computes (``acc = sum of +-pixel over all channels``): with per-channel means
``a = (acc - 255*sum_c mean[c]*W_c) / (255*std)``, ``W_c`` the sum of the channel's +-1
weights, which ``train/export.py`` folds exactly into the first thresholds. Per-channel
stds would weight the channels' pixels differently inside one accumulator, which no
threshold on ``acc`` can express.
Padding is explicit and uses the value the exported model will use: raw pixels are padded
with 0 *before* normalization (``pad_value`` 0), binary activations with -1.
Max-pool follows a binary activation, so its exported form (an OR) is exact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .arch import Arch
from .layers import METHODS, PAPER, BinaryBlock, OutputLayer, SbnOptions

# Fashion-MNIST training-set pixel statistics (of pixel/255); folded into the first threshold.
DEFAULT_INPUT_MEAN = 0.2860
DEFAULT_INPUT_STD = 0.3530

# Per dataset: (per-channel means, one std) of pixel/255. MNIST keeps the Fashion-MNIST
# numbers it has always been trained with. CIFAR-10: the usual per-channel training-set
# means (0.4914, 0.4822, 0.4465); the std is the root mean square of the usual per-channel
# stds (0.2470, 0.2435, 0.2616), so the normalized input has unit variance overall.
INPUT_STATS = {
    "fashion-mnist": ((DEFAULT_INPUT_MEAN,), DEFAULT_INPUT_STD),
    "mnist": ((DEFAULT_INPUT_MEAN,), DEFAULT_INPUT_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), 0.2508),
}


def input_stats(dataset: str) -> tuple[tuple[float, ...], float]:
    """``(means, std)`` used to normalize raw pixels of ``dataset`` (default: Fashion-MNIST's)."""
    return INPUT_STATS.get(dataset, ((DEFAULT_INPUT_MEAN,), DEFAULT_INPUT_STD))


class Net(nn.Module):
    def __init__(self, arch: Arch, input_shape=(1, 28, 28), classes: int = 10,
                 method: str = "sbn", binarize_at: int | None = None,
                 input_mean=DEFAULT_INPUT_MEAN, input_std: float = DEFAULT_INPUT_STD,
                 init_bound: float | None = None, learn_nu: bool = False,
                 sbn: SbnOptions = PAPER):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.arch, self.method, self.binarize_at = arch, method, binarize_at
        self.input_shape, self.classes = tuple(input_shape), classes
        channels = self.input_shape[0]
        means = tuple(float(m) for m in (input_mean if hasattr(input_mean, "__len__")
                                         else (input_mean,)))
        if len(means) == 1:
            means *= channels
        if len(means) != channels:
            raise ValueError(f"input_mean has {len(means)} values for {channels} channels")
        if hasattr(input_std, "__len__"):
            raise ValueError("input_std must be one number for all channels (a per-channel "
                             "std cannot be folded into thresholds on the accumulator)")
        if not float(input_std) > 0:
            raise ValueError(f"input_std must be positive, got {input_std}")
        self.input_mean, self.input_std = means, float(input_std)
        # Equal means: a Python scalar, exactly the arithmetic of the one-channel original.
        self._mean_scalar = means[0] if len(set(means)) == 1 else None
        self.register_buffer("_mean", torch.tensor(means, dtype=torch.float32)
                             .reshape(1, channels, 1, 1), persistent=False)
        self.blocks = nn.ModuleList()
        self.ops: list[str] = []  # "conv" | "pool" | "dense" per hidden item
        shapes = arch.shapes(self.input_shape)
        for layer, shape_in in zip(arch.hidden, shapes):
            self.ops.append(layer.op)
            if layer.op == "pool":
                self.blocks.append(nn.Identity())
            elif layer.op == "conv":
                self.blocks.append(BinaryBlock("conv", shape_in[0], layer.width, method,
                                               init_bound, learn_nu, sbn))
            else:
                n = shape_in[0] * shape_in[1] * shape_in[2]
                self.blocks.append(BinaryBlock("dense", n, layer.width, method, init_bound,
                                               learn_nu, sbn))
        c, h, w = shapes[-1]
        self.output = OutputLayer(c * h * w, classes, method, init_bound, learn_nu, sbn)

    def binarizing_layers(self) -> list[nn.Module]:
        """The blocks with weights (in order), then the output layer."""
        return [b for op, b in zip(self.ops, self.blocks) if op != "pool"] + [self.output]

    def effective_nus(self, nu: float) -> list[float]:
        """Each binarizing layer's sharpness (``nu`` itself unless ``learn_nu``)."""
        with torch.no_grad():
            return [float(layer.nu_eff(nu)) for layer in self.binarizing_layers()]

    @property
    def hidden_pad_value(self) -> float:
        return 0.0 if self.method == "float" else -1.0

    def prepare_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Binarized (+-1) or normalized input, float32, same shape as ``pixels``."""
        if self.binarize_at is not None:
            return torch.where(pixels >= self.binarize_at, 1.0, -1.0).to(torch.float32)
        x = pixels.to(torch.float32) / 255.0
        if self._mean_scalar is not None:
            x = x - self._mean_scalar
        else:
            x = x - self._mean.reshape((1, -1) + (1,) * (x.dim() - 2))
        return x / self.input_std

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
            x = block.activation(y, nu)
        if first:
            x = self.prepare_input(x)
        return self.output(x.flatten(1), nu)
