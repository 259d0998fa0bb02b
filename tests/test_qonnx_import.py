"""``hwgen import``: Brevitas binary networks through QONNX into model files, exactly.

Every import is checked by the command itself against the graph's QONNX execution (the
tie-aware rule of :mod:`hwgen.qonnx_import.check`); these tests also check that the check
can fail, that the converted files are not degenerate (varying predictions, negative-gamma
and constant channels), and that each unsupported construct is one ``error:`` line with
nothing written.
"""

import sys
from fractions import Fraction

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import write_idx
from hwgen.reference import Reference

from .test_model_format import cli_error


CASES = {  # name: (builder, keyword arguments)
    "mlp-binarized-input": ("mlp", dict(input_mode="binarize")),
    "mlp-raw-input": ("mlp", dict(input_mode="raw")),
    "mlp-uint8-input-int32-bias": ("mlp", dict(input_mode="uint8", bias="int32")),
    "mlp-hardtanh": ("mlp", dict(input_mode="binarize", activation="hardtanh")),
    "cnn-uint8-input": ("cnn", dict(input_mode="uint8")),
    "cnn-raw-padded-int32-bias": ("cnn", dict(input_mode="raw", padding=1, bias="int32")),
    "cnn-binarized-input": ("cnn", dict(input_mode="binarize")),
}


def _import(bm, tmp_path, net, *extra, dynamo=True, seed=1):
    onnx_path, out = tmp_path / "net.onnx", tmp_path / "net.npz"
    bm.export(bm.randomize_bn(net, seed), onnx_path, dynamo=dynamo)
    return onnx_path, out, main(["import", str(onnx_path), "-o", str(out), *extra])


@pytest.mark.parametrize("case", sorted(CASES))
def test_brevitas_networks_import_and_agree_on_1000_random_images(bm, tmp_path, capsys, case):
    builder, kwargs = CASES[case]
    _, out, code = _import(bm, tmp_path, getattr(bm, builder)(**kwargs))
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "agrees with the QONNX execution on 1000/1000 random (seed 0) images" in text.out
    model = model_io.load(out)
    assert model.input.binary == (kwargs["input_mode"] == "binarize")
    if model.input.binary:
        assert model.input.binarize_at == 128  # x - 127.5 >= 0  <=>  x >= 128
    assert model.provenance["check"]["agree"] == 1000
    # not degenerate: predictions vary, and the special channels folded as they must
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (300,) + model.input.shape).astype(np.uint8)
    assert len(set(Reference(model).predict(images).tolist())) >= 3
    hidden = [layer for layer in model.layers if layer.op != "maxpool2d" and not layer.is_output]
    first = hidden[0]
    w = first.weight.reshape(first.out_channels, -1)
    top = 1 if model.input.binary else model.input.max_value
    lo, hi = (-w.shape[1], w.shape[1]) if model.input.binary else \
        (-int((w[0] < 0).sum()) * top, int((w[0] > 0).sum()) * top)
    assert first.sign[1] == -1  # negative gamma: passes for acc <= T
    assert first.sign[0] == 1 and first.threshold[0] in (lo, hi + 1)  # gamma 0: constant
    assert len(set(first.threshold[3:].tolist())) > 1  # real, differing thresholds


@pytest.mark.parametrize("case", ["mlp-binarized-input", "cnn-uint8-input"])
def test_the_torchscript_exporter_imports_too(bm, tmp_path, capsys, case):
    builder, kwargs = CASES[case]
    _, _, code = _import(bm, tmp_path, getattr(bm, builder)(**kwargs), "--check-images",
                         "300", dynamo=False)
    assert code == 0, capsys.readouterr().err


def test_the_check_refuses_a_wrong_conversion_and_writes_nothing(bm, tmp_path, capsys,
                                                                  monkeypatch):
    from hwgen.qonnx_import import convert

    real = convert.Converter.convert

    def off_by_one(self):
        imported = real(self)
        hidden = imported.model.layers[0]
        hidden.threshold[3:] += 1  # a plausible folding bug: thresholds one step too high
        return imported

    monkeypatch.setattr(convert.Converter, "convert", off_by_one)
    _, out, code = _import(bm, tmp_path, bm.mlp(input_mode="raw"))
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: the imported model disagrees with the QONNX execution on "
                          "random (seed 0) image ") and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".net.npz*"))


def test_check_with_a_dataset_reports_accuracy_and_class_names(bm, tmp_path, capsys):
    rng = np.random.default_rng(3)
    write_idx(tmp_path / "images", rng.integers(0, 256, (150, 28, 28)).astype(np.uint8))
    write_idx(tmp_path / "labels", rng.integers(0, 10, 150).astype(np.uint8))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    _, out, code = _import(bm, tmp_path, bm.mlp(), "--images", str(tmp_path / "images"),
                           "--labels", str(tmp_path / "labels"), "--classes", str(names))
    text = capsys.readouterr().out
    assert code == 0 and "on 150/150" in text and "accuracy 0." in text
    assert model_io.load(out).classes[9] == "class 9"


def test_a_dataset_gives_its_class_names(bm, tmp_path, capsys, fashion_mnist_dir):
    _, out, code = _import(bm, tmp_path, bm.mlp(), "--dataset", "fashion-mnist", "--limit",
                           "200")
    assert code == 0, capsys.readouterr().err
    model = model_io.load(out)
    assert model.classes[0] == "T-shirt/top" and model.provenance["test_images"] == 200


def _expect_error(bm, tmp_path, capsys, net, *needles, shape=(1, 1, 28, 28)):
    onnx_path, out = tmp_path / "bad.onnx", tmp_path / "bad.npz"
    bm.export(bm.randomize_bn(net, 2), onnx_path, shape=shape)
    message = cli_error(capsys, "import", onnx_path, "-o", out)
    for needle in needles:
        assert needle in message, message
    assert not out.exists() and not list(tmp_path.glob(".bad.npz*"))
    return message


def test_multi_bit_weights_are_refused(bm, tmp_path, capsys):
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerTensorFloat
    from torch import nn

    net = bm.mlp()
    net.body[0] = qnn.QuantLinear(784, 32, bias=False, weight_quant=Int8WeightPerTensorFloat,
                                   weight_bit_width=4)
    _expect_error(bm, tmp_path, capsys, net, "node ", "not binary",
                  "multi-bit weights are not supported")
    assert isinstance(net.body[1], nn.BatchNorm1d)


