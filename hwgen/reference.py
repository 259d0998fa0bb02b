"""The bit-exact integer reference: the one right answer of a model for every input.

Every other implementation (torch hard evaluation, Amaranth simulation, Verilator, the
board) is checked against :func:`run`. Two engines compute the binary layers:

- ``"gemm"`` (default): +-1 values multiplied as float32 (or float64) matrices. Exact,
  because every partial sum is an integer whose magnitude is bounded by
  ``N * max|x|`` and the engine only picks a float type whose mantissa holds that bound
  (float32 below 2**24, float64 below 2**53, int64 beyond).
- ``"packed"``: what the hardware does. Activations and weights are packed 64 per
  word; ``acc = N - 2 * popcount(x XOR w)``, i.e. ``2 * popcount(XNOR) - N``.

Layers on raw (non-binarized) input always use ``"gemm"``. Activations are int8 arrays of
+-1 shaped ``[K, C, H, W]``; scores are int64 ``[K, classes]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import DatasetError, ModelFormatError
from .model import Conv2d, Dense, InputSpec, MaxPool2d, Model

ENGINES = ("gemm", "packed")
_CHUNK_ELEMENTS = 1 << 24  # largest intermediate per chunk of images, in elements
_PACKED_ELEMENTS = 1 << 22  # rows x outputs x words per XOR/popcount block
#: A layer's rows x fan-in (im2col patches, or dense inputs) per matrix product at most;
#: an image whose layer needs more is computed in bands of output rows (conv) or slices of
#: the fan-in (dense), so a single huge image runs in bounded memory.
_BAND_ELEMENTS = 1 << 23
#: Weights above which a layer keeps its int8 matrix and converts slices as it goes.
_WIDE_MATRIX = 1 << 23
#: Patch values of one conv output row at most (the smallest band computed at once).
MAX_ROW_PATCH_VALUES = 1 << 23
#: Multiply-accumulates and max-pool comparisons per image at most (the shipped CIFAR-10
#: VGG needs 2**29.2); a model that needs more is refused before anything is computed.
MAX_WORK_PER_IMAGE = 1 << 32


@dataclass
class LayerTrace:
    """One layer's result for a batch: ``acc`` (int64, before threshold; None for max-pool)
    and ``output`` (int8 +-1 activations ``[K, C, H, W]``, or int64 scores ``[K, M]``)."""

    index: int
    op: str
    acc: np.ndarray | None
    output: np.ndarray


def check_images(spec: InputSpec, images) -> np.ndarray:
    """Return ``images`` shaped ``[K, C, H, W]`` after checking size and value range.

    Any per-image shape with the same number of values is accepted (``[K, 28, 28]`` for
    a ``[1, 28, 28]`` model); values must be integers in ``[0, 2**bits - 1]``.
    """
    images = np.asarray(images)
    if images.dtype.kind not in "iu":
        raise DatasetError(f"images have dtype {images.dtype.name}; expected unsigned integers")
    if images.ndim < 1:
        raise DatasetError("images must be an array of shape [K, ...]")
    per_image = math.prod(images.shape[1:])
    if per_image != spec.size:
        raise DatasetError(
            f"images are {'x'.join(map(str, images.shape[1:])) or 'scalars'} "
            f"({per_image} values each) but the model input is {list(spec.shape)} "
            f"({spec.size} values)")
    if images.size:
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > spec.max_value:
            bad = lo if lo < 0 else hi
            raise DatasetError(f"pixel value {bad} is outside [0, {spec.max_value}] "
                               f"for a {spec.bits}-bit model input")
    return images.reshape((images.shape[0],) + spec.shape)


def binarize(spec: InputSpec, images: np.ndarray) -> np.ndarray:
    """The first layer's input: +-1 int8 when ``spec.binarize_at`` is set, else the raw
    values as int32 (they are below ``2**spec.bits``)."""
    if spec.binary:
        return np.where(images >= spec.binarize_at, np.int8(1), np.int8(-1))
    return images.astype(np.int32)


def pack_pm1(x: np.ndarray) -> np.ndarray:
    """Pack +-1 rows ``[R, N]`` into uint64 words ``[R, ceil(N/64)]`` (+1 -> 1, pad bits 0)."""
    bits = np.packbits(x > 0, axis=1)
    pad = (-bits.shape[1]) % 8
    if pad:
        bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.ascontiguousarray(bits).view(np.uint64)


def packed_dot(x_words: np.ndarray, w_words: np.ndarray, n: int) -> np.ndarray:
    """``acc[r, m] = N - 2 * popcount(x[r] XOR w[m])`` for packed +-1 vectors of length ``n``.

    Padding bits are 0 in both operands, so they never count.
    """
    rows, words = x_words.shape
    outputs = w_words.shape[0]
    out = np.empty((rows, outputs), dtype=np.int64 if n >= 1 << 31 else np.int32)
    # blocks of rows x outputs x words of at most _PACKED_ELEMENTS (one row and one output
    # at least), so a layer of any size runs in bounded memory
    per_output = max(1, _PACKED_ELEMENTS // max(1, words))
    outputs_step = min(outputs, per_output)
    rows_step = max(1, _PACKED_ELEMENTS // max(1, outputs_step * words))
    for o in range(0, outputs, outputs_step):
        w_block = w_words[None, o:o + outputs_step, :]
        for start in range(0, rows, rows_step):
            block = x_words[start:start + rows_step, None, :] ^ w_block
            out[start:start + rows_step, o:o + outputs_step] = \
                n - 2 * np.bitwise_count(block).sum(axis=-1, dtype=np.int64)
    return out


def exact_dtype(bound: int) -> type:
    """The fastest dtype in which integer sums of magnitude up to ``bound`` are all exact."""
    if bound < 1 << 24:
        return np.float32
    if bound < 1 << 53:
        return np.float64
    return np.int64


def conv_patches(x: np.ndarray, layer: Conv2d) -> tuple[np.ndarray, tuple[int, int]]:
    """im2col: ``[K*Ho*Wo, Cin*KH*KW]`` rows in (C, KH, KW) order, and ``(Ho, Wo)``."""
    return _patches(pad_input(x, layer), layer)


def pad_input(x: np.ndarray, layer: Conv2d) -> np.ndarray:
    """``x`` ``[K, C, H, W]`` with the layer's padding (of ``pad_value``) around H and W."""
    ph, pw = layer.padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=layer.pad_value)
    return x


