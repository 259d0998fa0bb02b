"""Self-binarizing options: bounded-gradient backward, weight normalization, hard phase,
weight and gradient clipping, batch-norm recalibration, diagnostics, their CLI flags,
resume, and the training benchmark's rows. Tiny synthetic data only."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hwgen import model as model_io  # noqa: E402
from train.cli import main as train_main  # noqa: E402
from train.layers import (HARD, SbnOptions, binarize_weight, hard_sign, soft_sign,  # noqa: E402
                          weight_scale)
from train.loop import DEFAULT_LR, PAPER_SBN, TrainConfig, load_checkpoint, train  # noqa: E402
from train.schedule import nu_at  # noqa: E402
from train.state_archive import write_state  # noqa: E402

from .test_train import _cfg, assert_same_model, data_dir  # noqa: E402,F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize("nu, cap", [(0.5, 1.0), (1.0, 1.0), (7.0, 1.0), (300.0, 3.0),
                                     (1000.0, 0.5)])
def test_bounded_backward_is_autograd_of_tanh_at_min_nu_cap(nu, cap):
    x = torch.linspace(-4, 4, 801, dtype=torch.float64).requires_grad_()
    upstream = torch.randn(801, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = soft_sign(x, nu, cap)
    assert torch.equal(y.detach(), torch.tanh(nu * x.detach()))  # forward: tanh(nu x)
    (grad,) = torch.autograd.grad(y, x, upstream)
    ref_x = x.detach().clone().requires_grad_()
    (ref,) = torch.autograd.grad(torch.tanh(min(nu, cap) * ref_x), ref_x, upstream)
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-15)
    if nu > cap:  # a real bound: where |x| is large the exact gradient vanishes, this not
        (exact,) = torch.autograd.grad(soft_sign(x, nu), x, upstream)
        assert float(exact[0].abs()) == 0.0 and float(grad[0].abs()) > 0


def test_weight_grad_cap_shapes_only_the_weights_gradient():
    w = torch.linspace(-0.3, 0.3, 60).reshape(3, 20).requires_grad_()
    opts = SbnOptions("channel", 1.0, 0.25)
    assert opts.weight_cap == 0.25 and SbnOptions("channel", 2.0).weight_cap == 2.0
    binarize_weight(w, "sbn", 50.0, opts).sum().backward()
    s = weight_scale(w, "channel")
    arg = (w / s).detach()
    expected = 0.25 * (1 - torch.tanh(0.25 * arg) ** 2) / s  # chain rule through w / s
    torch.testing.assert_close(w.grad, expected)


def test_hard_phase_forward_is_sign_and_backward_is_capped():
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0], requires_grad=True)
    y = soft_sign(x, HARD, 1.0)
    assert y.tolist() == hard_sign(x.detach()).tolist() == [-1, -1, 1, 1, 1, 1]
    y.sum().backward()
    torch.testing.assert_close(x.grad, 1 - torch.tanh(x.detach()) ** 2)
    x.grad = None
    soft_sign(x, HARD).sum().backward()  # exact gradient: the limit, 0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_weight_norm_never_changes_signs_and_learnable_nu_gets_gradient():
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.01
    w[0] = 0.0  # an all-zero channel stays finite
    w[1, 0, 0, 0] = -1e-38
    for norm in ("none", "layer", "channel"):
        opts = SbnOptions(norm, 1.0)
        s = weight_scale(w, norm)
        if norm == "channel":
            assert s.shape == (6, 1, 1, 1) and float(s[2]) == pytest.approx(
                float(w[2].abs().mean()))
        hard = binarize_weight(w, "sbn", HARD, opts)
        assert torch.equal(hard, hard_sign(w))  # what the export takes
        soft = binarize_weight(w, "sbn", 1e4, opts)
        assert torch.isfinite(soft).all()
    # normalized weights sharpen with nu like batch-normalized activations
    soft = binarize_weight(w, "sbn", 3.0, SbnOptions("channel", 1.0))
    assert float(soft[2:].abs().mean()) > 0.5
    q = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    nu = 5.0 + 5.0 * torch.exp(q)
    wl = w.clone().requires_grad_()
    binarize_weight(wl, "sbn", nu, SbnOptions("channel", 1.0)).sum().backward()
    assert q.grad is not None and float(q.grad) != 0.0 and wl.grad.abs().sum() > 0


def test_schedule_hard_phase():
    assert nu_at(0.85, nu_end=100, ramp=0.8, hard=0.1) == 100.0
    assert math.isinf(nu_at(0.9, nu_end=100, ramp=0.8, hard=0.1))
    assert math.isinf(nu_at(1.0, hard=0.25))
    assert nu_at(1.0, nu_end=50, hard=0.0) == 50.0


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("settings", [
    {},                                        # the new default
    dict(PAPER_SBN),                           # the paper's method
    {"weight_norm": "layer", "grad_cap": 3.0, "weight_grad_cap": 0.25, "hard_phase": 0.4},
    {"weight_norm": "none", "weight_clip": 2.0, "grad_clip": 0.5},
    {"bn_recal": 3, "nu_learnable": True},
])
def test_each_sbn_option_trains_and_exports_exactly(data_dir, tmp_path, settings):
    """The export itself asserts reference == torch hard evaluation on every test image."""
    cfg = _cfg(data_dir, tmp_path, epochs=3, lr=3e-3, **settings)
    result = train(cfg)
    model = model_io.load(cfg.out)
    prov = model.provenance
    expected = {**TrainConfig().__dict__, **settings}
    for key in ("weight_norm", "grad_cap", "weight_grad_cap", "hard_phase", "weight_clip"):
        assert prov[key] == expected[key]
    assert prov.get("bn_recal", 0) == settings.get("bn_recal", 0)
    assert result["test_accuracy"] > 0.3
    last = result["history"][-1]
    assert len(last["frozen"]) == 2 and len(last["alive"]) == 1
    assert all(0 <= f <= 1 for f in last["frozen"] + last["alive"])
    if expected["hard_phase"] > 0:
        assert math.isinf(last["nu"]) and last["frozen"] == [1.0, 1.0]
    if settings.get("bn_recal"):
        assert "test_accuracy_before_bn_recal" in result
    if settings.get("weight_clip"):
        state = load_checkpoint(Path(cfg.out).with_suffix(".ckpt.pt"))["model"]
        for name in ("blocks.0.weight", "output.weight"):
            # clipped after the last step to |w / s| <= 2 with s the pre-clip scale (here 1)
            assert float(state[name].abs().max()) <= 2.0


def test_bn_recal_reestimates_hard_statistics_for_ste(data_dir, tmp_path):
    from train.bn_recal import recalibrate_bn
    from train.arch import parse_arch
    from train.net import Net
    from train.data import epoch_batches, epoch_generator, load_split

    train_x, _, _ = load_split("fashion-mnist", "train", data_dir)
    torch.manual_seed(0)
    net = Net(parse_arch("mlp:12"), method="ste")
    before = net.blocks[0].bn.running_mean.clone()
    used = recalibrate_bn(net, train_x, 2, 64, 0, "cpu")
    assert used == 128 and not torch.equal(before, net.blocks[0].bn.running_mean)
    assert net.blocks[0].bn.momentum == 0.1 and not net.training
    # the plain average of the two batches' means of the hard (sign-weight) accumulator
    order = epoch_batches(train_x.shape[0], 64, epoch_generator(0, 0))
    with torch.no_grad():
        accs = [torch.nn.functional.linear(net.prepare_input(train_x[index]).flatten(1),
                                           hard_sign(net.blocks[0].weight))
                for index in order[:2]]
    means = torch.stack([a.mean(0) for a in accs]).mean(0)
    torch.testing.assert_close(net.blocks[0].bn.running_mean, means)


def test_resume_with_new_flags_equals_uninterrupted(data_dir, tmp_path):
    settings = dict(weight_norm="layer", grad_cap=2.0, hard_phase=0.34, weight_clip=3.0,
                    grad_clip=1.0, bn_recal=2)
    full = _cfg(data_dir, tmp_path / "full", epochs=3, **settings)
    train(full)
    part = _cfg(data_dir, tmp_path / "part", epochs=3, stop_after=2, **settings)
    assert train(part) == {"stopped_after": 2}
    part.stop_after, part.resume = None, True
    train(part)
    assert_same_model(full.out, part.out)
    # another cap refuses to resume that checkpoint
    other = _cfg(data_dir, tmp_path / "part", epochs=3, resume=True,
                 **{**settings, "grad_cap": 1.0})
    from hwgen.errors import UserError
    with pytest.raises(UserError, match="grad_cap"):
        train(other)


def test_old_sbn_checkpoint_resumes_only_as_paper_variant(data_dir, tmp_path):
    """A checkpoint written before these options existed was trained the paper's way."""
    cfg = _cfg(data_dir, tmp_path, epochs=2, stop_after=1, **PAPER_SBN)
    train(cfg)
    path = Path(cfg.out).with_suffix(".ckpt.pt")
    state = load_checkpoint(path)
    for key in ("weight_norm", "grad_cap", "weight_grad_cap", "hard_phase", "weight_clip",
                "grad_clip", "bn_recal"):
        del state["settings"][key]
    write_state(state, path)
    cfg.stop_after, cfg.resume = None, True
    assert len(train(cfg)["history"]) == 2
    from hwgen.errors import UserError
    with pytest.raises(UserError, match="weight_norm"):
        train(_cfg(data_dir, tmp_path, epochs=2, resume=True))


