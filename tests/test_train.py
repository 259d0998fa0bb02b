"""train/: arch grammar, exact BN folding, training steps of each method, exact export,
resume, DDP (two CPU processes) and the CLI's error handling. Tiny synthetic data only."""

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hwgen import model as model_io  # noqa: E402
from hwgen.datasets import write_idx  # noqa: E402
from hwgen.reference import Reference, predict  # noqa: E402
from hwgen.errors import UserError  # noqa: E402
from train.arch import ArchError, parse_arch  # noqa: E402
from train.cli import main as train_main  # noqa: E402
from train.export import check_against_reference, hard_predict, hard_scores, to_model  # noqa: E402
from train.fold import bn_sign_exact, fold_bn, fold_channel  # noqa: E402
from train.loop import TrainConfig, load_checkpoint, train  # noqa: E402
from train.state_archive import write_state  # noqa: E402
from train.net import Net  # noqa: E402
from train.schedule import nu_at  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [str(i) for i in range(10)]


# ----------------------------------------------------------------------------- fixtures


def _synthetic(rng, n):
    """Images whose class is the brightest of 10 horizontal bands (learnable, 28x28)."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 90, size=(n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        top = int(c) * 28 // 10
        images[i, top:top + 3, 4:24] = rng.integers(150, 256, size=(3, 20))
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic-fmnist")
    rng = np.random.default_rng(0)
    for split, n, stem in (("train", 512, "train"), ("test", 200, "t10k")):
        images, labels = _synthetic(rng, n)
        write_idx(folder / f"{stem}-images-idx3-ubyte", images)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", labels)
    return folder


def assert_same_model(path_a, path_b):
    """The two model files hold identical arrays and the same measured accuracy."""
    a, b = model_io.load(path_a), model_io.load(path_b)
    for la, lb in zip(a.layers, b.layers):
        for key in ("weight", "threshold", "sign", "bias"):
            va, vb = getattr(la, key, None), getattr(lb, key, None)
            assert (va is None) == (vb is None)
            if va is not None:
                np.testing.assert_array_equal(va, vb)
    assert a.provenance["test_accuracy"] == b.provenance["test_accuracy"]


def _cfg(data_dir, tmp_path, **kw):
    base = dict(dataset="fashion-mnist", arch="mlp:24", method="sbn", epochs=2,
                out=str(tmp_path / "m.npz"), data_dir=str(data_dir), batch_size=64,
                threads=1, progress=False, nu_end=100.0)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- arch


@pytest.mark.parametrize("spec, ops", [
    ("mlp:256-256", ["dense", "dense"]),
    ("mlp:d8", ["dense"]),
    ("cnn:c32-p-c64-p-d256", ["conv", "pool", "conv", "pool", "dense"]),
    ("cnn:c8-p-p", ["conv", "pool", "pool"]),
])
def test_arch_parses(spec, ops):
    assert [layer.op for layer in parse_arch(spec).hidden] == ops


@pytest.mark.parametrize("spec", ["mlp", "mlp:", "rnn:3", "mlp:c8", "mlp:0", "cnn:8",
                                  "cnn:p-c8", "cnn:c8-d8-c8", "mlp:8--8", "cnn:c4-p-p-p-p-p"])
def test_arch_rejects(spec):
    with pytest.raises(ArchError):
        parse_arch(spec)


def test_nu_schedule():
    assert nu_at(0.0) == pytest.approx(1.0)
    assert nu_at(0.4, nu_end=100, ramp=0.8) == pytest.approx(10.0)
    assert nu_at(0.9, nu_end=100, ramp=0.8) == pytest.approx(100.0)
    assert nu_at(0.5, "linear", 1, 11, 1.0) == pytest.approx(6.0)
    assert nu_at(0.1, "const", nu_end=7) == 7.0


# ----------------------------------------------------------------------------- folding


def _float_bn_sign(acc, g, b, m, v, eps, offset=0.0, scale=1.0):
    a = (np.asarray(acc, dtype=np.float64) - offset) / scale
    y = g * (a - m) / math.sqrt(v + eps) + b
    return y


def test_fold_exact_on_random_bn():
    """Every integer accumulator in range: folded comparison == exact BN sign, and == float64
    BN sign wherever float64 is not within rounding of the tie. Negative, zero, tiny gamma."""
    rng = np.random.default_rng(1)
    m = 120
    gamma = rng.normal(size=m) * rng.choice([1.0, 1e-3, 0.0], size=m, p=[0.7, 0.1, 0.2])
    gamma = gamma.astype(np.float32)
    beta = (rng.normal(size=m) * rng.choice([1.0, 0.0], size=m, p=[0.8, 0.2])).astype(np.float32)
    mean = (rng.normal(size=m) * 10).astype(np.float32)
    mean[::7] = np.round(mean[::7])  # exact ties at integer accumulators when beta == 0
    var = (rng.random(size=m) * 30).astype(np.float32)
    var[::11] = 0.0
    lo, hi = -40, 40
    for eps in (1e-5, 0.25):
        sign, thr = fold_bn(gamma, beta, mean, var, eps, lo, hi)
        assert sign.dtype == np.int8 and thr.dtype == np.int64
        for j in range(m):
            accs = np.arange(lo, hi + 1)
            folded = sign[j] * accs >= thr[j]
            exact = np.array([bn_sign_exact(a, gamma[j], beta[j], mean[j], var[j], eps)
                              for a in accs])
            np.testing.assert_array_equal(folded, exact, err_msg=f"channel {j}")
            y = _float_bn_sign(accs, float(gamma[j]), float(beta[j]), float(mean[j]),
                               float(var[j]), eps)
            clear = np.abs(y) > 1e-9
            np.testing.assert_array_equal(folded[clear], (y >= 0)[clear])
            # clamped into the reachable range
            if sign[j] == 1:
                assert lo <= thr[j] <= hi + 1
            else:
                assert -hi <= thr[j] <= -lo + 1
            if gamma[j] < 0:
                assert sign[j] == -1


def test_fold_ties_and_constant_channels():
    # y == 0 exactly at acc == 5 passes (sign(0) = +1) for either sign of gamma
    assert fold_channel(1.0, 0.0, 5.0, 1.0, 0.0 + 1e-5, -10, 10) == (1, 5)
    assert fold_channel(-1.0, 0.0, 5.0, 1.0, 1e-5, -10, 10) == (-1, -5)
    # gamma == 0: constant channel, clamped to always / never
    assert fold_channel(0.0, 0.5, 3.0, 1.0, 1e-5, -10, 10) == (1, -10)
    assert fold_channel(0.0, 0.0, 3.0, 1.0, 1e-5, -10, 10) == (1, -10)
    assert fold_channel(0.0, -0.5, 3.0, 1.0, 1e-5, -10, 10) == (1, 11)
    # crossing far outside the range clamps
    assert fold_channel(1.0, 100.0, 0.0, 1.0, 1e-5, -10, 10) == (1, -10)
    assert fold_channel(1.0, -100.0, 0.0, 1.0, 1e-5, -10, 10) == (1, 11)
    assert fold_channel(-1.0, 100.0, 0.0, 1.0, 1e-5, -10, 10) == (-1, -10)
    assert fold_channel(-1.0, -100.0, 0.0, 1.0, 1e-5, -10, 10) == (-1, 11)


def test_fold_input_normalization_on_raw_pixels():
    """First layer on raw pixels: a = (acc - offset) / scale is folded exactly too."""
    rng = np.random.default_rng(2)
    for _ in range(30):
        g, b, mu = rng.normal(), rng.normal(), rng.normal()
        v, offset, scale = rng.random() * 4, rng.normal() * 3000, 255 * 0.353
        lo, hi = -3000, 3000
        s, t = fold_channel(g, b, mu, v, 1e-5, lo, hi, offset, scale)
        accs = np.arange(lo, hi + 1)
        y = _float_bn_sign(accs, g, b, mu, v, 1e-5, offset, scale)
        clear = np.abs(y) > 1e-9
        np.testing.assert_array_equal((s * accs >= t)[clear], (y >= 0)[clear])


# ----------------------------------------------------------------------------- export


def _trained_net(arch, method, binarize_at=None, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = _synthetic(rng, 64)
    torch.manual_seed(seed)
    net = Net(parse_arch(arch), (1, 28, 28), 10, method, binarize_at)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.from_numpy(images[:, None])
    y = torch.from_numpy(labels.astype(np.int64))
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x, 1.0 + step), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # perturb BN so that negative / zero gamma and odd statistics are exported too
    with torch.no_grad():
        for block in net.blocks:
            if hasattr(block, "bn"):
                g = block.bn.weight
                g[::3] = -g[::3].abs()
                g[1::5] = 0.0
    return net, images[:, None]


@pytest.mark.parametrize("arch, method, binarize_at", [
    ("mlp:32-16", "sbn", None), ("mlp:32", "ste", 128),
    ("cnn:c4-p-c6-p-d10", "sbn", None), ("cnn:c4-p-d8", "ste", 100),
])
def test_export_load_reference_equals_torch_hard_eval(tmp_path, arch, method, binarize_at):
    net, images = _trained_net(arch, method, binarize_at)
    model = to_model(net, CLASSES, {"method": method})
    path = model_io.save(model, tmp_path / "x.npz")
    loaded = model_io.load(path)
    rng = np.random.default_rng(3)
    probe = np.concatenate([images, rng.integers(0, 256, size=(32, 1, 28, 28))]).astype(np.uint8)
    torch_scores = hard_scores(loaded, probe).numpy()
    np.testing.assert_array_equal(torch_scores, Reference(loaded).run(probe))
    np.testing.assert_array_equal(hard_predict(model, probe), predict(torch_scores))
    check_against_reference(loaded, probe)
    # the folded network equals a direct float64 evaluation of sign weights + BN + sign,
    # except where a BN output is within float rounding of 0
    np.testing.assert_array_equal(_direct_float64_hidden(net, probe, model), True)


def _direct_float64_hidden(net, images, model):
    """Per image: True when the folded model's first hidden layer equals float64 BN-sign
    (or the float64 value is within 1e-9 of the tie)."""
    block = net.blocks[0]
    w = torch.where(block.weight >= 0, 1.0, -1.0).double()
    x = torch.from_numpy(images).double()
    if net.binarize_at is not None:
        x = torch.where(x >= net.binarize_at, 1.0, -1.0).double()
        pad = -1.0
    else:
        pad = 0.0
    if net.ops[0] == "conv":
        x = torch.nn.functional.pad(x, (1, 1, 1, 1), value=pad)
    if net.binarize_at is None:
        mean = torch.tensor(net.input_mean, dtype=torch.float64).reshape(1, -1, 1, 1)
        x = (x / 255.0 - mean) / net.input_std
    acc = (torch.nn.functional.conv2d(x, w) if net.ops[0] == "conv"
           else x.flatten(1) @ w.T)
    bn = block.bn
    shape = (1, -1, 1, 1) if net.ops[0] == "conv" else (1, -1)
    y = (bn.weight.double().reshape(shape) * (acc - bn.running_mean.double().reshape(shape))
         / torch.sqrt(bn.running_var.double().reshape(shape) + bn.eps)
         + bn.bias.double().reshape(shape)).detach()
    layer = model.layers[0]
    xin = torch.from_numpy(images).double()
    if model.input.binary:
        xin = torch.where(xin >= model.input.binarize_at, 1.0, -1.0).double()
    if net.ops[0] == "conv":
        xin = torch.nn.functional.pad(xin, (1, 1, 1, 1), value=float(layer.pad_value))
        iacc = torch.nn.functional.conv2d(xin, torch.from_numpy(layer.weight).double())
    else:
        iacc = xin.flatten(1) @ torch.from_numpy(layer.weight).double().T
    folded = (iacc * torch.from_numpy(layer.sign).double().reshape(shape)
              >= torch.from_numpy(layer.threshold).double().reshape(shape))
    agree = (folded == (y >= 0)) | (y.abs() < 1e-9)
    return agree.flatten(1).all(dim=1).numpy()


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("method", ["sbn", "ste", "float"])
def test_training_steps_each_method(data_dir, tmp_path, method):
    out = None if method == "float" else str(tmp_path / "m.npz")
    cfg = _cfg(data_dir, tmp_path, method=method, out=out,
               checkpoint=str(tmp_path / "c.pt"), epochs=3, lr=3e-3)
    result = train(cfg)
    assert len(result["history"]) == 3
    assert result["history"][-1]["loss"] < result["history"][0]["loss"] + 0.5
    assert result["soft_test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    if method != "float":
        model = model_io.load(out)
        assert model.provenance["test_accuracy"] == result["test_accuracy"]
        assert model.provenance["method"] == method
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["epoch"] == 3


def test_cnn_training_exports(data_dir, tmp_path):
    cfg = _cfg(data_dir, tmp_path, arch="cnn:c4-p-d16", epochs=1, train_limit=256,
               plots=str(tmp_path / "plots"), flip=True, shift=1)
    result = train(cfg)
    model = model_io.load(cfg.out)
    assert [layer.op for layer in model.layers] == ["conv2d", "maxpool2d", "dense", "dense"]
    assert model.layers[0].pad_value == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["curves.png",
                                                                      "histograms.png"]
    assert "binarization_gap_points" in result


def test_resume_after_interruption_is_identical(data_dir, tmp_path):
    full = _cfg(data_dir, tmp_path / "full", epochs=3)
    train(full)
    part = _cfg(data_dir, tmp_path / "part", epochs=3, stop_after=1)
    assert train(part) == {"stopped_after": 1}
    assert not Path(part.out).exists()
    assert load_checkpoint(Path(part.out).with_suffix(".ckpt.pt"))["epoch"] == 1
    part.stop_after, part.resume = None, True
    train(part)
    assert_same_model(full.out, part.out)


def test_resume_refuses_other_settings(data_dir, tmp_path, capsys):
    cfg = _cfg(data_dir, tmp_path, epochs=2, stop_after=1)
    train(cfg)
    capsys.readouterr()
    code = train_main(["--arch", "mlp:24", "--epochs", "2", "--out", cfg.out, "--data-dir",
                       str(data_dir), "--batch-size", "64", "--seed", "5", "--resume",
                       "--no-progress", "--threads", "1", "--nu-end", "100"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "seed" in err[0]


def test_ddp_two_cpu_processes(data_dir, tmp_path):
    out = tmp_path / "ddp.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "train", "--arch", "mlp:16", "--epochs", "1", "--out", str(out),
         "--data-dir", str(data_dir), "--batch-size", "64", "--no-progress",
         "--threads", "1", "--nu-end", "100", "--device", "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = model_io.load(out)
    assert model.provenance["test_accuracy"] > 0.1
    assert "epoch 1/1" in proc.stderr


# ----------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize("args, fragment", [
    (["--arch", "mlp:q", "--out", "x.npz"], "cannot parse item"),
    (["--arch", "mlp:8"], "needs --out"),
    (["--arch", "mlp:8", "--method", "float", "--out", "x.npz"], "no binary model file"),
    (["--arch", "mlp:8", "--out", "x.npz", "--epochs", "0"], "--epochs"),
    (["--arch", "mlp:8", "--out", "x.txt"], ".npz"),
    (["--arch", "mlp:8", "--out", "x.npz", "--method", "magic"], "invalid choice"),
    (["--arch", "mlp:8", "--out", "x.npz", "--bogus"], "unrecognized"),
    (["--arch", "mlp:8", "--out", "x.npz", "--nu-ramp", "0"], "--nu-ramp"),
    (["--arch", "mlp:8", "--out", "x.npz", "--method", "ste", "--nu-learnable"],
     "--nu-learnable needs --method sbn"),
    (["--arch", "mlp:8", "--out", "x.npz", "--method", "ste", "--nu-end", "100"],
     "--nu-end needs --method sbn"),
    (["--arch", "mlp:8", "--method", "float", "--nu-schedule", "linear"],
     "--nu-schedule needs --method sbn"),
    (["--arch", "vgg-huge", "--out", "x.npz"], "preset"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- learnable nu


def test_effective_nu_never_below_floor():
    from train.layers import NU_LOG_EXCESS_MAX, effective_nu

    for floor in (1.0, 1.0000001, 3.7, 999.9999, 1000.0, 1e4):
        for q in (-1e4, -800.0, -40.0, -2.3, 0.0, 5.0, NU_LOG_EXCESS_MAX, 1e3):
            nu = effective_nu(floor, torch.tensor(q, requires_grad=True))
            nu = nu.detach()
            assert nu.dtype == torch.float64 and float(nu) >= floor, (floor, q)
            assert float(nu) <= floor * (1 + math.exp(NU_LOG_EXCESS_MAX)) * (1 + 1e-12)
    assert effective_nu(2.5, None) == 2.5


def test_learnable_nu_only_registered_when_asked():
    plain = Net(parse_arch("cnn:c4-p-d8"), (1, 28, 28), 10, "sbn")
    assert not any("nu_log_excess" in k for k in plain.state_dict())
    learned = Net(parse_arch("cnn:c4-p-d8"), (1, 28, 28), 10, "sbn", learn_nu=True)
    keys = [k for k in learned.state_dict() if "nu_log_excess" in k]
    assert keys == ["blocks.0.nu_log_excess", "blocks.2.nu_log_excess", "output.nu_log_excess"]
    nus = learned.effective_nus(10.0)
    assert len(nus) == 3 and all(n == pytest.approx(11.0) for n in nus)
    # the learned nu gets a gradient
    x = torch.from_numpy(_synthetic(np.random.default_rng(0), 8)[0][:, None])
    learned(x, 2.0).sum().backward()
    assert all(p.grad is not None for n, p in learned.named_parameters()
               if n.endswith("nu_log_excess"))


def test_learnable_nu_trains_exports_and_resumes(data_dir, tmp_path):
    full = _cfg(data_dir, tmp_path / "full", epochs=3, nu_learnable=True, lr=3e-3,
                hard_phase=0.0)
    result = train(full)
    for record in result["history"]:
        assert len(record["nu_eff"]) == 2 and min(record["nu_eff"]) >= record["nu"]
        assert record["nu_eff_mean"] == pytest.approx(sum(record["nu_eff"]) / 2)
    assert result["history"][-1]["nu"] == 100.0  # the floor reaches nu_end
    model = model_io.load(full.out)
    assert model.provenance["nu_learnable"] is True
    assert min(model.provenance["final_nu_eff"]) >= 100.0
    state = load_checkpoint(Path(full.out).with_suffix(".ckpt.pt"))
    assert "output.nu_log_excess" in state["model"]
    assert state["model"]["output.nu_log_excess"].item() != pytest.approx(math.log(0.1))
    part = _cfg(data_dir, tmp_path / "part", epochs=3, nu_learnable=True, lr=3e-3,
                hard_phase=0.0, stop_after=1)
    assert train(part) == {"stopped_after": 1}
    part.stop_after, part.resume = None, True
    resumed = train(part)
    assert resumed["history"][-1]["nu_eff"] == result["history"][-1]["nu_eff"]
    a, b = model_io.load(full.out), model_io.load(part.out)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.weight, lb.weight)
    # a checkpoint without learnable nu refuses to resume with it, and vice versa
    plain = _cfg(data_dir, tmp_path / "plain", epochs=2, stop_after=1)
    train(plain)
    plain.resume, plain.stop_after, plain.nu_learnable = True, None, True
    with pytest.raises(UserError, match="nu_learnable"):
        train(plain)


def test_resume_checkpoint_from_before_nu_learnable(data_dir, tmp_path):
    """Checkpoints written before --nu-learnable existed (no such setting) still resume."""
    cfg = _cfg(data_dir, tmp_path, epochs=2, stop_after=1)
    train(cfg)
    path = Path(cfg.out).with_suffix(".ckpt.pt")
    state = load_checkpoint(path)
    del state["settings"]["nu_learnable"]
    write_state(state, path)
    cfg.stop_after, cfg.resume = None, True
    assert len(train(cfg)["history"]) == 2


def test_cli_missing_dataset_subprocess(tmp_path):
    """Through the real entry point: exit 2, one line, no traceback, no output file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ, SBN_DATA_DIR="")
    proc = subprocess.run([sys.executable, "-m", "train", "--dataset", "mnist", "--arch",
                           "mlp:8", "--out", str(tmp_path / "m.npz"), "--data-dir", str(empty)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not found" in lines[0]
    assert not (tmp_path / "m.npz").exists()


# ----------------------------------------------------------------------------- sweep tool


def test_train_sweep_tool(data_dir, tmp_path):
    """tools/train_sweep.py: calibrates, gives each run its epochs (at most its cap), trains
    the runs side by side and reports each exported accuracy, which is the model file's."""
    runs = tmp_path / "runs.txt"
    runs.write_text("# two tiny runs\n"
                    "mlp: --arch mlp:16 --method ste --batch-size 64 --max-epochs 2\n"
                    "cnn: --arch cnn:c4-p --method ste --batch-size 64 --max-epochs 1\n")
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), "--out", str(out),
                           "--budget", "120", "--margin", "5", "--data-dir", str(data_dir)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    lines = (out / "summary.txt").read_text().splitlines()
    for name, epochs in (("mlp", 2), ("cnn", 1)):
        line = next(x for x in lines if x.startswith(f"{name}:"))
        assert f"{epochs} epochs" in line
        model = model_io.load(out / f"{name}.npz")
        assert model.provenance["epochs"] == epochs
        assert f"exported {100 * model.provenance['test_accuracy']:.2f}%" in line
        assert (out / f"{name}-plots" / "curves.png").is_file()


@pytest.mark.parametrize("text, message", [
    ("a b: --arch mlp:8\n", "expected 'NAME: ARGS'"),
    ("a: --arch mlp:8\na: --arch mlp:16\n", "run names must be unique"),
    ("a: --arch mlp:8 --max-epochs x\n", "--max-epochs needs a whole number in 1..100000"),
    ("a: --arch mlp:8 --max-epochs \u00b2\n", "--max-epochs needs a whole number"),
    ("a: --arch 'mlp:8\n", "No closing quotation"),
    ("# nothing\n", "no runs"),
    (b"a: \xff\n", "the runs file is not UTF-8 text (byte 3)"),
    ("a: --arch mlp:8 --seed '1\x00'\n", "an argument holds a NUL byte"),
])
def test_train_sweep_rejects_bad_run_files(tmp_path, text, message):
    runs = tmp_path / "runs.txt"
    runs.write_bytes(text if isinstance(text, bytes) else text.encode())
    done = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), "--out",
                           str(tmp_path / "out"), "--budget", "10"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--budget", "nan"], "argument --budget: must be a finite number"),
    (["--budget", "inf"], "argument --budget: must be a finite number"),
    (["--budget", "0"], "argument --budget: must be greater than 0"),
    (["--budget", "10", "--cap", "0"], "argument --cap: must be at least 1"),
    (["--budget", "10", "--out", "{tmp}/afile"], "--out {tmp}/afile: not a folder"),
    (["--budget", "10", "--out", "{tmp}/afile/x"], "cannot make it (Not a directory)"),
    (["--budget", "10", "--runs-file", "{tmp}/fifo"], "is a FIFO, not a regular runs file"),
])
def test_train_sweep_rejects_bad_options(tmp_path, argv, message):
    """Round 30 of the fuzz: tracebacks (nan, inf, an --out under a file), a runs file that
    is a FIFO waited on forever, exit 1 for errors. One line, exit 2, nothing made."""
    (tmp_path / "afile").write_text("")
    os.mkfifo(tmp_path / "fifo")
    runs = tmp_path / "runs.txt"
    runs.write_text("a: --arch mlp:8\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--runs-file" in argv:
        runs = Path(argv.pop(argv.index("--runs-file") + 1))
        argv.remove("--runs-file")
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), *argv],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert message.format(tmp=tmp_path) in done.stderr and done.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["afile", "fifo", "runs.txt"]


