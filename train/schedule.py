"""The sharpness schedule ``nu(t)`` of self-binarizing training.

``t`` is the training progress in [0, 1] (optimizer steps done / total steps). The ramp
runs from ``nu_start`` at ``t = 0`` to ``nu_end`` at ``t = ramp`` and stays at ``nu_end``
after it, so the last ``1 - ramp`` of training fine-tunes the (practically) hard network.

- ``exp`` (default): ``nu = nu_start * (nu_end / nu_start) ** (t / ramp)``: a constant
  *relative* sharpening per step. tanh(nu*x) changes shape on a log scale of nu (it is
  linear-ish while ``nu*|x| < 1`` and saturated once ``nu*|x| > 9``), so equal ratios give
  every decade of nu equal training time; a linear ramp would spend almost all its steps
  at large nu where gradients have already vanished.
- ``linear``: ``nu_start + (nu_end - nu_start) * t / ramp``.
- ``const``: ``nu_end`` throughout.

``hard`` (``--hard-phase``): the last ``hard`` fraction of training, ``progress >= 1 -
hard``, runs at ``nu = inf``: the forward is exactly ``sign`` (weights and activations),
the network that is exported, so its batch-norm statistics and the last weight updates are
those of the hard network. ``hard = 0`` (the paper's schedule) has no hard phase.
"""

from __future__ import annotations

import math

SCHEDULES = ("exp", "linear", "const")


def nu_at(progress: float, schedule: str = "exp", nu_start: float = 1.0,
          nu_end: float = 1000.0, ramp: float = 0.8, hard: float = 0.0) -> float:
    """``nu`` at training progress ``progress`` in [0, 1] (values outside are clamped);
    ``math.inf`` in the hard phase."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if hard > 0 and progress >= 1 - hard:
        return math.inf
    if schedule == "const":
        return float(nu_end)
    t = min(1.0, max(0.0, progress / ramp if ramp > 0 else 1.0))
    if schedule == "exp":
        ratio = nu_end / nu_start
        if math.isfinite(ratio):
            return float(nu_start * ratio ** t)
        # the ratio overflows (1e-305 .. 1e6: nu was inf from the first step): in logarithms
        low, high = math.log(nu_start), math.log(nu_end)
        return float(math.exp(low + (high - low) * t)) if t < 1 else float(nu_end)
    return float(nu_start + (nu_end - nu_start) * t)
