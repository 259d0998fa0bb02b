"""What a training run reports about its binarization, measured on held-out images.

- :func:`saturation`: fractions of weights and hidden activations where float32
  ``tanh(nu * x)`` already equals ``sign(x)`` (sbn's "tanh == sign").
- :func:`sharpness_diagnostics`: per binarizing layer, the fraction of weights whose
  argument is *frozen* (``nu * |w / s| > 9``: float32 tanh is +-1 there and its exact
  gradient is 0) and, per hidden layer, the fraction of batch-norm outputs still *alive*
  (``|nu * y| < 2``: where ``tanh`` still passes a real gradient). In the hard phase
  (``nu = inf``) every non-zero argument counts as frozen and only exact zeros as alive.
- :func:`histograms`: the forward weights and hidden activations over [-1, 1] (plots).

All take the network in eval mode and never change its parameters.
"""

from __future__ import annotations

import torch

from .layers import activate, binarize_weight, is_hard, weight_argument
from .net import Net

FROZEN_AT = 9.0   # nu * |x| above this: float32 tanh(nu*x) == +-1, gradient exactly 0
ALIVE_BELOW = 2.0  # |nu * y| below this: sech^2 >= 0.07, the activation passes gradient


def _collect(net: Net, images: torch.Tensor, nu, device: str, batch: int = 1000):
    """Hidden batch-norm outputs on ``images``: one list of tensors per batch of ``batch``
    images, each made when the previous is done with (at most one batch is held)."""
    for start in range(0, images.shape[0], batch):
        collect: list = []
        net(images[start:start + batch].to(device), nu, collect=collect)
        yield collect


@torch.no_grad()
def saturation(net: Net, images: torch.Tensor, nu, device: str, batch: int = 1000) -> dict:
    """``{"weights": f, "activations": f}``: the fractions where float32 ``tanh(nu * x)``
    (``x`` the weight argument or the batch-norm output) is exactly +-1."""
    net.eval()
    layers = net.binarizing_layers()

    def saturated(n, x):
        x = x.float()
        if is_hard(n):
            return int((x != 0).sum())
        return int((torch.tanh(n * x).abs() == 1).sum())

    w_sat = sum(saturated(m.nu_eff(nu), weight_argument(m.weight, m.options)) for m in layers)
    w_total = sum(m.weight.numel() for m in layers)
    hidden_nus = [m.nu_eff(nu) for m in layers[:-1]]
    a_sat = a_total = 0
    for collect in _collect(net, images, nu, device, batch):
        a_total += sum(y.numel() for y in collect)
        a_sat += sum(saturated(n, y) for n, y in zip(hidden_nus, collect))
    return {"weights": w_sat / max(1, w_total), "activations": a_sat / max(1, a_total)}


@torch.no_grad()
def sharpness_diagnostics(net: Net, images: torch.Tensor, nu, device: str,
                          batch: int = 1000) -> dict:
    """``{"frozen": [per binarizing layer], "alive": [per hidden layer]}`` fractions (see
    the module docstring), on ``images`` (the trainer passes the first 1000 test images)."""
    net.eval()
    layers = net.binarizing_layers()
    frozen = []
    for m in layers:
        arg = (float(m.nu_eff(nu)) * weight_argument(m.weight, m.options).double()).abs()
        frozen.append(float((arg > FROZEN_AT).double().mean()))
    alive_count = [0] * (len(layers) - 1)
    total = [0] * (len(layers) - 1)
    for collect in _collect(net, images, nu, device, batch):
        for i, (m, y) in enumerate(zip(layers, collect)):
            arg = (float(m.nu_eff(nu)) * y.double()).abs()
            arg = torch.where(y == 0, torch.zeros_like(arg), arg)  # inf * 0 is alive
            alive_count[i] += int((arg < ALIVE_BELOW).sum())
            total[i] += y.numel()
    return {"frozen": frozen, "alive": [a / max(1, t) for a, t in zip(alive_count, total)]}


HISTOGRAM_BINS = 41


@torch.no_grad()
def histograms(net: Net, images: torch.Tensor, nu, device: str, most: int = 500,
               bins: int = HISTOGRAM_BINS) -> dict:
    """Histograms over [-1, 1] of the forward weights and the hidden activations (of the
    first 500 images, or of ``most`` if fewer)."""
    net.eval()
    layers = net.binarizing_layers()
    ws = [binarize_weight(m.weight, net.method, m.nu_eff(nu), m.options).flatten().float()
          .cpu() for m in layers]
    collect: list = []
    net(images[:min(500, most)].to(device), nu, collect=collect)
    acts = [activate(y, net.method, m.nu_eff(nu), m.options).flatten().float().cpu()
            for m, y in zip(layers, collect)]
    lo, hi = (-1.0, 1.0) if net.method != "float" else (None, None)

    def hist(values):
        v = torch.cat(values) if values else torch.zeros(1)
        a, b = (float(v.min()), float(v.max()) + 1e-9) if lo is None else (lo, hi)
        return {"counts": torch.histc(v, bins, a, b).tolist(), "range": [a, b]}

    return {"nu": float(nu), "weights": hist(ws), "activations": hist(acts)}