def test_train_sweep_stops_its_runs_and_fails_when_all_do(data_dir, tmp_path):
    """SIGTERM during the calibration killed the sweep silently and left its runs training
    (one wrote its model afterwards); a sweep whose every run failed exited 0. Round 30."""
    runs = tmp_path / "runs.txt"
    runs.write_text("a: --arch mlp:8 --method ste\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "tools/train_sweep.py", str(runs), "--out",
                             str(out), "--budget", "100", "--data-dir", str(data_dir)],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "calibration" / "a.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (143, "error: interrupted\n")
    time.sleep(1.0)
    assert [p.name for p in (out / "calibration").iterdir()] == ["a.log"]
    failing = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), "--out",
                              str(tmp_path / "out2"), "--budget", "100", "--data-dir",
                              str(tmp_path / "nowhere")],
                             cwd=Path(__file__).resolve().parents[1], capture_output=True,
                             text=True, timeout=300)
    assert failing.returncode == 2
    assert failing.stderr == (f"error: every run failed (see {tmp_path}/out2/summary.txt and "
                              f"the runs' logs)\n")
    # its own output names are replaced, never written through or waited on (a FIFO hung
    # it, a link to another file had the summary written into that file; round 31)
    out3 = tmp_path / "out3"
    (out3 / "calibration").mkdir(parents=True)
    os.mkfifo(out3 / "calibration" / "a.log")
    (tmp_path / "victim").write_text("kept\n")
    (out3 / "summary.txt").symlink_to(tmp_path / "victim")
    again = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), "--out",
                            str(out3), "--budget", "100", "--data-dir", str(tmp_path / "nowhere")],
                           cwd=Path(__file__).resolve().parents[1], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.startswith("error: every run failed")
    assert (tmp_path / "victim").read_text() == "kept\n"
    assert not (out3 / "summary.txt").is_symlink() and (out3 / "calibration" / "a.log").is_file()



