"""Hostile input to ``python -m train``: architecture strings, output paths, checkpoints
given to ``--resume``, the torchrun environment and the training data are refused with one
:class:`UserError` before any training, and checkpoints are written only where asked."""

from __future__ import annotations

import math
import shutil
import tempfile
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hwgen.datasets import DatasetError  # noqa: E402
from hwgen.errors import UserError  # noqa: E402
from train.arch import ArchError, parse_arch  # noqa: E402
from train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from train.state_archive import write_state  # noqa: E402
from train.cli import config_from_argv  # noqa: E402
from train.data import load_split  # noqa: E402
from train.distributed import init_distributed  # noqa: E402
from train.loop import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _idx(path: Path, array: np.ndarray, code: int) -> None:
    """An IDX file of element type ``code`` (0x08 uint8 .. 0x0E float64), big-endian."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                         for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=dtype).tobytes())


def _data(folder: Path, images: np.ndarray | None = None, code: int = 0x08) -> Path:
    """A Fashion-MNIST-shaped data folder (learnable bands); ``images`` replaces the
    training images (element type ``code``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 256), ("t10k", 100)):
        labels = rng.integers(0, 10, n)
        pixels = rng.integers(0, 90, (n, 28, 28))
        for i, c in enumerate(labels):
            pixels[i, c * 2:c * 2 + 3, 4:24] = 200
        if stem == "train" and images is not None:
            pixels, labels = images, labels[:images.shape[0]]
            _idx(folder / f"{stem}-images-idx3-ubyte", pixels, code)
        else:
            _idx(folder / f"{stem}-images-idx3-ubyte", pixels, 0x08)
        _idx(folder / f"{stem}-labels-idx1-ubyte", labels, 0x08)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _data(tmp_path_factory.mktemp("hostile-data"))


def _cfg(data, tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="fashion-mnist", arch="mlp:8", method="sbn", epochs=2,
                out=str(tmp_path / "m.npz"), data_dir=str(data), batch_size=64, threads=1,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- arch


@pytest.mark.parametrize("spec", ["mlp:" + "1" * 5000, "mlp:8\n", "cnn:c8-p\n", "mlp:8 ",
                                  "x" * 100_000])
def test_malformed_architectures_are_one_short_error(spec):
    with pytest.raises(ArchError) as err:
        parse_arch(spec)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize("extra", [["--plots", "o.npz"], ["--plots", "./o.npz"],
                                   ["--plots", "o.ckpt.pt"],
                                   ["--checkpoint", "c.pt", "--plots", "c.pt"]])
def test_plots_cannot_be_a_file_output(tmp_path, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--plots"):
        config_from_argv(["--arch", "mlp:8", "--out", "o.npz", *extra])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extra", [["--checkpoint", "sub/curves.png", "--plots", "sub"],
                                   ["--checkpoint", "histograms.png", "--plots", "sub/.."],
                                   ["--out", "sub/curves.png", "--plots", "./sub"]])
def test_no_output_can_be_a_plot_file(tmp_path, monkeypatch, extra):
    """The plots folder is put in place entry by entry: a checkpoint named
    ``plots/curves.png`` was replaced by the plot, the run ending 0 (round 16 of the fuzz).
    Other files may share the folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(UserError, match="is a file the plots write into the --plots folder"):
        config_from_argv(["--arch", "mlp:8", "--out", "o.npz", *extra])
    assert os.listdir(tmp_path) == ["sub"]
    assert config_from_argv(["--arch", "mlp:8", "--out", "sub/m.npz", "--plots", "sub"])


@pytest.mark.parametrize("env, main", [({}, True), ({"RANK": "1"}, True),
                                       ({"RANK": "x", "WORLD_SIZE": "1"}, True),
                                       ({"RANK": "1", "WORLD_SIZE": "2"}, False),
                                       ({"RANK": "0", "WORLD_SIZE": "2"}, True)])
def test_a_single_process_writes_its_plots_staged_whatever_rank_says(monkeypatch, env, main):
    """RANK=1 without a process group made train write --plots straight into the final
    folder, which a SIGTERM then left half-written (round 16 of the fuzz)."""
    from train.distributed import is_main_process

    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_main_process() is main


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_loading(tmp_path, monkeypatch):
    """``--batch-size 60000`` of ``cnn:c32`` needs ~45 GiB; the run grew until the system
    killed it (round 16 of the fuzz). Evaluation goes in chunks that fit whatever the
    network."""
    from train import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 8 << 30)
    with pytest.raises(UserError, match=r"--batch-size 60000 with 'cnn:c32' needs about 46\.3 "
                                        r"GiB to train \(25872 input and activation values per image.* "
                                        r"use --batch-size 8300 or less"):
        train(_cfg(tmp_path / "nowhere", tmp_path, arch="cnn:c32", batch_size=60000))
    assert os.listdir(tmp_path) == []
    assert memory.eval_chunk(984) == 1000 and memory.eval_chunk(25872) == 108
    assert memory.eval_chunk(2_096_416) == 1


def test_the_memory_check_uses_the_images_the_files_hold(tmp_path, monkeypatch):
    """IDX files of 256x256 images under the fashion-mnist name: the batch was checked for
    28x28 images, and a 47 KB data folder trained at 7.9 GiB (round 18 of the fuzz)."""
    from train import memory

    folder = tmp_path / "big"
    folder.mkdir()
    for stem in ("train", "t10k"):
        _idx(folder / f"{stem}-images-idx3-ubyte", np.zeros((64, 64, 64), np.uint8), 0x08)
        _idx(folder / f"{stem}-labels-idx1-ubyte", np.arange(64) % 10, 0x08)
    monkeypatch.setattr(memory, "physical_memory", lambda: 256 << 20)
    with pytest.raises(UserError, match=r"--batch-size 64 with 'cnn:c32' needs about 0\.3 GiB "
                                        r".*135168 input and activation values per image"):
        train(_cfg(folder, tmp_path, arch="cnn:c32", batch_size=64, epochs=1))
    assert sorted(os.listdir(tmp_path)) == ["big"]
    assert memory.TRAIN_BYTES_PER_VALUE * 64 * 25872 < 0.8 * (256 << 20)  # 28x28 would fit


def test_checkpoint_staging_follows_no_planted_link(data, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".m.ckpt.pt.tmp").symlink_to(victim)   # the old, predictable staging name
    train(_cfg(data, tmp_path, epochs=1))
    assert victim.read_text() == "precious"
    ckpt = tmp_path / "m.ckpt.pt"
    assert ckpt.is_file() and not ckpt.is_symlink()
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_a_checkpoint_that_cannot_be_written_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot write"):
        save_checkpoint({"epoch": 1}, Path("/proc/sbn-checkpoint.pt"))


# ----------------------------------------------------------------------------- --resume


@pytest.fixture(scope="module")
def checkpoint(data, tmp_path_factory):
    """A checkpoint after epoch 1 of 2 (sbn, with plots, so that it holds snapshots)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    cfg = _cfg(data, folder, stop_after=1, plots=str(folder / "plots"))
    assert train(cfg) == {"stopped_after": 1}
    return Path(cfg.out).with_suffix(".ckpt.pt")


