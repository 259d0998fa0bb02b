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
