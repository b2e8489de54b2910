"""Data-parallel training of a student in several processes, under accelerate.

`student.processes: N` makes `fit` start N worker processes on this machine (gloo on CPU;
with GPUs, NCCL and one GPU each). Every worker builds the same student from the same
pretrained weights and seed, and takes its share of each batch (rank r: examples r, r+N,
... of the batch); accelerate's DDP averages the gradients, each share's loss weighted by
its size, so a step is the one-process step on the whole batch. The workers see the same
weights after every step, so each makes the same epoch choices (held-out scores) without
talking; rank 0 alone writes the trained weights, which the run's process loads. Nothing
else happens in the workers: the store, MLflow and the saved student stay with the run's
process, which waits for them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fit_parallel(student_cls, cfg, labels: list[str], examples: list) -> dict:
    """The state dict of `student_cls(cfg, labels)` trained on `examples` by `cfg.processes` workers."""
    import torch
    import torch.multiprocessing as mp

    world = cfg.processes
    with tempfile.TemporaryDirectory(prefix="loop-train-") as tmp:
        out = Path(tmp) / "state.pt"
        # the section's class is made at run time (not picklable): the workers get its settings
        settings = SimpleNamespace(**{**dataclasses.asdict(cfg), "processes": 1})
        args = (world, free_port(), student_cls, settings, labels, examples, str(out))
        mp.start_processes(_worker, args=args, nprocs=world, start_method="spawn", join=True)
        return torch.load(out, weights_only=True)


def _worker(rank: int, world: int, port: int, student_cls, settings: SimpleNamespace, labels, examples,
            out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    import torch
    from accelerate import Accelerator

    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, (settings.threads or cores) // world))
    logging.basicConfig(level=logging.WARNING)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    settings.threads = 0
    student = student_cls(settings, labels)
    student.shard, student.wrap = (rank, world), acc.prepare_model
    student.fit(examples)
    if acc.is_main_process:
        torch.save({k: v.cpu() for k, v in student.model.state_dict().items()}, out)
    acc.wait_for_everyone()
    acc.end_training()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