def _set(path):
    """A mutation that sets ``state[path[0]][path[1]]... = value``."""
    def apply(state, value):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def _moments(state, name, value):
    state["optimizer"]["state"][0][name] = value(state["optimizer"]["state"][0][name])


MUTATIONS = {
    "settings tensor": lambda s: _set(("settings", "lr"))(s, torch.zeros(3)),
    "history ints": lambda s: _set(("history",))(s, [1]),
    "history dicts": lambda s: _set(("history",))(s, [{}]),
    "history nu text": lambda s: _set(("history", 0, "nu"))(s, "x"),
    "history nan loss": lambda s: _set(("history", 0, "loss"))(s, math.nan),
    "history as text": lambda s: _set(("history",))(s, "abc"),
    "history huge int": lambda s: _set(("history", 0, "loss"))(s, 10 ** 400),
    "snapshot huge count": lambda s: _set(("snapshots", 0, "weights", "counts"))(s, [10 ** 400]),
    "snapshot huge nu": lambda s: _set(("snapshots", 0, "nu"))(s, 10 ** 400),
    "snapshots ints": lambda s: _set(("snapshots",))(s, [1, 2]),
    "snapshot counts": lambda s: _set(("snapshots", 0, "weights", "counts"))(s, ["x"]),
    "moment shape": lambda s: _moments(s, "exp_avg", lambda t: torch.zeros(3)),
    "moment nan": lambda s: _moments(s, "exp_avg", lambda t: torch.full_like(t, math.nan)),
    "negative second moment": lambda s: _moments(s, "exp_avg_sq", lambda t: -1 - t),
    "lr text": lambda s: _set(("optimizer", "param_groups", 0, "lr"))(s, "x"),
    "lr nan": lambda s: _set(("optimizer", "param_groups", 0, "lr"))(s, math.nan),
    "betas": lambda s: _set(("optimizer", "param_groups", 0, "betas"))(s, (5.0, -1.0)),
    "capturable": lambda s: _set(("optimizer", "param_groups", 0, "capturable"))(s, True),
    "scheduler optimizer": lambda s: _set(("scheduler", "optimizer"))(s, 5),
    "scheduler last_epoch": lambda s: _set(("scheduler", "last_epoch"))(s, "x"),
    "scheduler step": lambda s: _set(("scheduler", "last_epoch"))(s, 5),
    "scheduler base_lrs": lambda s: _set(("scheduler", "base_lrs"))(s, []),
    # round 14: finite values that made the resumed run diverge, plot or hang
    "lr 1e30": lambda s: _set(("optimizer", "param_groups", 0, "lr"))(s, 1e30),
    "adam step 0": lambda s: _moments(s, "step", lambda t: torch.zeros_like(t)),
    "adam step huge": lambda s: _moments(s, "step", lambda t: torch.full_like(t, 3e38)),
    "adam state empty": lambda s: _set(("optimizer", "state"))(s, {}),
    "epoch 0": lambda s: (_set(("epoch",))(s, 0), _set(("history",))(s, []),
                          _set(("scheduler", "last_epoch"))(s, 0)),
    "history frozen length": lambda s: _set(("history", 0, "frozen"))(s, [1.0] * 3),
    "history alive above 1": lambda s: _set(("history", 0, "alive"))(
        s, [2.0] * len(s["history"][0]["alive"])),
    "history loss as list": lambda s: _set(("history", 0, "loss"))(s, [1.0]),
    "history nu 0": lambda s: _set(("history", 0, "nu"))(s, 0.0),
    "history accuracy 5": lambda s: _set(("history", 0, "test_acc"))(s, 5.0),
    "snapshot bins": lambda s: _set(("snapshots", 0, "weights", "counts"))(s, [1.0] * 4000),
    "snapshot range": lambda s: _set(("snapshots", 0, "weights", "range"))(
        s, [-1.7e308, 1.7e308]),
    "snapshot epochs": lambda s: _set(("snapshots",))(s, [dict(s["snapshots"][0], epoch=e)
                                                        for e in range(64)]),
    # round 15: values the checks let through into plots and the final report
    "history nu not the schedule's": lambda s: _set(("history", 0, "nu"))(s, 1.0),
    "history loss 1e308": lambda s: _set(("history", 0, "loss"))(s, 1e308),
    "snapshot counts all zero": lambda s: _set(("snapshots", 0, "weights", "counts"))(
        s, [0.0] * len(s["snapshots"][0]["weights"]["counts"])),
    "nested too deep": lambda s: _set(("optimizer", "param_groups", 0, "betas"))(
        s, [[[[[[[[0.9]]]]]]]]),
    "negative variance": lambda s: s["model"].__setitem__(
        next(k for k in s["model"] if k.endswith("running_var")),
        -torch.ones_like(s["model"][next(k for k in s["model"] if k.endswith("running_var"))])),
    # round 26: batch-norm statistics and the output's log scale beyond any training
    "running mean 1e30": lambda s: s["model"].__setitem__(
        next(k for k in s["model"] if k.endswith("running_mean")),
        torch.full_like(s["model"][next(k for k in s["model"] if k.endswith("running_mean"))],
                        1e30)),
    "log scale 1e5": lambda s: s["model"].__setitem__(
        next(k for k in s["model"] if k.endswith("log_scale")),
        torch.full_like(s["model"][next(k for k in s["model"] if k.endswith("log_scale"))],
                        1e5)),
    # round 25: a bias the export would clip to int32 (a model unlike the network)
    "output bias 1e30": lambda s: s["model"].__setitem__(
        next(k for k in s["model"] if k.endswith("bias") and "bn" not in k),
        torch.full_like(s["model"][next(k for k in s["model"] if k.endswith("bias")
                                        and "bn" not in k)], 1e30)),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_resume_refuses_a_checkpoint_it_cannot_use(data, checkpoint, tmp_path, name):
    state = load_checkpoint(checkpoint)
    MUTATIONS[name](state)
    path = tmp_path / "m.ckpt.pt"
    write_state(state, path)
    with pytest.raises(UserError, match="not a checkpoint of this training run"):
        train(_cfg(data, tmp_path, resume=True, plots=str(tmp_path / "plots")))
    assert sorted(os.listdir(tmp_path)) == ["m.ckpt.pt"]


def test_a_learned_nu_resumes_from_the_hard_phase(data, tmp_path):
    """No gradient reaches a learned nu once it is infinite, so Adam takes fewer steps for
    it than for the weights: checkpoints of the hard phase were refused (round 16 of the
    fuzz). Resumed, the run gives the uninterrupted run's model."""
    options = dict(nu_learnable=True, epochs=4, hard_phase=0.5)
    full = _cfg(data, tmp_path / "full", **options)
    train(full)
    part = _cfg(data, tmp_path / "part", stop_after=3, **options)
    assert train(part) == {"stopped_after": 3}
    state = load_checkpoint(Path(part.out).with_suffix(".ckpt.pt"))
    assert state["history"][-1]["nu_eff_mean"] == math.inf
    steps = sorted({float(e["step"]) for e in state["optimizer"]["state"].values()})
    assert len(steps) == 2   # the learned nu's steps stopped at the hard phase
    part.stop_after, part.resume = None, True
    train(part)
    with np.load(full.out) as a, np.load(part.out) as b:
        for key in a.files:
            if key != "graph":   # the provenance names the output file
                np.testing.assert_array_equal(a[key], b[key])


def test_resume_takes_its_own_checkpoint(data, checkpoint, tmp_path):
    path = tmp_path / "m.ckpt.pt"
    path.write_bytes(checkpoint.read_bytes())
    result = train(_cfg(data, tmp_path, resume=True))
    assert len(result["history"]) == 2 and (tmp_path / "m.npz").is_file()


def test_a_damaged_checkpoint_record_is_refused(checkpoint, tmp_path):
    data = bytearray(checkpoint.read_bytes())
    with zipfile.ZipFile(checkpoint) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(UserError, match="CRC"):
        load_checkpoint(damaged)


# ----------------------------------------------------------------------------- environment


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "abc"}, {"WORLD_SIZE": ""},
                                 {"WORLD_SIZE": "1.5"}, {"WORLD_SIZE": "9" * 20},
                                 {"WORLD_SIZE": "2"},
                                 {"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "x",
                                  "MASTER_PORT": "1"},
                                 {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "x",
                                  "MASTER_PORT": "99999"},
                                 # port 0 can never be joined: rank 1 waited forever
                                 {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1",
                                  "MASTER_PORT": "0"}])
