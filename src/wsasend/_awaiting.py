"""The generators behind ``await overlapped`` and ``await event.wait_async()`` (SPEC S5.3, S5.9).

This module stays plain Python when the package is compiled (SPEC S10): a mypyc-compiled
generator that delegates with ``yield from`` to an asyncio future re-raises the future's
exception through the three-argument ``throw()``, which Python 3.12+ deprecates (a
DeprecationWarning on every failed ``await ov``, an error under ``-W error``). The compiled
``WSAOverlapped.__await__`` and ``WSAEvent.wait_async`` only decide what to wait for, and
hand these generators the future.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from typing import Any, Protocol

__all__ = ["event_wait", "failed", "finished", "on_other_loop", "on_own_loop"]


class _Cancellable(Protocol):
    @property
    def pending(self) -> bool: ...

    def cancel(self) -> bool: ...


class _Discarding(Protocol):
    def discard(self, fut: asyncio.Future[int]) -> None: ...


def finished(transferred: int) -> Generator[Any, None, int]:
    """``await`` of a send that is already complete: its byte count, without suspending."""
    return transferred
    yield  # pragma: no cover - makes this a generator


def failed(exc: BaseException) -> Generator[Any, None, int]:
    """``await`` of a send that already failed: raises its WSAError, without suspending."""
    raise exc
    yield  # pragma: no cover - makes this a generator


def on_own_loop(ov: _Cancellable, fut: asyncio.Future[int]) -> Generator[Any, None, int]:
    """``await`` of a pending send on its engine's own loop."""
    try:
        return (yield from fut)
    except asyncio.CancelledError:
        # S5.7: a send none of whose bytes went out is withdrawn; a started one finishes.
        if ov.pending:
            ov.cancel()
        raise


def on_other_loop(
    fut: asyncio.Future[int], waiters: _Discarding, timer: list[asyncio.TimerHandle]
) -> Generator[Any, None, int]:
    """``await`` of a pending send from a loop other than its engine's (issue 10 item 16)."""
    try:
        return (yield from fut)
    finally:
        timer[0].cancel()
        # Done or cancelled, it leaves the list: polling with a time-out must not grow it.
        # (A cancelled await does not withdraw the send: the queue belongs to the other
        # loop's thread. Call ``loop.call_soon_threadsafe(ov.cancel)`` for that.)
        waiters.discard(fut)


async def event_wait(event: Any, watch_closed: Callable[..., None], poll: float) -> bool:
    """``WSAEvent.wait_async()``: wait on the running loop, without blocking it, until
    ``event`` is set (SPEC S5.9). ``watch_closed``/``poll``: ``_overlapped``'s watch of the
    loop of the event's latest send, when that is another loop (S5.12)."""
    flag: threading.Event = event._flag
    if flag.is_set():
        return True
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bool] = loop.create_future()
    lock: threading.Lock = event._lock
    waiters: dict[asyncio.Future[bool], asyncio.AbstractEventLoop] = event._async_waiters
    with lock:
        if flag.is_set():
            return True
        waiters[fut] = loop
    # The event's send belongs to another loop: watch that loop's end.
    source = event._source
    engine = source._engine if source is not None and source._pending else None
    timer: list[asyncio.TimerHandle] = []
    if engine is not None and engine.loop is not loop:
        timer.append(loop.call_later(poll, watch_closed, loop, None, event, timer))
    try:
        return await fut
    finally:
        if timer:
            timer[0].cancel()
        # Cancelled (wait_for timed out...): fut is done then, cancelled by its task, and
        # must leave the list, or polling with a time-out grows it without bound (issue 10
        # item 14). A woken one was taken by set() already.
        if fut.cancelled() or not fut.done():
            with lock:
                waiters.pop(fut, None)