def _patches(x: np.ndarray, layer: Conv2d) -> tuple[np.ndarray, tuple[int, int]]:
    """im2col of an already padded ``x``."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    k, c, ho, wo = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(k * ho * wo, c * kh * kw), (ho, wo)


def bounded_matmul(rows: np.ndarray, matrix: np.ndarray, dtype) -> np.ndarray:
    """``rows [R, N] @ matrix [N, M]`` computed in ``dtype`` (which must hold every partial
    sum exactly), in blocks that convert at most :data:`_BAND_ELEMENTS` values of either
    operand at a time. One product when ``matrix`` already has ``dtype`` and ``rows`` are
    small."""
    r, n = rows.shape
    outputs = matrix.shape[1]
    if matrix.dtype == dtype and rows.size <= _BAND_ELEMENTS:
        return rows.astype(dtype, copy=False) @ matrix
    out = np.empty((r, outputs), dtype=dtype)
    cols = n if matrix.dtype == dtype else max(1, _BAND_ELEMENTS // max(1, outputs))
    cols = max(1, min(n, cols, _BAND_ELEMENTS))
    row_step = max(1, _BAND_ELEMENTS // cols)
    for r0 in range(0, r, row_step):
        acc = None
        for c0 in range(0, n, cols):
            part = (rows[r0:r0 + row_step, c0:c0 + cols].astype(dtype)
                    @ matrix[c0:c0 + cols].astype(dtype, copy=False))
            if acc is None:
                acc = part
            else:
                acc += part
        out[r0:r0 + row_step] = acc
    return out


def maxpool(x: np.ndarray, layer: MaxPool2d) -> np.ndarray:
    """OR of +-1 values over each window (the max)."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].max(axis=(-2, -1))