def test_train_sweep_stops_earlier_runs_when_a_later_log_cannot_be_made(data_dir, tmp_path):
    """Round 33: run b's log was a folder, so the sweep failed, but run a had been started
    in the same expression, before the sweep knew of it: a trained on, orphaned, and wrote
    its model after the error."""
    runs = tmp_path / "runs.txt"
    runs.write_text("a: --arch mlp:8 --method ste\nb: --arch mlp:8 --method ste\n")
    out = tmp_path / "out"
    (out / "calibration" / "b.log").mkdir(parents=True)
    done = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), "--out",
                           str(out), "--budget", "100", "--data-dir", str(data_dir)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "b.log: is a folder" in done.stderr
    time.sleep(3.0)   # an orphaned run a would have written its model by now
    assert sorted(p.name for p in (out / "calibration").iterdir()) == ["a.log", "b.log"]

def test_train_sweep_short_calibration(data_dir, tmp_path):
    """--calibration-images: the calibration epoch trains on that many images (and the same
    fraction of the test images) and its logged time is scaled up by the fraction."""
    runs = tmp_path / "runs.txt"
    runs.write_text("a: --arch mlp:16 --method ste --batch-size 64 --max-epochs 2\n"
                    "b: --arch mlp:16 --method ste --train-limit 256 --max-epochs 1\n")
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "tools/train_sweep.py", str(runs), "--out", str(out),
                           "--budget", "300", "--margin", "5", "--data-dir", str(data_dir),
                           "--calibration-images", "128", "--train-images", "512",
                           "--test-images", "200"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    for name, scale in (("a", 4), ("b", 1)):
        log = (out / "calibration" / f"{name}.log").read_text()
        assert ("--train-limit 128 --test-limit 50 " in log) == (scale == 4)
        logged = max(0.1, float(re.search(r"\(([\d.]+)s\)", log).group(1)))
        assert f"{name}: {logged * scale:.1f} s/epoch -> " in done.stdout


