"""``python -m hwgen eval`` / ``info`` as a user runs them."""

import subprocess
import sys

import numpy as np
import pytest

from hwgen import model as model_io
from hwgen.cli import main
from hwgen.datasets import load_dataset, write_idx
from hwgen.random_models import conv, dense, pool, random_images, random_model
from hwgen.reference import predict, run

from .conftest import ROOT
from .test_model_format import cli_error


@pytest.fixture
def mnist_like(tmp_path):
    """A random 28x28 model plus 30 images and labels as gzip IDX files."""
    rng = np.random.default_rng(4)
    model = random_model(rng, (1, 28, 28), [conv(4, 3, stride=2), pool(2), dense(16)],
                         classes=10, binarize_at=100)
    path = model_io.save(model, tmp_path / "model.npz")
    images = random_images(rng, model.input, 30)[:, 0]
    labels = rng.integers(0, 10, 30).astype(np.uint8)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    return model, path, images, labels


def test_eval_on_idx_files_prints_accuracy_and_saves_predictions(tmp_path, capsys, mnist_like):
    model, path, images, labels = mnist_like
    out = tmp_path / "pred.npy"
    assert main(["eval", str(path), "--images", str(tmp_path / "images.gz"),
                 "--labels", str(tmp_path / "labels.gz"), "--save-predictions", str(out)]) == 0
    expected = predict(run(model, images))
    correct = int((expected == labels).sum())
    assert capsys.readouterr().out == f"accuracy {correct / 30:.4f} ({correct}/30)\n"
    np.testing.assert_array_equal(np.load(out), expected)


def test_eval_limit(tmp_path, capsys, mnist_like):
    _, path, _, _ = mnist_like
    assert main(["eval", str(path), "--images", str(tmp_path / "images.gz"),
                 "--labels", str(tmp_path / "labels.gz"), "--limit", "7"]) == 0
    assert capsys.readouterr().out.strip().endswith("/7)")


def test_eval_on_fashion_mnist(fashion_mnist_dir, tmp_path, capsys, mnist_like):
    model, path, _, _ = mnist_like
    assert main(["eval", str(path), "--dataset", "fashion-mnist", "--limit", "500"]) == 0
    images, labels = load_dataset("fashion-mnist", "test", limit=500)
    correct = int((predict(run(model, images)) == labels).sum())
    assert capsys.readouterr().out == f"accuracy {correct / 500:.4f} ({correct}/500)\n"


def test_images_of_the_wrong_size(tmp_path, capsys, mnist_like):
    _, path, _, _ = mnist_like
    write_idx(tmp_path / "small.gz", np.zeros((3, 20, 20), np.uint8))
    msg = cli_error(capsys, "eval", path, "--images", tmp_path / "small.gz")
    assert "images are 1x20x20 (400 values each) but the model input is [1, 28, 28]" in msg


def test_pixel_values_beyond_bits(tmp_path, capsys):
    rng = np.random.default_rng(5)
    model = random_model(rng, (1, 4, 4), [dense(3)], bits=4, binarize_at=None)
    path = model_io.save(model, tmp_path / "m.npz")
    images = np.full((2, 4, 4), 15, np.uint8)
    images[1, 2, 3] = 16
    write_idx(tmp_path / "i", images)
    msg = cli_error(capsys, "eval", path, "--images", tmp_path / "i")
    assert "pixel value 16 is outside [0, 15] for a 4-bit model input" in msg


def test_labels_with_dataset_is_an_error(capsys, mnist_like, tmp_path):
    _, path, _, _ = mnist_like
    assert "--labels goes with --images" in cli_error(
        capsys, "eval", path, "--dataset", "mnist", "--labels", tmp_path / "labels.gz")


def test_bad_option_is_one_line(capsys, mnist_like):
    _, path, _, _ = mnist_like
    assert "argument --limit: must be at least 1" in cli_error(capsys, "eval", path, "--dataset",
                                                     "mnist", "--limit", "0")
    assert "one of the arguments --dataset --images is required" in cli_error(
        capsys, "eval", path)


def test_save_predictions_needs_npy(tmp_path, capsys, mnist_like):
    _, path, _, _ = mnist_like
    msg = cli_error(capsys, "eval", path, "--images", tmp_path / "images.gz",
                    "--save-predictions", tmp_path / "p.txt")
    assert "ending in .npy" in msg
    assert not (tmp_path / "p.txt").exists()


def test_info_lists_layers_bits_and_widths(capsys, mnist_like):
    model, path, _, _ = mnist_like
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "binarized at 100" in out
    lines = out.splitlines()
    conv_line = next(line for line in lines if line.lstrip().startswith("0  conv2d"))
    # 4 channels x 1x3x3 weights; acc in [-9, 9] needs 5 bits; thresholds 5 bits + 1 sign bit
    assert "1x28x28" in conv_line and "4x13x13" in conv_line and "[-9, 9]" in conv_line
    assert conv_line.split()[5:7] == ["36", str(36 + 4 * (5 + 1))]
    weights = sum(layer.weight.size for layer in model.layers if hasattr(layer, "weight"))
    assert f"total  {weights} weight bits" in out


@pytest.mark.parametrize("command", [[], ["eval"], ["info"], ["import"]])
def test_help(command):
    proc = subprocess.run([sys.executable, "-m", "hwgen", *command, "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_importing_hwgen_does_not_import_torch():
    code = ("import sys, hwgen, hwgen.cli, hwgen.reference, hwgen.datasets, hwgen.summary; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path, mnist_like):
    """``python -m hwgen info M | head -1``: no BrokenPipeError traceback, exit 141."""
    proc = subprocess.Popen([sys.executable, "-m", "hwgen", "info", str(mnist_like[1])],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
