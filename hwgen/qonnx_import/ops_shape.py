"""Shape ops for :class:`~.convert.Converter`: pass-through, flatten, and ops on constants."""

from __future__ import annotations

import math

import numpy as np

from .ops_arith import check_computed_size

_FLOAT_CASTS = {1: np.float32, 11: np.float64}  # ONNX TensorProto FLOAT, DOUBLE
from .values import Binary, Const, Pixels


class ShapeOps:
    """Pass-through ops, flatten/reshape, and ops on constants."""

    def op_Identity(self, node):
        return self.take(node, 0)

    op_Dropout = op_Identity

    def _reshape(self, node, value, shape):
        shape = tuple(int(s) for s in shape)
        if isinstance(value, Const):
            try:
                return Const(value.array.reshape(shape),
                             None if value.ideal is None else value.ideal.reshape(shape))
            except ValueError:
                self.fail(node, f"cannot reshape a constant of shape "
                                f"{list(value.array.shape)} to {list(shape)}")
        size = math.prod(value.shape)
        if shape == tuple(value.shape):
            return value
        flat = (1, size)
        if shape not in (flat, (-1, size), (1, -1)):
            self.fail(node, f"reshapes {list(value.shape)} to {list(shape)}; only a flatten "
                            f"to [1, {size}] is supported")
        if isinstance(value, Binary):
            return Binary(flat, value.scale)
        if isinstance(value, Pixels):
            if len(value.b) == 1:
                return Pixels(flat, value.a, value.b, value.quantized)
            per = size // value.shape[1]
            return Pixels(flat, value.a, tuple(b for b in value.b for _ in range(per)),
                          value.quantized)
        self.fail(node, "flattens a layer's output before its quantizer; quantize first")

    def op_Reshape(self, node):
        value = self.take(node, 0)
        shape = self.take(node, 1, Const).array
        if shape.dtype.kind not in "iu":
            self.fail(node, f"the target shape has type {shape.dtype}, not integers")
        target = shape.astype(np.int64).reshape(-1)
        if isinstance(value, Const):
            return self._reshape(node, value, target)
        if node.attrs.get("allowzero", 0) == 0:
            target = np.array([value.shape[i] if t == 0 and i < len(value.shape) else t
                               for i, t in enumerate(target)])
        return self._reshape(node, value, target)

    def op_Flatten(self, node):
        value = self.take(node, 0)
        axis = int(node.attrs.get("axis", 1))
        shape = value.array.shape if isinstance(value, Const) else value.shape
        axis = axis + len(shape) if axis < 0 else axis
        target = (math.prod(shape[:axis]), math.prod(shape[axis:]))
        return self._reshape(node, value, target)

    def op_Transpose(self, node):
        value = self.take(node, 0, Const)
        perm = node.attrs.get("perm")
        return Const(np.transpose(value.array, perm),
                     None if value.ideal is None else np.transpose(value.ideal, perm))

    def op_Squeeze(self, node):
        value = self.take(node, 0, Const)
        axes = self.optional(node, 1)
        axes = tuple(axes.array.astype(int).tolist()) if axes is not None else \
            node.attrs.get("axes")
        return Const(np.squeeze(value.array, axis=None if axes is None else tuple(axes)))

    def op_Unsqueeze(self, node):
        value = self.take(node, 0, Const)
        axes = self.optional(node, 1)
        axes = axes.array.astype(int).tolist() if axes is not None else node.attrs["axes"]
        return Const(np.expand_dims(value.array, tuple(axes)))

    def op_Cast(self, node):
        to = node.attrs.get("to")
        if to not in _FLOAT_CASTS:   # a cast to an integer or bool type changes values
            self.fail(node, f"Cast to ONNX type {to!r}: only casts to FLOAT or DOUBLE are "
                            f"taken")
        value = self.take(node, 0, Const)
        check_computed_size(self, node, "Cast", value.array)  # a copy: counted in the total
        return Const(value.array.astype(_FLOAT_CASTS[to]))

    def op_Pow(self, node):
        base, exponent = self.take(node, 0, Const), self.take(node, 1, Const)
        check_computed_size(self, node, "Pow", base.array, exponent.array)
        with np.errstate(all="ignore"):
            return Const(np.power(base.array, exponent.array).astype(base.array.dtype))

    def op_Sqrt(self, node):
        value = self.take(node, 0, Const)
        check_computed_size(self, node, "Sqrt", value.array)
        return Const(np.sqrt(value.array))
