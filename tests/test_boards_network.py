"""The board top around a real generated network (hwgen.gateware), compiled with Verilator and
driven through the UART by the host client: classes equal the integer reference's.

Skipped while the generator is not importable (it is developed alongside)."""

import numpy as np
import pytest

from boards.host import Client

pytestmark = pytest.mark.sim  # simulator regressions: all run in make sim


def _network_transport(model, lanes, backend="verilator"):
    try:
        from hwgen.fold import plan
        from hwgen.gateware.network import Network  # noqa: F401
        from sim.toolchain import find_verilator
        find_verilator()
    except Exception as e:  # noqa: BLE001 - generator or Verilator not usable here
        pytest.skip(f"generator or Verilator unavailable: {e}")
    from boards.host import network_sim_transport
    return network_sim_transport(plan(model, None, lanes), backend=backend, rx_fifo_depth=64)


def test_amaranth_backend_small_network():
    from hwgen.random_models import dense, random_images, random_model
    from hwgen.reference import Reference
    rng = np.random.default_rng(9)
    model = random_model(rng, (1, 2, 3), [dense(5)], classes=3, bits=4, binarize_at=None)
    images = random_images(rng, model.input, 3)
    with _network_transport(model, lanes=2, backend="amaranth") as link:
        got = Client(link, bits=model.input.bits).classify(images)
    assert got == [int(c) for c in Reference(model).predict(images)]


@pytest.mark.parametrize("binarize_at", [None, pytest.param(100, marks=pytest.mark.slow)])
def test_random_network_through_uart(binarize_at):
    from hwgen.random_models import dense, random_images, random_model
    from hwgen.reference import Reference
    rng = np.random.default_rng(7 if binarize_at is None else 8)
    model = random_model(rng, (1, 6, 5), [dense(12), dense(7)], classes=6, bits=8,
                         binarize_at=binarize_at)
    images = random_images(rng, model.input, 40)
    with _network_transport(model, lanes=3) as link:
        client = Client(link, bits=model.input.bits, window=3)
        got = client.classify(images)
    assert got == [int(c) for c in Reference(model).predict(images)]
    assert client.stats.retries == 0


@pytest.mark.slow
def test_shipped_model_on_real_images_through_uart(fashion_mnist_dir):
    """The shipped iCE40UP5K model, 200 Fashion-MNIST test images, through the simulated
    UART board top: 100% agreement with the reference (~30 s build, ~10 s run)."""
    from pathlib import Path

    from hwgen import model as model_io
    from hwgen.datasets import load_dataset
    from hwgen.reference import Reference
    path = Path(__file__).resolve().parents[1] / "models" / "fmnist-mlp-up5k.npz"
    if not path.exists():
        pytest.skip("shipped model not present")
    model = model_io.load(path)
    images, _ = load_dataset("fashion-mnist", data_dir=fashion_mnist_dir, limit=200)
    with _network_transport(model, lanes=None) as link:
        got = Client(link, bits=model.input.bits).classify(images)
    assert got == [int(c) for c in Reference(model).predict(images)]