def test_train_sweep_plan_gives_runs_sharing_a_cap_equal_epochs():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from train_sweep import plan_epochs

    speed = {"fast": 1.0, "slow": 10.0, "other": 10.0, "broken": None}
    caps = {"fast": 5, "slow": 5, "other": 4, "broken": 5}
    # 30 s left: fast fits 27 (cap 5), slow and other 2 each; fast shares slow's cap
    assert plan_epochs(speed, caps, 30.0) == {"fast": 2, "slow": 2, "other": 2}
    assert plan_epochs(speed, caps, 1000.0) == {"fast": 5, "slow": 5, "other": 4}
    assert plan_epochs({"a": 100.0}, {"a": 3}, 1.0) == {"a": 1}


def test_a_stop_while_plotting_leaves_no_model_file(data_dir, tmp_path, monkeypatch):
    """The plots are written before the model file: Ctrl-C while plotting (exit 130) leaves
    the checkpoint but no ``--out``."""
    from train import plots

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "write_plots", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(data_dir, tmp_path, epochs=1, plots=str(tmp_path / "plots")))
    assert not (tmp_path / "m.npz").exists()
    assert (tmp_path / "m.ckpt.pt").exists()


def test_an_exponential_schedule_over_a_ratio_beyond_float_range_stays_finite():
    """--nu-start 1e-305 --nu-end 1e6: nu_end / nu_start overflows; nu still climbs from
    nu_start to nu_end (it was inf from the first step)."""
    values = [nu_at(p, "exp", 1e-305, 1e6, ramp=1.0) for p in (0.0, 0.25, 0.5, 0.99, 1.0)]
    assert values[0] == pytest.approx(1e-305) and values[-1] == 1e6
    assert all(math.isfinite(v) for v in values) and values == sorted(values)
    assert nu_at(0.5, "exp", 1e-305, 1e6, ramp=1.0) == pytest.approx(10 ** ((-305 + 6) / 2),
                                                                    rel=1e-9)


def test_a_falling_nu_schedule_is_refused():
    from hwgen.errors import UserError
    from train.cli import config_from_argv

    with pytest.raises(UserError, match=r"^--nu-end 1 is below --nu-start 1000: nu must grow"):
        config_from_argv(["--arch", "mlp:8", "--nu-start", "1000", "--nu-end", "1"])
    with pytest.raises(UserError, match=r"^--nu-end 1 is below --nu-start 5"):
        config_from_argv(["--arch", "mlp:8", "--nu-start", "5", "--nu-end", "1",
                          "--nu-schedule", "linear"])
    config_from_argv(["--arch", "mlp:8", "--nu-start", "5", "--nu-end", "1",
                      "--nu-schedule", "const"])  # const: nu_end throughout
