"""The training loop: epochs, nu schedule, evaluation, checkpoints, resume, DDP, export.

:func:`train` runs a :class:`TrainConfig` and returns a summary dict. Under ``torchrun``
(``WORLD_SIZE > 1``) it joins a process group (gloo on CPU, nccl on CUDA), wraps the
network in DistributedDataParallel, splits each batch across ranks, and rank 0 alone
evaluates, logs, checkpoints and exports.

Checkpoints (``TrainConfig.checkpoint``) are written atomically at the end of every epoch
in train's own format of plain data and tensors, never a pickle (:mod:`train.state_archive`),
and read back by :mod:`train.checkpoint`, which checks all of a checkpoint against the
resuming run before using it. ``resume=True`` continues after the
last completed epoch; since each epoch's shuffling and augmentation depend only on
``(seed, epoch)``, a resumed run on CPU gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn import functional as F

from hwgen.errors import UserError, first_line
from hwgen.model import save as save_model
from hwgen.interrupts import deferred_signals
from hwgen.outputs import same_path

from .arch import parse_arch
# the run's settings live in .config (no torch there); imported from here as well
from .config import (DEFAULT_LR, LEGACY_LR, PAPER_SBN, SBN_ONLY, TrainConfig,  # noqa: F401
                     check_settings)
from .memory import activation_values, check_training_fits, eval_chunk
from .checkpoint import (check_checkpoint_size, load_checkpoint, restore, save_checkpoint,
                         short_repr)
from .distributed import Dist, init_distributed
from .data import augment, epoch_batches, epoch_generator, load_split
from .diagnostics import histograms, saturation, sharpness_diagnostics
from .layers import WEIGHT_NORMS, SbnOptions, clip_latent_weights
from .net import Net, input_stats
from .schedule import nu_at

# Settings that must match for --resume to continue a checkpoint.
_RESUME_KEYS = ("dataset", "arch", "method", "epochs", "seed", "batch_size", "lr",
                "weight_decay", "binarize_at", "nu_schedule", "nu_start", "nu_end", "nu_ramp",
                "flip", "shift", "train_limit", "init_bound", "nu_learnable", "weight_norm",
                "grad_cap", "weight_grad_cap", "hard_phase", "weight_clip", "grad_clip",
                "bn_recal")
# The value a setting had before it existed (checkpoints written by older versions lack it):
# the paper's self-binarizing training, no clipping, no recalibration.
_RESUME_DEFAULTS = {"nu_learnable": False, "weight_norm": "none", "grad_cap": None,
                    "weight_grad_cap": None, "hard_phase": 0.0, "weight_clip": None,
                    "grad_clip": None, "bn_recal": 0, "processes": 1}
def _log(message: str, dist: Dist) -> None:
    if dist.main:
        _write_line(message)


def _write_line(message: str) -> None:
    """``tqdm.write`` (a line above any progress bar) with signals held: an interrupt inside
    its lock's ``acquire`` made its ``finally`` release a lock it never took, a
    RuntimeError traceback instead of the interrupt."""
    from tqdm import tqdm
    with deferred_signals():
        tqdm.write(message, file=sys.stderr)


@torch.no_grad()
def evaluate_soft(net: Net, images: torch.Tensor, labels: torch.Tensor, nu: float,
                  device: str, batch_size: int = 1000) -> float:
    """Accuracy of the (soft, for sbn) network in eval mode at sharpness ``nu``."""
    net.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        logits = net(x, nu)
        correct += int((logits.argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return correct / max(1, images.shape[0])


def resume_settings(cfg: TrainConfig) -> dict:
    """The settings a checkpoint records and ``--resume`` compares; sbn-only settings are
    stored as their "off" values for other methods, where they change nothing."""
    settings = {key: getattr(cfg, key) for key in _RESUME_KEYS}
    if cfg.method != "sbn":
        settings.update({key: _RESUME_DEFAULTS[key] for key in SBN_ONLY})
    return settings


def data_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the training images and labels as train uses them (a checkpoint records
    it, so ``--resume`` on other data, another --data-dir, is refused)."""
    digest = hashlib.sha256()
    for tensor in (images, labels):
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_finite(net: Net, epoch: int, loss_sum: float) -> None:
    """UserError when training has diverged: a non-finite loss, parameter or batch-norm
    statistic after ``epoch`` (the checkpoint keeps the last good epoch)."""
    if math.isfinite(loss_sum):
        bad = next((name for name, t in (*net.named_parameters(), *net.named_buffers())
                    if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
        if bad is None:
            return
        what = f"{bad} holds non-finite values"
    else:
        what = "the loss is not finite"
    raise UserError(f"training diverged in epoch {epoch} ({what}); nothing of that epoch "
                    f"was kept: try a lower --lr, --grad-clip, or a wider network")


def _snapshot_epochs(epochs: int) -> set[int]:
    return {1, max(1, epochs // 4), max(1, epochs // 2), max(1, 3 * epochs // 4), epochs}


def _check_config(cfg: TrainConfig) -> None:
    check_settings(cfg)
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")


def _check_torch_cache() -> None:
    """Import what the optimizer imports, torch's compiler, now: it makes its cache folder
    as it is imported (``$TORCHINDUCTOR_CACHE_DIR``, else ``torchinductor_<user>`` in the
    temporary folder), and a file in that place ended runs in a FileExistsError traceback
    after the data had loaded. Training compiles nothing; the folder only has to exist."""
    try:
        import torch._dynamo  # noqa: F401
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        raise UserError(f"torch cannot make its cache folder{where} ({err.strerror or err}): "
                        f"set TORCHINDUCTOR_CACHE_DIR (or TMPDIR) to a writable folder") \
            from None
    except (ValueError, TypeError, RuntimeError, AttributeError) as err:
        why = first_line(err)
        raise UserError(f"torch's compiler could not be imported ({type(err).__name__}: "
                        f"{why}); is one of its variables in the environment (TORCHDYNAMO_*, "
                        f"TORCHINDUCTOR_*) set to a value it cannot read?") from None


def checkpoint_path(cfg: TrainConfig) -> Path | None:
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    if cfg.out:
        return Path(cfg.out).with_suffix(".ckpt.pt")
    return None


def train(cfg: TrainConfig) -> dict:
    """Run training per ``cfg``; returns a summary (accuracies, gap, saturation, paths).
    In a process group, a failure of the group (another process stopped or was killed:
    torch raises a RuntimeError from the next collective) is one UserError."""
    _check_config(cfg)
    _check_torch_cache()
    dist = init_distributed(cfg.device)
    if dist.world <= 1:
        return _train(cfg, dist)
    try:
        return _train(cfg, dist)
    except RuntimeError as err:
        why = first_line(err)
        raise UserError(f"the process group failed, another process may have stopped "
                        f"({why})") from None


def _train(cfg: TrainConfig, dist: Dist) -> dict:
    device = cfg.device
    if device == "cuda":
        torch.cuda.set_device(dist.local_rank)
        device = f"cuda:{dist.local_rank}"
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // dist.world)
    torch.set_num_threads(threads)
    if cfg.batch_size % dist.world:
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by the number of "
                        f"processes ({dist.world})")
    if cfg.batch_size < 2 * dist.world:  # batch norm needs two values per process
        raise UserError(f"--batch-size {cfg.batch_size} gives each of the {dist.world} "
                        f"processes fewer than 2 images a step; give at least "
                        f"{2 * dist.world}")

    from hwgen.datasets import DATASETS
    info = DATASETS.get(cfg.dataset)
    shape = info.shape if info else (1, 28, 28)
    planned = parse_arch(cfg.arch, shape)  # fails before loading data
    # every process of a CPU group shares this machine's memory: the whole batch counts
    check_training_fits(planned.spec, activation_values(planned, shape), cfg.batch_size,
                        device)
    train_x, train_y, classes = load_split(cfg.dataset, "train", cfg.data_dir, cfg.train_limit)
    test_x, test_y, _ = load_split(cfg.dataset, "test", cfg.data_dir, cfg.test_limit)
    if tuple(train_x.shape[1:]) != tuple(test_x.shape[1:]):
        raise UserError(f"dataset {cfg.dataset}: the training images are "
                        f"{'x'.join(map(str, train_x.shape[1:]))} but the test images "
                        f"{'x'.join(map(str, test_x.shape[1:]))}")
    if train_x.shape[0] < cfg.batch_size:
        raise UserError(f"--batch-size {cfg.batch_size} exceeds the {train_x.shape[0]} "
                        f"training images")
    input_shape = tuple(train_x.shape[1:])
    arch = parse_arch(cfg.arch, input_shape)
    values = activation_values(arch, input_shape)
    if input_shape != tuple(shape):  # the files' images are not the dataset's usual size
        check_training_fits(arch.spec, values, cfg.batch_size, device)
    chunk = eval_chunk(values)  # images evaluated at once

    torch.manual_seed(cfg.seed)
    means, std = input_stats(cfg.dataset)
    if len(means) == 1:
        means = means * input_shape[0]
    if len(means) != input_shape[0]:
        raise UserError(f"dataset {cfg.dataset}: {input_shape[0]} channels but "
                        f"{len(means)} normalization means")
    net = Net(arch, input_shape, len(classes), cfg.method, cfg.binarize_at,
              input_mean=means, input_std=std, init_bound=cfg.init_bound,
              learn_nu=cfg.nu_learnable,
              sbn=SbnOptions(cfg.weight_norm, cfg.grad_cap, cfg.weight_grad_cap)).to(device)
    nu_params = [p for name, p in net.named_parameters() if name.endswith("nu_log_excess")]
    if nu_params:  # no weight decay on the learnable nu (it would pull nu towards 2x floor)
        others = [p for name, p in net.named_parameters() if not name.endswith("nu_log_excess")]
        optimizer = torch.optim.Adam([{"params": others},
                                      {"params": nu_params, "weight_decay": 0.0}],
                                     lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
    steps_per_epoch = len(epoch_batches(train_x.shape[0], cfg.batch_size,
                                        torch.Generator().manual_seed(0), 0, dist.world))
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps)
                                                    / total_steps)))
    hard_phase = cfg.hard_phase if cfg.method == "sbn" else 0.0

    def nu_for(step):
        return nu_at(step / total_steps, cfg.nu_schedule, cfg.nu_start, cfg.nu_end, cfg.nu_ramp,
                     hard_phase)

    history: list[dict] = []
    snapshots: list[dict] = []
    start_epoch = 0
    ckpt = checkpoint_path(cfg)
    settings = resume_settings(cfg)
    settings["data"] = data_digest(train_x, train_y)  # the same images and labels, in order
    # a group splits each batch and keeps batch-norm statistics per process: another
    # number of processes trains another model from the same checkpoint
    settings["processes"] = dist.world
    layers = len(net.binarizing_layers())
    if ckpt is not None:
        check_checkpoint_size(cfg.epochs, layers)
    if cfg.resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, cfg.epochs, layers)
        old = state.get("settings", {})
        if not isinstance(old, dict) or not all(
                v is None or type(v) in (bool, int, float, str) for v in old.values()):
            raise UserError(f"{ckpt}: not a checkpoint of this training run (its settings "
                            f"are not a dictionary of plain values)")
        diff = [k for k in (*_RESUME_KEYS, "data", "processes")
                if old.get(k, _RESUME_DEFAULTS.get(k)) != settings[k]]
        if diff:
            raise UserError(f"{ckpt}: cannot resume, the checkpoint was made with different "
                            f"{', '.join(diff)} (e.g. {diff[0]}="
                            f"{short_repr(old.get(diff[0]), 60)})")
        start_epoch, history, snapshots = restore(state, ckpt, net, optimizer, scheduler,
                                                  cfg.epochs, steps_per_epoch, cfg.method,
                                                  _snapshot_epochs(cfg.epochs),
                                                  lambda e: nu_for(e * steps_per_epoch))
        _log(f"resumed from {ckpt} after epoch {start_epoch}", dist)
    elif cfg.resume:
        _log(f"--resume: no checkpoint at {ckpt}; starting from scratch", dist)

    model = net
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(net, device_ids=[dist.local_rank]
                                        if device.startswith("cuda") else None)
    if start_epoch == 0 and dist.main and cfg.plots:
        snapshots.append({"epoch": 0, **histograms(net, test_x, cfg.nu_start
                                                   if cfg.nu_schedule != "const"
                                                   else cfg.nu_end, device, chunk)})


    from tqdm import tqdm
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.time()
        model.train()
        gen = epoch_generator(cfg.seed, epoch)
        batches = epoch_batches(train_x.shape[0], cfg.batch_size, gen, dist.rank, dist.world)
        loss_sum = correct = seen = 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (cfg.progress and dist.main), file=sys.stderr)
        for index in bar:
            x = train_x[index]
            if cfg.flip or cfg.shift:
                x = augment(x, gen, cfg.flip, cfg.shift)
            x, y = x.to(device), train_y[index].to(device)
            nu = nu_for(step)
            logits = model(x, nu)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            if cfg.method == "ste":
                clip_latent_weights(net)
            elif cfg.method == "sbn" and cfg.weight_clip:
                clip_latent_weights(net, cfg.weight_clip)
            step += 1
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(index)
        check_finite(net, epoch, loss_sum)
        nu = nu_for(step)
        record = {"epoch": epoch, "loss": loss_sum / max(1, seen),
                  "train_acc": correct / max(1, seen), "nu": nu,
                  "lr": optimizer.param_groups[0]["lr"], "seconds": 0.0}
        if cfg.nu_learnable:
            nus = net.effective_nus(nu)
            record["nu_eff"] = nus
            record["nu_eff_mean"] = sum(nus) / len(nus)
        if dist.main:
            record["test_acc"] = evaluate_soft(net, test_x, test_y, nu, device, chunk)
            if cfg.method == "sbn":
                record.update(sharpness_diagnostics(net, test_x[:1000], nu, device,
                                                    chunk))
            if cfg.method != "float":
                from .export import hard_predict, to_model
                folded = to_model(net, classes)
                record["hard_test_acc"] = float((hard_predict(folded, test_x.numpy(), device,
                                                              chunk)
                                                 == test_y.numpy()).mean())
            record["seconds"] = time.time() - t0
            history.append(record)
            if cfg.plots and epoch in _snapshot_epochs(cfg.epochs):
                snapshots.append({"epoch": epoch, **histograms(net, test_x, nu, device,
                                                                   chunk)})
            hard = (f" hard {100 * record['hard_test_acc']:.2f}%"
                    if "hard_test_acc" in record else "")
            diag = ""
            if "frozen" in record:
                diag = (" frozen w " + "/".join(f"{100 * f:.0f}" for f in record["frozen"])
                        + "% alive a " + "/".join(f"{100 * a:.0f}" for a in record["alive"])
                        + "%")
            # parsed back by train.epoch_log: keep "epoch E/N ... (S.Ss)"
            _log(f"epoch {epoch}/{cfg.epochs} loss {record['loss']:.4f} train "
                 f"{100 * record['train_acc']:.2f}% test {100 * record['test_acc']:.2f}%"
                 f"{hard} nu {nu:.4g}{diag}"
                 + (f" (learned: mean {record['nu_eff_mean']:.4g}, min "
                    f"{min(record['nu_eff']):.4g}, max {max(record['nu_eff']):.4g})"
                    if cfg.nu_learnable else "")
                 + f" lr {record['lr']:.3g} ({record['seconds']:.1f}s)", dist)
            if ckpt is not None:
                save_checkpoint({"model": net.state_dict(),
                                    "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "epoch": epoch,
                                    "history": history, "snapshots": snapshots,
                                    "settings": settings}, ckpt)
        if dist.world > 1:
            torch.distributed.barrier()
        if cfg.stop_after is not None and epoch >= cfg.stop_after and epoch < cfg.epochs:
            return {"stopped_after": epoch}

    summary = {"history": history, "train_images": int(train_x.shape[0])}
    if dist.main and cfg.bn_recal and cfg.method != "float":
        summary.update(_recalibrate(cfg, net, train_x, history, device))
    if dist.main:
        summary.update(_finish(cfg, net, classes, test_x, test_y, history, snapshots, device,
                               chunk,
                               summary["train_images"]))
    if dist.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def _recalibrate(cfg, net, train_x, history, device) -> dict:
    """``--bn-recal``: the recalibration; reports the last epoch's hard test accuracy (the
    network before it) beside the one export measures after it."""
    from .bn_recal import recalibrate_bn
    before = history[-1]["hard_test_acc"]
    used = recalibrate_bn(net, train_x, cfg.bn_recal, cfg.batch_size, cfg.seed, device)
    _log(f"batch norm recalibrated on {used} training images with hard binarization "
         f"(hard test accuracy before: {100 * before:.2f}%)", Dist())
    return {"test_accuracy_before_bn_recal": before}