def test_a_bad_torchrun_environment_is_a_user_error(monkeypatch, env):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match="environment"):
        init_distributed("cpu")


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("images, code, match", [
    (np.zeros((256, 0, 28)), 0x08, "no pixels"),
    (np.full((256, 28, 28), 0.5), 0x0D, "float32"),
    (np.full((256, 28, 28), math.nan), 0x0E, "float64"),
    (np.full((256, 28, 28), -5), 0x09, "-5"),
    (np.full((256, 28, 28), 300), 0x0B, "300"),
])
def test_training_images_are_checked_before_training(tmp_path, images, code, match):
    folder = _data(tmp_path / "data", images, code)
    with pytest.raises(DatasetError, match=match):
        load_split("fashion-mnist", "train", str(folder))
    with pytest.raises(DatasetError, match=match):
        train(_cfg(folder, tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["data"]


@pytest.mark.parametrize("name", ["o\n.npz", "o\t.npz", "o\x7f.npz"])
def test_output_names_with_control_characters_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):   # argparse's one-line usage error
        config_from_argv(["--arch", "mlp:8", "--out", name])
    from hwgen.outputs import output_problem
    assert output_problem(name) == "the path holds a control character (a newline, a tab...)"
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_that_became_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "m.ckpt.pt"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="FIFO"):
        load_checkpoint(fifo)


