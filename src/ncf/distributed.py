"""Data-parallel training on torch.distributed: who this process is, and how it was launched.

A training stage with `train.processes: 1` runs as one plain process (`World()`). With more, the
stage re-executes itself under `torchrun` (`relaunch`), which starts that many copies; each one
calls `start()` to join the process group and find its rank and device. Training then wraps the
model in DistributedDataParallel, gives every rank its own shard of the positives and its own
negatives, and lets one rank, the writer, validate and write (see train.py and stage.py).

Several machines: run the same stage command under `torchrun --nnodes N ...` on each of them
(or set `NCF_TORCHRUN` to the torchrun options, which `relaunch` then uses instead of
`--standalone --nproc-per-node=<processes>`); `train.processes` must equal the total number of
processes, so that the params alone say how a model was trained. The writer is the lowest rank
on the node whose stage DVC started (DVC puts DVC_STAGE in its environment), so the outputs land
in the checkout DVC reads whatever rank torchrun gives that node: with the c10d rendezvous,
ranks follow host names, not `--node-rank`.
"""

from __future__ import annotations

import os
import shlex
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

from ncf.errors import ParamsError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    writer: int = 0  # the rank that validates, logs and writes (see `writer_rank`)

    @property
    def main(self) -> bool:
        """The writer validates, logs and writes; the others only train."""
        return self.rank == self.writer

    def sum(self, values: list[float], device) -> list[float]:
        """Element-wise sum of `values` over all ranks (the values themselves with one process)."""
        if self.size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def from_main(self, values: list[float], device) -> list[float]:
        """The writer's `values`, on every rank."""
        if self.size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, src=self.writer)
        return t.tolist()


def writer_rank(rank: int, size: int, device) -> int:
    """The lowest rank among the processes that DVC started (DVC_STAGE in their environment),
    or 0 where none or all were (one machine, or a stage run by hand). A collective: every rank
    calls it."""
    mine = rank if os.environ.get("DVC_STAGE") else size
    t = torch.tensor([mine], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    found = int(t.item())
    return found if found < size else 0


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def relaunch(processes: int, argv: list[str] | None = None):
    """Replace this process by torchrun running the same script with the same arguments."""
    argv = list(sys.argv if argv is None else argv)
    options = shlex.split(os.environ.get("NCF_TORCHRUN", "")) or \
        ["--standalone", f"--nproc-per-node={processes}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *options, *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def backend_for(name: str, device: torch.device) -> str:
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise ParamsError("train.backend: nccl needs CUDA GPUs; use gloo (or auto) to train on CPU")
    return name


@contextmanager
def start(processes: int, backend: str, batch_size: int, device: torch.device):
    """Join the process group when launched by torchrun; yield (World, this rank's device).

    With `processes` 1 and no launcher this is a no-op. Under a launcher, the number of processes
    it started must equal `processes`, and the global batch must split evenly between them.
    """
    if processes == 1 and not launched():
        yield World(), device
        return
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size != processes:
        raise ParamsError(f"train.processes is {processes} but torchrun started {size} processes; "
                          f"set train.processes: {size}")
    if batch_size % processes:
        raise ParamsError(f"train.batch_size {batch_size} does not split evenly over "
                          f"train.processes {processes}; use a multiple of {processes}")
    world = World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    name = backend_for(backend, device)
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(name)
    try:
        world = replace(world, writer=writer_rank(world.rank, world.size, device))
        yield world, device
    finally:
        dist.destroy_process_group()
