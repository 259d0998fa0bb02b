"""PNG plots of a training run (matplotlib, Agg backend; imported only with ``--plots``).

- ``curves.png``: loss, train/test accuracy (soft and hard) per epoch; for sbn also nu (the
  hard phase shaded) and the per-layer fractions of frozen weights and alive activations
  (``train/diagnostics.py``).
- ``histograms.png``: forward weights and hidden activations at several epochs of the
  sharpening (the paper's figure): they move from a bell shape to the two spikes at +-1.
"""

from __future__ import annotations

import math
from pathlib import Path

from hwgen.outputs import staged_file

#: The files a plots folder receives (whatever else is there is left alone).
PLOT_FILES = ("curves.png", "histograms.png")


def _save(fig, path: Path) -> None:
    """``fig`` as the PNG ``path``, through a staging name (the permissions a new file gets)."""
    with staged_file(path) as staging:
        fig.savefig(staging, dpi=110, format="png")


def write_plots(folder, history: list[dict], snapshots: list[dict], method: str) -> list[str]:
    """Write the PNGs into ``folder`` (created); returns their paths. Matplotlib's warnings
    (a log axis with nothing positive, a tick overflow) are not the user's to read."""
    import warnings

    import numpy as np

    from hwgen.errors import UserError

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return _write_plots(folder, history, snapshots, method)
        except OSError:
            raise
        except Exception as err:  # matplotlib's own failures (a font it cannot size, memory)
            raise UserError(f"cannot draw the plots ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:120] if str(err) else 'no detail'})"
                            ) from None


def _write_plots(folder, history: list[dict], snapshots: list[dict], method: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    # The plots look as designed whatever a matplotlibrc says (an empty colour cycle, a
    # 100000-point font or dpi ended runs in tracebacks after training)
    matplotlib.rcdefaults()
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    epochs = [h["epoch"] for h in history]
    sbn = method == "sbn"
    diagnostics = sbn and any("frozen" in h for h in history)
    panels = 2 + sbn + diagnostics
    fig, axes = plt.subplots(1, panels, figsize=(4.7 * panels, 4))
    axes[0].plot(epochs, [h["loss"] for h in history])
    axes[0].set_title("training loss")
    axes[1].plot(epochs, [100 * h["train_acc"] for h in history], label="train (soft)")
    axes[1].plot(epochs, [100 * h["test_acc"] for h in history], label="test (soft)")
    if any("hard_test_acc" in h for h in history):
        axes[1].plot(epochs, [100 * h.get("hard_test_acc", float("nan")) for h in history],
                     label="test (hard, exported)")
    axes[1].set_title("accuracy (%)")
    axes[1].legend()
    if sbn:  # nu means nothing for ste and float
        finite = [(e, h["nu"]) for e, h in zip(epochs, history) if math.isfinite(h["nu"])]
        axes[2].semilogy([e for e, _ in finite], [n for _, n in finite], marker=".")
        hard = [e for e, h in zip(epochs, history) if not math.isfinite(h["nu"])]
        if hard:
            axes[2].axvspan(min(hard) - 0.5, max(hard) + 0.5, color="0.85",
                            label="hard phase (sign)")
            axes[2].legend()
        axes[2].set_title("nu (end of epoch)")
    if diagnostics:
        ax = axes[3]
        rows = [h for h in history if "frozen" in h]
        for i in range(len(rows[0]["frozen"])):
            ax.plot([h["epoch"] for h in rows], [100 * h["frozen"][i] for h in rows],
                    label=f"frozen weights, layer {i + 1}")
        for i in range(len(rows[0]["alive"])):
            ax.plot([h["epoch"] for h in rows], [100 * h["alive"][i] for h in rows], "--",
                    label=f"alive activations, layer {i + 1}")
        ax.set_title("frozen: nu|w/s| > 9; alive: |nu y| < 2 (%)")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle(f"method {method}")
    fig.tight_layout()
    _save(fig, folder / "curves.png")
    plt.close(fig)
    written.append(str(folder / "curves.png"))

    if snapshots:
        fig, axes = plt.subplots(2, len(snapshots), figsize=(3 * len(snapshots), 5),
                                 squeeze=False)
        for col, snap in enumerate(snapshots):
            for row, key in enumerate(("weights", "activations")):
                h = snap[key]
                counts = h["counts"]
                a, b = h["range"]
                width = (b - a) / len(counts)
                centers = [a + (i + 0.5) * width for i in range(len(counts))]
                ax = axes[row][col]
                ax.bar(centers, counts, width=width)
                ax.set_yscale("log")
                sharpness = f"\nnu {snap['nu']:.3g}" if sbn else ""
                ax.set_title(f"{key}, epoch {snap['epoch']}{sharpness}", fontsize=8)
        fig.tight_layout()
        _save(fig, folder / "histograms.png")
        plt.close(fig)
        written.append(str(folder / "histograms.png"))
    return written