@pytest.mark.parametrize("out, problem", [("afile/../m.npz", "afile is a file, not a folder"),
                                          ("nosuch/../m.npz", "does not exist")])
def test_output_folders_are_reached_as_the_system_reaches_them(tmp_path, monkeypatch, out,
                                                               problem):
    """``..`` after a file or a missing folder was collapsed as text and accepted (and train
    then made the missing folder)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit):
        config_from_argv(["--arch", "mlp:8", "--out", out])
    from hwgen.outputs import output_problem
    assert problem in output_problem(out)
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_a_link_before_dotdot_is_followed_as_the_system_does(tmp_path, monkeypatch):
    from hwgen.outputs import resolved, staged_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to("sub/deep")
    assert resolved("lnk/../p.npy") == tmp_path / "sub" / "p.npy"
    with staged_file("lnk/../p.npy") as staging:
        staging.write_text("x")
    assert (tmp_path / "sub" / "p.npy").read_text() == "x"
    assert not (tmp_path / "p.npy").exists()


def test_a_staging_file_that_cannot_be_renamed_or_removed_is_one_error(tmp_path, monkeypatch):
    """In an append-only folder a file can be made but not renamed or removed: the error is
    the rename's, as one OutputError, not a PermissionError from the cleanup."""
    from hwgen.outputs import OutputError, staged_file

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    with pytest.raises(OutputError, match="cannot write"):
        with staged_file(tmp_path / "p.npy") as staging:
            staging.write_text("x")
            monkeypatch.setattr(os, "replace", refuse)
            monkeypatch.setattr(Path, "unlink", refuse)


def test_resume_refuses_other_training_data(data, checkpoint, tmp_path):
    """The same settings, another --data-dir: the checkpoint's data digest differs."""
    images = np.random.default_rng(9).integers(0, 256, (256, 28, 28), dtype=np.uint8)
    other = _data(tmp_path / "other", images)
    (tmp_path / "m.ckpt.pt").write_bytes(checkpoint.read_bytes())
    with pytest.raises(UserError, match="cannot resume, the checkpoint was made with "
                                        "different data"):
        train(_cfg(other, tmp_path, resume=True))


def test_a_diverging_run_is_one_error_and_writes_nothing(data, tmp_path):
    """25 hidden layers of width 2: the gradients overflow in the first epoch."""
    cfg = _cfg(data, tmp_path, arch="mlp:" + "-".join(["2"] * 25), epochs=1)
    with pytest.raises(UserError, match=r"training diverged in epoch 1 \("):
        train(cfg)
    assert os.listdir(tmp_path) == []


def test_plots_reaching_the_checkpoint_through_a_link_are_refused_before_training(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "selflink").symlink_to(tmp_path / "p")
    with pytest.raises(UserError, match="is the --checkpoint file"):
        config_from_argv(["--arch", "mlp:8", "--out", "p/m.npz",
                          "--plots", "p/selflink/../p/m.ckpt.pt"])