def threshold(acc: np.ndarray, sign: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Binary batch norm: +1 where ``sign * acc >= threshold`` per channel (axis 1), else -1.

    ``acc`` may be any dtype that holds its integer values exactly; ``sign`` and
    ``thresholds`` must be exact in that dtype too (see :meth:`Reference.__init__`).
    """
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    passed = acc * sign.reshape(shape) >= thresholds.reshape(shape)
    return passed.astype(np.int8) * np.int8(2) - np.int8(1)


class Reference:
    """A model prepared for repeated evaluation (weights reshaped and packed once).

    ``Reference(model).run(images)`` returns int64 scores ``[K, classes]``;
    ``predict`` returns the argmax with ties to the lowest index.
    """

    def __init__(self, model: Model, engine: str = "gemm"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.model = model
        self.engine = engine
        self._binary_in = model.binary_inputs()
        self._matrices = []
        self._packed = []
        self._dtypes = []   # the accumulator's dtype per layer
        self._compare = []  # (sign, threshold) per hidden layer in the accumulator's dtype
        for layer, binary in zip(model.layers, self._binary_in):
            if isinstance(layer, MaxPool2d):
                self._matrices.append(None)
                self._packed.append(None)
                self._dtypes.append(None)
                self._compare.append(None)
                continue
            matrix = layer.weight.reshape(layer.out_channels, -1)
            bound = layer.fan_in * (1 if binary else model.input.max_value)
            use_packed = binary and engine == "packed"
            dtype = (np.int64 if bound >= 1 << 30 else np.int32) if use_packed \
                else exact_dtype(bound)
            self._dtypes.append(dtype)
            if use_packed:
                self._matrices.append(None)
            elif matrix.size > _WIDE_MATRIX:   # kept int8, converted a slice at a time
                self._matrices.append(matrix.T)
            else:
                self._matrices.append(np.ascontiguousarray(matrix.T, dtype=dtype))
            self._packed.append(pack_pm1(matrix) if use_packed else None)
            if layer.is_output:
                self._compare.append(None)
            else:
                # |acc| <= bound, so clamping to [-bound-1, bound+1] keeps every comparison
                # and makes the threshold exact in the accumulator's dtype.
                clamped = np.clip(layer.threshold, -bound - 1, bound + 1)
                self._compare.append((layer.sign.astype(dtype), clamped.astype(dtype)))
        self._check_work()
        per_image = max(self._per_image_elements(), 1)
        self.chunk = max(1, _CHUNK_ELEMENTS // per_image)

    def _check_work(self) -> None:
        """ModelFormatError unless an image needs at most :data:`MAX_WORK_PER_IMAGE`
        operations and one output row of every conv at most :data:`MAX_ROW_PATCH_VALUES`
        patch values (the smallest band the reference computes at once)."""
        work = 0
        shapes = self.model.shapes()
        for index, (layer, shape_out) in enumerate(zip(self.model.layers, shapes[1:])):
            if isinstance(layer, MaxPool2d):
                work += math.prod(shape_out) * layer.kernel[0] * layer.kernel[1]
                continue
            work += math.prod(shape_out) * layer.fan_in
            row = shape_out[2] * layer.fan_in
            if isinstance(layer, Conv2d) and row > MAX_ROW_PATCH_VALUES:
                raise ModelFormatError(
                    f"layer {index} (conv2d): one output row needs {row} patch values, more "
                    f"than the {MAX_ROW_PATCH_VALUES} the reference computes at once")
        if work > MAX_WORK_PER_IMAGE:
            raise ModelFormatError(f"the model needs {work} operations per image, more than "
                                   f"the {MAX_WORK_PER_IMAGE} the reference computes")

    def _per_image_elements(self) -> int:
        largest = 0
        shapes = self.model.shapes()
        for layer, shape_in, shape_out in zip(self.model.layers, shapes, shapes[1:]):
            size = math.prod(shape_in)
            if isinstance(layer, Conv2d):
                size = shape_out[1] * shape_out[2] * layer.fan_in
            largest = max(largest, size, math.prod(shape_out))
        return largest

    def _accumulate(self, index: int, x: np.ndarray) -> np.ndarray:
        layer = self.model.layers[index]
        if isinstance(layer, Dense):
            return self._product(index, x.reshape(x.shape[0], -1))
        x = pad_input(x, layer)
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        k = x.shape[0]
        ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
        band = max(1, _BAND_ELEMENTS // max(1, k * wo * layer.fan_in))
        if band >= ho:
            rows, _ = _patches(x, layer)
            acc = self._product(index, rows).reshape(k, ho, wo, -1)
        else:   # bands of output rows: the patches of one band at a time
            acc = None
            for r0 in range(0, ho, band):
                r1 = min(ho, r0 + band)
                rows, _ = _patches(x[:, :, r0 * sh:(r1 - 1) * sh + kh], layer)
                part = self._product(index, rows).reshape(k, r1 - r0, wo, -1)
                if acc is None:
                    acc = np.empty((k, ho, wo, part.shape[-1]), dtype=part.dtype)
                acc[:, r0:r1] = part
        return acc.transpose(0, 3, 1, 2)

    def _product(self, index: int, rows: np.ndarray) -> np.ndarray:
        """The accumulators ``[R, M]`` of layer ``index`` for +-1 (or raw) ``rows [R, N]``."""
        if self._packed[index] is not None:
            return packed_dot(pack_pm1(rows), self._packed[index],
                              self.model.layers[index].fan_in)
        return bounded_matmul(rows, self._matrices[index], self._dtypes[index])

    def forward(self, images: np.ndarray, trace: bool = False):
        """Scores for a checked batch ``[K, C, H, W]``; with ``trace``, also per-layer results."""
        x = binarize(self.model.input, images)
        traces = []
        for index, layer in enumerate(self.model.layers):
            if isinstance(layer, MaxPool2d):
                acc, x = None, maxpool(x, layer)
            else:
                acc = self._accumulate(index, x)
                if layer.is_output:
                    bias = 0 if layer.bias is None else layer.bias.astype(np.int64)
                    x = acc.astype(np.int64) + bias
                else:
                    x = threshold(acc, *self._compare[index])
                    if isinstance(layer, Dense):
                        x = x.reshape(x.shape[0], -1, 1, 1)
            if trace:
                traces.append(LayerTrace(index, layer.op,
                                         None if acc is None else acc.astype(np.int64), x))
        return (x, traces) if trace else x

    def _chunks(self, images: np.ndarray, progress: bool):
        """``(start, scores)`` for each chunk of checked ``images`` (a tqdm bar with
        ``progress``)."""
        starts = range(0, images.shape[0], self.chunk)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="reference", unit="chunk", leave=False)
        for start in starts:
            yield start, self.forward(images[start:start + self.chunk])

    def run(self, images, progress: bool = False) -> np.ndarray:
        """Int64 scores ``[K, classes]`` for any batch of images (checked, then chunked)."""
        images = check_images(self.model.input, images)
        scores = np.empty((images.shape[0], len(self.model.classes)), dtype=np.int64)
        for start, chunk in self._chunks(images, progress):
            scores[start:start + self.chunk] = chunk
        return scores

    def predict(self, images, progress: bool = False) -> np.ndarray:
        """Int64 predicted classes ``[K]`` (the scores are kept a chunk at a time only)."""
        images = check_images(self.model.input, images)
        predictions = np.empty(images.shape[0], dtype=np.int64)
        for start, chunk in self._chunks(images, progress):
            predictions[start:start + self.chunk] = predict(chunk)
        return predictions

    def trace(self, image) -> list[LayerTrace]:
        """Every layer's accumulator and output for one image (for hunting hardware mismatches)."""
        images = check_images(self.model.input, np.asarray(image)[None])
        return self.forward(images, trace=True)[1]


def predict(scores: np.ndarray) -> np.ndarray:
    """Argmax over classes, ties to the lowest index, as int64 ``[K]``."""
    return np.argmax(scores, axis=1).astype(np.int64)


def run(model: Model, images, engine: str = "gemm", progress: bool = False) -> np.ndarray:
    """Int64 scores ``[K, classes]`` of ``model`` on ``images``."""
    return Reference(model, engine).run(images, progress=progress)
