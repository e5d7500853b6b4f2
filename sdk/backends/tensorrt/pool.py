"""A pool of execution slots lent to one thread at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from segrt.errors import InputError, SegrtError


class PoolClosedError(SegrtError, RuntimeError):
    """The backend that owns the pool was closed; nothing can run on it any more."""


def _close(slot: Any) -> None:
    if slot is not None and hasattr(slot, "close"):
        slot.close()


class ContextPool:
    """At most ``size`` slots (execution context + stream + buffers), created lazily, each lent to one thread.

    ``acquire`` returns an idle slot, creates one while fewer than ``size`` exist, or waits
    until one is released. A creation failure gives its place back and wakes a waiting
    thread, which then tries the creation itself.

    ``close`` is final: idle slots are freed at once, slots lent to running threads are
    freed when those threads release them (their calls complete normally), threads waiting
    in ``acquire`` and every later ``acquire`` raise ``PoolClosedError``.
    """

    def __init__(self, factory: Callable[[], Any], size: int = 1, name: str = "the backend") -> None:
        if int(size) < 1:
            raise InputError(f"contexts must be >= 1, got {size}", "pass contexts=1 (or more for concurrent threads)")
        self._factory = factory
        self.size = int(size)
        self.name = name
        self._cond = threading.Condition()
        self._idle: list[Any] = []  # LIFO: the most recently used slot has warm caches
        self._lent: list[Any] = []
        self._count = 0  # slots existing or being created
        self.closed = False

    @property
    def created(self) -> list[Any]:
        """The slots that exist now (idle and lent)."""
        with self._cond:
            return [*self._idle, *self._lent]

    def _closed_error(self) -> PoolClosedError:
        return PoolClosedError(f"{self.name} was closed", "open the model again (segrt.load(path)) to keep running it")

    def acquire(self) -> Any:
        with self._cond:
            while True:
                if self.closed:
                    raise self._closed_error()
                if self._idle:
                    slot = self._idle.pop()
                    self._lent.append(slot)
                    return slot
                if self._count < self.size:
                    self._count += 1  # reserve the place; create outside the lock (it is slow)
                    break
                self._cond.wait()
        try:
            slot = self._factory()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()  # a waiting thread may now create the slot itself
            raise
        with self._cond:
            if self.closed:
                self._count -= 1
                closed = True
            else:
                self._lent.append(slot)
                closed = False
        if closed:
            _close(slot)
            raise self._closed_error()
        return slot

    def release(self, slot: Any) -> None:
        with self._cond:
            self._lent.remove(slot)
            if self.closed:
                self._count -= 1
            else:
                self._idle.append(slot)
                self._cond.notify()
                return
        _close(slot)  # closed while this thread was running: free it now that nobody uses it

    def close(self) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for slot in idle:
            _close(slot)