def test_sigterm_while_joining_a_process_group_is_answered(tmp_path):
    """A rank whose group never forms waits in torch's C++ rendezvous (retrying for 30
    minutes): SIGTERM there ends it with the one line and 143, without C++ log lines."""
    env = dict(os.environ, WORLD_SIZE="2", RANK="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT="1")
    env.pop("TORCH_CPP_LOG_LEVEL", None)
    proc = subprocess.Popen([sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "1",
                             "--no-progress", "--out", str(tmp_path / "m.npz")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.startswith("error: interrupted"), err
    assert len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_cannot_share_or_leave_out_a_tensor(data, checkpoint, tmp_path):
    """Each tensor of a checkpoint is its own member, named once by the state: one member
    named twice (shared moments trained a different model when checkpoints were pickles)
    or not at all is refused, and so are tags the writer never makes."""
    import json

    state = load_checkpoint(checkpoint)
    plain = tmp_path / "plain.pt"
    write_state(state, plain)
    with np.load(plain) as archive:
        members = {k: archive[k] for k in archive.files}
    body = json.loads(members["state"].tobytes())
    moments = body["state"]["optimizer"]["state"]["$dict"]
    for name, change in [
            ("shared", lambda: moments[0][1].__setitem__("exp_avg", moments[1][1]["exp_avg"])),
            ("unknown tag", lambda: moments[0][1].__setitem__("exp_avg", {"$eval": "1"})),
            ("mixed tag", lambda: moments[0][1].__setitem__(
                "exp_avg", {"$tensor": moments[0][1]["exp_avg"]["$tensor"], "x": 1}))]:
        forged = json.loads(json.dumps(body))
        moments = forged["state"]["optimizer"]["state"]["$dict"]
        change()
        text = json.dumps(forged).encode()
        path = tmp_path / f"{name}.pt"
        with open(path, "wb") as f:
            np.savez(f, **{**members, "state": np.frombuffer(text, np.uint8)})
        with pytest.raises(UserError, match="not a checkpoint written by train"):
            load_checkpoint(path)
    extra = tmp_path / "extra.pt"
    with open(extra, "wb") as f:
        np.savez(f, **members, t999=np.zeros(3, np.float32))
    with pytest.raises(UserError, match="member 't999' is not part of its state"):
        load_checkpoint(extra)


@pytest.mark.parametrize("plots", [False, True])
def test_a_signal_as_the_model_appears_ends_complete_or_leaves_no_model(data, tmp_path, plots):
    """SIGTERM the moment the model file appears: the run either completes (exit 0, model
    and plots in place) or is interrupted (143, one line, no model, no plots). The model
    was kept with exit 143 (and the plots folder missing), round 17 of the fuzz."""
    for attempt in range(3):
        folder = tmp_path / f"run{attempt}"
        folder.mkdir()
        out = folder / "m.npz"
        command = [sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "1",
                   "--data-dir", str(data), "--no-progress", "--threads", "1", "--out",
                   str(out)] + (["--plots", str(folder / "plots")] if plots else [])
        proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while proc.poll() is None and not out.exists() and time.time() < deadline:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        names = sorted(os.listdir(folder))
        if proc.returncode == 0:
            assert names == ["m.ckpt.pt", "m.npz"] + (["plots"] if plots else []), names
        else:
            assert proc.returncode == 143 and "Traceback" not in err, err
            assert err.splitlines()[-1] == (f"error: interrupted (the last completed epoch is "
                                            f"in the checkpoint {folder}/m.ckpt.pt; rerun "
                                            f"with --resume)"), err
            assert names == ["m.ckpt.pt"], names


def test_a_process_group_whose_peer_stops_ends_in_one_line(data, tmp_path):
    """Rank 1 interrupted during training: rank 0's next collective fails (gloo: the
    connection closed by peer), one error line and exit 2 instead of a traceback."""
    command = [sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "30",
               "--data-dir", str(data), "--batch-size", "16", "--no-progress", "--threads",
               "1", "--device", "cpu"]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 400))
        procs.append(subprocess.Popen([*command, "--out", str(tmp_path / f"r{rank}.npz")],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    line = "x"
    while line and "epoch 1/30" not in line:
        line = procs[0].stderr.readline()
    assert line, "rank 0 never finished an epoch"
    procs[1].send_signal(signal.SIGINT)
    err1 = procs[1].communicate(timeout=120)[1]
    err0 = procs[0].communicate(timeout=120)[1]
    assert procs[1].returncode == 130 and err1.startswith("error: interrupted"), err1
    assert procs[0].returncode == 2, err0
    assert err0.splitlines()[-1].startswith("error: the process group failed"), err0
    assert "Traceback" not in err0, err0


def test_plots_that_cannot_be_installed_leave_the_earlier_model(data, tmp_path, monkeypatch):
    """The run replaces an earlier --out model, then cannot put its plots in place (a link
    to another file system, round 21 of the fuzz): the earlier model is back, byte for
    byte, and nothing else is left (the run's model used to be removed, the earlier one
    lost with it)."""
    import errno

    import hwgen.outputs
    from train.cli import run_staged

    out = tmp_path / "m.npz"
    out.write_bytes(b"the earlier model")

    def cannot(staging, target):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(hwgen.outputs, "_install_folder", cannot)
    with pytest.raises(UserError, match="plots: cannot write"):
        run_staged(_cfg(data, tmp_path, epochs=1, plots=str(tmp_path / "plots")))
    assert out.read_bytes() == b"the earlier model"
    assert sorted(os.listdir(tmp_path)) == ["m.ckpt.pt", "m.npz"]


def test_plots_into_a_folder_on_another_file_system(data, tmp_path):
    """--plots naming a link to a folder elsewhere: the staging folder is made inside that
    folder, so its files are renamed within one file system."""
    from hwgen.outputs import staged_folder

    elsewhere = Path("/dev/shm") if os.path.isdir("/dev/shm") else tmp_path / "elsewhere"
    target = Path(tempfile.mkdtemp(dir=elsewhere))
    try:
        link = tmp_path / "plots"
        link.symlink_to(target)
        with staged_folder(link) as staging:
            assert staging.resolve().parent == target.resolve()
            (staging / "curves.png").write_bytes(b"png")
        assert os.listdir(target) == ["curves.png"]
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize("name, value", [("TQDM_MININTERVAL", "abc"), ("MPLBACKEND", "bogus"),
                                         ("TORCH_LOGS", "bogus")])
def test_settings_of_the_libraries_that_draw_are_ignored(data, tmp_path, name, value):
    """tqdm and matplotlib read these and failed with a ValueError traceback (the plots'
    after the whole run): the commands draw their own bars and plots, and drop them."""
    env = dict(os.environ, **{name: value})
    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "1",
                           "--data-dir", str(data), "--threads", "1", "--out",
                           str(tmp_path / "m.npz"), "--plots", str(tmp_path / "plots")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path / "plots"))[:1] == ["curves.png"]


def test_a_master_address_that_names_nothing_is_one_line(monkeypatch):
    """An unresolvable MASTER_ADDR: the rendezvous retried it for up to 30 minutes, as if
    the other ranks were late (round 21 of the fuzz)."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1"),
                        ("MASTER_ADDR", "no.such.host.invalid"), ("MASTER_PORT", "29511")):
        monkeypatch.setenv(name, value)
    started = time.time()
    with pytest.raises(UserError, match=r"MASTER_ADDR='no\.such\.host\.invalid' names no "
                                        r"address"):
        init_distributed("cpu")
    assert time.time() - started < 30


def test_a_matplotlibrc_cannot_break_the_plots(data, tmp_path):
    """An empty colour cycle and a 100000-point font in a matplotlibrc (ZeroDivisionError,
    FreeType's RuntimeError, after training; round 22 of the fuzz): the plots are drawn at
    matplotlib's defaults, whatever the environment names."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "matplotlibrc").write_text('axes.prop_cycle: cycler("color", [])\n'
                                         "font.size: 100000\n")
    env = dict(os.environ, MATPLOTLIBRC=str(config / "matplotlibrc"), MPLCONFIGDIR=str(config))
    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "1",
                           "--data-dir", str(data), "--threads", "1", "--no-progress",
                           "--out", str(tmp_path / "m.npz"), "--plots", str(tmp_path / "p")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "curves.png" in os.listdir(tmp_path / "p")
    from train.plots import write_plots  # in this process too, through the rc file's values
    os.environ["MATPLOTLIBRC"] = str(config / "matplotlibrc")
    try:
        history = [{"epoch": 1, "loss": 1.0, "train_acc": 0.5, "test_acc": 0.5}]
        assert write_plots(tmp_path / "q", history, [], "ste")
    finally:
        del os.environ["MATPLOTLIBRC"]


def test_a_folder_merge_that_fails_midway_leaves_the_earlier_entries(tmp_path, monkeypatch):
    """Entries renamed into an existing folder one at a time: when one cannot be (a file
    another user owns in a sticky folder, round 22 of the fuzz), those already renamed
    went in and a folder aside stayed. Now all or none: the earlier entries are back and
    nothing is left beside them."""
    from hwgen.outputs import OutputError, staged_folder

    target = tmp_path / "plots"
    target.mkdir()
    (target / "curves.png").write_text("old curves")
    (target / "histograms.png").write_text("old histograms")
    (target / "mine.txt").write_text("the user's")
    real = os.rename

    def rename(src, dst):
        if Path(src).name == "histograms.png" and Path(src).parent == target:
            raise PermissionError(1, "Operation not permitted")
        return real(src, dst)

    with pytest.raises(OutputError, match="plots: cannot write"):
        with staged_folder(target) as staging:
            (staging / "curves.png").write_text("new curves")
            (staging / "histograms.png").write_text("new histograms")
            monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "rename", real)
    assert sorted(os.listdir(target)) == ["curves.png", "histograms.png", "mine.txt"]
    assert (target / "curves.png").read_text() == "old curves"
    assert (target / "histograms.png").read_text() == "old histograms"


