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

Self-binarizing options (:class:`SbnOptions`; ``docs/training.md`` measures each):

- ``weight_norm``: the weight argument is ``w / s`` with ``s`` the detached mean ``|w|`` of
  the layer (``"layer"``) or of each output channel (``"channel"``), so weights and
  batch-normalized activations (scale ~1) sharpen at the same ``nu``. ``s > 0`` never
  changes ``sign(w)``, hence never the export.
- ``grad_cap`` ``c``: the forward stays ``tanh(nu * x)``; the backward is the derivative of
  ``tanh(min(nu, c) * x)`` (a bounded-sharpness gradient, as IR-Net's error-decay
  estimator caps its sharpness), so gradients never vanish as ``nu`` grows. ``None`` is
  the paper's exact gradient. ``weight_grad_cap`` gives the weights their own cap.
- ``nu = inf`` (:data:`HARD`) is the hard phase: the forward is exactly ``sign`` (weights
  and activations), the backward that of ``tanh(c * x)`` (or zero with the exact gradient,
  the limit of ``nu * sech^2(nu * x)``).

``sign(x)`` is +1 for ``x >= 0`` and -1 otherwise everywhere (weights and activations), the
same convention as the model format's ``sign * acc >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import METHODS, WEIGHT_NORMS  # noqa: F401  (torch-free, with the settings)
HARD = math.inf  # the sharpness of the hard phase: tanh(inf * x) taken as sign(x)


@dataclass(frozen=True)
class SbnOptions:
    """How ``sbn`` binarizes (see the module docstring). The defaults are the paper's."""

    weight_norm: str = "none"
    grad_cap: float | None = None
    weight_grad_cap: float | None = None  # None: the weights use ``grad_cap`` too

    @property
    def weight_cap(self) -> float | None:
        """The backward sharpness cap of the weights' tanh."""
        return self.grad_cap if self.weight_grad_cap is None else self.weight_grad_cap

    def __post_init__(self):
        if self.weight_norm not in WEIGHT_NORMS:
            raise ValueError(f"weight_norm must be one of {WEIGHT_NORMS}, "
                             f"got {self.weight_norm!r}")
        for name in ("grad_cap", "weight_grad_cap"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value}")


PAPER = SbnOptions()


NU_LOG_EXCESS_INIT = math.log(0.1)
NU_LOG_EXCESS_MAX = 10.0


def effective_nu(floor: float, log_excess: torch.Tensor | None):
    """``floor`` (no learnable nu) or the float64 0-d tensor ``floor * (1 + exp(q))``."""
    if log_excess is None or math.isinf(floor):  # the hard phase: no gradient to q
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


def is_hard(nu) -> bool:
    """``nu`` (a float or a 0-d tensor) is the hard phase's ``inf``."""
    return bool(math.isinf(float(nu.detach() if isinstance(nu, torch.Tensor) else nu)))


class _BoundedTanh(torch.autograd.Function):
    """``tanh(nu * x)`` forward (``sign(x)`` when ``nu`` is inf); backward to ``x`` is the
    derivative of ``tanh(k * x)``, ``k = min(nu, cap)``; backward to a tensor ``nu`` (a
    learnable sharpness) is the exact ``x * sech^2(nu * x)`` (0 in the hard phase)."""

    @staticmethod
    def forward(ctx, x, nu, cap):
        hard = is_hard(nu)
        y = hard_sign(x) if hard else torch.tanh(nu * x)
        ctx.save_for_backward(x, y)
        ctx.nu, ctx.cap, ctx.hard = nu, cap, hard
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        k = ctx.cap if ctx.hard else min(float(ctx.nu), ctx.cap)
        t = torch.tanh(k * x)
        grad_x = grad * (k * (1 - t * t))
        grad_nu = None
        if isinstance(ctx.nu, torch.Tensor) and ctx.needs_input_grad[1]:
            grad_nu = (torch.zeros((), dtype=ctx.nu.dtype, device=ctx.nu.device) if ctx.hard
                       else (grad * x * (1 - y * y)).sum().to(ctx.nu.dtype))
        return grad_x, grad_nu, None


def soft_sign(x: torch.Tensor, nu, grad_cap: float | None = None) -> torch.Tensor:
    """sbn's binarizer: ``tanh(nu * x)``, or ``sign(x)`` at ``nu = inf``; with ``grad_cap``
    the gradient of ``tanh(min(nu, grad_cap) * x)`` (see :class:`_BoundedTanh`). ``nu`` is
    a float or a 0-d tensor (learnable)."""
    if grad_cap is not None:
        return _BoundedTanh.apply(x, nu, grad_cap)
    if is_hard(nu):
        return hard_sign(x) * 1.0 + 0.0 * x  # d/dx of the limit is 0 almost everywhere
    return torch.tanh(nu * x)


