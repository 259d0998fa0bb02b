"""``make fuzz``: structured mutations of exported QONNX graphs through ``hwgen import``.

Each mutation drops a node, changes an op, swaps or renames inputs, replaces an initializer
(odd shapes; NaN, zero or huge values), changes its data type or sets attributes to odd
values. Every run must end in success, a failed check (exit 1) or one ``error:`` line (exit
2): never a traceback, another exit code or a second stderr line.
"""

import contextlib
import io
import random

import numpy as np
import pytest

from hwgen.cli import main

OPS = ["Gemm", "MatMul", "Conv", "BatchNormalization", "Mul", "Add", "Sub", "Div", "MaxPool",
       "Reshape", "Flatten", "BipolarQuant", "Quant", "Identity", "Transpose", "Neg", "Relu",
       "MultiThreshold"]
QONNX_OPS = {"BipolarQuant", "Quant", "MultiThreshold"}


def _mutate(model, rng: random.Random) -> None:
    import onnx
    from onnx import numpy_helper

    g = model.graph
    node = g.node[rng.randrange(len(g.node))]
    kind = rng.randrange(7)
    if kind == 0 and len(g.node) > 1:
        g.node.remove(node)
    elif kind == 1:
        node.op_type = rng.choice(OPS)
        node.domain = "qonnx.custom_op.general" if node.op_type in QONNX_OPS else ""
    elif kind == 2 and len(node.input) > 1:
        i, j = rng.sample(range(len(node.input)), 2)
        node.input[i], node.input[j] = node.input[j], node.input[i]
    elif kind == 3 and len(g.initializer):
        tensor = g.initializer[rng.randrange(len(g.initializer))]
        shape = [rng.choice([0, 1, 2, 3, 8]) for _ in range(rng.randrange(4))]
        values = np.random.default_rng(rng.randrange(1 << 30)).normal(size=shape)
        values = (values * rng.choice([0.0, 1.0, -1.0, 1e30, np.nan])).astype(np.float32)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    elif kind == 4:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.INTS:
                attr.ints[:] = [rng.choice([-1, 0, 1, 2, 3, 1 << 40]) for _ in attr.ints]
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([-1, 0, 1, 2, 1 << 40])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e-30])
    elif kind == 5 and len(g.initializer):
        g.initializer[rng.randrange(len(g.initializer))].data_type = rng.choice(
            [onnx.TensorProto.INT64, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16])
    elif node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(["", "nothere",
                                                                 node.output[0]])


@pytest.mark.slow
@pytest.mark.parametrize("builder, kwargs", [("mlp", dict(input_mode="uint8", bias="int32")),
                                             ("cnn", dict(input_mode="uint8"))])
def test_mutated_graphs_end_in_one_line(bm, tmp_path, builder, kwargs):
    import onnx

    source = tmp_path / "base.onnx"
    bm.export(bm.randomize_bn(getattr(bm, builder)(**kwargs), 1), source)
    base = onnx.load(source)
    rng = random.Random(0)
    for attempt in range(150):
        model = onnx.ModelProto()
        model.CopyFrom(base)
        for _ in range(rng.randrange(1, 3)):
            _mutate(model, rng)
        path, out = tmp_path / "m.onnx", tmp_path / "m.npz"
        try:
            onnx.save(model, path)
        except Exception:  # a mutation onnx itself cannot serialize
            continue
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["import", str(path), "-o", str(out), "--check-images", "20"])
        lines = err.getvalue().splitlines()
        assert code in (0, 1, 2), (attempt, code)
        if code:
            assert len(lines) == 1 and lines[0].startswith("error: "), (attempt, lines)
            assert not out.exists()
        out.unlink(missing_ok=True)