# ----------------------------------------------------------------------------- CLI, plots


def _run_cli(data_dir, tmp_path, capsys, *extra):
    out = tmp_path / "m.npz"
    nu = [] if "--method" in extra else ["--nu-end", "100"]  # ste and float refuse it
    code = train_main(["--arch", "mlp:16", "--epochs", "2", "--out", str(out), "--data-dir",
                       str(data_dir), "--batch-size", "64", "--no-progress", "--threads", "1",
                       *nu, *extra])
    return code, out, capsys.readouterr().err


def test_cli_variants_and_flags(data_dir, tmp_path, capsys):
    code, out, err = _run_cli(data_dir, tmp_path, capsys, "--sbn-variant", "paper",
                              "--hard-phase", "0.5", "--plots", str(tmp_path / "p"))
    assert code == 0, err
    prov = model_io.load(out).provenance
    assert (prov["weight_norm"], prov["grad_cap"], prov["hard_phase"]) == ("none", None, 0.5)
    assert "frozen w " in err and "alive a " in err
    code, out, err = _run_cli(data_dir, tmp_path, capsys, "--grad-cap", "0",
                              "--weight-norm", "layer")
    prov = model_io.load(out).provenance
    assert code == 0 and prov["grad_cap"] is None and prov["weight_norm"] == "layer"
    assert prov["hard_phase"] == TrainConfig.hard_phase == 0.5
    assert prov["lr"] == DEFAULT_LR["sbn"] == 3e-3  # each method's own default learning rate
    code, out, err = _run_cli(data_dir, tmp_path, capsys, "--method", "ste")
    assert code == 0 and model_io.load(out).provenance["lr"] == DEFAULT_LR["ste"] == 1e-3
    assert TrainConfig(method="float").lr == 1e-3 and TrainConfig(lr=5e-4).lr == 5e-4