def test_multi_bit_activations_are_refused(bm, tmp_path, capsys):
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFloat

    net = bm.mlp()
    net.body[2] = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat)
    _expect_error(bm, tmp_path, capsys, net, "8-bit Quant on a layer's unquantized output",
                  "only 1-bit (bipolar) activations")


def test_a_float_output_bias_is_refused_with_the_reason(bm, tmp_path, capsys):
    import brevitas.nn as qnn
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    net = bm.mlp()
    net.body[-1] = qnn.QuantLinear(24, 10, bias=True,
                                   weight_quant=SignedBinaryWeightPerTensorConst)
    _expect_error(bm, tmp_path, capsys, net, "bias is not a whole multiple of the score unit",
                  "Int32Bias")


def test_zero_padding_of_binary_maps_is_refused(bm, tmp_path, capsys):
    import brevitas.nn as qnn
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    net = bm.cnn()
    net.body[4] = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False,
                                  weight_quant=SignedBinaryWeightPerTensorConst)
    net.body[-1] = qnn.QuantLinear(8 * 13 * 13, 10, bias=False,
                                   weight_quant=SignedBinaryWeightPerTensorConst)
    _expect_error(bm, tmp_path, capsys, net, "(Conv ->", "pads binary activations with 0")


class _Residual:
    @staticmethod
    def build(bm):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = bm.mlp(hidden=(16, 16))

            def forward(self, x):
                body = self.inner.body
                x = self.inner.input_quant(x.flatten(1) - 127.5)
                a = body[2](body[1](body[0](x)))
                b = body[5](body[4](body[3](a)))
                return body[6](a + b)

        return Net()


def test_a_residual_add_is_refused(bm, tmp_path, capsys):
    _expect_error(bm, tmp_path, capsys, _Residual.build(bm), "(Add ->",
                  "residual connection")


def test_an_unsupported_op_is_named(bm, tmp_path, capsys):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = bm.mlp()

        def forward(self, x):
            return torch.sigmoid(self.inner(x))

    _expect_error(bm, tmp_path, capsys, Net(), "unsupported op 'Sigmoid'", "docs/import.md")


def test_files_that_are_not_onnx_give_one_line(bm, tmp_path, capsys):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff" * 10)
    message = cli_error(capsys, "import", bad, "-o", tmp_path / "x.npz")
    assert "not an ONNX file" in message
    assert "no such file" in cli_error(capsys, "import", tmp_path / "none.onnx", "-o",
                                       tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_without_the_extra_the_command_names_it(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "qonnx" else real(name, *a))
    message = cli_error(capsys, "import", tmp_path / "m.onnx", "-o", tmp_path / "m.npz")
    assert "needs qonnx" in message and ".[import]" in message


# ---- FINN's streamlined form, written with onnx.helper ---------------------------------------
def _streamlined(tmp_path, rng, scale_out=0.5, bias=None):
    """x (pixels) -> MultiThreshold (binarize at 100) -> MatMul +-1 -> MultiThreshold per
    channel (bipolar) -> MatMul +-1 (-> Add ``bias``) -> Mul (one score scale)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, h, m = 12, 9, 4
    w1 = rng.choice([-1.0, 1.0], (n, h)).astype(np.float32)
    w2 = rng.choice([-1.0, 1.0], (h, m)).astype(np.float32)
    t1 = (rng.integers(-6, 7, (h, 1)) + 0.5).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.full((1, 1), 100.0, np.float32), "t0"),
             numpy_helper.from_array(t1, "t1"),
             numpy_helper.from_array(np.array(scale_out, np.float32), "s")]
    mt = dict(domain="qonnx.custom_op.general", out_scale=2.0, out_bias=-1.0)
    nodes = [helper.make_node("MultiThreshold", ["x", "t0"], ["b0"], name="binarize", **mt),
             helper.make_node("MatMul", ["b0", "w1"], ["a1"], name="fc1"),
             helper.make_node("MultiThreshold", ["a1", "t1"], ["b1"], name="act1", **mt),
             helper.make_node("MatMul", ["b1", "w2"], ["a2"], name="fc2"),
             helper.make_node("Mul", ["a2", "s"], ["y"], name="scale")]
    if bias is not None:
        inits.append(numpy_helper.from_array(np.array(bias, np.float32), "bias"))
        nodes[-1:-1] = [helper.make_node("Add", ["a2", "bias"], ["a2b"], name="bias")]
        nodes[-1].input[0] = "a2b"
    graph = helper.make_graph(nodes, "streamlined",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid(
                                                        "qonnx.custom_op.general", 1)])
    path = tmp_path / "streamlined.onnx"
    onnx.save(model, path)
    return path, w1, t1


def test_external_data_next_to_the_model_is_read(bm, tmp_path, capsys):
    import onnx

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    model = onnx.load(path)
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").stat().st_size > 0
    assert main(["import", str(tmp_path / "ext.onnx"), "-o", str(tmp_path / "e.npz")]) == 0
    assert main(["import", str(path), "-o", str(tmp_path / "i.npz")]) == 0
    a, b = model_io.load(tmp_path / "e.npz"), model_io.load(tmp_path / "i.npz")
    np.testing.assert_array_equal(a.layers[0].threshold, b.layers[0].threshold)
    np.testing.assert_array_equal(a.layers[1].weight, b.layers[1].weight)


def test_finn_streamlined_multithreshold_graph(bm, tmp_path, capsys):
    path, w1, t1 = _streamlined(tmp_path, np.random.default_rng(8))
    out = tmp_path / "s.npz"
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    model = model_io.load(out)
    assert model.input.binarize_at == 100 and model.input.shape == (12, 1, 1)
    hidden = model.layers[0]
    np.testing.assert_array_equal(hidden.weight, w1.T.astype(np.int8))
    # a >= t with t = k + 0.5 and integer a: passes for acc >= k + 1
    np.testing.assert_array_equal(hidden.threshold, np.ceil(t1[:, 0]).astype(int))
    assert (hidden.sign == 1).all()


def test_a_one_bit_signed_quant_is_a_bipolar_activation(bm, tmp_path, capsys):
    """qonnx's Quant with bit width 1 and signed=1 is bipolar (sign at 0): here after a
    per-channel bias, with a negative scale (which flips the comparison) on the output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(10)
    n, h, m = 12, 9, 4
    w1 = rng.choice([-1.0, 1.0], (n, h)).astype(np.float32)
    w2 = rng.choice([-1.0, 1.0], (h, m)).astype(np.float32)
    bias = (rng.integers(-5, 6, h) + 0.5).astype(np.float32)
    f = np.float32
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.full((1, 1), 100.0, f), "t0"),
             numpy_helper.from_array(bias, "bias"),
             numpy_helper.from_array(np.array(-0.5, f), "s"),
             numpy_helper.from_array(np.array(0.0, f), "z"),
             numpy_helper.from_array(np.array(1.0, f), "one")]
    q = "qonnx.custom_op.general"
    nodes = [helper.make_node("MultiThreshold", ["x", "t0"], ["b0"], domain=q, out_scale=2.0,
                              out_bias=-1.0),
             helper.make_node("MatMul", ["b0", "w1"], ["a1"]),
             helper.make_node("Add", ["a1", "bias"], ["c1"]),
             helper.make_node("Quant", ["c1", "s", "z", "one"], ["b1"], domain=q, signed=1,
                              narrow=0, rounding_mode="ROUND", name="act1"),
             helper.make_node("MatMul", ["b1", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "q1", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, n])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, m])], inits)
    path = tmp_path / "q1.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                      helper.make_opsetid(q, 1)]), path)
    out = tmp_path / "q1.npz"
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    hidden = model_io.load(out).layers[0]
    # s < 0: +1 where (acc + bias) / s >= 0, i.e. acc <= -bias: sign -1, threshold ceil(bias)
    np.testing.assert_array_equal(hidden.sign, -np.ones(h, dtype=np.int8))
    np.testing.assert_array_equal(hidden.threshold, np.ceil(bias).astype(int))


