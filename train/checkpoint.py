"""Training checkpoints: written atomically, read back without unpickling anything, and
checked against the run that resumes from them before any of their contents is used.

- :func:`save_checkpoint` writes through :func:`hwgen.outputs.staged_file` (a fresh, random
  staging name beside the target, created exclusively, renamed at the end): a kill never
  leaves a partial checkpoint, and a planted link at a predictable name is never written.
- :func:`load_checkpoint` reads it back with :func:`train.state_archive.read_state`: JSON
  and ``.npy`` members in an uncompressed zip, never a pickle.
- :func:`restore` checks every part of a loaded checkpoint against the freshly built
  network, optimizer and scheduler of the resuming run (same keys, types, shapes, finite
  values, a step count that matches the epoch) and only then loads it; anything else is
  a :class:`~hwgen.errors.UserError` ``PATH: not a checkpoint of this training run (...)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from hwgen.errors import UserError, first_line
from hwgen.outputs import resolved, staged_file

from .diagnostics import HISTOGRAM_BINS
from .state_archive import MAX_JSON_CHARS, MAX_JSON_VALUES, read_state, write_state

__all__ = ["load_checkpoint", "restore", "save_checkpoint", "short_repr"]

MAX_SNAPSHOTS = 64  # train keeps at most 6 histogram snapshots
MAX_HISTOGRAM_RANGE = 1e30  # |ends| of a histogram's range (the float method's data span)
MAX_BINS = HISTOGRAM_BINS  # a snapshot's histogram has exactly these


class _Mismatch(ValueError):
    """A part of the checkpoint that the resuming run cannot use; the text says which."""


def save_checkpoint(state: dict, path: Path) -> None:
    """``state`` written to ``path`` (:func:`train.state_archive.write_state`) through a
    staging file; UserError when it cannot be written."""
    try:
        resolved(path).parent.mkdir(parents=True, exist_ok=True)  # the CLI checked it
        with staged_file(path) as staging:
            write_state(state, staging)
    except OSError as err:
        raise UserError(f"{path}: cannot write the checkpoint ({err.strerror or err})") \
            from None


#: Characters and values of a checkpoint's JSON: a fixed part (network, optimizer and
#: snapshot structure) and a part per epoch record, which grows with the layers (a record
#: holds ``2 * layers + 12`` values, ``3 * layers + 12`` with a learned nu, of about 15
#: characters each: 19 values in 283 characters for the UP5K CNN's four layers).
JSON_CHARS_FIXED, JSON_VALUES_FIXED = 1 << 20, 1 << 16
CHARS_PER_VALUE = 24


def epoch_values(layers: int) -> int:
    """The most JSON values one epoch record of a network with ``layers`` binarizing
    layers may hold."""
    return 16 + 4 * layers


def json_limits(epochs: int, layers: int) -> tuple[int, int]:
    """(characters, values) a checkpoint of ``epochs`` epochs of a network with ``layers``
    binarizing layers may hold."""
    values = JSON_VALUES_FIXED + epochs * epoch_values(layers)
    return JSON_CHARS_FIXED + values * CHARS_PER_VALUE, values


def check_checkpoint_size(epochs: int, layers: int) -> None:
    """UserError, before training, when a run of ``epochs`` epochs would write checkpoints
    whose epoch log is beyond what :func:`load_checkpoint` reads back."""
    chars, values = json_limits(epochs, layers)
    if chars > MAX_JSON_CHARS or values > MAX_JSON_VALUES:
        values_cap = min(MAX_JSON_VALUES,
                         (MAX_JSON_CHARS - JSON_CHARS_FIXED) // CHARS_PER_VALUE)
        most = (values_cap - JSON_VALUES_FIXED) // epoch_values(layers)
        raise UserError(f"--epochs {epochs}: the checkpoint's epoch log of a network with "
                        f"{layers} binarizing layers would outgrow what --resume reads; at "
                        f"most {most} epochs with this network")


def load_checkpoint(path: str | Path, epochs: int | None = None, layers: int = 255) -> dict:
    """A checkpoint written by ``train``, read by :func:`train.state_archive.read_state`
    (never unpickled; bounded by the file's size; its JSON at most what a run of ``epochs``
    epochs of a network with ``layers`` binarizing layers writes, when given); UserError
    unless it is a dictionary."""
    chars = values = None
    if epochs is not None:  # never past the fixed caps, however many epochs
        chars, values = json_limits(epochs, layers)
        chars, values = min(MAX_JSON_CHARS, chars), min(MAX_JSON_VALUES, values)
    state = read_state(path, max_chars=chars, max_values=values)
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a checkpoint written by train (it holds a "
                        f"{type(state).__name__}, not a dictionary)")
    return state


def restore(state: dict, path, net, optimizer, scheduler, epochs: int,
            steps_per_epoch: int, method: str, snapshot_epochs: set[int],
            nu_after: Callable[[int], float]) -> tuple[int, list, list]:
    """Load ``state`` (from :func:`load_checkpoint`) into ``net``, ``optimizer`` and
    ``scheduler`` after checking all of it against this run (``snapshot_epochs``: the
    epochs train takes histogram snapshots after, 0 being before training; ``nu_after``:
    the schedule's ``nu`` after an epoch); returns ``(epoch, history, snapshots)``. Every
    tensor is used as a fresh copy (no shared or expanded storage, no autograd)."""
    try:
        epoch = state["epoch"]
        if type(epoch) is not int or not 1 <= epoch <= epochs:  # saved after an epoch
            raise _Mismatch(f"epoch {epoch!r} is not a whole number in 1..{epochs}")
        steps = epoch * steps_per_epoch
        _check_model(state["model"], net.state_dict())  # shapes first, then the copies
        model = _copied(state["model"])
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        learned_nu = {id(p) for name, p in net.named_parameters()
                      if name.endswith("nu_log_excess")}
        may_skip = {i for i, p in enumerate(parameters) if id(p) in learned_nu}
        sched = state["scheduler"]
        _check_like(sched, scheduler.state_dict(), "scheduler", exact=("base_lrs",
                                                                       "lr_lambdas"))
        if sched["last_epoch"] != steps:
            raise _Mismatch(f"the scheduler is at step {sched['last_epoch']}, not "
                            f"{steps} (epoch {epoch})")
        rates = [base * rule(steps) for base, rule in zip(scheduler.base_lrs,
                                                          scheduler.lr_lambdas)]
        _check_optimizer(state["optimizer"], optimizer.state_dict(), parameters, steps, rates,
                         may_skip)
        opt = _copied(state["optimizer"])
        lr_after = [base * rule(e * steps_per_epoch) for e in range(epoch + 1)
                    for base, rule in zip(scheduler.base_lrs[:1], scheduler.lr_lambdas[:1])]
        history = _checked_history(state["history"], epoch, method,
                                   len(net.binarizing_layers()), nu_after, lr_after,
                                   learnable=bool(may_skip))
        snapshots = _checked_snapshots(state["snapshots"], epoch, snapshot_epochs)
        net.load_state_dict(model)
        optimizer.load_state_dict(opt)
        scheduler.load_state_dict(sched)
    except KeyError as err:
        raise UserError(f"{path}: not a checkpoint of this training run (no {err})") from None
    except (_Mismatch, RuntimeError, TypeError, ValueError) as err:
        why = first_line(err, 300)
        raise UserError(f"{path}: not a checkpoint of this training run ({why})") from None
    return epoch, history, snapshots


def _copied(value, depth: int = 0):
    """``value`` with every tensor replaced by a contiguous copy of its own, detached; the
    dicts, lists and tuples around them rebuilt (at most 6 deep, as train writes them)."""
    if depth > 6:
        raise _Mismatch("its state is nested deeper than train writes it")
    if torch.is_tensor(value):
        return value.detach().clone(memory_format=torch.contiguous_format)
    if isinstance(value, dict):
        return {k: _copied(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v, depth + 1) for v in value)
    return value


def _check_model(model, fresh: dict) -> None:
    if not isinstance(model, dict) or set(model) != set(fresh):
        raise _Mismatch("its network's parameters are not this architecture's")
    for key, tensor in model.items():
        _check_tensor(tensor, fresh[key], f"network {key}")
        if key.endswith("running_var") and not bool((tensor >= 0).all()):
            raise _Mismatch(f"network {key} holds negative variances")
        if key.endswith("num_batches_tracked") and not bool((tensor >= 0).all()):
            raise _Mismatch(f"network {key} is negative")
        statistic = key.endswith(("running_mean", "running_var", "num_batches_tracked"))
        bound = (MAX_STATISTIC if statistic else MAX_LOG_SCALE if key.endswith("log_scale")
                 else MAX_PARAMETER)
        if tensor.is_floating_point() and tensor.numel() and float(tensor.abs().max()) > bound:
            raise _Mismatch(f"network {key} holds values beyond +-{bound:g}, which no "
                            f"training reaches (and the export could not keep)")


#: The largest magnitude a learned parameter (a latent weight, a batch norm's scale or shift,
#: the output bias) may have in a checkpoint: training keeps them near 1; an output bias of
#: 1e30 was accepted, and the export clipped it to int32 (a model that scored 34% where the
#: network it came from scored 8%).
MAX_PARAMETER = 1e6
#: ... a batch norm's running statistics (a raw 8-bit first layer's sums reach ~1e5, their
#: variance ~1e10), and the output's log scale (exp overflows float32 past ~88).
MAX_STATISTIC, MAX_LOG_SCALE = 1e15, 80.0


def _check_tensor(value, like: torch.Tensor, what: str, non_negative: bool = False) -> None:
    if not torch.is_tensor(value) or value.shape != like.shape or value.dtype != like.dtype:
        raise _Mismatch(f"{what} is not a {like.dtype} tensor of shape {list(like.shape)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise _Mismatch(f"{what} is not all finite")
    if non_negative and not bool((value >= 0).all()):
        raise _Mismatch(f"{what} holds negative values")


def _check_optimizer(opt, fresh: dict, parameters: list, steps: int, rates: list,
                     may_skip: set[int]) -> None:
    """Adam's state dict for ``parameters`` (in the optimizer's order) after ``steps``
    steps: the fresh one's hyperparameters, each group's learning rate the scheduler's at
    that step (``rates``), and for every parameter its step count and moments of its
    shape. The parameters in ``may_skip`` (learned ``nu``: no gradient reaches it once
    ``nu`` is infinite, in the hard phase, and Adam then skips it) may have taken fewer
    steps, or none (no state)."""
    _check_like(opt, fresh, "optimizer", skip=("state",), exact=("param_groups",),
                free=("lr",))
    groups = fresh["param_groups"]
    for group, rate in zip(opt["param_groups"], rates):
        if type(group["lr"]) is not float or not math.isclose(group["lr"], rate,
                                                               rel_tol=1e-9, abs_tol=1e-15):
            raise _Mismatch(f"optimizer learning rate {short_repr(group['lr'])} is not the "
                            f"schedule's {rate:.6g} at step {steps}")
    params = {index: None for group in groups for index in group["params"]}
    state = opt["state"]
    if not isinstance(state, dict) or not set(state) <= set(params) \
            or not set(params) - set(state) <= may_skip:
        raise _Mismatch("the optimizer's state is not for this network's parameters")
    for index, entry in state.items():
        if not isinstance(entry, dict) or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            raise _Mismatch(f"optimizer state {index} is not Adam's")
        _check_tensor(entry["step"], torch.zeros(()), f"optimizer step {index}",
                      non_negative=True)
        taken = float(entry["step"])
        if taken != steps and not (index in may_skip and 0 < taken < steps
                                   and taken == int(taken)):
            raise _Mismatch(f"optimizer step {index} is {short_repr(taken)}, not {steps}")
        like = parameters[index].detach()
        _check_tensor(entry["exp_avg"], like, f"optimizer exp_avg {index}")
        _check_tensor(entry["exp_avg_sq"], like, f"optimizer exp_avg_sq {index}",
                      non_negative=True)


def _check_like(value, fresh, what: str, skip=(), exact=(), free=()) -> None:
    """``value`` has ``fresh``'s structure: the same keys (dicts), lengths (lists and
    tuples) and types, finite numbers; keys in ``exact`` equal ``fresh``'s except for the
    ``free`` keys inside them; keys in ``skip`` are left to the caller."""
    if isinstance(fresh, dict):
        if not isinstance(value, dict) or set(value) != set(fresh):
            raise _Mismatch(f"{what} does not hold the entries {sorted(map(str, fresh))}")
        for key in fresh:
            if key in skip:
                continue
            inner = f"{what} {key}"
            if key in exact:
                _check_equal(value[key], fresh[key], inner, free)
            else:
                _check_like(value[key], fresh[key], inner)
    elif isinstance(fresh, (list, tuple)):
        if type(value) is not type(fresh) or len(value) != len(fresh):
            raise _Mismatch(f"{what} is not a {type(fresh).__name__} of {len(fresh)}")
        for item, like in zip(value, fresh):
            _check_like(item, like, what)
    elif type(value) is not type(fresh):
        raise _Mismatch(f"{what} is a {type(value).__name__}, not a {type(fresh).__name__}")
    elif isinstance(fresh, float) and not math.isfinite(value):
        raise _Mismatch(f"{what} is not finite")
    elif isinstance(fresh, int) and not isinstance(fresh, bool) and value < 0:
        raise _Mismatch(f"{what} is negative")


def _check_equal(value, fresh, what: str, free=()) -> None:
    """``value == fresh`` through dicts and lists (type by type), ``free`` keys excepted."""
    if isinstance(fresh, dict):
        if not isinstance(value, dict) or set(value) != set(fresh):
            raise _Mismatch(f"{what} is not this run's")
        for key in fresh:
            if key not in free:
                _check_equal(value[key], fresh[key], f"{what} {key}", free)
    elif isinstance(fresh, (list, tuple)):
        if type(value) is not type(fresh) or len(value) != len(fresh):
            raise _Mismatch(f"{what} is not this run's")
        for item, like in zip(value, fresh):
            _check_equal(item, like, what, free)
    elif type(value) is not type(fresh) or value != fresh:
        raise _Mismatch(f"{what} is {short_repr(value)}, this run's is {short_repr(fresh)}")


def short_repr(value, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (and "..."), for messages that quote
    what a checkpoint holds."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


_REQUIRED = ("epoch", "loss", "train_acc", "nu", "lr", "seconds", "test_acc")


#: Ranges of the numbers an epoch record holds (train writes nothing else there).
_FRACTIONS = ("train_acc", "test_acc", "hard_test_acc")
_PER_LAYER = {"frozen": 0, "alive": -1}  # fractions: one per binarizing layer, one fewer
_LISTS = (*_PER_LAYER, "nu_eff")  # the keys that hold lists; every other holds a number


def _checked_history(history, epoch: int, method: str, layers: int,
                     nu_after: Callable[[int], float], lr_after: list[float],
                     learnable: bool) -> list:
    """The epoch log: one record per completed epoch, each with the same keys (those the
    log and plots read included), numbers or lists of numbers of a fixed length;
    accuracies and the per-layer fractions (``layers`` binarizing layers) in [0, 1], the
    loss, the
    learning rate and the seconds finite and >= 0 (the loss at most 1e9), ``nu`` the
    schedule's after that epoch (``nu_after``), ``lr`` the first group's rate then
    (``lr_after[epoch]``); the keys exactly those train writes for ``method`` (with
    ``learnable``: the learned nu's too)."""
    if not isinstance(history, list) or len(history) != epoch:
        raise _Mismatch(f"its history is not a list of {epoch} epoch records")
    required = set(_REQUIRED) | ({"hard_test_acc"} if method != "float" else set()) \
        | ({"frozen", "alive"} if method == "sbn" else set()) \
        | ({"nu_eff", "nu_eff_mean"} if learnable else set())
    keys = lengths = None
    for number, record in enumerate(history, 1):
        if not isinstance(record, dict) or set(record) != required:
            raise _Mismatch(f"history record {number} does not hold exactly "
                            f"{sorted(required)}")
        if keys is None:
            keys = set(record)
            lengths = {k: len(v) for k, v in record.items() if k in _LISTS}
        if set(record) != keys or record["epoch"] != number or type(record["epoch"]) is not int:
            raise _Mismatch(f"history record {number} is not like the others")
        for key, value in record.items():
            if key in lengths:
                ok = (isinstance(value, list) and len(value) == lengths[key]
                      and all(_is_number(v) for v in value)
                      and (key not in _PER_LAYER
                           or (len(value) == layers + _PER_LAYER[key]
                               and all(0 <= v <= 1 for v in value))))
            elif key == "nu":
                expected = nu_after(number)
                ok = _is_number(value) and (value == expected or math.isclose(
                    value, expected, rel_tol=1e-9))
            elif key == "nu_eff_mean":  # infinite in the hard phase, as nu
                ok = _is_number(value) and value > 0
            elif key == "lr":
                ok = _is_number(value) and math.isclose(value, lr_after[number],
                                                        rel_tol=1e-9, abs_tol=1e-15)
            else:
                ok = _is_number(value) and math.isfinite(value) and (
                    0 <= value <= 1 if key in _FRACTIONS else
                    0 <= value <= 1e9 if key == "loss" else
                    value >= 0 if key in ("lr", "seconds") else True)
            if not ok:
                raise _Mismatch(f"history record {number}: {str(key)[:40]!r} is not a value "
                                f"train writes there")
    return list(history)


def _is_number(value) -> bool:
    """An int within +-2**63 or a float other than NaN (the numbers train records)."""
    if type(value) is int:
        return -(1 << 63) <= value < 1 << 63
    return type(value) is float and not math.isnan(value)


def _checked_snapshots(snapshots, epoch: int, snapshot_epochs: set[int]) -> list:
    """Histogram snapshots as :func:`train.diagnostics.histograms` makes them, after
    epochs of ``snapshot_epochs`` up to ``epoch``, in order: those of the runs that had
    ``--plots`` (none when no run had; a gap where a resumed run had not)."""
    if not isinstance(snapshots, list) or len(snapshots) > MAX_SNAPSHOTS:
        raise _Mismatch(f"its snapshots are not a list of at most {MAX_SNAPSHOTS}")
    taken = []
    for snap in snapshots:
        if not (isinstance(snap, dict) and set(snap) == {"epoch", "nu", "weights",
                                                          "activations"}
                and type(snap["epoch"]) is int and _is_number(snap["nu"]) and snap["nu"] > 0
                and all(_is_histogram(snap[k]) for k in ("weights", "activations"))):
            raise _Mismatch("a histogram snapshot is not one train wrote")
        taken.append(snap["epoch"])
    expected = sorted(e for e in snapshot_epochs | {0} if e <= epoch)
    if taken != sorted(set(taken)) or not set(taken) <= set(expected):
        raise _Mismatch(f"its histogram snapshots are of epochs {short_repr(taken)}, not of "
                        f"{expected}")
    return list(snapshots)


def _is_histogram(h) -> bool:
    if not (isinstance(h, dict) and set(h) == {"counts", "range"}):
        return False
    counts, span = h["counts"], h["range"]
    return (isinstance(counts, list) and len(counts) == MAX_BINS
            and all(_is_number(c) and 0 <= c <= 1 << 53 and c == int(c) for c in counts)
            and sum(counts) > 0
            and isinstance(span, list) and len(span) == 2
            and all(_is_number(v) and abs(v) <= MAX_HISTOGRAM_RANGE for v in span)
            and span[0] < span[1])
