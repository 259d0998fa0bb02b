"""Model files: round trips, the conformance suite's invalid files, one test per broken rule.

Every rejection goes through the CLI, so each case also checks the user-facing contract:
exit code 2 and exactly one line ``error: ...`` naming what is wrong.
"""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.errors import ModelFormatError
from hwgen.random_models import conv, dense, pool, random_images, random_model
from hwgen.reference import run

from .conftest import CONFORMANCE, ROOT

INVALID = sorted(p.name for p in (CONFORMANCE / "invalid").glob("*.npz"))


def cli_error(capsys, *argv) -> str:
    """Run the CLI expecting a user error; return its single stderr line."""
    assert main(list(map(str, argv))) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def base_arrays(binarize_at=100):
    """The arrays and graph of a small valid conv model, to be broken one rule at a time."""
    rng = np.random.default_rng(0)
    model = random_model(rng, (1, 6, 6), [conv(3, 3, padding=1, pad_value=1), pool(2),
                                          dense(4)], classes=3, binarize_at=binarize_at)
    arrays = model_io.to_arrays(model)
    return arrays, json.loads(str(arrays["graph"]))


def write(tmp_path, arrays, graph=None, name="m.npz"):
    if graph is not None:
        arrays = dict(arrays, graph=np.array(json.dumps(graph)))
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_save_load_round_trip_keeps_every_number(tmp_path):
    rng = np.random.default_rng(1)
    model = random_model(rng, (2, 7, 5), [conv(3, 3, stride=2, padding=1, pad_value=7),
                                          dense(9)], classes=4, binarize_at=None)
    path = model_io.save(model, tmp_path / "model.npz")
    again = model_io.load(path)
    assert again.input == model.input and again.classes == model.classes
    for a, b in zip(model.layers, again.layers):
        assert type(a) is type(b)
        for name in ("weight", "threshold", "sign", "bias"):
            x, y = getattr(a, name, None), getattr(b, name, None)
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)
    images = random_images(rng, model.input, 20)
    np.testing.assert_array_equal(run(model, images), run(again, images))


def test_saved_file_is_plain_npz_without_pickles(tmp_path):
    path = model_io.save(random_model(np.random.default_rng(2), (1, 4, 4), [dense(3)]),
                         tmp_path / "m.npz")
    data = np.load(path, allow_pickle=False)
    assert str(data["format"]) == "sbn-model" and int(data["version"]) == 1
    graph = json.loads(str(data["graph"]))
    assert graph["layers"][0]["weight"] in data.files


