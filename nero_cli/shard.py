"""Spreading a sweep over processes: ``--shard i/n`` with ``nero merge``, and ``torchrun``.

Samples are split into contiguous blocks along the *whole run's* chunks of samples, and every
shard evaluates its chunks with the whole run's chunk size. Each forward pass therefore sees
exactly the batch it would see in a single process, and the rows of every shard (a shard's
spill, or another rank's rows sent to rank 0 a chunk at a time) are folded into one stream in
the single-process order, so the merged results are identical to a single-process run, bit for bit.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .core import chunk_sizes
from .errors import OptionError
from .spill import SpillReader


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` with ``0 <= i < n``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise OptionError(f"--shard expects i/n, e.g. 0/4 (shards are numbered from 0); got '{text}'") from None
    if n < 1 or not 0 <= i < n:
        raise OptionError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def chunk_samples(n_samples: int, batch_size: int, max_samples: int | None = None) -> int:
    """Samples per chunk of the whole run (as :func:`nero_cli.core.chunk_sizes` chooses them)."""
    return chunk_sizes(n_samples, 1, batch_size, max_samples)[0]


def shard_positions(n_samples: int, batch_size: int, i: int, n: int, max_samples: int | None = None) -> np.ndarray:
    """Positions of shard ``i`` of ``n``: a contiguous block of whole chunks."""
    per = chunk_samples(n_samples, batch_size, max_samples)
    starts = np.arange(0, n_samples, per)
    if len(starts) < n:
        raise OptionError(f"{n} shards but only {len(starts)} chunk(s) of {per} samples; use fewer shards or a smaller "
                          "--batch-size")
    mine = np.array_split(starts, n)[i]
    stop = min(n_samples, int(mine[-1]) + per)
    return np.arange(int(mine[0]), stop)


def distributed() -> tuple[int, int] | None:
    """``(rank, world size)`` when started by ``torchrun`` with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("NERO_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def send_rows(reader: SpillReader, dst: int = 0, size: int = 1024) -> None:
    """torchrun, ranks above 0: every row of this rank's spill to rank ``dst``, block by block,
    ``size`` samples per message, then an end marker."""
    for b in sorted(reader.blocks):
        for samples, labels, cols in reader.chunks(b, size):
            dist.send_object_list([(b, samples, labels, cols)], dst=dst)
    dist.send_object_list([None], dst=dst)


def receive_rows(stream: Any, world: int) -> None:
    """torchrun, rank 0: the rows of ranks 1 .. world-1, in rank order, added to ``stream`` (each
    block's rows then follow rank 0's own, in the single-process order)."""
    for rank in range(1, world):
        while True:
            box: list[Any] = [None]
            dist.recv_object_list(box, src=rank)
            if box[0] is None:
                break
            stream.add(*box[0])


def finish_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
