"""Chunks of samples on the model's device, the next one loaded while the current one runs.

On a CUDA device :class:`ChunkLoader` reads the next chunk's samples on a background thread
(decoding, when the data is read lazily), copies them into pinned (page-locked) host memory and
starts their copy to the device on a side CUDA stream, recording an event; when the sweep asks
for that chunk, the compute stream waits on the event (no host synchronisation) and the tensor
is marked as used by the compute stream, so its memory is not reused before the work on it
ends. The sweep's copy of a chunk then overlaps the model's work on the previous one.

On the CPU a chunk is the samples themselves (:mod:`nero_cli.sources` already reads the next
chunk of a lazily read source ahead on its own thread): :meth:`ChunkLoader.prefetch` does nothing.

Either way a chunk holds the same values as ``inputs[s0 : s0 + size].to(device)``.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


class ChunkLoader:
    """``inputs[s0 : s0 + size]`` on ``device``; :meth:`prefetch` starts loading a chunk ahead."""

    def __init__(self, inputs: Any, size: int, device: torch.device):
        self.inputs, self.size, self.device = inputs, size, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._ahead: tuple[int, Future] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stream: Any = None
        self.prefetched = 0  # chunks served from a load started ahead (for tests and benchmarks)

    def get(self, s0: int) -> torch.Tensor:
        """The chunk starting at ``s0``, ready for the compute stream."""
        if self._ahead is not None and self._ahead[0] == s0:
            x, event = self._ahead[1].result()
            self._ahead = None
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            x.record_stream(current)
            self.prefetched += 1
            return x
        self._drop()
        return self.inputs[s0 : s0 + self.size].to(self.device)

    def prefetch(self, s0: int) -> None:
        """Start loading the chunk at ``s0`` (CUDA only; a chunk past the end is ignored)."""
        if not self.cuda or s0 >= len(self.inputs):
            return
        self._drop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nero-prefetch")
            self._stream = torch.cuda.Stream(self.device)
        self._ahead = (s0, self._pool.submit(self._load, s0))

    def _load(self, s0: int) -> tuple[torch.Tensor, Any]:
        host = self.inputs[s0 : s0 + self.size]
        host = host if host.is_pinned() else host.pin_memory()
        with torch.cuda.stream(self._stream):
            x = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
        # the pinned host buffer must outlive the copy: wait for it on this thread, not the sweep's
        event.synchronize()
        return x, event

    def _drop(self) -> None:
        if self._ahead is not None:
            self._ahead[1].result()  # a load in flight finishes before its buffers are let go
            self._ahead = None

    def close(self) -> None:
        self._drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


__all__ = ["ChunkLoader"]
