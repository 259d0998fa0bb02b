import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "spec" / "conformance"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def require(path: Path, why: str) -> Path:
    """Skip when an optional external file is absent, except in CI, where it must be there."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI ({why})")
        pytest.skip(f"{path} not present ({why})")
    return path


@pytest.fixture
def conformance_dir() -> Path:
    return require(CONFORMANCE, "the shared conformance suite")


@pytest.fixture
def fashion_mnist_dir() -> Path:
    return require(FASHION_MNIST, "Debian's dataset-fashion-mnist")


@pytest.fixture
def iverilog() -> str:
    """Icarus Verilog (Debian's iverilog): skipped where absent, required in CI."""
    import shutil

    path = shutil.which("iverilog")
    return str(require(Path(path) if path else Path("/usr/bin/iverilog"), "Debian's iverilog"))


def _require_module(module: str):
    """Skip without an optional package, except in CI, where it must be installed."""
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing in CI (pip install -e '.[import,dev]')")
        pytest.skip(f"{module} not installed (the .[import] extra)")


@pytest.fixture(scope="session")
def bm():
    """tests/brevitas_models.py, once onnx, onnxruntime, qonnx and brevitas are there."""
    import logging

    for name in ("onnx", "onnxruntime", "qonnx", "brevitas"):
        _require_module(name)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    from . import brevitas_models

    return brevitas_models