# ----------------------------------------------------------------------------- round 23


def test_resume_accepts_snapshots_with_a_gap(data, tmp_path):
    """Histogram snapshots are taken only by runs with --plots: a run resumed without them,
    then with them again, left a gap that the next --resume refused."""
    options = dict(epochs=8)
    run = _cfg(data, tmp_path, stop_after=3, plots=str(tmp_path / "p1"), **options)
    assert train(run) == {"stopped_after": 3}
    run = _cfg(data, tmp_path, stop_after=5, resume=True, **options)
    assert train(run) == {"stopped_after": 5}
    run = _cfg(data, tmp_path, resume=True, plots=str(tmp_path / "p2"), **options)
    assert len(train(run)["history"]) == 8 and (tmp_path / "p2" / "curves.png").is_file()


def test_checkpoint_limits_grow_with_the_layers():
    from train.checkpoint import MAX_JSON_VALUES, check_checkpoint_size, json_limits

    assert json_limits(210, 255)[1] > json_limits(210, 3)[1]
    assert json_limits(210, 255)[1] > 210 * (2 * 255 + 12)  # what such a run writes
    check_checkpoint_size(500, 255)
    check_checkpoint_size(20_000, 3)
    with pytest.raises(UserError, match="at most .* epochs with this network"):
        check_checkpoint_size(100_000, 3)
    assert json_limits(100_000, 3)[1] > MAX_JSON_VALUES


