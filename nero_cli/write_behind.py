"""A sink's writing on a background thread, while the sweep runs the model on the next chunk.

:class:`WriteBehind` wraps a sink (:class:`nero_cli.stream.RunStream`): ``begin`` runs at once,
every ``add`` is queued and run by one writer thread in the order it was given (so the files
are the same bytes as when written inline), at most :data:`DEPTH` chunks behind; ``close``
waits for the queue to drain. Formatting the CSV rows, the running sums and the spill are
Python and numpy work that the model's forward pass (which releases the GIL in its kernels)
no longer waits for; on a GPU the whole of it overlaps the device's work. The sweep uses it on a
CUDA device only (:func:`nero_cli.core.evaluate`): on the CPU the writer contends with the sweep
for the GIL and costs more CPU time than it hides.

An error in the writer thread is raised again in the sweep's thread at its next ``add`` or at
``close``; :meth:`abort` (the sweep failed or was interrupted) stops the writer and waits for it,
so nothing writes into a run folder after the sweep has given up on it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

#: Chunks at most waiting for the writer (each holds one chunk's columns).
DEPTH = 2


class WriteBehind:
    """``sink``'s ``add`` calls, in order, on one background thread (see the module docstring)."""

    def __init__(self, sink: Any, depth: int = DEPTH):
        self.sink = sink
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, layout: Any) -> None:
        self.sink.begin(layout)
        self._thread = threading.Thread(target=self._work, name="nero-writer", daemon=True)
        self._thread.start()

    def add(self, *args: Any) -> None:
        self._check()
        self._queue.put(args)

    def close(self) -> None:
        """Wait until every queued chunk is written; raise the writer's error, if any."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._check()

    def abort(self) -> None:
        """Stop writing (what is queued is dropped) and wait for the writer thread to end."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # make room for the end marker, so a writer blocked on get() wakes up
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                try:
                    self._queue.put_nowait(None)
                except queue.Full:
                    pass
                self._thread.join(timeout=0.05)
            self._thread = None

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            if self._error is not None:
                continue  # keep draining, so the sweep's thread never blocks on a full queue
            try:
                self.sink.add(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the sweep's thread
                self._error = exc


__all__ = ["WriteBehind", "DEPTH"]