@pytest.mark.parametrize("where", ["weights", "image-after-sub", "image"])
def test_one_bit_signed_quant_anywhere_is_bipolar(bm, tmp_path, capsys, where):
    """A 1-bit signed Quant on the weights (scale from a Pow of constants), on the image
    after ``x - 127.5`` (binarize_at 128) or on the image itself (binarize_at 0)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    n, m = 16, 4
    consts = {"c": 127.5, "one": 1.0, "zero": 0.0, "two": 2.0, "minus1": -1.0,
              "wf": rng.normal(size=(m, n))}
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    q = "qonnx.custom_op.general"
    quant = dict(domain=q, signed=1, narrow=0, rounding_mode="ROUND")
    image = "x"
    nodes = [helper.make_node("Pow", ["two", "minus1"], ["half"])]
    if where == "image-after-sub":
        nodes.append(helper.make_node("Sub", ["x", "c"], ["xc"]))
        image = "xc"
    if where == "weights":
        nodes += [helper.make_node("BipolarQuant", ["x", "one"], ["xb"], domain=q),
                  helper.make_node("Quant", ["wf", "half", "zero", "one"], ["wq"], **quant)]
    else:
        nodes += [helper.make_node("Quant", [image, "one", "zero", "one"], ["xb"], **quant),
                  helper.make_node("BipolarQuant", ["wf", "half"], ["wq"], domain=q)]
    nodes.append(helper.make_node("Gemm", ["xb", "wq"], ["y"], transB=1))
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, n])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, m])], inits)
    path, out = tmp_path / "q.onnx", tmp_path / "q.npz"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                      helper.make_opsetid(q, 1)]), path)
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    model = model_io.load(out)
    assert model.input.binarize_at == (128 if where == "image-after-sub" else 0)
    np.testing.assert_array_equal(model.layers[0].weight,
                                  np.where(consts["wf"] >= 0, 1, -1).astype(np.int8))


def test_relu_activations_are_named_as_such(bm, tmp_path, capsys):
    import brevitas.nn as qnn

    net = bm.mlp()
    net.body[2] = qnn.QuantReLU(bit_width=2)
    _expect_error(bm, tmp_path, capsys, net, "a ReLU (e.g. QuantReLU)",
                  "only bipolar +-1 activations")


def test_a_negative_output_scale_negates_the_output_weights(bm, tmp_path, capsys):
    path, _, _ = _streamlined(tmp_path, np.random.default_rng(9), scale_out=-0.25)
    out = tmp_path / "n.npz"
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    assert "1000/1000" in capsys.readouterr().out


# ---- the tie-aware rule ------------------------------------------------------------------------
def test_compare_accepts_float_ties_and_catches_one_unit():
    from hwgen.qonnx_import.check import compare

    model = np.array([[3, 3, 1], [0, 2, 2], [5, 1, 0]])
    unit = Fraction(1, 10)
    graph = 0.1 * model + 7.0
    graph[0, 1] += 1e-6  # float32 summed the tied class 1 a little higher
    result = compare(graph, model, unit)
    assert result.ok and result.ties == 2
    graph[2] = [0.5, 0.6, 0.0]  # class 1 really above: a disagreement
    result = compare(graph, model, unit)
    assert not result.ok and result.first_disagreement == 2 and result.agree == 2



def test_the_check_compares_bounded_slices_and_counts_images_across_them(monkeypatch):
    """70,000 classes x 5,000 images took 7.1 GB when every score was held at once: the
    check runs slices of whole graph batches of at most CHECK_SCORES scores, and its first
    disagreement is counted over all images."""
    from types import SimpleNamespace

    from hwgen.qonnx_import import check

    count, classes, wrong = 1000, 3, 437

    def scores(part):
        out = np.zeros((len(part), classes), dtype=np.int64)
        out[np.arange(len(part)), part[:, 0] % classes] = 10
        return out

    rows = []

    def graph(execution, part, convert=None):
        rows.append(len(part))
        out = scores(part).astype(np.float32)
        out[part[:, 0] == wrong] = [0, 0, 0]
        out[part[:, 0] == wrong, (wrong + 1) % classes] = 1.0
        return out

    reference = SimpleNamespace(model=SimpleNamespace(classes=list("abc")), run=scores)
    monkeypatch.setattr(check, "execute_graph", graph)
    monkeypatch.setattr(check, "CHECK_SCORES", 130 * classes)
    images = np.arange(count)[:, None]
    result = check.check_agreement(check.Execution(None, 50), reference, images,
                                   Fraction(1))
    assert rows == [100] * 10  # whole batches of 50, at most 130 images' scores
    assert (result.images, result.agree, result.first_disagreement) == (count, count - 1, wrong)
    assert list(result.predicted) == list(np.arange(count) % classes)
    assert result.describe_first() == (f"it predicts class {wrong % classes}, the graph's "
                                       f"highest score is class {(wrong + 1) % classes}")


def test_a_graph_score_overflowing_float32_is_named_as_such(bm, tmp_path, capsys):
    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8), scale_out=1e38)
    assert main(["import", str(path), "-o", str(tmp_path / "x.npz")]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "the graph's float32 score for it is inf" in message, \
        message
    assert not (tmp_path / "x.npz").exists()

@pytest.mark.sim
def test_imported_models_agree_in_verilator(bm, tmp_path, capsys):
    rng = np.random.default_rng(4)
    write_idx(tmp_path / "images", rng.integers(0, 256, (24, 28, 28)).astype(np.uint8))
    for name, net in (("mlp-raw", bm.mlp(input_mode="raw")),
                      ("mlp-binarized", bm.mlp(input_mode="binarize")),
                      ("cnn", bm.cnn(input_mode="binarize", channels=(4, 4)))):
        onnx_path, out = tmp_path / f"{name}.onnx", tmp_path / f"{name}.npz"
        bm.export(bm.randomize_bn(net, 6), onnx_path)
        assert main(["import", str(onnx_path), "-o", str(out), "--check-images", "200"]) == 0
        assert main(["verilog", str(out), "-o", str(tmp_path / f"{name}-rtl")]) == 0
        assert (tmp_path / f"{name}-rtl" / "interface.json").exists()
        assert main(["sim", str(out), "--images", str(tmp_path / "images")]) == 0
        assert "agreement 24/24 with reference" in capsys.readouterr().out


def test_finn_lfc_w1a1_from_brevitas_examples(bm, tmp_path, capsys):
    """FINN's LFC-W1A1 (784-1024-1024-1024-10, BNN-PYNQ) as Brevitas's examples define it:
    inputs in [0, 1] (--input-scale 1/255), then 2x - 1 and a bipolar quantizer."""
    import torch

    from brevitas_examples.bnn_pynq.models import model_with_cfg  # ships with brevitas

    net, _ = model_with_cfg("lfc_1w1a", pretrained=False)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for module in norms:
        module.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    path, out = tmp_path / "lfc.onnx", tmp_path / "lfc.npz"
    bm.export(net.eval(), path)
    assert main(["import", str(path), "-o", str(out), "--input-scale", "1/255",
                 "--check-images", "300"]) == 0, capsys.readouterr().err
    assert "300/300" in capsys.readouterr().out
    model = model_io.load(out)
    assert model.input.binarize_at == 128  # 2 * p / 255 - 1 >= 0  <=>  p >= 127.5
    assert [layer.out_channels for layer in model.layers] == [1024, 1024, 1024, 10]
    assert model.provenance["graph_input"] == "1/255 * (x + 0)"


@pytest.mark.parametrize("option, value", [("--input-scale", "1/255"), ("--input-bits", "8")])
def test_input_options_with_an_input_quantizer_are_refused(bm, tmp_path, capsys, option,
                                                           value):
    path = tmp_path / "u8.onnx"
    bm.export(bm.randomize_bn(bm.mlp(input_mode="uint8"), 1), path)
    message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz", option, value)
    assert f"{option} is for graphs without an input quantizer" in message


def test_class_names_file_with_a_bom_and_line_separators(tmp_path):
    from hwgen.qonnx_import.command import read_classes

    path = tmp_path / "names.txt"
    path.write_bytes("\ufeffT-shirt\r\nTrouser\u2028s\n\nBag\n".encode("utf-8"))
    assert read_classes(path, 3) == ["T-shirt", "Trouser\u2028s", "Bag"]


def test_the_other_commands_do_not_import_onnx():
    import subprocess
    import sys

    code = ("import sys; from hwgen.cli import build_parser; build_parser(); "
            "sys.exit(1 if {'onnx', 'qonnx', 'onnxruntime'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _graph_file(tmp_path, nodes, inits=(), inputs=(("x", [1, 4]),), name="g.onnx"):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], list(inits))
    path = tmp_path / name
    onnx.save(helper.make_model(graph), path)
    return path


def _bare_tensor(name, dims):
    """A float tensor that declares ``dims`` and holds no data (no validation on the way)."""
    from onnx import TensorProto

    tensor = TensorProto()
    tensor.name, tensor.data_type = name, TensorProto.FLOAT
    tensor.dims.extend(dims)
    return tensor


def test_hostile_graphs_are_one_line_errors(bm, tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    cases = {
        "has a cycle": ([helper.make_node("MatMul", ["x", "w"], ["a"]),
                         helper.make_node("Add", ["a", "y"], ["y"])], [w]),
        "produced by no node": ([helper.make_node("MatMul", ["x", "nowhere"], ["y"])], [w]),
        "2 inputs that are not constants": (
            [helper.make_node("MatMul", ["x", "z"], ["y"])], [], (("x", [1, 4]), ("z", [4, 2]))),
        "values a constant may hold": ([helper.make_node("MatMul", ["x", "big"], ["y"])],
                                       [_bare_tensor("big", [1 << 20, 1 << 20])]),
        "must be a file name relative": ([helper.make_node("MatMul", ["x", "ext"], ["y"])],
                                         "../../etc/passwd"),
        "no such external data file": ([helper.make_node("MatMul", ["x", "ext"], ["y"])],
                                       "elsewhere.bin"),
        "ends before offset": ([helper.make_node("MatMul", ["x", "ext"], ["y"])], "short.bin"),
        "initializer 'w' appears twice": ([helper.make_node("MatMul", ["x", "w"], ["y"])],
                                          [w, w]),
        "has external data entries but not an EXTERNAL data location": (
            [helper.make_node("MatMul", ["x", "ext"], ["y"])], "!short.bin"),
        # an offset past what seek() takes was a traceback (round 16 of the fuzz)
        "offset 9223372036854775808 is past the end of 'short.bin' (16 bytes)": (
            [helper.make_node("MatMul", ["x", "ext"], ["y"])], f"short.bin@{1 << 63}"),
        "offset of 31 digits is past the end": (
            [helper.make_node("MatMul", ["x", "ext"], ["y"])], f"short.bin@{10 ** 30}"),
    }
    (tmp_path / "short.bin").write_bytes(b"\0" * 16)
    for needle, (nodes, inits, *inputs) in cases.items():
        if isinstance(inits, str):  # external data at that location
            ext = _bare_tensor("ext", [4, 2])
            if not inits.startswith("!"):  # "!": entries without the EXTERNAL location
                ext.data_location = TensorProto.EXTERNAL
            location, _, offset = inits.lstrip("!").partition("@")
            for key, value in (("location", location), ("offset", offset or "8"),
                               ("length", "32")):
                entry = ext.external_data.add()
                entry.key, entry.value = key, value
            inits = [ext]
        path = _graph_file(tmp_path, nodes, inits, *(inputs or []))
        message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
        assert needle in message, message
    assert not (tmp_path / "x.npz").exists()


def test_external_data_cannot_leave_the_models_folder_through_a_link(bm, tmp_path, capsys):
    """A folder link beside the model let a tensor be read from anywhere (its bytes even
    showed in the error line); onnx refuses such a location too (round 18 of the fuzz)."""
    from onnx import TensorProto, helper

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "w.bin").write_bytes(np.ones(8, np.float32).tobytes())
    model_folder = tmp_path / "model"
    model_folder.mkdir()
    (model_folder / "data").symlink_to(elsewhere)
    (model_folder / "loop").symlink_to("loop")
    for location in ("data/w.bin", "loop/w.bin"):
        ext = _bare_tensor("ext", [4, 2])
        ext.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "32")):
            entry = ext.external_data.add()
            entry.key, entry.value = key, value
        path = _graph_file(model_folder, [helper.make_node("MatMul", ["x", "ext"], ["y"])],
                           [ext])
        message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
        assert message.endswith(f"external data location {location!r} resolves outside the "
                                f"model's folder"), message
    assert not (tmp_path / "x.npz").exists()


def test_the_brevitas_example_trains_exports_and_imports(bm, tmp_path, capsys,
                                                        fashion_mnist_dir):
    """examples/brevitas_fmnist_mlp.py, as docs/import.md runs it (one epoch here)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    onnx_path = tmp_path / "bmlp.onnx"
    proc = subprocess.run([sys.executable, str(root / "examples" / "brevitas_fmnist_mlp.py"),
                           "--epochs", "1", "--out", str(onnx_path)], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    brevitas_accuracy = float(proc.stdout.split("Brevitas model, test accuracy ")[1].split()[0])
    assert brevitas_accuracy > 0.75
    out = tmp_path / "bmlp.npz"
    assert main(["import", str(onnx_path), "-o", str(out), "--dataset", "fashion-mnist",
                 "--classes", str(tmp_path / "bmlp.classes.txt")]) == 0
    text = capsys.readouterr().out
    assert "agrees with the QONNX execution on 10000/10000 fashion-mnist images" in text
    accuracy = float(text.split("; accuracy ")[1].split(";")[0])
    assert abs(accuracy - brevitas_accuracy) <= 0.002  # only tied images may differ
    assert model_io.load(out).input.binarize_at == 32


def test_nan_constants_and_float_shapes_are_one_line_errors(bm, tmp_path, capsys):
    """Found by mutating exported graphs: a NaN threshold and a float Reshape target."""
    import onnx
    from onnx import numpy_helper

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    model = onnx.load(path)
    t1 = next(t for t in model.graph.initializer if t.name == "t1")
    values = numpy_helper.to_array(t1).copy()
    values[0, 0] = np.nan
    t1.CopyFrom(numpy_helper.from_array(values, "t1"))
    onnx.save(model, tmp_path / "nan.onnx")
    message = cli_error(capsys, "import", tmp_path / "nan.onnx", "-o", tmp_path / "x.npz")
    assert "node 'act1' (MultiThreshold -> 'b1'): cannot convert (ValueError: not a finite " \
           "number: nan)" in message
    net_path = tmp_path / "mlp.onnx"
    bm.export(bm.randomize_bn(bm.mlp(), 1), net_path)
    model = onnx.load(net_path)
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    target = next(t for t in model.graph.initializer if t.name == reshape.input[1])
    target.CopyFrom(numpy_helper.from_array(np.array([1.0, np.nan], np.float32), target.name))
    onnx.save(model, tmp_path / "shape.onnx")
    message = cli_error(capsys, "import", tmp_path / "shape.onnx", "-o", tmp_path / "x.npz")
    assert "the target shape has type float32, not integers" in message
    assert not (tmp_path / "x.npz").exists()


def test_the_check_counts_every_tensor_and_refuses_a_graph_too_large_for_it(
        bm, tmp_path, capsys, monkeypatch):
    """QONNX's execution holds all of a graph's tensors at once: their values per image
    decide the batch, and a graph over :data:`MAX_GRAPH_VALUES` is refused before the
    reference runs (a 9 KB graph of 1024x1024 16-channel convolutions took 658 MiB)."""
    from onnx import load

    from hwgen.qonnx_import import check

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    proto = load(path)
    execution = check.prepare_execution(proto, 1000)
    per_image = check.graph_values(execution.model) // execution.batch
    names = [i.name for i in (*proto.graph.input, *proto.graph.output)]
    assert per_image > 12 + 2 and len(names) == 2  # the input, output and what lies between
    assert execution.batch == min(check.BATCH, check.BATCH_VALUES // per_image)
    out = tmp_path / "s.npz"
    monkeypatch.setattr(check, "MAX_GRAPH_VALUES", per_image)
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    out.unlink()
    monkeypatch.setattr(check, "MAX_GRAPH_VALUES", per_image - 1)
    message = cli_error(capsys, "import", path, "-o", out)
    assert f"hold {per_image} values per image" in message, message
    assert not out.exists()


def test_the_heap_maps_large_blocks_from_the_first_call():
    from hwgen import heap

    assert heap.fixed_mmap_threshold() == (sys.platform == "linux")
    assert heap.fixed_mmap_threshold() == (sys.platform == "linux")   # once is enough


def test_output_biases_beyond_int32_that_span_less_are_shifted(bm, tmp_path, capsys):
    """Class biases [2^31, 0, -8, 8]: 2^31 is not an int32, but one constant subtracted from
    every score changes no prediction, and their span fits."""
    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8), bias=[2.0**31, 0, -8, 8])
    out = tmp_path / "s.npz"
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    bias = model_io.load(out).layers[-1].bias.astype(np.int64)
    assert list(bias - bias[1]) == [1 << 31, 0, -8, 8] and bias.min() == -(1 << 31)
    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8), bias=[2.0**32, 0, 0, 0])
    message = cli_error(capsys, "import", path, "-o", out)
    assert "the output biases span 4294967296 accumulator steps" in message, message