def test_too_many_epochs_for_the_checkpoint_are_refused_before_training(data, tmp_path):
    with pytest.raises(UserError, match="--epochs 100000: the checkpoint's epoch log"):
        train(_cfg(data, tmp_path, epochs=100_000))
    assert not os.listdir(tmp_path)


def test_a_checkpoint_with_thousands_of_tensors_is_read_back(tmp_path):
    """A deep network with a learned nu writes about 19 tensors per layer: more than a
    model file's member limit."""
    from hwgen.archive import MAX_MEMBERS
    from train.state_archive import read_state

    state = {f"t{k}": torch.full((2,), float(k)) for k in range(MAX_MEMBERS + 10)}
    write_state(state, tmp_path / "s.ckpt.pt")
    back = read_state(tmp_path / "s.ckpt.pt")
    assert len(back) == MAX_MEMBERS + 10 and float(back["t4100"][1]) == 4100.0


def test_the_export_check_goes_in_blocks(monkeypatch):
    """Scores are held one block of images at a time; a mismatch names the image."""
    import train.export as export
    from hwgen.random_models import dense, random_images, random_model

    monkeypatch.setattr(export, "PREDICT_BLOCK", 7)
    rng = np.random.default_rng(2)
    model = random_model(rng, (1, 4, 4), [dense(5)], classes=3)
    images = random_images(rng, model.input, 30)
    from hwgen.reference import Reference

    expected = Reference(model).predict(images)
    np.testing.assert_array_equal(export.check_against_reference(model, images), expected)
    np.testing.assert_array_equal(export.hard_predict(model, images), expected)
    real, sizes = export.hard_scores, []

    def off_at_22(model, block, *args):   # torch's score of image 22 off by one
        scores = real(model, block, *args)
        start = sum(sizes)
        sizes.append(len(block))
        if start <= 22 < start + len(block):
            scores[22 - start, 0] += 1
        return scores
    monkeypatch.setattr(export, "hard_scores", off_at_22)
    with pytest.raises(export.ExportError, match="differ on image 22:"):
        export.check_against_reference(model, images)


def test_torch_cache_folder_that_cannot_be_made_is_one_line(data, tmp_path):
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR="/dev/null")
    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "1",
                           "--data-dir", str(data), "--threads", "1", "--out",
                           str(tmp_path / "m.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "torch cannot make its cache folder /dev/null" in proc.stderr
    assert not os.listdir(tmp_path)


def test_plots_naming_a_dangling_link_are_refused_before_training(tmp_path, monkeypatch):
    (tmp_path / "plots").symlink_to(tmp_path / "not-there")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        config_from_argv(["--arch", "mlp:8", "--out", "m.npz", "--plots", "plots"])


@pytest.mark.parametrize("extra", [["--checkpoint", "DATA/train-labels-idx1-ubyte"],
                                   ["--out", "DATA/t10k-images-idx3-ubyte.gz"],
                                   ["--plots", "DATA"]])
def test_outputs_cannot_overwrite_the_training_data(data, tmp_path, extra):
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    argv = ["--arch", "mlp:8", "--data-dir", str(data), "--out", str(tmp_path / "m.npz")]
    argv += [e.replace("DATA", str(data)) for e in extra]
    with pytest.raises(UserError, match="data"):
        config_from_argv(argv)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_resume_without_any_checkpoint_path_is_a_usage_error(data, tmp_path):
    with pytest.raises(UserError, match="--resume needs a checkpoint"):
        train(_cfg(data, tmp_path, method="float", out=None, resume=True))


@pytest.mark.parametrize("name, value, fragment", [
    ("GOMP_CPU_AFFINITY", "x", "not a list of CPU numbers"),
    ("PYTORCH_JIT", "abc", "torch could not be imported (ValueError: Unknown setting of "
                           "PYTORCH_JIT"),
    ("TORCHDYNAMO_REPRO_LEVEL", "abc", "torch's compiler could not be imported (ValueError"),
    ("NUMPY_MADVISE_HUGEPAGE", "x", "numpy could not be imported (ValueError"),
    ("OMP_STACKSIZE", "100000G", "a thread stack larger than this machine's memory")])
def test_torch_variables_it_cannot_read_are_one_line(data, tmp_path, name, value, fragment):
    """Round 24: torch parses these as it is imported (a ValueError traceback), and libgomp
    loops forever on a bad GOMP_CPU_AFFINITY inside ``import torch``, deaf to SIGTERM."""
    env = dict(os.environ, **{name: value})
    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs", "1",
                           "--data-dir", str(data), "--threads", "1", "--out",
                           str(tmp_path / "m.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr and not os.listdir(tmp_path)


def test_bn_recal_with_the_float_method_is_refused(data, tmp_path):
    with pytest.raises(UserError, match="--bn-recal .* not float"):
        train(_cfg(data, tmp_path, method="float", out=None, bn_recal=3))


def test_a_command_too_long_to_record_is_refused_before_training(tmp_path):
    """Fuzz round 25: 120,000 control characters in an overridden --arch made a provenance
    no reader takes; train exited 0 with a model hwgen refused."""
    from train.cli import MAX_COMMAND_CHARS

    with pytest.raises(UserError, match=f"takes at most {MAX_COMMAND_CHARS}"):
        config_from_argv(["--arch", "\x01" * 120_000, "--arch", "mlp:8", "--out",
                          str(tmp_path / "m.npz")])
    assert not os.listdir(tmp_path)


def test_a_model_no_reader_would_take_is_not_written(tmp_path):
    from hwgen.errors import ModelFormatError
    from hwgen.model import load, save

    model = load(ROOT / "models" / "fmnist-mlp-up5k.npz")
    model.provenance["note"] = "x" * (1 << 20)
    with pytest.raises(ModelFormatError, match="graph JSON is .* characters"):
        save(model, tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


def test_torch_out_of_memory_is_one_line(monkeypatch, tmp_path, capsys):
    """Fuzz round 25: under ``ulimit -v`` torch's allocator raised a RuntimeError traceback
    mid-training, past the pre-check that sees physical memory."""
    import train.cli

    def out_of_memory(config):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 67108864 bytes.")
    monkeypatch.setattr(train.cli, "run_staged", out_of_memory)
    assert train.cli.main(["--arch", "mlp:8", "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: out of memory (RuntimeError"), err

    def other(config):
        raise RuntimeError("a bug")
    monkeypatch.setattr(train.cli, "run_staged", other)
    with pytest.raises(RuntimeError, match="a bug"):
        train.cli.main(["--arch", "mlp:8", "--out", str(tmp_path / "m.npz")])


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc/self/mem")
def test_a_checkpoint_that_cannot_be_read_is_one_line(tmp_path):
    """Fuzz round 26: --resume of a checkpoint that stats regular but fails every read."""
    (tmp_path / "ck.pt").symlink_to("/proc/self/mem")
    from train.state_archive import read_state

    with pytest.raises(UserError, match="cannot read"):
        read_state(tmp_path / "ck.pt")


@pytest.mark.parametrize("variable, value", [("OMP_NUM_THREADS", "abc"),
                                             ("OMP_SCHEDULE", "x"), ("GOMP_SPINCOUNT", "x")])
def test_openmp_settings_its_runtime_cannot_read_are_one_line(tmp_path, variable, value):
    """libgomp, loaded with torch, wrote its own line for each value it cannot parse, before
    the command's error."""
    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--out",
                           str(tmp_path / "t.npz")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **{variable: value}))
    assert (proc.returncode, proc.stderr) == (
        2, f"error: environment {variable}={value!r}: the OpenMP runtime torch loads cannot "
           f"read it\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("variable, value, reason", [
    ("OMP_STACKSIZE", "0", "Stack size less than minimum of 16k")])
def test_openmp_settings_its_runtime_refuses_are_one_line(tmp_path, variable, value, reason):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--out",
                           str(tmp_path / "t.npz")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**env, variable: value})
    assert (proc.returncode, proc.stderr) == (
        2, f"error: the OpenMP runtime torch loads refused its settings: {reason} "
           f"({variable}={value!r})\n")


