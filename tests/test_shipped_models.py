"""Every shipped model file has its card, and the accuracy its card and provenance state is
what the bit-exact integer reference computes on the 10000 Fashion-MNIST test images."""

import re
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
