"""Group commit: one writer thread per process writes the records of many requests in one transaction.

A request hands its records to ``GroupCommit.submit`` and waits on the future it gets back; the
writer takes everything queued (up to ``max_batch`` records) and writes it with one durable commit,
then answers every waiting request. Under one connection a batch is one request's records, so
nothing waits longer than before; under many, each commit (and its fsync) serves many requests.

A batch that fails is retried one request at a time, so only the requests whose own records
cannot be written fail (as when each request wrote its own transaction). A request cancelled while
it waits (the client went away) still has its records written: the trail does not depend on the
client staying connected.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("fhir_bridge.audit")
_STOP = object()


class GroupCommit(Generic[T]):
    """Batches of ``T`` handed to ``write`` (one transaction each) by a writer thread started on first use."""

    def __init__(self, write: Callable[[Sequence[T]], None], *, max_batch: int = 512, name: str = "group-commit"):
        self._write = write
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, items: Sequence[T]) -> Future[None]:
        """Queue one request's ``items`` (written together, in one transaction); done once they are durable."""
        future: Future[None] = Future()
        with self._lock:
            if self._stopped:  # after close (a late listener thread): write it here and now
                self._commit([(items, future)])
                return future
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put((items, future))
        return future

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            self._stopped = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[tuple[Sequence[T], Future[None]]] = [first]  # type: ignore[list-item]
            size = len(batch[0][0])
            while size < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
                size += len(batch[-1][0])
            self._commit(batch)

    def _commit(self, batch: list[tuple[Sequence[T], Future[None]]]) -> None:
        waiting = [future.set_running_or_notify_cancel() for _, future in batch]  # False: cancelled, still written
        try:
            self._write([item for items, _ in batch for item in items])
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0][1], waiting[0], error)
                return
            log.warning(
                "a batch of %d audit writes failed (%s): writing them one by one", len(batch), type(error).__name__
            )
            for (items, future), wanted in zip(batch, waiting, strict=True):
                try:
                    self._write(items)
                except Exception as single:
                    _settle(future, wanted, single)
                else:
                    _settle(future, wanted, None)
            return
        for (_, future), wanted in zip(batch, waiting, strict=True):
            _settle(future, wanted, None)


def _settle(future: Future[None], wanted: bool, error: BaseException | None) -> None:
    if not wanted:
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