def _pool_then_scale(path, scale_op: str, factors):
    """Binarized 1x6x6 image -> Conv 3x3 (4 channels) -> MaxPool 2x2 -> BatchNormalization
    (gamma ``factors``) or Mul by ``factors`` -> BipolarQuant -> Flatten -> MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    f = np.float32
    q = "qonnx.custom_op.general"
    consts = {"c0": np.array(127.5, f), "one": np.array(1.0, f),
              "w1": rng.choice([-1.0, 1.0], (4, 1, 3, 3)).astype(f),
              "w2": rng.choice([-1.0, 1.0], (16, 3)).astype(f),
              "g": np.asarray(factors, f), "b": rng.normal(size=4).astype(f),
              "m": rng.normal(size=4).astype(f), "v": np.ones(4, f),
              "mul": np.asarray(factors, f).reshape(1, 4, 1, 1)}
    nodes = [helper.make_node("Sub", ["x", "c0"], ["xs"]),
             helper.make_node("BipolarQuant", ["xs", "one"], ["xb"], domain=q),
             helper.make_node("Conv", ["xb", "w1"], ["a1"], kernel_shape=[3, 3]),
             helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2])]
    if scale_op == "bn":
        nodes.append(helper.make_node("BatchNormalization", ["p1", "g", "b", "m", "v"], ["n1"]))
    else:
        nodes.append(helper.make_node("Mul", ["p1", "mul"], ["n1"]))
    nodes += [helper.make_node("BipolarQuant", ["n1", "one"], ["h1"], domain=q),
              helper.make_node("Flatten", ["h1"], ["fl"], axis=1),
              helper.make_node("MatMul", ["fl", "w2"], ["y"])]
    used = {name for node in nodes for name in node.input}
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if k in used]
    graph = helper.make_graph(nodes, "pool-scale", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                      helper.make_opsetid(q, 1)]), path)


@pytest.mark.parametrize("scale_op, factors, ok", [
    ("bn", [-0.5, -1.0, -2.0, -0.7], False), ("mul", [-1, -2, -1, -3], False),
    ("mul", [1, -2, 1, 3], False), ("bn", [0.5, 1.0, 2.0, 0.7], True),
    ("mul", [1, 2, 1, 3], True)])
def test_a_max_pool_before_a_negative_scale_is_refused(bm, tmp_path, capsys, scale_op,
                                                       factors, ok):
    """Pooled and then negated, the quantizer's bits are a min-pool (an AND of bits), not
    the OR-pool the format holds: refused whatever the check images are (a constant image
    agreed with the graph, and the wrong model was written)."""
    path, out = tmp_path / "p.onnx", tmp_path / "p.npz"
    _pool_then_scale(path, scale_op, factors)
    zeros = tmp_path / "zeros.idx"
    write_idx(zeros, np.zeros((1, 6, 6), np.uint8))
    code = main(["import", str(path), "-o", str(out), "--images", str(zeros)])
    if ok:
        assert code == 0, capsys.readouterr().err
        return
    err = capsys.readouterr().err
    assert code == 2 and "a max-pool before a negative scale is a min-pool" in err, err
    assert not out.exists()


def _tied_graph(tmp_path, gain, name):
    """19 binarized pixels, one hidden channel ``sign(acc * gain + 1)`` and two classes
    (+-h). With ``gain`` = float32(1/k) the exact value at acc = -k is a few 1e-8 below 0,
    which float32 execution rounds to exactly 0 (a pass)."""
    from onnx import TensorProto, helper, numpy_helper

    def quant(i, o):
        return helper.make_node("BipolarQuant", [i, "one"], [o],
                                domain="qonnx.custom_op.general")

    nodes = [helper.make_node("Sub", ["x", "c"], ["xs"]), quant("xs", "xb"),
             helper.make_node("MatMul", ["xb", "w1"], ["acc"]),
             helper.make_node("Mul", ["acc", "g"], ["t"]), helper.make_node("Add", ["t", "b"], ["u"]),
             quant("u", "hb"), helper.make_node("MatMul", ["hb", "w2"], ["y"])]
    inits = [numpy_helper.from_array(np.array(127.5, np.float32), "c"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.ones((19, 1), np.float32), "w1"),
             numpy_helper.from_array(np.array([gain], np.float32), "g"),
             numpy_helper.from_array(np.array([1.0], np.float32), "b"),
             numpy_helper.from_array(np.array([[1.0, -1.0]], np.float32), "w2")]
    import onnx

    graph = helper.make_graph(
        nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]), path)
    return path


def test_thresholds_at_a_float32_tie_are_caught_or_named(bm, tmp_path, capsys):
    """A threshold that float32 rounding puts on the other side of an accumulator value:
    at the blank image's accumulator the check's first (blank) image refuses it; elsewhere,
    when the check images miss it, the import says so in a warning line."""
    at_blank = _tied_graph(tmp_path, np.float32(1) / np.float32(19), "blank.onnx")
    assert main(["import", str(at_blank), "-o", str(tmp_path / "a.npz")]) == 1
    assert "on random (seed 0) image 0:" in capsys.readouterr().err
    inside = _tied_graph(tmp_path, np.float32(1) / np.float32(3), "inside.onnx")
    assert main(["import", str(inside), "-o", str(tmp_path / "b.npz"),
                 "--check-images", "2"]) == 0
    err = capsys.readouterr().err
    assert err == ("warning: 1 channel(s) reach an accumulator value within float32 rounding "
                   "of their threshold (first: node '#5' (BipolarQuant -> 'hb') channel 0 at "
                   "accumulator -3): the model follows exact arithmetic there, and the "
                   "graph's float32 execution may decide the other way on inputs that reach "
                   "it\n")
    assert main(["import", str(inside), "-o", str(tmp_path / "c.npz")]) == 1  # 1000 images


def _conv_with_bias(path, bias_shape):
    """Raw 1x6x6 pixels -> Conv 3x3 (3 channels, pads 1, a bias of ``bias_shape``) ->
    BipolarQuant -> MaxPool 2x2 -> Flatten -> MatMul (3 classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    f = np.float32
    inits = [numpy_helper.from_array(rng.choice([-1.0, 1.0], (3, 1, 3, 3)).astype(f), "w"),
             numpy_helper.from_array((rng.normal(size=bias_shape) * 10).astype(f), "b"),
             numpy_helper.from_array(rng.choice([-1.0, 1.0], (27, 3)).astype(f), "w2"),
             numpy_helper.from_array(np.array(1.0, f), "one")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("BipolarQuant", ["c", "one"], ["q"], name="q",
                              domain="qonnx.custom_op.general"),
             helper.make_node("MaxPool", ["q"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["fl"], name="flat"),
             helper.make_node("MatMul", ["fl", "w2"], ["y"], name="fc")]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]), path)
    return path