@pytest.mark.parametrize("extra, fragment", [
    (["--method", "ste", "--grad-cap", "2"], "--grad-cap needs --method sbn"),
    (["--method", "ste", "--sbn-variant", "paper"], "--sbn-variant needs --method sbn"),
    (["--hard-phase", "1"], "--hard-phase"),
    (["--grad-cap", "-1"], "argument --grad-cap: must be at least 0"),
    (["--grad-clip", "nan"], "argument --grad-clip: must be a finite number"),
    (["--bn-recal", "-2"], "--bn-recal"),
])
def test_cli_rejects_bad_sbn_flags(data_dir, tmp_path, capsys, extra, fragment):
    code, out, err = _run_cli(data_dir, tmp_path, capsys, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert fragment in lines[0] and not out.exists()


def test_ste_curves_do_not_plot_nu(data_dir, tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from train import plots

    titles = []
    real = plt.subplots

    def spy(*args, **kw):
        fig, axes = real(*args, **kw)
        titles.append(fig)
        return fig, axes

    monkeypatch.setattr(plt, "subplots", spy)
    history = [{"epoch": 1, "loss": 1.0, "train_acc": 0.5, "test_acc": 0.5, "nu": 10.0,
                "hard_test_acc": 0.5}]
    plots.write_plots(tmp_path / "ste", history, [], "ste")
    ste_titles = {ax.get_title() for ax in titles[0].axes}
    assert not any("nu" in t for t in ste_titles)
    titles.clear()
    sbn = [dict(history[0], frozen=[0.5, 0.9], alive=[0.1]),
           dict(history[0], epoch=2, nu=math.inf, frozen=[1.0, 1.0], alive=[0.0])]
    plots.write_plots(tmp_path / "sbn", sbn, [], "sbn")
    sbn_titles = {ax.get_title() for ax in titles[0].axes}
    assert any("nu" in t for t in sbn_titles) and any("frozen" in t for t in sbn_titles)


# ----------------------------------------------------------------------------- benchmark


def test_train_compare_rows_and_table(data_dir, tmp_path):
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/train_compare.py", "--archs", "mlp:8", "--epochs", "1",
         "--seeds", "0", "1", "--variants", "float", "ste", "sbn", "--jobs", "2",
         "--data-dir", str(data_dir), "--json", str(results), "--plot",
         str(tmp_path / "bars.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(results.read_text())
    assert len(rows) == 6
    keys = {"arch", "epochs", "method", "variant", "seed", "exported_accuracy", "gap"}
    assert all(keys <= set(r) for r in rows)
    for r in rows:
        if r["method"] == "float":
            assert r["exported_accuracy"] is None and 0 <= r["float_accuracy"] <= 1
        else:
            assert 0 <= r["exported_accuracy"] <= 1
    sbn = [r for r in rows if r["variant"] == "sbn"]
    mean = 100 * sum(r["exported_accuracy"] for r in sbn) / 2
    assert f"| `mlp:8` | 1 | sbn | sbn | {mean:.2f} ± " in done.stdout
    assert "train images" in done.stdout  # the synthetic set is not the full 60000
    assert (tmp_path / "bars.png").stat().st_size > 1000
    # a later invocation keeps the rows and replaces only the same (arch, epochs, variant,
    # seed); a damaged results file (not JSON, or a row without its keys) is one error line
    again = subprocess.run(
        [sys.executable, "benchmarks/train_compare.py", "--archs", "mlp:8", "--epochs", "1",
         "--seeds", "1", "--variants", "ste", "--data-dir", str(data_dir), "--json",
         str(results)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(json.loads(results.read_text())) == 6
    for damaged in ("{not json", '[{"arch": "mlp:8"}]'):
        results.write_text(damaged)
        bad = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--table-only",
                              "--json", str(results)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert bad.returncode != 0 and bad.stderr.startswith("error: ")
        assert len(bad.stderr.strip().splitlines()) == 1


def test_train_compare_failures_are_one_line(data_dir, tmp_path):
    """A run's own error leaves no progress-bar fragment before the line; a results file
    with more groups than one chart holds is refused before a canvas is drawn."""
    results = tmp_path / "results.json"
    bad_arch = subprocess.run(
        [sys.executable, "benchmarks/train_compare.py", "--archs", "mlp:8", "mlp:x",
         "--epochs", "1", "--seeds", "0", "--variants", "ste", "--data-dir", str(data_dir),
         "--json", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert (bad_arch.returncode, bad_arch.stderr) == (
        2, "error: architecture 'mlp:x': cannot parse item 'x' (expected cN, p, dN or N)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    in_a_run = subprocess.run(  # the worker's own error
        [sys.executable, "benchmarks/train_compare.py", "--archs", "mlp:8", "--epochs", "1",
         "--seeds", "0", "1", "--variants", "ste", "--jobs", "2", "--data-dir", str(empty),
         "--json", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert in_a_run.returncode == 2
    assert in_a_run.stderr.startswith("error: ") and in_a_run.stderr.count("\n") == 1, \
        in_a_run.stderr
    assert "\r" not in in_a_run.stderr and not results.exists()
    from benchmarks.train_compare import MAX_PLOT_GROUPS

    rows = [{"arch": f"mlp:{n}", "epochs": 1, "method": "ste", "variant": "ste", "seed": 0,
             "train_images": 100, "device": "cpu", "exported_accuracy": 0.5, "gap": 0.0}
            for n in range(1, MAX_PLOT_GROUPS + 2)]
    results.write_text(json.dumps(rows))
    many = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--table-only",
                           "--json", str(results), "--plot", str(tmp_path / "bars.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert many.returncode == 2
    assert many.stderr == (f"error: {MAX_PLOT_GROUPS + 1} (arch, epochs, images) groups to "
                           f"plot, more than the {MAX_PLOT_GROUPS} one chart holds: plot from "
                           f"a --json with fewer\n")
    assert not (tmp_path / "bars.png").exists()
    results.write_text(json.dumps([rows[0], rows[1], dict(rows[0], exported_accuracy=0.6)]))
    twice = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--table-only",
                            "--json", str(results)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert (twice.returncode, twice.stderr) == (2, (
        f"error: {results}: rows 0 and 2 are the same run (mlp:1, 1 epochs, 100 images, ste, "
        f"seed 0)\n"))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_train_compare_interrupted_stops_its_workers(data_dir, tmp_path, signum, code):
    """Ctrl-C (to the process group, as a terminal sends it) or SIGTERM (to the script)
    while runs train: one line, 130/143, and no training process left running."""
    proc = subprocess.Popen(
        [sys.executable, "benchmarks/train_compare.py", "--archs", "mlp:8", "--epochs", "5000",
         "--seeds", "0", "1", "--variants", "ste", "--jobs", "2", "--data-dir",
         str(data_dir), "--json", str(tmp_path / "r.json")], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(8)  # the workers have started training
    workers = _children(proc.pid)
    assert workers
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    # the runs' epoch lines (their progress) come before; nothing after the one line
    assert (proc.returncode, err.splitlines()[-1]) == (code, "error: interrupted"), err
    assert "Traceback" not in err and "Warning" not in err, err
    deadline = time.time() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------ sweep folders as results rows


def test_config_from_argv_is_what_the_cli_trains(monkeypatch):
    from hwgen.errors import UserError
    from train import cli

    argv = ["--arch", "mlp:8", "--method", "sbn", "--lr", "3e-3", "--hard-phase", "0.5",
            "--weight-grad-cap", "0", "--sbn-variant", "paper", "--grad-clip", "0"]
    trained = []
    monkeypatch.setattr(cli, "train", trained.append)
    assert cli.main(argv) == 0
    cfg = cli.config_from_argv(argv)
    assert trained == [cfg]
    assert (cfg.lr, cfg.hard_phase, cfg.weight_grad_cap, cfg.weight_norm, cfg.grad_cap,
            cfg.grad_clip) == (3e-3, 0.5, None, "none", None, None)
    assert cfg.command == "python -m train " + " ".join(argv)
    with pytest.raises(UserError, match="--hard-phase needs --method sbn"):
        cli.config_from_argv(["--arch", "mlp:8", "--method", "ste", "--hard-phase", "0.5"])


def test_sweep_folder_rows(data_dir, tmp_path, capsys):
    """benchmarks/sweep_rows.py: a run whose command is a variant's becomes that variant's row
    (accuracy, gap, device and training images from the model file), any other run is left
    out with its reason; train_compare --from-sweep merges the rows and compares each sbn
    variant with the STE variant of the same learning rate."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.sweep_rows import rows_from_sweep
    from benchmarks.train_compare import VARIANTS, ste_baseline

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    common = ["--arch", "mlp:8", "--epochs", "1", "--seed", "0", "--data-dir", str(data_dir),
              "--threads", "1", "--no-progress", "--test-limit", "200"]
    runs = {"a": ["--method", "ste", "--lr", "3e-3"],
            "b": ["--method", "sbn", "--lr", "3e-3", "--hard-phase", "0.5"],
            "c": ["--method", "sbn", "--sbn-variant", "paper", "--lr", "1e-3"],
            "d": ["--method", "sbn", "--shift", "1"],
            "e": ["--method", "ste", "--test-limit", "100"],
            "f": ["--method", "sbn", "--hard-phase", "0.5", "--seed", "1"]}
    for name, args in runs.items():
        assert train_main([*common, *args, "--out", str(sweep / f"{name}.npz")]) == 0
    for name in "abcdf":  # as if scored on the full test set; c and f as files from before
        model = model_io.load(sweep / f"{name}.npz")  # the trainer recorded device and lr
        model.provenance["test_images"] = 10000
        if name in "cf":
            del model.provenance["device"], model.provenance["lr"]
        model_io.save(model, sweep / f"{name}.npz")
    (sweep / "a.log").write_text("epoch 1/1 loss 1 train 50% test 50% lr 0 (2.5s)\n")
    rows, notes = rows_from_sweep(sweep, VARIANTS, "cuda")
    # b spells out today's sbn defaults; f, with no --lr and no lr recorded, trained at the
    # learning rate of then (1e-3), not today's sbn default
    assert [r["variant"] for r in rows] == ["ste-lr-3e-3", "sbn", "sbn-paper"]
    assert [n.split(":")[0] for n in notes] == ["d.npz", "e.npz", "f.npz"]
    assert "'shift': 1} is no variant" in notes[0] and "on 100 test images" in notes[1]
    assert "trained under other defaults (lr differ" in notes[2]
    for row, name in zip(rows, "abc"):
        prov = model_io.load(sweep / f"{name}.npz").provenance
        assert row["exported_accuracy"] == prov["test_accuracy"]
        assert row["train_images"] == 512 and row["epochs"] == 1
    assert [r["device"] for r in rows] == ["cpu", "cpu", "cuda"]
    assert rows[0]["seconds"] == 2.5 and "seconds" not in rows[1]
    assert ste_baseline("sbn") == ste_baseline("sbn-v3-lr-3e-3") == "ste-lr-3e-3"
    assert ste_baseline("sbn-v3-hard-0.5") == ste_baseline("ste-recal") == "ste"

    # a file trained under other defaults (its recorded hard phase is not what its command
    # means today) is left out
    model = model_io.load(sweep / "b.npz")
    model.provenance["hard_phase"] = 0.1
    model_io.save(model, sweep / "b.npz")
    rows, notes = rows_from_sweep(sweep, VARIANTS, "cuda")
    assert "b.npz: trained under other defaults (hard_phase" in notes[0]

    results = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--from-sweep",
                           str(sweep), "--json", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(results.read_text())
    assert [r["device"] for r in saved if r["variant"] == "sbn-paper"] == ["unknown"]
    assert "# left out: d.npz" in done.stderr
    # two files of one run would count as two seeds; a command train would refuse, or one
    # that is not what the provenance records, is no row (round 29 of the fuzz)
    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("c", "c2"):
        shutil.copy(sweep / "c.npz", twins / f"{name}.npz")
    dup = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--from-sweep",
                          str(twins), "--json", str(tmp_path / "dup.json")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert (dup.returncode, dup.stderr) == (2, (
        f"error: {twins}: twins/c and twins/c2 are the same run (mlp:8, 1 epochs, 512 images, "
        f"sbn-paper, seed 0); keep one\n"))
    assert not (tmp_path / "dup.json").exists()
    for change, note in [
            (lambda p: p.update(command=p["command"].replace("--arch mlp:8", "--arch mlp:0")),
             "its command is no run train would start (architecture 'mlp:0'"),
            (lambda p: p.update(command=p["command"].replace(" --out ", " --log ")),
             "its command does not parse"),
            (lambda p: p.update(arch="mlp:9"), "its command's arch differ from its provenance's"),
            (lambda p: p.update(command=p["command"] + " --stop-after 1"),
             "its command stops early"),
            (lambda p: p.update(command="python -m train -h"), "its command does not parse")]:
        model = model_io.load(sweep / "c.npz")
        change(model.provenance)
        model_io.save(model, twins / "c2.npz")
        capsys.readouterr()
        rows, notes = rows_from_sweep(twins, VARIANTS, "cuda")
        assert len(rows) == 1 and notes[0].startswith(f"c2.npz: {note}"), notes
        assert capsys.readouterr().out == ""  # -h's help was printed
    empty = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--from-sweep", "",
                            "--json", str(tmp_path / "e.json")], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert empty.returncode == 2 and "--from-sweep: is empty: give a folder" in empty.stderr
    missing = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--from-sweep",
                              str(tmp_path / "nothing"), "--json", str(results)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and missing.stderr.startswith("error: ")
    assert len(missing.stderr.strip().splitlines()) == 1
    # an unreadable log or model file is one error line naming it, and nothing is written
    results.unlink()
    log = sweep / "a.log"
    for make, reason in [
            (lambda: log.write_bytes(b"\xe0\xff" * 50), "not a readable training log "
                                                       "(UnicodeDecodeError)"),
            (lambda: os.mkfifo(log), "is a FIFO, not a regular training log"),  # not waited on
            (lambda: log.write_text("epoch 1/1 loss 1 train 50% test 50% lr 0 (1.2.3s)\n"),
             "not a readable training log (ValueError)")]:
        make()
        bad = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--from-sweep",
                              str(sweep), "--json", str(results)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert (bad.returncode, bad.stderr) == (2, f"error: {log}: {reason}\n")
        assert not results.exists()
        log.unlink()
    # a provenance whose numbers are not numbers leaves that run out
    model = model_io.load(sweep / "a.npz")
    model.provenance["train_images"] = [512]
    model_io.save(model, sweep / "a.npz")
    rows, notes = rows_from_sweep(sweep, VARIANTS, "cuda")
    assert "a.npz: its provenance's train_images is not a number of images: [512]" in notes
    (sweep / "a.npz").write_bytes(b"not a zip")
    bad = subprocess.run([sys.executable, "benchmarks/train_compare.py", "--from-sweep",
                          str(sweep), "--json", str(results)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and not results.exists()
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {sweep / 'a.npz'}: not a readable")
    assert lines[0].count(str(sweep / "a.npz")) == 1
