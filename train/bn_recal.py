"""Batch-norm recalibration of the hard network before export (``--bn-recal N``).

The exported thresholds fold each batch norm's *running* statistics. Those were averaged
over training steps whose weights kept moving (and, for sbn, whose forward was a soft
tanh), so they can lag the final binary network. :func:`recalibrate_bn` re-estimates them
on the final network with hard binarization (``sign`` weights and activations: ``nu =
inf`` for sbn, the STE forward for ste): every batch norm is reset and accumulates a plain
average (``momentum=None``) over ``N`` training batches, in a fixed order that depends only
on the seed. Parameters are not touched; only ``running_mean``/``running_var`` change.
"""

from __future__ import annotations

import torch
from torch import nn

from .data import epoch_batches, epoch_generator
from .layers import HARD
from .net import Net


@torch.no_grad()
def recalibrate_bn(net: Net, train_x: torch.Tensor, batches: int, batch_size: int,
                   seed: int, device: str) -> int:
    """Re-estimate every batch norm's running statistics on ``batches`` training batches of
    ``batch_size`` (fewer if the set is smaller); returns the number of images used."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    used = 0
    try:
        order = epoch_batches(train_x.shape[0], batch_size, epoch_generator(seed, 0))
        for index in order[:batches]:
            net(train_x[index].to(device), HARD)
            used += len(index)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        net.eval()
    return used
