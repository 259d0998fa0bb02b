"""CIFAR-10 in train/: 3-channel input, per-channel normalization folded exactly, the VGG
presets, augmentation of 3 channels, and a tiny end-to-end run on fake CIFAR batch files.
Synthetic data only (no CIFAR-10 here)."""

from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hwgen import model as model_io  # noqa: E402
from hwgen.datasets import load_dataset  # noqa: E402
from hwgen.reference import Reference  # noqa: E402
from tests.test_datasets import write_cifar_batch  # noqa: E402
from tests.test_train import _direct_float64_hidden  # noqa: E402
from train.arch import PRESETS, parse_arch  # noqa: E402
from train.cli import main as train_main  # noqa: E402
from train.data import augment  # noqa: E402
from train.export import check_against_reference, hard_scores, input_fold, to_model  # noqa: E402
from train.fold import fold_bn  # noqa: E402
from train.loop import TrainConfig, train  # noqa: E402
from train.net import INPUT_STATS, Net  # noqa: E402

CLASSES = [str(i) for i in range(10)]


def _synthetic_cifar(rng, n):
    """Class c: a bright horizontal band at row 3*c in channel c % 3 (learnable)."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 100, size=(n, 3, 32, 32)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, int(c) % 3, 3 * int(c):3 * int(c) + 3, 4:28] = rng.integers(160, 256, (3, 24))
    return images, [int(v) for v in labels]


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """Fake ``cifar-10-batches-py``: 5 training batches of 16 images, a test batch of 32."""
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{b}", 16) for b in range(1, 6)] + [("test_batch", 32)]:
        images, labels = _synthetic_cifar(rng, n)
        write_cifar_batch(folder / name, images.reshape(n, -1), labels)
    return folder


def _reduced(spec: str, divide: int) -> str:
    """The same topology with every width divided by ``divide`` (at least 2)."""
    kind, _, body = spec.partition(":")
    items = [item if item == "p" else item[0] + str(max(2, int(item[1:]) // divide))
             for item in body.split("-")]
    return kind + ":" + "-".join(items)


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name, last_shape", [("vgg-small", (1024, 1, 1)),
                                              ("vgg-tiny", (512, 1, 1))])
def test_vgg_presets_build_and_forward(name, last_shape):
    arch = parse_arch(name, (3, 32, 32))
    assert arch.spec == PRESETS[name]
    shapes = arch.shapes((3, 32, 32))
    assert shapes[-1] == last_shape
    assert sum(layer.op == "pool" for layer in arch.hidden) == 3
    torch.manual_seed(0)
    net = Net(arch, (3, 32, 32), 10, "sbn", input_mean=INPUT_STATS["cifar10"][0],
              input_std=INPUT_STATS["cifar10"][1]).eval()
    x = torch.from_numpy(_synthetic_cifar(np.random.default_rng(1), 2)[0])
    with torch.no_grad():
        logits = net(x, 5.0)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_vgg_small_is_binarynet_cifar10():
    ops = [(layer.op, layer.width) for layer in parse_arch("vgg-small", (3, 32, 32)).hidden]
    assert ops == [("conv", 128), ("conv", 128), ("pool", 0), ("conv", 256), ("conv", 256),
                   ("pool", 0), ("conv", 512), ("conv", 512), ("pool", 0), ("dense", 1024),
                   ("dense", 1024)]


# ----------------------------------------------------------------------------- normalization


def _exact_bn_sign(a: Fraction, g, b, mu, v) -> bool:
    """y = g*(a - mu)/sqrt(v) + b >= 0, exactly (v > 0), independent of train.fold."""
    g, b, mu, v = (Fraction(float(t)) for t in (g, b, mu, v))
    p = g * (a - mu)
    if p >= 0 and b >= 0:
        return True
    if p <= 0 and b <= 0:
        return p == 0 and b == 0
    return p * p >= b * b * v if p > 0 else b * b * v >= p * p


def test_per_channel_mean_fold_is_exact():
    """First conv on raw 3-channel pixels with per-channel means: sign*acc >= threshold equals
    the exact BN sign of a = sum_c sum_k w*(pixel/255 - mean_c)/std computed from the pixels
    themselves (rationals), at every position of random images, padding included."""
    rng = np.random.default_rng(5)
    means, std = (0.4914, 0.4822, 0.4465), 0.2508
    m = 6
    weight = rng.choice([-1, 1], size=(m, 3, 3, 3)).astype(np.int8)
    gamma = rng.normal(size=m)
    gamma[0] = -abs(gamma[0])
    beta, mu = rng.normal(size=m), rng.normal(size=m) * 3
    var, eps = rng.random(m) * 5 + 0.1, 1e-5
    offset, scale = input_fold(weight, means, std)
    n = np.full(m, 27 * 255, dtype=np.int64)
    lo, hi = -n, n
    sign, thr = fold_bn(gamma, beta, mu, var, eps, lo, hi, offset, scale)
    images = rng.integers(0, 256, size=(3, 3, 5, 5))
    images[0] = 0
    qmeans = [Fraction(x) for x in means]
    outcomes = set()
    for img in images:
        padded = np.pad(img, ((0, 0), (1, 1), (1, 1)))
        for j in range(m):
            for y in range(5):
                for x in range(5):
                    patch = padded[:, y:y + 3, x:x + 3]
                    acc = int((weight[j].astype(np.int64) * patch).sum())
                    a = sum(int(weight[j, c, ky, kx]) * (Fraction(int(patch[c, ky, kx]), 255)
                                                        - qmeans[c])
                            for c in range(3) for ky in range(3) for kx in range(3))
                    a /= Fraction(std)
                    want = _exact_bn_sign(a, gamma[j], beta[j], mu[j],
                                          Fraction(float(var[j])) + Fraction(eps))
                    assert (int(sign[j]) * acc >= int(thr[j])) == want, (j, y, x)
                    outcomes.add(want)
    assert outcomes == {True, False}


def test_per_channel_std_is_refused():
    arch = parse_arch("cnn:c4-p-d8", (3, 8, 8))
    with pytest.raises(ValueError, match="one number for all channels"):
        Net(arch, (3, 8, 8), 10, "sbn", input_mean=(0.5, 0.5, 0.5), input_std=(0.2, 0.3, 0.4))
    with pytest.raises(ValueError, match="2 values for 3 channels"):
        Net(arch, (3, 8, 8), 10, "sbn", input_mean=(0.5, 0.5))


def test_one_channel_normalization_unchanged():
    """Equal means keep the original scalar arithmetic (bit-identical Fashion-MNIST runs)."""
    net = Net(parse_arch("mlp:8", (1, 4, 4)), (1, 4, 4), 10, "sbn")
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) * 16
    assert torch.equal(net.prepare_input(x), (x / 255.0 - 0.2860) / 0.3530)
    assert net.input_mean == (0.2860,)


@pytest.mark.parametrize("arch", ["cnn:c4-p-c6-p-d10", "mlp:12"])
def test_export_per_channel_mean_equals_direct_float64(arch):
    """A trained 3-channel network: reference == torch hard eval, and the folded first layer
    equals a float64 evaluation of (pixel/255 - mean_c)/std -> sign weights -> BN -> sign."""
    rng = np.random.default_rng(2)
    images, labels = _synthetic_cifar(rng, 48)
    images = images[:, :, :16, :16].copy()
    torch.manual_seed(0)
    means, std = INPUT_STATS["cifar10"]
    net = Net(parse_arch(arch, (3, 16, 16)), (3, 16, 16), 10, "sbn", input_mean=means,
              input_std=std)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.from_numpy(images), torch.tensor(labels)
    for step in range(4):
        loss = torch.nn.functional.cross_entropy(net(x, 1.0 + step), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        net.blocks[0].bn.weight[::3] *= -1
    model = to_model(net, CLASSES)
    probe = np.concatenate([images, rng.integers(0, 256, (16, 3, 16, 16))]).astype(np.uint8)
    check_against_reference(model, probe)
    np.testing.assert_array_equal(hard_scores(model, probe).numpy(), Reference(model).run(probe))
    assert _direct_float64_hidden(net, probe, model).all()


# ----------------------------------------------------------------------------- augmentation


def test_augment_three_channels_moves_all_channels_together():
    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.integers(1, 256, (12, 3, 8, 8)).astype(np.uint8))
    out = augment(images, torch.Generator().manual_seed(0), flip=True, shift=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(12):
        found = False
        for src in (padded[i], padded[i].flip(-1)):
            for dy in range(5):
                for dx in range(5):
                    found |= bool(torch.equal(out[i], src[:, dy:dy + 8, dx:dx + 8]))
        assert found, i


# ----------------------------------------------------------------------------- end to end


def test_cifar10_split_from_fake_batches(cifar_dir):
    images, labels = load_dataset("cifar10", "train", cifar_dir.parent)
    assert images.shape == (80, 3, 32, 32) and labels.shape == (80,)


def test_reduced_vgg_trains_and_exports(cifar_dir, tmp_path):
    """vgg-small's topology with widths / 32, one epoch on fake CIFAR batches, with flips and
    shifts: the export (which asserts hwgen reference == torch hard eval) and a reload."""
    spec = _reduced(PRESETS["vgg-small"], 32)
    assert spec == "cnn:c4-c4-p-c8-c8-p-c16-c16-p-d32-d32"
    cfg = TrainConfig(dataset="cifar10", arch=spec, method="sbn", epochs=1,
                      out=str(tmp_path / "v.npz"), data_dir=str(cifar_dir), batch_size=16,
                      threads=1, progress=False, nu_end=100.0, flip=True, shift=4)
    result = train(cfg)
    model = model_io.load(cfg.out)
    assert tuple(model.input.shape) == (3, 32, 32) and model.input.binarize_at is None
    assert model.layers[0].op == "conv2d" and model.layers[0].pad_value == 0
    assert model.provenance["dataset"] == "cifar10"
    assert model.classes[0] == "airplane"
    images, labels = load_dataset("cifar10", "test", cifar_dir)
    ref = Reference(model).run(images)
    assert float((ref.argmax(1) == labels).mean()) == pytest.approx(result["test_accuracy"])


def test_cli_vgg_tiny_preset_and_cifar10(cifar_dir, tmp_path, capsys):
    """--arch vgg-tiny and --dataset cifar10 through the CLI (2 training images per step,
    train-limit 16: a quick look, not a real run); provenance keeps the expanded spec."""
    out = tmp_path / "t.npz"
    code = train_main(["--dataset", "cifar10", "--data-dir", str(cifar_dir.parent), "--arch",
                       "vgg-tiny", "--epochs", "1", "--batch-size", "8", "--train-limit", "16",
                       "--test-limit", "8", "--threads", "1", "--no-progress", "--out",
                       str(out), "--nu-learnable"])
    assert code == 0, capsys.readouterr().err
    model = model_io.load(out)
    assert model.provenance["arch"] == "vgg-tiny"
    assert model.provenance["arch_spec"] == PRESETS["vgg-tiny"]
    assert model.provenance["nu_learnable"] is True
    assert "learned: mean" in capsys.readouterr().err


def test_cli_cifar10_missing_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SBN_DATA_DIR", raising=False)
    code = train_main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--arch",
                       "vgg-tiny", "--out", str(tmp_path / "x.npz"), "--threads", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: dataset cifar10") and "not found" in err[0]


def test_deep_spec_valid_for_32x32_is_not_refused_early(cifar_dir, tmp_path):
    """Five pools fit 32x32 (not 28x28): the early spec check uses the dataset's shape."""
    cfg = TrainConfig(dataset="cifar10", arch="cnn:c2-p-p-p-p-p-d4", epochs=1,
                      out=str(tmp_path / "d.npz"), data_dir=str(cifar_dir), batch_size=16,
                      threads=1, progress=False, nu_end=10.0)
    train(cfg)
    assert model_io.load(cfg.out).layers[-2].op == "dense"
