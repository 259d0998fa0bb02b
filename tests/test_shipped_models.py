"""Every shipped model file has its card, and the accuracy its card and provenance state is
what the bit-exact integer reference computes on the 10000 Fashion-MNIST test images."""

import re
import shlex
import sys
from pathlib import Path

import pytest

from hwgen import model as model_io
from hwgen.reference import Reference

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.name for p in (ROOT / "models").glob("*.npz"))
CARDS = (ROOT / "models" / "README.md").read_text()


def card(name: str) -> str:
    """The section of models/README.md whose heading names ``name``."""
    match = re.search(rf"^## `{re.escape(name)}`.*?(?=^## |\Z)", CARDS, re.M | re.S)
    assert match, f"models/README.md has no card for {name}"
    return match.group(0)


def test_every_model_is_shipped_with_a_card():
    headings = re.findall(r"^## `([^`]+\.npz)`", CARDS, re.M)
    assert sorted(headings) == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_shipped_accuracy_is_the_references(name, fashion_mnist_dir):
    from hwgen.datasets import load_dataset

    model = model_io.load(ROOT / "models" / name)
    images, labels = load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir)
    assert len(labels) == 10000
    accuracy = float((Reference(model).predict(images) == labels).mean())
    assert model.provenance["test_accuracy"] == accuracy
    text = card(name)
    stated = re.search(r"^\| accuracy \| \*\*(0\.\d{4})\*\*", text, re.M)
    assert stated and float(stated.group(1)) == pytest.approx(accuracy, abs=5e-5)
    method = re.search(r"^\| method \| `(sbn|ste)`", text, re.M)
    assert method and method.group(1) == model.provenance["method"]



def _card_command(name: str) -> list[str] | None:
    """The ``python -m train`` arguments of ``name``'s card, or None (an imported model)."""
    block = re.search(r"^```sh\n(.*?)^```", card(name), re.M | re.S)
    command = re.search(r"python -m train (.*)", block.group(1).replace("\\\n", " ")
                        if block else "")
    return shlex.split(command.group(1)) if command else None


@pytest.mark.parametrize("name", MODELS)
def test_card_command_trains_what_the_file_records(name):
    """Under today's defaults the card's command means the settings the file was trained
    with (a changed default must be spelled out in the cards of files trained before it)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.sweep_rows import RECORDED, trained_lr
    from train.cli import config_from_argv

    argv = _card_command(name)
    prov = model_io.load(ROOT / "models" / name).provenance
    command = prov.get("command", "")
    if argv is None:
        assert not command.startswith("python -m train"), "the card lacks its command"
        return
    cfg = config_from_argv(argv, check_paths=False)
    ran = config_from_argv(shlex.split(command)[3:], check_paths=False)
    for key in ("dataset", "arch", "method", "epochs", "seed", "shift", "flip",
                "binarize_at", "batch_size", "weight_decay", "nu_learnable", "init_bound"):
        assert getattr(cfg, key) == getattr(ran, key), key
    for key in RECORDED:
        if key in prov:
            assert getattr(cfg, key) == prov[key], key
    assert cfg.lr == trained_lr(prov, command, ran)