def test_save_refuses_invalid_model_and_leaves_no_file(tmp_path):
    model = random_model(np.random.default_rng(3), (1, 4, 4), [dense(3)])
    model.layers[0].sign[0] = 0
    with pytest.raises(ModelFormatError, match="sign"):
        model_io.save(model, tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", INVALID)
def test_conformance_invalid_files_are_rejected(conformance_dir, capsys, name):
    cli_error(capsys, "info", conformance_dir / "invalid" / name)


def test_conformance_invalid_cases_are_all_found(conformance_dir):
    assert len(INVALID) >= 15


# One test per broken rule ------------------------------------------------------------------


def test_not_a_zip(tmp_path, capsys):
    path = tmp_path / "m.npz"
    path.write_bytes(b"hello, world\n")
    assert "not a readable .npz" in cli_error(capsys, "info", path)


def test_truncated_zip(tmp_path, capsys):
    good = write(tmp_path, base_arrays()[0], name="good.npz")
    path = tmp_path / "m.npz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "m.npz" in cli_error(capsys, "info", path)


@pytest.mark.parametrize("key", ["format", "version", "graph"])
def test_missing_top_level_key(tmp_path, capsys, key):
    arrays = base_arrays()[0]
    del arrays[key]
    assert f"missing key '{key}'" in cli_error(capsys, "info", write(tmp_path, arrays))


def test_other_format_name(tmp_path, capsys):
    arrays = dict(base_arrays()[0], format=np.array("onnx"))
    assert "format is 'onnx'" in cli_error(capsys, "info", write(tmp_path, arrays))


def test_newer_version(tmp_path, capsys):
    arrays = dict(base_arrays()[0], version=np.array(2))
    assert "version 2 is newer" in cli_error(capsys, "info", write(tmp_path, arrays))


def test_invalid_json(tmp_path, capsys):
    arrays = dict(base_arrays()[0], graph=np.array("{'input': 1"))
    assert "graph is not valid JSON" in cli_error(capsys, "info", write(tmp_path, arrays))


def test_missing_array(tmp_path, capsys):
    arrays = base_arrays()[0]
    del arrays["l3.weight"]
    msg = cli_error(capsys, "info", write(tmp_path, arrays))
    assert "layer 3 (dense)" in msg and "'l3.weight'" in msg and "missing" in msg


def test_wrong_dtype(tmp_path, capsys):
    arrays = base_arrays()[0]
    arrays["l0.weight"] = arrays["l0.weight"].astype(np.int16)
    msg = cli_error(capsys, "info", write(tmp_path, arrays))
    assert "layer 0 (conv2d): weight has dtype int16" in msg


def test_wrong_shape(tmp_path, capsys):
    arrays = base_arrays()[0]
    arrays["l0.threshold"] = arrays["l0.threshold"][:-1]
    msg = cli_error(capsys, "info", write(tmp_path, arrays))
    assert "layer 0 (conv2d): threshold has shape [2], expected [3]" in msg


@pytest.mark.parametrize("role,value", [("weight", 0), ("sign", 2)])
def test_values_not_plus_minus_one(tmp_path, capsys, role, value):
    arrays = base_arrays()[0]
    arrays[f"l0.{role}"] = arrays[f"l0.{role}"].copy()
    arrays[f"l0.{role}"].flat[0] = value
    msg = cli_error(capsys, "info", write(tmp_path, arrays))
    assert f"layer 0 (conv2d): {role} holds {value}" in msg


def test_object_array_is_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    arrays = dict(base_arrays()[0])
    arrays["evil"] = np.array([Evil()], dtype=object)
    msg = cli_error(capsys, "info", write(tmp_path, arrays))
    assert "'evil' holds Python objects" in msg
    assert not marker.exists()


@pytest.mark.parametrize("change,expected", [
    ({"stride": [0, 1]}, "stride must be at least 1"),
    ({"stride": [1]}, "stride must be a pair of integers"),
    ({"padding": [-1, 0]}, "padding must be at least 0"),
    ({"padding": [1.5, 0]}, "padding must be a pair of integers"),
    ({"pad_value": 0}, "pad_value 0 on binary input must be -1 or +1"),
])
def test_bad_conv_parameters(tmp_path, capsys, change, expected):
    arrays, graph = base_arrays()
    graph["layers"][0].update(change)
    msg = cli_error(capsys, "info", write(tmp_path, arrays, graph))
    assert "layer 0 (conv2d)" in msg and expected in msg


def test_raw_pad_value_out_of_range(tmp_path, capsys):
    arrays, graph = base_arrays(binarize_at=None)
    graph["layers"][0]["pad_value"] = 256
    assert "pad_value 256 on raw input must lie in [0, 255]" in cli_error(
        capsys, "info", write(tmp_path, arrays, graph))


@pytest.mark.parametrize("change,expected", [
    ({"kernel": [0, 2]}, "kernel must be at least 1"),
    ({"kernel": [9, 9]}, "kernel [9, 9] exceeds the input 6x6"),
    ({"stride": [2, 0]}, "stride must be at least 1"),
])
def test_bad_pool_parameters(tmp_path, capsys, change, expected):
    arrays, graph = base_arrays()
    graph["layers"][1].update(change)
    msg = cli_error(capsys, "info", write(tmp_path, arrays, graph))
    assert "layer 1 (maxpool2d)" in msg and expected in msg


def test_conv_kernel_larger_than_input(tmp_path, capsys):
    arrays, graph = base_arrays()
    graph["layers"][0]["padding"] = [0, 0]
    graph["input"]["shape"] = [1, 2, 6]
    msg = cli_error(capsys, "info", write(tmp_path, arrays, graph))
    assert "kernel height 3 exceeds the padded input height 2" in msg


def test_unknown_op(tmp_path, capsys):
    arrays, graph = base_arrays()
    graph["layers"][1]["op"] = "avgpool2d"
    assert "layer 1: unknown op 'avgpool2d'" in cli_error(
        capsys, "info", write(tmp_path, arrays, graph))


def test_output_layer_not_last(tmp_path, capsys):
    arrays, graph = base_arrays()
    graph["layers"][2]["threshold"] = None
    graph["layers"][2]["sign"] = None
    msg = cli_error(capsys, "info", write(tmp_path, arrays, graph))
    assert "layer 2 (dense): an output layer (no threshold/sign) must be the last" in msg


def test_last_layer_not_output(tmp_path, capsys):
    arrays, graph = base_arrays()
    graph["layers"] = graph["layers"][:3]
    graph["classes"] = ["a", "b", "c", "d"]
    assert "the last layer must be an output layer" in cli_error(
        capsys, "info", write(tmp_path, arrays, graph))


def test_class_count_mismatch(tmp_path, capsys):
    arrays, graph = base_arrays()
    graph["classes"].append("extra")
    assert "classes has 4 names but the output layer has 3 outputs" in cli_error(
        capsys, "info", write(tmp_path, arrays, graph))


@pytest.mark.parametrize("shape", [[1, 0, 6], [1, 6], [1, 6, "6"]])
def test_bad_input_shape(tmp_path, capsys, shape):
    arrays, graph = base_arrays()
    graph["input"]["shape"] = shape
    assert "input: shape" in cli_error(capsys, "info", write(tmp_path, arrays, graph))


def test_unknown_layer_key(tmp_path, capsys):
    arrays, graph = base_arrays()
    graph["layers"][2]["activation"] = "relu"
    assert "layer 2 (dense): unknown key 'activation'" in cli_error(
        capsys, "info", write(tmp_path, arrays, graph))


def test_member_that_is_not_npy(tmp_path, capsys):
    path = write(tmp_path, base_arrays()[0])
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("README.txt", "hi")
    assert "member 'README.txt' is not a .npy" in cli_error(capsys, "info", path)


def test_missing_model_file(tmp_path, capsys):
    assert "no such model file" in cli_error(capsys, "info", tmp_path / "nope.npz")


def test_user_error_prints_no_traceback_from_a_real_process(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"\x00" * 10)
    proc = subprocess.run([sys.executable, "-m", "hwgen", "info", str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_saved_file_has_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = model_io.save(random_model(np.random.default_rng(4), (1, 3, 3), []),
                             tmp_path / "m.npz")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
