"""Training data: a dataset split as uint8 tensors, deterministic shuffling and augmentation.

Images stay uint8 ``[K, C, H, W]`` until a batch is taken; the network converts them.
Randomness comes from a ``torch.Generator`` seeded by ``(seed, epoch)``, so an epoch's
order and augmentation are the same whether the run was resumed or not, and each DDP
rank takes its own slice ``perm[rank::world]`` of the same permutation.
"""

from __future__ import annotations

import numpy as np
import torch

from hwgen.datasets import DATASETS, DatasetError, load_dataset
from hwgen.model import InputSpec
from hwgen.reference import check_images


def load_split(dataset: str, split: str, data_dir=None, limit: int | None = None):
    """``(images uint8 tensor [K, C, H, W], labels int64 tensor [K], class names)``;
    DatasetError, before any training, unless every image has at least one pixel and
    every pixel is an integer in ``[0, 255]``."""
    images, labels = load_dataset(dataset, split, data_dir, limit)
    what = f"dataset {dataset} ({split})"
    if images.size == 0:
        raise DatasetError(f"{what}: the images are {'x'.join(map(str, images.shape[1:]))}, "
                           f"with no pixels")
    try:   # the check every reader of model inputs makes, for 8-bit pixels
        check_images(InputSpec(tuple(images.shape[1:]), 8), images)
    except DatasetError as err:
        raise DatasetError(f"{what}: {err}") from None
    images = images.astype(np.uint8, copy=False)
    return (torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(labels), list(DATASETS[dataset].classes))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def epoch_batches(n: int, batch_size: int, gen: torch.Generator, rank: int = 0,
                  world: int = 1) -> list[torch.Tensor]:
    """Index batches for one epoch on one rank (incomplete last batches are dropped)."""
    perm = torch.randperm(n, generator=gen)
    per_rank = n // world
    mine = perm[rank::world][:per_rank]
    local = batch_size // world
    return [mine[i:i + local] for i in range(0, per_rank - local + 1, local)]


def augment(images: torch.Tensor, gen: torch.Generator, flip: bool, shift: int) -> torch.Tensor:
    """Random horizontal flip (p = 1/2) and random translation by up to ``shift`` pixels
    (filled with 0) of a uint8 batch ``[B, C, H, W]``; returns a new tensor."""
    out = images.clone()
    b = images.shape[0]
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        out[mask] = out[mask].flip(-1)
    if shift > 0:
        h, w = images.shape[-2:]
        padded = torch.nn.functional.pad(out, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        for y in range(2 * shift + 1):
            for x in range(2 * shift + 1):
                sel = (dy == y) & (dx == x)
                if sel.any():
                    out[sel] = padded[sel, :, y:y + h, x:x + w]
    return out
