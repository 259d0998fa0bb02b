"""Small Brevitas binary networks exported to QONNX, for the importer's tests (CPU, seconds).

:func:`mlp` and :func:`cnn` build networks of ``QuantLinear``/``QuantConv2d`` with 1-bit
bipolar weights, batch norm and bipolar activations; :func:`randomize_bn` gives every batch
norm random statistics with negative, zero and tiny ``gamma`` so that thresholds land on
both signs and constant channels; :func:`export` writes the QONNX file (Brevitas's
``export_qonnx``, either exporter).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def _quant():
    import brevitas.nn as qnn
    from brevitas.quant import Int32Bias, SignedBinaryActPerTensorConst, \
        SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat

    return qnn, SignedBinaryWeightPerTensorConst, SignedBinaryActPerTensorConst, \
        Uint8ActPerTensorFloat, Int32Bias


class Net(nn.Module):
    """``input`` (an input quantizer or an ``x - c`` binarizer or nothing), then ``body``."""

    def __init__(self, body: nn.Sequential, input_mode: str, flat: bool):
        super().__init__()
        qnn, _, act, uint8, _ = _quant()
        self.input_mode = input_mode
        self.flat = flat
        if input_mode == "binarize":
            self.input_quant = qnn.QuantIdentity(act_quant=act)
        elif input_mode == "uint8":
            self.input_quant = qnn.QuantIdentity(act_quant=uint8, return_quant_tensor=True)
        self.body = body

    def forward(self, x):
        if self.flat:
            x = x.flatten(1)
        if self.input_mode == "binarize":
            x = self.input_quant(x - 127.5)
        elif self.input_mode == "uint8":
            x = self.input_quant(x)
        return self.body(x)


def mlp(hidden=(32, 24), inputs=784, classes=10, input_mode="binarize", bias=None,
        activation="identity", seed=0) -> Net:
    """784-h1-h2-10; ``bias``: None (output without bias) or 'int32' (Int32Bias);
    ``activation``: 'identity' (QuantIdentity) or 'hardtanh' (QuantHardTanh), both bipolar.
    Weights drawn under ``torch.manual_seed(seed)``: the same net whatever ran before."""
    torch.manual_seed(seed)
    qnn, weight, act, _, int32 = _quant()
    kind = {"identity": qnn.QuantIdentity, "hardtanh": qnn.QuantHardTanh}[activation]
    layers, n = [], inputs
    for h in hidden:
        layers += [qnn.QuantLinear(n, h, bias=False, weight_quant=weight), nn.BatchNorm1d(h),
                   kind(act_quant=act, return_quant_tensor=bias is not None)]
        n = h
    extra = dict(bias=True, bias_quant=int32) if bias == "int32" else dict(bias=False)
    layers.append(qnn.QuantLinear(n, classes, weight_quant=weight, **extra))
    return Net(nn.Sequential(*layers), input_mode, flat=True)


def cnn(input_mode="uint8", channels=(8, 8), classes=10, padding=0, bias=None,
        seed=0) -> Net:
    """conv-bn-act-pool-conv-bn-act-flatten-dense on 1x28x28 (padding of the first conv);
    weights drawn under ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    qnn, weight, act, _, int32 = _quant()
    c1, c2 = channels
    side = ((28 + 2 * padding - 2) // 2) - 2
    extra = dict(bias=True, bias_quant=int32) if bias == "int32" else dict(bias=False)
    body = nn.Sequential(
        qnn.QuantConv2d(1, c1, 3, padding=padding, bias=False, weight_quant=weight),
        nn.BatchNorm2d(c1), qnn.QuantIdentity(act_quant=act), nn.MaxPool2d(2),
        qnn.QuantConv2d(c1, c2, 3, bias=False, weight_quant=weight), nn.BatchNorm2d(c2),
        qnn.QuantIdentity(act_quant=act, return_quant_tensor=bias is not None),
        nn.Flatten(), qnn.QuantLinear(c2 * side * side, classes, weight_quant=weight, **extra))
    return Net(body, input_mode, flat=False)


def randomize_bn(net: nn.Module, seed: int = 0, special: bool = True,
                 shape=(1, 28, 28)) -> nn.Module:
    """Batch-norm statistics measured on random pixel images of ``shape`` (so activations
    are balanced, not saturated) and random ``gamma``/``beta``; conv maps lean to -1 so
    that 2x2 max-pools (ORs) do not saturate at +1. With ``special``, channel 0 gets
    gamma 0, channel 1 a negative gamma, channel 2 a tiny one. Returns ``net`` in eval
    mode."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for module in norms:
        module.momentum = 1.0  # running statistics = the calibration batch's
    net.train()
    with torch.no_grad():
        net(torch.randint(0, 256, (256,) + tuple(shape), generator=g).float())
    for module in norms:
        n = module.num_features
        lean = 0.7 if isinstance(module, nn.BatchNorm2d) else 0.0
        with torch.no_grad():
            gamma = torch.randn(n, generator=g)
            module.weight.copy_(gamma)
            module.bias.copy_(torch.randn(n, generator=g) * 0.3 - lean * gamma.abs())
            if special and n >= 3:
                module.weight[0] = 0.0
                module.weight[1] = -abs(module.weight[1]) - 0.1
                module.weight[2] = 1e-6
        module.momentum = 0.1
    return net.eval()


def export(net: nn.Module, path, shape=(1, 1, 28, 28), dynamo: bool = True) -> None:
    """Write ``net`` as QONNX to ``path`` (random pixel-valued example input)."""
    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net.eval(), torch.rand(shape) * 255, str(path), dynamo=dynamo)
