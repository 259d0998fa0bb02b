"""The process group of a ``torchrun`` run: who this process is (:func:`world_and_rank`,
:func:`is_main_process`) and joining the group (:func:`init_distributed`: gloo on CPU,
nccl on CUDA), interruptibly. A single process (``WORLD_SIZE`` unset, 0 or 1) is rank 0 of
a group of one and joins nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hwgen.environment import environment_integer
from hwgen.errors import UserError, first_line

MAX_PROCESSES = 4096  # of a torchrun group


@dataclass
class Dist:
    """This process's place in the group: ``rank`` of ``world``, ``local_rank`` on its
    machine (its CUDA device)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_and_rank() -> tuple[int, int | None]:
    """``(WORLD_SIZE, RANK)`` as torchrun sets them; RANK is read only for a group
    (``WORLD_SIZE > 1``; 0 otherwise, whatever it says), None when a group lacks it."""
    world = environment_integer("WORLD_SIZE", 1, 0, MAX_PROCESSES)
    if world <= 1:
        return world, 0
    return world, environment_integer("RANK", None, 0, world - 1)


def is_main_process() -> bool:
    """Whether this process writes the run's outputs: a single process (``WORLD_SIZE``
    unset, 0 or 1, whatever ``RANK`` says), or rank 0 of a ``torchrun`` group. UserError
    for values :func:`init_distributed` would refuse."""
    return world_and_rank()[1] == 0


def init_distributed(device: str) -> Dist:
    """One process of a ``torchrun`` group (``WORLD_SIZE > 1``; RANK, LOCAL_RANK,
    MASTER_ADDR and MASTER_PORT as torchrun sets them); a single process otherwise."""
    world, rank = world_and_rank()
    if world <= 1:
        return Dist()
    local_rank = environment_integer("LOCAL_RANK", 0, 0, world - 1)
    port = environment_integer("MASTER_PORT", None, 1, 65535)  # 0 can never be joined
    if rank is None or port is None or not os.environ.get("MASTER_ADDR"):
        raise UserError(f"environment WORLD_SIZE={world} asks for a process group, which also "
                        f"needs RANK, MASTER_ADDR and MASTER_PORT: start it with torchrun")
    _check_master_address(os.environ["MASTER_ADDR"], port)
    import torch.distributed as dist
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            _join_interruptibly(dist, backend)
        except (RuntimeError, ValueError) as err:  # torch's DistError is a RuntimeError
            why = first_line(err)
            raise UserError(f"cannot join the process group ({why})") from None
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def _join_interruptibly(dist, backend: str) -> None:
    """``dist.init_process_group(backend)`` in a daemon thread while the main thread waits
    in short slices: the rendezvous blocks in C++ (retrying for up to 30 minutes), where no
    Python signal handler runs, so Ctrl-C and SIGTERM went unanswered until it gave up."""
    import threading

    failure: list[BaseException] = []

    def join():
        try:
            dist.init_process_group(backend=backend)
        except BaseException as err:  # handed to the main thread
            failure.append(err)

    worker = threading.Thread(target=join, name="process-group-join", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if failure:
        raise failure[0]


def _check_master_address(host: str, port: int) -> None:
    """UserError unless ``MASTER_ADDR`` names an address: the rendezvous retries a name
    that does not resolve for up to 30 minutes, as if the other ranks were late."""
    import socket

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as err:
        why = getattr(err, "strerror", None) or type(err).__name__
        raise UserError(f"environment MASTER_ADDR={host[:100]!r} names no address ({why})") \
            from None
