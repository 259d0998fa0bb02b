"""The trainer's per-epoch log line, as tools read it back.

:func:`train.loop.train` logs one line per epoch, ``epoch E/N loss ... (S.Ss)``, ending in
the epoch's wall-clock seconds. Tools that run ``python -m train`` and read its output
(``tools/train_sweep.py``, ``benchmarks/sweep_rows.py``) parse it here, without importing
torch.
"""

from __future__ import annotations

import re

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) .*\(([\d.]+)s\)\s*$")


def epoch_seconds(text: str) -> list[float]:
    """The seconds of each epoch line in a training log's ``text``, in order."""
    return [float(m.group(3)) for m in map(EPOCH_LINE.match, text.splitlines()) if m]