def test_a_conv_bias_of_one_value_per_channel_is_imported(bm, tmp_path, capsys):
    """ONNX's Conv bias is 1-D [M] (the only shape onnxruntime runs); it was right-aligned
    against [1, M, 1, 1] and refused for every M > 1 (round 33)."""
    path = _conv_with_bias(tmp_path / "c.onnx", (3,))
    out = tmp_path / "c.npz"
    assert main(["import", str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    assert "1000/1000" in capsys.readouterr().out
    assert model_io.load(out).layers[0].threshold.shape == (3,)


def test_inputs_and_layers_beyond_the_limits_are_refused_before_any_work(
        bm, tmp_path, capsys, monkeypatch):
    """A 1 KB graph declaring a [1, 2**28] input took 4 GB without end, a 4 MB one with a
    2**21-channel layer 956 MiB: the input is held to the model format's limits and a
    layer to MAX_LAYER_CHANNELS before any per-channel work."""
    from hwgen.model import limits
    from hwgen.qonnx_import import ops_layers

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))  # 12 inputs, 9 hidden
    out = tmp_path / "s.npz"
    monkeypatch.setattr(limits, "MAX_INPUT_CHANNELS", 11)
    message = cli_error(capsys, "import", path, "-o", out)
    assert "has 12 values; a model takes at most 11 input channels" in message, message
    monkeypatch.setattr(limits, "MAX_INPUT_CHANNELS", 12)
    monkeypatch.setattr(ops_layers, "MAX_LAYER_CHANNELS", 8)
    message = cli_error(capsys, "import", path, "-o", out)
    assert "has 9 output channels; the importer takes at most 8 per layer" in message, message
    assert not out.exists()
    monkeypatch.setattr(ops_layers, "MAX_LAYER_CHANNELS", 9)
    assert main(["import", str(path), "-o", str(out)]) == 0


