"""Random but realistic models for tests and benchmarks (NumPy only).

:func:`random_model` builds a valid :class:`~hwgen.model.Model` from a compact layer list::

    random_model(rng, (1, 9, 7), [conv(4, 3, stride=2, padding=1, pad_value=1), pool(2),
                                  dense(13)], classes=5, binarize_at=100)

Thresholds are drawn near the centre of each channel's accumulator distribution, so most
channels really switch; about one channel in ten is pushed out of range (always on or
always off, clamped as a writer would) to exercise clamping.
"""

from __future__ import annotations

import math

import numpy as np

from .model import Conv2d, Dense, InputSpec, MaxPool2d, Model, accumulator_range, output_shape


def conv(out: int, kernel=3, stride=1, padding=0, pad_value=-1) -> dict:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return {"op": "conv2d", "out": out, "kernel": pair(kernel), "stride": pair(stride),
            "padding": pair(padding), "pad_value": pad_value}


def pool(kernel=2, stride=None) -> dict:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return {"op": "maxpool2d", "kernel": pair(kernel), "stride": pair(stride or kernel)}


def dense(out: int) -> dict:
    return {"op": "dense", "out": out}


def _pm1(rng: np.random.Generator, shape) -> np.ndarray:
    return (rng.integers(0, 2, size=shape, dtype=np.int8) * 2 - 1).astype(np.int8)


def _threshold_sign(rng, weight: np.ndarray, binary: bool, max_value: int):
    m = weight.shape[0]
    flat = weight.reshape(m, -1).astype(np.int64)
    n = flat.shape[1]
    sign = _pm1(rng, m)
    if binary:
        centre, spread = np.zeros(m), math.sqrt(n)
    else:
        centre, spread = flat.sum(axis=1) * max_value / 2, math.sqrt(n) * max_value / 3
    threshold = np.rint(sign * centre + rng.normal(0, spread, m)).astype(np.int64)
    lo, hi = accumulator_range(Dense(weight=weight.reshape(m, -1)), binary, max_value)
    clamp = rng.random(m) < 0.1
    threshold[clamp] = rng.choice([lo - 1, hi + 1], size=int(clamp.sum()))
    return np.clip(threshold, lo - 1, hi + 1).astype(np.int32), sign


def random_model(rng: np.random.Generator, input_shape=(1, 8, 8), layers=(), classes: int = 10,
                 bits: int = 8, binarize_at: int | None = 128, bias: bool = True) -> Model:
    """A valid model: ``layers`` (from :func:`conv`, :func:`pool`, :func:`dense`) then a dense
    output layer with ``classes`` outputs (and a random int32 bias when ``bias``)."""
    spec = InputSpec(tuple(input_shape), bits, binarize_at)
    shape, binary, built = spec.shape, spec.binary, []
    for item in layers:
        if item["op"] == "maxpool2d":
            layer = MaxPool2d(item["kernel"], item["stride"])
        else:
            if item["op"] == "dense":
                weight = _pm1(rng, (item["out"], math.prod(shape)))
            else:
                weight = _pm1(rng, (item["out"], shape[0]) + item["kernel"])
            threshold, sign = _threshold_sign(rng, weight, binary, spec.max_value)
            if item["op"] == "dense":
                layer = Dense(weight, threshold, sign)
            else:
                layer = Conv2d(weight, threshold, sign, item["stride"], item["padding"],
                               item["pad_value"])
        built.append(layer)
        shape, binary = output_shape(layer, shape), True
    n = math.prod(shape)
    out_bias = rng.integers(-n, n + 1, size=classes).astype(np.int32) if bias else None
    built.append(Dense(_pm1(rng, (classes, n)), bias=out_bias))
    return Model(spec, built, [f"class{i}" for i in range(classes)],
                 {"dataset": "random", "method": "random"}).validate()


def random_images(rng: np.random.Generator, spec: InputSpec, count: int) -> np.ndarray:
    """``count`` images ``[count, C, H, W]`` of uniform values in ``[0, 2**bits - 1]``."""
    dtype = np.uint8 if spec.bits <= 8 else np.uint32
    return rng.integers(0, spec.max_value + 1, size=(count,) + spec.shape).astype(dtype)


def lfc_model(rng: np.random.Generator) -> Model:
    """An LFC-sized network (784-1024-1024-1024-10, binarized input) with random parameters."""
    return random_model(rng, (1, 28, 28), [dense(1024), dense(1024), dense(1024)], classes=10,
                        binarize_at=128)


def calibrate_thresholds(model: Model, images: np.ndarray) -> Model:
    """``model`` with every hidden threshold moved to a quantile of its channel's
    ``sign * acc`` over ``images`` (layer by layer, each on the calibrated layers before it),
    so that about half of the activations are +1 on these images: the median, or before a
    ``KH x KW`` max-pool the quantile that leaves half of the pooled values +1. Random
    thresholds on random images often saturate a deep stack (after an OR pool most values
    are +1), and a network whose activations are constant cannot tell a wrong unit from a
    right one. An output layer's bias becomes minus the median of each class's ``acc``, so
    that no class wins on its bias alone."""
    from dataclasses import replace

    from .reference import Reference, check_images

    images = check_images(model.input, images)
    layers = list(model.layers)
    for index, layer in enumerate(layers):
        if isinstance(layer, MaxPool2d):
            continue
        probe = Model(model.input, layers, model.classes, model.provenance)
        acc = Reference(probe).forward(images, trace=True)[1][index].acc
        if layer.is_output:
            if layer.bias is not None:
                bias = -np.floor(np.median(acc, axis=0)).astype(np.int32)
                layers[index] = replace(layer, bias=bias)
            continue
        m = layer.out_channels
        signed = acc.reshape(acc.shape[0], m, -1).transpose(1, 0, 2).reshape(m, -1)
        signed = signed * layer.sign.astype(np.int64)[:, None]
        after = layers[index + 1] if index + 1 < len(layers) else None
        taps = math.prod(after.kernel) if isinstance(after, MaxPool2d) else 1
        passing = 1 - 0.5 ** (1 / taps)  # P(+1) before the pool's OR over `taps` values
        threshold = np.ceil(np.quantile(signed, 1 - passing, axis=1)).astype(
            layer.threshold.dtype)
        layers[index] = replace(layer, threshold=threshold)
    return Model(model.input, layers, model.classes, model.provenance).validate()