def test_no_file_may_grow_is_one_line(tmp_path):
    """``ulimit -f 0``: no temporary file can be made (train's first step holds the OpenMP
    runtime's lines in one) and no semaphore for train_compare's workers: tracebacks, exit 1
    (round 29 of the fuzz). One line each, exit 2, nothing written."""
    import resource

    def no_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    data = _data(tmp_path / "d")
    out = tmp_path / "out"
    out.mkdir()
    for argv, line in [
            (["-m", "train", "--arch", "mlp:8", "--epochs", "1", "--data-dir", str(data),
              "--no-progress", "--out", str(out / "t.npz")],
             "error: cannot make a temporary file (no usable temporary folder; the file-size "
             "limit, ulimit -f, is 0 bytes)\n"),
            (["benchmarks/train_compare.py", "--archs", "mlp:8", "--variants", "ste",
              "--epochs", "1", "--seeds", "0", "--data-dir", str(data), "--json",
              str(out / "r.json")],
             "error: cannot start the training processes (File too large; the file-size "
             "limit, ulimit -f, is 0 bytes)\n")]:
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, preexec_fn=no_files)
        assert (proc.returncode, proc.stderr) == (2, line)
        assert list(out.iterdir()) == []


def test_a_full_stderr_does_not_fail_training(tmp_path):
    """``2>/dev/full``: the epoch lines cannot be written; the run still trains and exports
    (it ended at the first line with exit 1), and a bad option is still exit 2."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    data = _data(tmp_path / "d")
    with open("/dev/full", "w") as full:
        for extra, code in ([], 0), (["--batch-size", "1"], 2):
            proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--epochs",
                                   "1", "--data-dir", str(data), "--out",
                                   str(tmp_path / "t.npz"), *extra], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=full, timeout=300)
            assert proc.returncode == code, extra
    assert (tmp_path / "t.npz").is_file()


def test_more_threads_than_the_address_space_holds_is_one_line(tmp_path):
    """Round 33: ``--threads 128`` under a 2 GiB ``ulimit -v`` ended in libgomp's own
    "Thread creation failed" line, exit 1, beyond any handler; refused before torch starts."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-m", "train", "--arch", "mlp:8", "--threads",
                           "128", "--out", str(tmp_path / "t.npz")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, preexec_fn=limit,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: --threads 128: the address-space limit (ulimit -v) "
                                  "is 2048 MiB"), proc.stderr
    assert list(tmp_path.iterdir()) == []
