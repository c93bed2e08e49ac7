"""Tell when a loop's ``shutdown_asyncgens`` runs: the loop is ending (SPEC S5.12).

This module stays plain Python when the package is compiled: mypyc cannot compile async
generators, and the hook below needs a real one (the loop's ``firstiter`` hook only sees those).
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import AsyncGenerator, Callable

__all__ = ["watch"]


async def _watcher(
    loopref: weakref.ReferenceType[asyncio.AbstractEventLoop], on_end: Callable[[asyncio.AbstractEventLoop], object]
) -> AsyncGenerator[None, None]:
    """Yields once, then waits for the loop's ``shutdown_asyncgens`` to close it."""
    try:
        yield
    finally:
        loop = loopref()
        if loop is not None:
            on_end(loop)


def _no_finalizer(agen: AsyncGenerator[None, None]) -> None:
    """Asyncgen finalizer of the watchers: one dropped with its loop has nothing to do."""


def watch(
    loop: asyncio.AbstractEventLoop, on_end: Callable[[asyncio.AbstractEventLoop], object]
) -> AsyncGenerator[None, None] | None:
    """Have ``loop``'s ``shutdown_asyncgens`` call ``on_end(loop)``; return the watcher to keep.

    Call it in the loop's thread while the loop runs (its asyncgen hooks are installed only
    then); None otherwise. asyncio.run, asyncio.Runner and uvloop.run call
    ``loop.shutdown_asyncgens()`` before they close the loop; it closes every async generator
    first iterated on the loop (the loop's ``firstiter`` hook records them, weakly: the caller
    keeps the watcher alive). The watcher's finalizer is a no-op of ours, not the loop's, so a
    watcher dropped with its loop schedules nothing on a closed loop; it holds the loop only
    weakly.
    """
    try:
        if asyncio.get_running_loop() is not loop:
            return None
    except RuntimeError:
        return None
    hooks = sys.get_asyncgen_hooks()
    if hooks.firstiter is None:
        return None
    agen = _watcher(weakref.ref(loop), on_end)
    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=_no_finalizer)
    try:
        agen.asend(None).send(None)
    except StopIteration:
        pass
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=hooks.finalizer)
    return agen