def weight_scale(w: torch.Tensor, weight_norm: str) -> torch.Tensor | float:
    """The detached positive divisor ``s`` of the weight argument ``w / s``: 1 (``none``),
    mean ``|w|`` of the layer (``layer``, 0-d) or of each output channel (``channel``,
    shape ``[M, 1, ...]``). A tiny floor keeps an all-zero channel finite (``0 / s = 0``)."""
    if weight_norm == "none":
        return 1.0
    a = w.detach().abs()
    s = a.mean() if weight_norm == "layer" else a.flatten(1).mean(1).reshape(
        (-1,) + (1,) * (w.dim() - 1))
    return s.clamp_min(1e-12)


def weight_argument(w: torch.Tensor, options: SbnOptions) -> torch.Tensor:
    """``w / s``: what ``tanh(nu * .)`` sees (same signs as ``w``)."""
    s = weight_scale(w, options.weight_norm)
    return w if isinstance(s, float) else w / s


def binarize_weight(w: torch.Tensor, method: str, nu, options: SbnOptions = PAPER
                    ) -> torch.Tensor:
    """The weight the forward pass uses: ``tanh(nu*w/s)`` (sbn; ``sign(w)`` in the hard
    phase), ``sign`` (ste) or ``w`` (float)."""
    if method == "sbn":
        if is_hard(nu) and options.weight_cap is None:
            return soft_sign(w, nu)
        if is_hard(nu):  # sign(w) itself: w / s could round a tiny -w to -0.0 (sign +1)
            shaped = soft_sign(weight_argument(w, options), nu, options.weight_cap)
            return hard_sign(w) + (shaped - shaped.detach())
        return soft_sign(weight_argument(w, options), nu, options.weight_cap)
    if method == "ste":
        return sign_ste(w)
    return w


def activate(y: torch.Tensor, method: str, nu, options: SbnOptions = PAPER) -> torch.Tensor:
    """Hidden activation after batch norm: ``tanh(nu*y)`` (sign when hard) / ``sign`` (STE)
    / ReLU (float)."""
    if method == "sbn":
        return soft_sign(y, nu, options.grad_cap)
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
                 init_bound: float | None = None, learn_nu: bool = False,
                 options: SbnOptions = PAPER):
        super().__init__()
        self.kind, self.method, self.options = kind, method, options
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
        w = binarize_weight(self.weight, self.method, self.nu_eff(nu), self.options)
        acc = F.linear(x, w) if self.kind == "dense" else F.conv2d(x, w)
        return self.bn(acc)

    def activation(self, y: torch.Tensor, nu: float) -> torch.Tensor:
        """The block's binarizing activation of its batch-norm output ``y``."""
        return activate(y, self.method, self.nu_eff(nu), self.options)

    def forward(self, x: torch.Tensor, nu: float) -> torch.Tensor:
        return self.activation(self.pre_activation(x, nu), nu)


class OutputLayer(nn.Module):
    """Binary dense output: ``logits = scale * (x @ Wb^T + bias)``.

    ``scale`` is one learnable positive scalar shared by all classes (so it never changes
    the argmax) and ``bias`` is in accumulator units; the exported scores are
    ``acc + round(bias)`` (an int32 bias, exactly what the format allows).
    """

    def __init__(self, fan_in: int, classes: int, method: str, init_bound: float | None = None,
                 learn_nu: bool = False, options: SbnOptions = PAPER):
        super().__init__()
        self.method, self.options = method, options
        self.weight = nn.Parameter(torch.empty(classes, fan_in))
        bound = init_bound or 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(classes))
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(fan_in)))
        self.nu_log_excess = _nu_parameter(learn_nu and method == "sbn")

    def nu_eff(self, nu: float):
        return effective_nu(nu, self.nu_log_excess)

    def forward(self, x: torch.Tensor, nu: float) -> torch.Tensor:
        w = binarize_weight(self.weight, self.method, self.nu_eff(nu), self.options)
        return self.log_scale.exp() * (F.linear(x, w) + self.bias)


@torch.no_grad()
def clip_latent_weights(model: nn.Module, bound: float = 1.0) -> None:
    """Clip latent weights after each step: BinaryNet's ``[-1, 1]`` (STE), or, for sbn's
    ``--weight-clip K``, ``|w / s| <= K`` with ``s`` the layer's :func:`weight_scale` before
    the clip (so the normalized argument stays within reach of a sign flip)."""
    for module in model.modules():
        if isinstance(module, (BinaryBlock, OutputLayer)):
            s = (weight_scale(module.weight, module.options.weight_norm)
                 if module.method == "sbn" else 1.0)
            module.weight.copy_(torch.clamp(module.weight, -bound * s, bound * s))
