"""Where a search runs: on the event loop, or on a worker thread.

On SQLite a search never waits for a lock (WAL readers do not) and costs about a millisecond; handed
to a worker thread it cost twice that under 16 clients, in GIL hand-offs between the thread and the
event loop (each SQLite call releases the GIL and the loop takes it). So the type search runs on the
loop. A search that is slow there would hold up every other request for as long as it runs, which
the thread pool's time slicing does not; so the searches of a *shape* (the type and the parameter
names, not their values) that ran slowly on the loop twice run on the thread pool from then on. On
PostgreSQL every search is a network round trip and stays on the thread pool.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

R = TypeVar("R")
SLOW_ON_THE_LOOP_S = 0.02  # a search that held the loop this long delayed every request waiting behind it
SLOW_RUNS = 2  # slow runs before a shape leaves the loop: the first run of a shape may only be cold
REMEMBERED_SHAPES = 1024


class SearchPlacement:
    """The shapes of searches seen to be slow on the event loop (bounded, least recently seen dropped)."""

    def __init__(self, *, on_the_loop: bool) -> None:
        self.on_the_loop = on_the_loop  # the store's reads never wait (SQLite)
        self._slow_runs: OrderedDict[tuple[str, tuple[str, ...]], int] = OrderedDict()

    @staticmethod
    def shape(resource_type: str, parameters: Sequence[tuple[str, str]]) -> tuple[str, tuple[str, ...]]:
        return resource_type, tuple(sorted(name for name, _ in parameters))

    def runs_on_the_loop(self, shape: tuple[str, tuple[str, ...]]) -> bool:
        return self.on_the_loop and self._slow_runs.get(shape, 0) < SLOW_RUNS

    def ran(self, shape: tuple[str, tuple[str, ...]], seconds: float) -> None:
        """Note how long a search of ``shape`` held the loop."""
        if seconds < SLOW_ON_THE_LOOP_S:
            return
        self._slow_runs[shape] = self._slow_runs.get(shape, 0) + 1
        self._slow_runs.move_to_end(shape)
        while len(self._slow_runs) > REMEMBERED_SHAPES:
            self._slow_runs.popitem(last=False)

    async def run(
        self,
        search: Callable[[str, list[tuple[str, str]]], R],
        resource_type: str,
        parameters: list[tuple[str, str]],
    ) -> R:
        """``search(resource_type, parameters)`` where it costs least."""
        shape = self.shape(resource_type, parameters)
        if not self.runs_on_the_loop(shape):
            return await run_in_threadpool(search, resource_type, parameters)
        started = time.perf_counter()
        try:
            return search(resource_type, parameters)
        finally:
            self.ran(shape, time.perf_counter() - started)