def _with_extra_nodes(path, nodes, inits, before_output=False):
    """The graph at ``path`` with ``nodes`` and initializers ``inits`` ({name: array}) added:
    unused side nodes, or (``before_output``) a chain between the last node and the
    graph's output (the chain reads ``"chain_in"`` and writes the output's name)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    graph = model.graph
    for name, array in inits.items():
        graph.initializer.append(numpy_helper.from_array(array, name))
    if before_output:
        graph.node[-1].output[0] = "chain_in"
    graph.node.extend(nodes)
    onnx.save(model, path)
    return path


def test_constants_computed_by_quantizers_and_in_all_are_bounded(bm, tmp_path, capsys,
                                                                 monkeypatch):
    """Round 34: a BipolarQuant or Quant of constants broadcast with no size check (a 34 KB
    graph made 1 GiB), and 400 unused Adds of [2048, 1] and [1, 1024] took 6.4 GB."""
    from onnx import helper

    from hwgen.qonnx_import import ops_arith

    f = np.float32
    inits = {"col": np.ones((4, 1), f), "row": np.ones((1, 4), f), "z": np.zeros((1, 1), f),
             "b8": np.array(8.0, f)}
    q = "qonnx.custom_op.general"
    for op, node in [
            ("BipolarQuant", helper.make_node("BipolarQuant", ["col", "row"], ["j1"],
                                              domain=q)),
            ("Quant", helper.make_node("Quant", ["col", "row", "z", "b8"], ["j2"], domain=q,
                                       signed=1, narrow=0))]:
        path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
        _with_extra_nodes(path, [node], inits)
        monkeypatch.setattr(ops_arith, "MAX_COMPUTED_CONSTANT", 15)
        message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
        assert f"{op} of constants would make 16 values, more than the 15" in message, message
        monkeypatch.setattr(ops_arith, "MAX_COMPUTED_CONSTANT", 16)
        assert main(["import", str(path), "-o", str(tmp_path / "x.npz")]) == 0
        (tmp_path / "x.npz").unlink()
    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    _with_extra_nodes(path, [helper.make_node("Add", ["col", "row"], [f"sum{k}"])
                             for k in range(3)], inits)
    monkeypatch.setattr(ops_arith, "MAX_COMPUTED_TOTAL", 40)
    message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
    assert "the constants computed so far hold 48 values, more than the 40" in message
    assert not (tmp_path / "x.npz").exists()


def test_a_long_chain_of_exact_arithmetic_and_an_overflowing_output_are_one_line(
        bm, tmp_path, capsys, monkeypatch):
    """Round 34: 480 Mul/Div/Add nodes on a layer's output took 2 GB (every node's exact
    values kept, and growing); ten Muls by 3e38 on the scores were an OverflowError
    traceback in the output layer's conversion."""
    from onnx import helper

    from hwgen.qonnx_import import ops_arith

    def chain(factor, count):
        path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
        names = ["chain_in"] + [f"m{k}" for k in range(count - 1)] + ["y"]
        return _with_extra_nodes(
            path, [helper.make_node("Mul", [names[k], "big"], [names[k + 1]])
                   for k in range(count)], {"big": np.array(factor, np.float32)},
            before_output=True)

    path = chain(1.1, 6)
    monkeypatch.setattr(ops_arith, "MAX_EXACT_BITS", 100)
    message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
    assert "grows beyond 100 bits" in message, message
    monkeypatch.setattr(ops_arith, "MAX_EXACT_BITS", 4096)
    assert main(["import", str(path), "-o", str(tmp_path / "x.npz")]) == 0
    # a different huge scale per class: the rule's floats overflow
    message = cli_error(capsys, "import", chain([3e38, 1e38, 2e38, 3e38], 10), "-o",
                        tmp_path / "y.npz")
    assert message.startswith("error: the output layer cannot be converted (OverflowError"), \
        message
    assert not (tmp_path / "y.npz").exists()


