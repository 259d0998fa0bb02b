"""Binarizing building blocks for the three training methods.

- ``sbn`` (self-binarizing, Lahoud et al. 2019): weights are ``tanh(nu * w)``, hidden
  activations ``tanh(nu * BN(x))``; ``nu`` grows during training until tanh is sign.
- ``ste`` (BinaryNet): ``sign`` in the forward pass, clipped straight-through gradient
  (gradient passes where ``|x| <= 1``); latent weights are clipped to [-1, 1] after each
  optimizer step (:func:`clip_latent_weights`).
- ``float``: real weights, ReLU activations (the upper bound; not exportable).

Learnable ``nu`` (``--nu-learnable``, sbn only): each layer with binarizing weights gets one
parameter ``q`` (``nu_log_excess``) and uses ``nu_eff = floor * (1 + exp(q))``, i.e.
``log nu_eff = log floor + softplus(q)``, where ``floor`` is the schedule's ``nu(t)``. So
``nu_eff >= floor`` always (computed in float64, where ``floor + floor*exp(q) >= floor``
holds exactly), the schedule still forces every layer to at least ``nu_end`` at the end
(tanh == sign as without it), and ``q`` acts on a log scale of ``nu``, the scale on which
tanh's shape changes (see ``train/schedule.py``). ``q`` starts at ``log(0.1)`` (``nu_eff``
1.1x the floor) and is clamped at ``NU_LOG_EXCESS_MAX`` (at most ~22000x the floor).

``sign(x)`` is +1 for ``x >= 0`` and -1 otherwise everywhere (weights and activations), the
same convention as the model format's ``sign * acc >= threshold``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

METHODS = ("sbn", "ste", "float")


NU_LOG_EXCESS_INIT = math.log(0.1)
NU_LOG_EXCESS_MAX = 10.0


def effective_nu(floor: float, log_excess: torch.Tensor | None):
    """``floor`` (no learnable nu) or the float64 0-d tensor ``floor * (1 + exp(q))``."""
    if log_excess is None:
        return floor
    return floor + floor * torch.exp(log_excess.double().clamp(max=NU_LOG_EXCESS_MAX))


def _nu_parameter(learn_nu: bool):
    return nn.Parameter(torch.tensor(NU_LOG_EXCESS_INIT)) if learn_nu else None


def hard_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0`` else -1, same dtype as ``x``."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return hard_sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign forward; clipped straight-through (hardtanh) gradient backward."""
    return _SignSTE.apply(x)


def binarize_weight(w: torch.Tensor, method: str, nu: float) -> torch.Tensor:
    """The weight the forward pass uses: ``tanh(nu*w)`` (sbn), ``sign`` (ste) or ``w`` (float)."""
    if method == "sbn":
        return torch.tanh(nu * w)
    if method == "ste":
        return sign_ste(w)
    return w


def activate(y: torch.Tensor, method: str, nu: float) -> torch.Tensor:
    """Hidden activation after batch norm: ``tanh(nu*y)`` / ``sign`` (STE) / ReLU (float)."""
    if method == "sbn":
        return torch.tanh(nu * y)
    if method == "ste":
        return sign_ste(y)
    return F.relu(y)


class BinaryBlock(nn.Module):
    """Dense or 3x3 conv (no bias) -> BatchNorm -> binarizing activation.

    Latent weights start uniform in ``[-init_bound, init_bound]`` (default
    ``1/sqrt(fan_in)``, PyTorch's usual scale).

    Input: ``[B, N]`` (dense) or ``[B, Cin, H, W]`` (conv, already padded: the block itself
    uses padding 0, the network pads with the value the exported model uses). Output has
    values in [-1, 1] (sbn), {-1, +1} (ste) or [0, inf) (float).
    """

    def __init__(self, kind: str, fan_in_channels: int, out: int, method: str,
                 init_bound: float | None = None, learn_nu: bool = False):
        super().__init__()
        self.kind, self.method = kind, method
        # registered only when learnable, so other state dicts (and checkpoints) are unchanged
        self.nu_log_excess = _nu_parameter(learn_nu and method == "sbn")
        if kind == "dense":
            self.weight = nn.Parameter(torch.empty(out, fan_in_channels))
            self.bn = nn.BatchNorm1d(out)
        else:
            self.weight = nn.Parameter(torch.empty(out, fan_in_channels, 3, 3))
            self.bn = nn.BatchNorm2d(out)
        bound = init_bound or 1 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)

    def nu_eff(self, nu: float):
        """The sharpness this layer uses when the schedule says ``nu`` (its floor)."""
        return effective_nu(nu, self.nu_log_excess)

    def pre_activation(self, x: torch.Tensor, nu: float) -> torch.Tensor:
        """``BN(x * W)``: the value whose sign the exported threshold decides."""
        w = binarize_weight(self.weight, self.method, self.nu_eff(nu))
        acc = F.linear(x, w) if self.kind == "dense" else F.conv2d(x, w)
        return self.bn(acc)

    def forward(self, x: torch.Tensor, nu: float) -> torch.Tensor:
        return activate(self.pre_activation(x, nu), self.method, self.nu_eff(nu))


class OutputLayer(nn.Module):
    """Binary dense output: ``logits = scale * (x @ Wb^T + bias)``.

    ``scale`` is one learnable positive scalar shared by all classes (so it never changes
    the argmax) and ``bias`` is in accumulator units; the exported scores are
    ``acc + round(bias)`` (an int32 bias, exactly what the format allows).
    """

    def __init__(self, fan_in: int, classes: int, method: str, init_bound: float | None = None,
                 learn_nu: bool = False):
        super().__init__()
        self.method = method
        self.weight = nn.Parameter(torch.empty(classes, fan_in))
        bound = init_bound or 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(classes))
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(fan_in)))
        self.nu_log_excess = _nu_parameter(learn_nu and method == "sbn")

    def nu_eff(self, nu: float):
        return effective_nu(nu, self.nu_log_excess)

    def forward(self, x: torch.Tensor, nu: float) -> torch.Tensor:
        w = binarize_weight(self.weight, self.method, self.nu_eff(nu))
        return self.log_scale.exp() * (F.linear(x, w) + self.bias)


@torch.no_grad()
def clip_latent_weights(model: nn.Module) -> None:
    """BinaryNet's clip of latent weights to [-1, 1] (STE only; called after each step)."""
    for module in model.modules():
        if isinstance(module, (BinaryBlock, OutputLayer)):
            module.weight.clamp_(-1.0, 1.0)
