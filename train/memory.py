"""How much of a network's activations train holds at once, decided before anything runs.

Training keeps every activation of a batch for the backward pass: about
:data:`TRAIN_BYTES_PER_VALUE` bytes per activation value per image. Measured on CPU with
``python3 treepeak.py python -m train --arch cnn:c32 --epochs 1 --train-limit B
--test-limit 100 --batch-size B --out m.npz --no-progress --threads 1`` (peak RSS of the
process tree): B = 1000 peaked at 1048 MiB, B = 2000 at 1706 MiB, i.e. 0.66 MiB per image
of 25088 values, 27.5 bytes per value. :func:`check_training_fits` refuses a ``--batch-size`` whose batches would not fit in
:data:`MEMORY_FRACTION` of the machine's memory, with one line that says what would.

Evaluation (accuracy, the export's hard check, the diagnostics, the histograms) needs no
backward pass, so it goes in chunks sized by :func:`eval_chunk` to hold at most
:data:`EVAL_BYTES` (64 MiB) of inputs and activations, whatever the network and the
images: 1000 images (500 for the histograms) for the shipped MLPs, about 60 for the shipped
CNNs (round 21 of the fuzz: 128 1024x1024 images into ``mlp:1`` took 1678 MiB when the input
was not counted and chunks held 1 GiB; round 27: a 200-weight CNN evaluated on the test set
in chunks of 256 MiB peaked at 606 MiB for the process, 522 MiB at 64 MiB).
"""

from __future__ import annotations

import os

from hwgen.errors import UserError

TRAIN_BYTES_PER_VALUE = 32
EVAL_BYTES = 1 << 26
MEMORY_FRACTION = 0.8
_EVAL_BYTES_PER_VALUE = 24  # float64 in the hard evaluation: input, output and a sum


def activation_values(arch, input_shape) -> int:
    """Values one image takes in ``arch``: its input and every hidden layer's activation
    (the input counts: a large image with a tiny network is mostly input)."""
    return sum(c * h * w for c, h, w in arch.shapes(input_shape))


def eval_chunk(values: int, most: int = 1000) -> int:
    """Images per chunk (1..``most``) so that a chunk's activations take at most
    :data:`EVAL_BYTES` (``values``: per image, from :func:`activation_values`)."""
    return max(1, min(most, EVAL_BYTES // max(1, values * _EVAL_BYTES_PER_VALUE)))


def physical_memory() -> int | None:
    """Bytes of memory the machine has (None where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_training_fits(spec: str, values: int, batch_size: int, device: str) -> None:
    """UserError when training ``batch_size`` images at a time, each with ``values``
    activation values, needs more than :data:`MEMORY_FRACTION` of this machine's memory
    (checked for ``device`` "cpu"; a GPU reports its own out-of-memory error)."""
    memory = physical_memory()
    if device != "cpu" or not memory:
        return
    need = batch_size * values * TRAIN_BYTES_PER_VALUE
    if need > MEMORY_FRACTION * memory:
        fits = int(MEMORY_FRACTION * memory // (values * TRAIN_BYTES_PER_VALUE))
        short = spec if len(spec) <= 60 else spec[:57] + "..."
        advice = (f"use --batch-size {fits} or less" if fits >= 2
                  else "use a narrower architecture")
        raise UserError(f"--batch-size {batch_size} with {short!r} needs about "
                        f"{need / (1 << 30):.1f} GiB to train ({values} input and activation "
                        f"values per image, ~{TRAIN_BYTES_PER_VALUE} bytes each), more than "
                        f"{MEMORY_FRACTION:.0%} of this machine's "
                        f"{memory / (1 << 30):.1f} GiB: {advice}")