def test_external_data_shared_by_tensors_and_a_reshape_to_a_computed_shape_are_refused(
        bm, tmp_path, capsys):
    """Round 34: 250 initializers naming the same 2 MiB of external data took 2.5 GB; a
    Reshape of the image to a computed target hid every shape from the check's memory count
    (3.5 GB instead of 214 MiB)."""
    import onnx
    from onnx import helper, numpy_helper

    (tmp_path / "shared.bin").write_bytes(np.ones(64, np.float32).tobytes())
    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    model = onnx.load(path)
    for name in ("e1", "e2"):
        tensor = numpy_helper.from_array(np.ones(64, np.float32), name)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", "shared.bin"), ("offset", "0"), ("length", "256")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        model.graph.initializer.append(tensor)
    onnx.save(model, tmp_path / "ext.onnx")
    message = cli_error(capsys, "import", tmp_path / "ext.onnx", "-o", tmp_path / "x.npz")
    assert "add up to more than its 256 bytes" in message, message

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    model = onnx.load(path)
    graph = model.graph
    for name, value in (("s1", [0, 6]), ("s2", [0, 6])):
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
    graph.node[0].input[0] = "xr"
    graph.node.insert(0, helper.make_node("Reshape", ["x", "target"], ["xr"], name="reshape"))
    graph.node.insert(0, helper.make_node("Add", ["s1", "s2"], ["target"], name="target"))
    onnx.save(model, tmp_path / "hide.onnx")
    message = cli_error(capsys, "import", tmp_path / "hide.onnx", "-o", tmp_path / "x.npz")
    assert "cannot be inferred, so the check cannot bound its memory" in message, message
    assert not (tmp_path / "x.npz").exists()


