"""Trained :class:`~train.net.Net` -> :class:`hwgen.model.Model` (exact integers), and the
torch *hard evaluation*, which is defined as the exported integer semantics.

- :func:`to_model`: weights become ``sign(w)`` (int8 +-1, ``sign(0) = +1``), each BN +
  activation becomes ``(sign, threshold)`` by :func:`train.fold.fold_bn` (input
  normalization of a raw first layer folded in), max-pool stays max-pool, and the output
  layer keeps ``acc + round(bias)`` (int32). The learnable output scale is positive and
  shared, so dropping it never changes the argmax.
- :func:`hard_scores`: the model's integer scores computed with torch in float64 (every
  partial sum is an integer below 2**53, so the float64 arithmetic is exact). This is the
  "torch hard evaluation"; :func:`check_against_reference` asserts that
  :mod:`hwgen.reference` predicts the same class on every image.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from torch.nn import functional as F

from hwgen.model import (Conv2d, Dense, InputSpec, MaxPool2d, Model, accumulator_range,
                         channel_ranges)
from hwgen.reference import Reference, predict

from .fold import fold_bn
from .net import Net


class ExportError(Exception):
    """The exported model disagrees with the torch hard evaluation (a bug, not user input)."""


def _pm1(w: torch.Tensor) -> np.ndarray:
    return np.where(w.detach().cpu().double().numpy() >= 0, 1, -1).astype(np.int8)


def input_fold(weight: np.ndarray, means, std) -> tuple[list[Fraction], Fraction]:
    """Exact ``(offset per output channel, scale)`` that fold ``(pixel/255 - means[c])/std``
    into a first layer on raw pixels: ``a = (acc - offset) / scale`` with
    ``offset = 255 * sum_c means[c] * W_c`` (``W_c``: the sum of the +-1 weights that see
    input channel ``c``) and ``scale = 255 * std``, as exact rationals of the given floats.
    ``weight`` is ``[M, C, kh, kw]`` or ``[M, C*H*W]`` (C, H, W order)."""
    means = [Fraction(float(m)) for m in means]
    per_channel = weight.reshape(weight.shape[0], len(means), -1).astype(np.int64).sum(axis=2)
    offset = [255 * sum((Fraction(int(w)) * m for w, m in zip(row, means)), Fraction(0))
              for row in per_channel]
    return offset, 255 * Fraction(float(std))


def to_model(net: Net, classes: list[str], provenance: dict | None = None,
             bits: int = 8) -> Model:
    """Fold ``net`` (an sbn or ste :class:`Net`, any device) into a validated hwgen Model."""
    if net.method == "float":
        raise ValueError("a float network has no binary export")
    input_max = (1 << bits) - 1
    spec = InputSpec(tuple(net.input_shape), bits, net.binarize_at)
    layers = []
    binary = net.binarize_at is not None
    for op, block in zip(net.ops, net.blocks):
        if op == "pool":
            layers.append(MaxPool2d((2, 2), (2, 2)))
            continue
        weight = _pm1(block.weight)
        lo, hi = channel_ranges(weight, binary, input_max)
        bn = block.bn
        offset, scale = None, 1.0
        if not binary:
            offset, scale = input_fold(weight, net.input_mean, net.input_std)
        sign, threshold = fold_bn(bn.weight.detach().cpu().double().numpy(),
                                  bn.bias.detach().cpu().double().numpy(),
                                  bn.running_mean.detach().cpu().double().numpy(),
                                  bn.running_var.detach().cpu().double().numpy(),
                                  float(bn.eps), lo, hi, offset, scale)
        if op == "conv":
            layers.append(Conv2d(weight, threshold, sign, (1, 1), (1, 1),
                                 -1 if binary else 0))
        else:
            layers.append(Dense(weight, threshold, sign))
        binary = True
    bias = np.rint(net.output.bias.detach().cpu().double().numpy())
    bias = np.clip(bias, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
    layers.append(Dense(_pm1(net.output.weight), bias=bias))
    return Model(spec, layers, list(classes), dict(provenance or {})).validate()


def hard_scores(model: Model, images, batch_size: int = 1000,
                device: str = "cpu") -> torch.Tensor:
    """Integer scores int64 ``[K, classes]`` of ``model`` on uint8/int ``images`` [K, C, H, W],
    computed in torch float64 (exact: all sums are integers far below 2**53), on ``device``
    (the returned tensor is on the CPU). The export check uses the CPU; training's per-epoch
    log may use its GPU."""
    images = torch.as_tensor(np.asarray(images)).reshape((-1,) + tuple(model.input.shape))
    params = []
    for layer in model.layers:
        if isinstance(layer, MaxPool2d):
            params.append(None)
            continue
        p = {"w": torch.from_numpy(layer.weight.astype(np.float64)).to(device)}
        if not layer.is_output:
            p["sign"] = torch.from_numpy(layer.sign.astype(np.float64)).to(device)
            p["thr"] = torch.from_numpy(layer.threshold.astype(np.float64)).to(device)
        else:
            p["bias"] = torch.from_numpy((np.zeros(layer.out_channels, np.int64)
                                          if layer.bias is None else layer.bias)
                                         .astype(np.float64)).to(device)
        params.append(p)
    # thresholds are integers below 2**53 in magnitude once clamped; check it.
    for layer, binary in zip(model.layers, model.binary_inputs()):
        if not isinstance(layer, MaxPool2d) and not layer.is_output:
            lo, hi = accumulator_range(layer, binary, model.input.max_value)
            assert max(abs(lo), abs(hi)) < 2 ** 52
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device=device, dtype=torch.float64)
        if model.input.binary:
            x = torch.where(x >= model.input.binarize_at, 1.0, -1.0).to(torch.float64)
        for layer, p in zip(model.layers, params):
            if isinstance(layer, MaxPool2d):
                x = F.max_pool2d(x, layer.kernel, layer.stride)
                continue
            if isinstance(layer, Conv2d):
                ph, pw = layer.padding
                x = F.pad(x, (pw, pw, ph, ph), value=float(layer.pad_value))
                acc = F.conv2d(x, p["w"], stride=tuple(layer.stride))
                shape = (1, -1, 1, 1)
            else:
                acc = x.flatten(1) @ p["w"].T
                shape = (1, -1)
            if layer.is_output:
                x = acc + p["bias"]
            else:
                passed = acc * p["sign"].reshape(shape) >= p["thr"].reshape(shape)
                x = torch.where(passed, 1.0, -1.0).to(torch.float64)
        out.append(x.round().to(torch.int64).cpu())
    return torch.cat(out) if out else torch.empty((0, len(model.classes)), dtype=torch.int64)


#: Images per block of :func:`hard_predict` and :func:`check_against_reference`: only one
#: block's scores are held at a time (a test set of millions of tiny images held all of
#: them, about 250 bytes per image).
PREDICT_BLOCK = 1 << 14


def hard_predict(model: Model, images, device: str = "cpu",
                 batch_size: int = 1000) -> np.ndarray:
    """Argmax of :func:`hard_scores`, ties to the lowest index (int64 [K]), computed in
    blocks of :data:`PREDICT_BLOCK` images."""
    images = np.asarray(images)
    return np.concatenate([predict(hard_scores(model, images[a:a + PREDICT_BLOCK], batch_size,
                                               device).numpy())
                           for a in range(0, len(images), PREDICT_BLOCK)] or
                          [np.zeros(0, np.int64)])


def check_against_reference(model: Model, images, expected_predictions=None,
                            batch_size: int = 1000) -> np.ndarray:
    """Assert the hwgen integer reference equals the torch hard evaluation on every image
    (scores and predictions), in blocks of :data:`PREDICT_BLOCK` images; returns the
    predictions. Raises :class:`ExportError`."""
    images = np.asarray(images)
    reference = Reference(model)
    blocks = []
    for a in range(0, len(images), PREDICT_BLOCK):
        torch_scores = hard_scores(model, images[a:a + PREDICT_BLOCK], batch_size).numpy()
        ref_scores = reference.run(images[a:a + PREDICT_BLOCK])
        if not np.array_equal(torch_scores, ref_scores):
            bad = int(np.argwhere((torch_scores != ref_scores).any(axis=1))[0, 0])
            raise ExportError(f"torch hard evaluation and hwgen reference differ on image "
                              f"{a + bad}: {torch_scores[bad].tolist()} vs "
                              f"{ref_scores[bad].tolist()}")
        blocks.append(predict(ref_scores))
    predictions = np.concatenate(blocks or [np.zeros(0, np.int64)])
    if expected_predictions is not None and not np.array_equal(predictions,
                                                               expected_predictions):
        raise ExportError("exported predictions differ from the expected ones")
    return predictions
