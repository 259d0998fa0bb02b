"""Run :mod:`sim.cocotb_stream` on a generated core with cocotb's runner and Verilator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .toolchain import find_verilator
from .vectors import pack_beats


def run_cocotb(verilog: Path, interface: dict, images: np.ndarray, expected: np.ndarray,
               workdir: Path, seed: int = 0, valid_percent: int = 100,
               ready_percent: int = 100, weights=None) -> np.ndarray:
    """Build ``verilog`` with Verilator under ``workdir`` and stream ``images`` through it
    (after ``weights``, :func:`hwgen.fold.spram.spram_words`, for a core with a weight
    stream).

    Returns the classes the core produced (also when the cocotb test failed: the caller
    compares them with ``expected`` and diagnoses). Raises RuntimeError when the
    simulation produced no result file at all.
    """
    from cocotb_tools.runner import get_runner

    verilator = find_verilator()
    os.environ.update({k: v for k, v in verilator.env.items()
                       if k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")})
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    i = interface["input"]
    vectors = workdir / "vectors.npz"
    np.savez(vectors, beats=pack_beats(images, i["lanes"], i["bits"],
                                       i.get("order", "CHW")),
             expected=np.asarray(expected, dtype=np.int64), interface=json.dumps(interface),
             seed=seed, valid_percent=valid_percent, ready_percent=ready_percent,
             weights=np.asarray([] if weights is None else weights, dtype=np.uint16))
    got = workdir / "got.npy"
    got.unlink(missing_ok=True)
    runner = get_runner("verilator")
    runner.build(sources=[verilog], hdl_toplevel=interface["module"],
                 build_dir=workdir / "build",
                 build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style",
                             "--x-assign", "fast", "--x-initial", "fast"])
    runner.test(test_module="sim.cocotb_stream", hdl_toplevel=interface["module"],
                build_dir=workdir / "build", test_dir=workdir,
                extra_env={"SBN_VECTORS": str(vectors),
                           "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if not got.is_file():
        raise RuntimeError(f"cocotb produced no results (see {workdir})")
    return np.load(got)