def test_casts_of_constants_count_and_quantizer_parameters_must_not_grow_the_tensor(
        bm, tmp_path, capsys, monkeypatch):
    """Round 35: 480 Casts of one 2**21-value initializer took 7.7 GB (Cast, Neg and Sqrt of
    constants were not counted), and a [K, 1, 1] zero point of equal values read as one
    value while QONNX's execution broadcast the input to K copies (4.9 GB for K = 2048)."""
    import onnx
    from onnx import helper, numpy_helper

    from hwgen.qonnx_import import ops_arith

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    _with_extra_nodes(path, [helper.make_node(op, ["c16"], [f"k{k}"], **extra)
                             for k, (op, extra) in enumerate(
                                 [("Cast", {"to": onnx.TensorProto.DOUBLE}), ("Neg", {}),
                                  ("Sqrt", {})])],
                      {"c16": np.ones(16, np.float32)})
    monkeypatch.setattr(ops_arith, "MAX_COMPUTED_TOTAL", 40)
    message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
    assert "(Sqrt -> 'k2'): the constants computed so far hold 48 values" in message, message

    path = _conv_with_bias(tmp_path / "c.onnx", (3,))
    model = onnx.load(path)
    one = next(t for t in model.graph.initializer if t.name == "one")
    one.CopyFrom(numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "one"))
    onnx.save(model, path)
    message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
    assert "a parameter of shape [2, 1, 1, 1] does not fit the tensor's shape [1, 3, 6, 6]" \
        in message, message


def test_a_quantized_constant_is_exact_per_distinct_level():
    """quant_constant makes one exact value per distinct (q, z, s), not per element (2.2 GB
    and 217 s for eight Quants of a 2**21-value constant): the same values as before."""
    from types import SimpleNamespace

    from hwgen.qonnx_import.ops_quant import quant_constant
    from hwgen.qonnx_import.values import Const, fraction_array

    rng = np.random.default_rng(3)
    x = Const(rng.normal(size=(6, 5)).astype(np.float32) * 3)
    s = Const(np.array([[0.37], [0.5], [0.1], [2.0], [0.37], [1.5]], np.float32))
    z = Const(np.array(1.0, np.float32))
    node = SimpleNamespace(attrs={}, describe=lambda: "node 'q'")
    got = quant_constant(node, x, s, z, -8, 7)
    q = np.clip(np.round(x.array / s.array + z.array), -8, 7)
    want = (fraction_array(q) - fraction_array(np.broadcast_to(z.array, q.shape))) * \
        fraction_array(np.broadcast_to(s.array, q.shape))
    assert got.ideal.shape == (6, 5) and (got.ideal == want).all()


def test_quant_attributes_are_read_as_qonnx_reads_them(bm, tmp_path, capsys):
    """Round 36: qonnx takes Quant's ``narrow`` as a flag (any nonzero value clips one level
    in), the importer added its value (narrow=2 clipped a bias at -126, the graph at -127: a
    model that disagreed on inputs the random check never reached); an attribute declared
    with another type than qonnx reads (a FLOAT narrow, an INT out_scale) is refused."""
    import onnx
    from onnx import helper

    def graph(**attrs):
        path, _, _ = _streamlined(tmp_path, np.random.default_rng(8), bias=[-127, 0, -8, 8])
        f = np.float32
        _with_extra_nodes(path, [helper.make_node(
            "Quant", ["bias", "qs", "qz", "qb"], ["bias_q"], domain="qonnx.custom_op.general",
            signed=1, **attrs)], {"qs": np.array(1.0, f), "qz": np.array(0.0, f),
                                  "qb": np.array(8.0, f)})
        model = onnx.load(path)
        add = next(n for n in model.graph.node if n.op_type == "Add")
        add.input[1] = "bias_q"
        onnx.save(model, path)
        return path

    out = tmp_path / "q.npz"
    assert main(["import", str(graph(narrow=2)), "-o", str(out)]) == 0, capsys.readouterr().err
    bias = model_io.load(out).layers[-1].bias.astype(np.int64)
    assert list(bias - bias[1]) == [-127, 0, -8, 8]
    path = graph()
    model = onnx.load(path)
    quant = next(n for n in model.graph.node if n.op_type == "Quant")
    quant.attribute.append(helper.make_attribute("narrow", 2.0))
    onnx.save(model, path)
    message = cli_error(capsys, "import", path, "-o", tmp_path / "x.npz")
    assert "attribute narrow is not an INT attribute" in message, message


def test_random_check_images_are_as_many_as_the_graph_runs_fast(bm, tmp_path, capsys,
                                                                monkeypatch):
    """Round 36: a 108 KB graph of one 8192-channel layer and 495 Neg nodes ran QONNX in
    batches of one image, every node of every batch in Python: about 35 minutes for the
    default 1000 random images. Their count is bounded by batches x nodes."""
    from hwgen.qonnx_import import check, command

    path, _, _ = _streamlined(tmp_path, np.random.default_rng(8))
    nodes = 5
    monkeypatch.setattr(command, "MAX_NODE_RUNS", 2 * nodes)
    monkeypatch.setattr(check, "BATCH", 100)
    assert main(["import", str(path), "-o", str(tmp_path / "s.npz")]) == 0
    out = capsys.readouterr().out
    assert ("agrees with the QONNX execution on 200/200 random (seed 0; 200 of the 1000 "
            "asked for, as many as fit 10 executions of the graph's nodes)") in out, out