def _finish(cfg, net, classes, test_x, test_y, history, snapshots, device, chunk: int,
            train_images: int) -> dict:
    """Final evaluation, export with the exactness assertion, plots."""
    final_nu = history[-1]["nu"] if history else cfg.nu_end
    if cfg.bn_recal and cfg.method == "sbn":
        final_nu = math.inf  # the statistics are the hard network's now
    result = {"soft_test_accuracy": evaluate_soft(net, test_x, test_y, final_nu, device,
                                                  chunk)}
    if cfg.method == "sbn":
        result["saturation"] = saturation(net, test_x, final_nu, device, chunk)
    if cfg.method != "float":
        from .export import check_against_reference, to_model
        folded = to_model(net, classes)
        # torch's hard scores == the reference's on every image (so are the predictions)
        ref_pred = check_against_reference(folded, test_x.numpy(), batch_size=chunk)
        acc = float((ref_pred == test_y.numpy()).mean())
        result["test_accuracy"] = acc
        result["binarization_gap_points"] = 100 * (result["soft_test_accuracy"] - acc)
        folded.provenance = {
            "dataset": cfg.dataset, "method": cfg.method, "arch": cfg.arch,
            "epochs": cfg.epochs, "seed": cfg.seed, "binarize_at": cfg.binarize_at,
            "test_accuracy": acc, "test_images": int(test_x.shape[0]),
            "soft_test_accuracy": result["soft_test_accuracy"],
            "command": cfg.command, "torch": torch.__version__, "lr": cfg.lr,
            "device": device.split(":")[0], "train_images": train_images,
        }
        if cfg.bn_recal:
            folded.provenance["bn_recal"] = cfg.bn_recal
        if cfg.grad_clip:
            folded.provenance["grad_clip"] = cfg.grad_clip
        arch_spec = parse_arch(cfg.arch, tuple(net.input_shape)).spec
        if arch_spec != cfg.arch:
            folded.provenance["arch_spec"] = arch_spec
        if cfg.method == "sbn":
            folded.provenance.update(nu_schedule=cfg.nu_schedule, nu_start=cfg.nu_start,
                                     nu_end=cfg.nu_end, nu_ramp=cfg.nu_ramp,
                                     weight_norm=cfg.weight_norm, grad_cap=cfg.grad_cap,
                                     weight_grad_cap=cfg.weight_grad_cap,
                                     hard_phase=cfg.hard_phase, weight_clip=cfg.weight_clip,
                                     binarization_gap_points=result["binarization_gap_points"])
            if cfg.nu_learnable:
                # in the hard phase every nu is inf: record those it ended the ramp with
                ended = final_nu if math.isfinite(final_nu) else cfg.nu_end
                folded.provenance.update(nu_learnable=True,
                                         final_nu_eff=net.effective_nus(ended))
    if cfg.plots:   # before the model file: a stop while plotting leaves no model behind
        from .plots import write_plots
        result["plots"] = write_plots(cfg.plots, history, snapshots, cfg.method)
    if cfg.method != "float":
        # the run's last output unless a plots folder is put in place after it (run_staged)
        save_model(folded, cfg.out, final=not cfg.plots)
        result["out"] = str(cfg.out)
    msg = f"final: soft test {100 * result['soft_test_accuracy']:.2f}%"
    if "test_accuracy" in result:
        msg += (f", exported (hwgen reference == torch hard eval on all {test_x.shape[0]} "
                f"test images) {100 * result['test_accuracy']:.2f}%, binarization gap "
                f"{result['binarization_gap_points']:+.2f} points")
    if "saturation" in result:
        s = result["saturation"]
        msg += (f", tanh==sign for {100 * s['weights']:.3f}% of weights and "
                f"{100 * s['activations']:.3f}% of test activations")
    if "out" in result:
        msg += f" -> {result['out']}"
    _write_line(msg)
    return result


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
