"""Group commit: one writer thread per process writes the records of many requests in one transaction.

A request hands its records to ``GroupCommit.submit`` and waits on the future it gets back; the
writer takes everything queued (up to ``max_batch`` records) and writes it with one durable commit,
then answers every waiting request. Under one connection a batch is one request's records, so
nothing waits longer than before; under many, each commit (and its fsync) serves many requests.

Where commits cost CPU rather than waiting (SQLite in WAL mode does not sync at commit), the
writer keeps up with one request at a time and batches stay at one record. So, like PostgreSQL's
``commit_delay``/``commit_siblings``, a request can announce its records (``expect``) when it
starts: while requests that announced records have not handed them over, the writer waits for
them (at most ``delay`` seconds) before it commits, and under many clients one commit serves many.
With one client nothing is announced beyond the batch in hand, and nothing waits.

Where a commit never waits (SQLite in WAL mode: no sync at commit, and a write lock that is free
unless another process holds it), handing each record to the writer thread and back cost more CPU
than the commit itself (GIL hand-offs under many clients). ``LoopCommit`` commits on the event loop
instead, with the same rule for batching: the records of requests answered in the same turn of the
loop, or within ``delay`` while announced records are on their way, go in one commit. A batch it
cannot write at once (another process holds the lock, the head moved, an error) goes to the writer
thread, which waits for the lock and writes it as before.

A batch that fails is retried one request at a time, so only the requests whose own records
cannot be written fail (as when each request wrote its own transaction). A request cancelled while
it waits (the client went away) still has its records written: the trail does not depend on the
client staying connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("fhir_bridge.audit")
_STOP = object()
_WAKE = object()  # a withdrawn announcement: the writer looks again at what it waits for


class GroupCommit(Generic[T]):
    """Batches of ``T`` handed to ``write`` (one transaction each) by a writer thread started on first use."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], None],
        *,
        max_batch: int = 512,
        delay: float = 0.002,
        name: str = "group-commit",
    ):
        self._write = write
        self._max_batch = max_batch
        self._delay = delay
        self._name = name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._expected = 0  # requests that announced records and have not submitted them yet

    def expect(self) -> None:
        """Announce that this request will ``submit`` (with ``announced=True``) or ``withdraw``."""
        with self._lock:
            self._expected += 1

    def withdraw(self, *, wake: bool = True) -> None:
        """An announced request that will not submit after all (the writer stops waiting for it).
        ``wake=False``: its records went another way (``LoopCommit``), the writer need not look again."""
        with self._lock:
            self._expected -= 1
            if wake and self._thread is not None:
                self._queue.put(_WAKE)

    @property
    def expected(self) -> int:
        """Requests that announced records and have neither submitted nor withdrawn them."""
        return self._expected

    def submit(self, items: Sequence[T], *, announced: bool = False) -> Future[None]:
        """Queue one request's ``items`` (written together, in one transaction); done once they are durable."""
        future: Future[None] = Future()
        with self._lock:
            if announced:
                self._expected -= 1
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
            if first is _WAKE:
                continue
            batch: list[tuple[Sequence[T], Future[None]]] = [first]  # type: ignore[list-item]
            size = len(batch[0][0])
            deadline = time.monotonic() + self._delay
            while size < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if self._expected <= 0 or wait <= 0:
                        break
                    try:  # announced records are on their way: take them into this commit
                        item = self._queue.get(timeout=wait)
                    except queue.Empty:
                        break
                if item is _STOP:
                    stopping = True
                    break
                if item is _WAKE:
                    continue
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


@dataclass
class _Turn(Generic[T]):
    """The records waiting on one event loop for its next commit, and what each request waits on."""

    waiting: list[tuple[Sequence[T], asyncio.Future[Future[None] | None]]] = field(default_factory=list)
    flush: asyncio.Handle | asyncio.TimerHandle | None = None


class LoopCommit(Generic[T]):
    """Group commit on the event loop: ``write_now`` commits a batch at once or answers False (it
    would have to wait), and then ``fallback``'s writer thread writes it. Shares ``fallback``'s count
    of announced requests. One turn per running loop (a test's client runs its own)."""

    def __init__(
        self, write_now: Callable[[Sequence[T]], bool], fallback: GroupCommit[T], *, delay: float = 0.002
    ) -> None:
        self._write_now = write_now
        self._fallback = fallback
        self._delay = delay
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turn[T]] = weakref.WeakKeyDictionary()

    async def submit(self, items: Sequence[T], *, announced: bool = False) -> None:
        """Return once ``items`` are committed (one transaction); raises what kept them from it."""
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = _Turn()
        if announced:
            self._fallback.withdraw(wake=False)
        settled: asyncio.Future[Future[None] | None] = loop.create_future()
        turn.waiting.append((items, settled))
        if self._fallback.expected <= 0:  # no announced record is on its way: commit in this turn
            if turn.flush is None or isinstance(turn.flush, asyncio.TimerHandle):
                if turn.flush is not None:
                    turn.flush.cancel()
                turn.flush = loop.call_soon(self._flush, turn)
        elif turn.flush is None:  # wait (at most ``delay``) for them
            turn.flush = loop.call_later(self._delay, self._flush, turn)
        # Cancelled (the client went away), the request stops waiting, but its records stay in the turn
        # and are written all the same: the turn settles only the futures still awaited.
        handed = await settled
        if handed is not None:
            await asyncio.wrap_future(handed)

    def _flush(self, turn: _Turn[T]) -> None:
        waiting, turn.waiting, turn.flush = turn.waiting, [], None
        if not waiting:
            return
        try:
            written = self._write_now([item for items, _ in waiting for item in items])
        except Exception as error:  # the writer thread tries again, one request at a time
            log.debug("a batch of audit writes on the event loop failed (%s): handed over", type(error).__name__)
            written = False
        for items, settled in waiting:
            handed = None if written else self._fallback.submit(items)
            if not settled.done():
                settled.set_result(handed)

    def close(self) -> None:
        """Hand what waits for a turn that will not come (its loop stopped) to the writer thread."""
        for turn in list(self._turns.values()):
            waiting, turn.waiting = turn.waiting, []
            for items, settled in waiting:
                handed = self._fallback.submit(items)
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for it any more
                    settled.get_loop().call_soon_threadsafe(_hand_over, settled, handed)


def _hand_over(settled: asyncio.Future[Future[None] | None], handed: Future[None]) -> None:
    if not settled.done():
        settled.set_result(handed)


def _settle(future: Future[None], wanted: bool, error: BaseException | None) -> None:
    if not wanted:
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
