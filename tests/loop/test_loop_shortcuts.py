"""A new engine's loop-wide state is its own loop's: the batch tick and the loop-end watch.

Each new engine (each connection a server accepts) looked its loop up in two weak-keyed maps:
the loop's batch tick (``_engine._TICKS``) and whether the loop's end is watched
(``_api._WATCHED``). Both lookups are Python code, so the engine remembers the last loop's tick
(``_engine._LastTick``) and the tick records whether its loop is watched (``watched``; issue
11, workload HC). These tests hold what the shortcuts must never do: give an engine another
loop's tick, or skip the watch of a loop never watched, with loops made one after another (a
dead loop's memory reused by the next) and with two loops in two threads making engines at the
same time. Real sockets, both loops.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading

import pytest

from tests.conftest import LOOP_FACTORIES
from tests.helpers import read_exactly
from wsasend import _api, _engine, closesocket, wsa_send
from wsasend._api import find_engine

GUARD = 30.0
KINDS = sorted(LOOP_FACTORIES)


def _check_engine_of(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
    engine = find_engine(sock)
    assert engine is not None and engine.loop is loop
    assert engine._tick is _engine._TICKS.get(loop)
    assert engine._tick.loopref() is loop
    assert loop in _api._WATCHED and engine._tick.watched


async def _send_on_new_sockets(count: int, tag: bytes) -> None:
    loop = asyncio.get_running_loop()
    for i in range(count):
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            data = tag + i.to_bytes(4, "big")
            assert await asyncio.wait_for(wsa_send(a, [data]), GUARD) == len(data)
            _check_engine_of(a, loop)
            assert await asyncio.wait_for(read_exactly(b, len(data)), GUARD) == data
            await asyncio.sleep(0)  # (the other thread's loop makes its engines meanwhile)
        finally:
            closesocket(a)
            b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_loops_one_after_another_each_get_their_own_tick(kind: str) -> None:
    for round_ in range(6):
        loop = LOOP_FACTORIES[kind]()
        try:
            loop.run_until_complete(_send_on_new_sockets(3, b"r%d" % round_))
        finally:
            loop.close()
        del loop
        gc.collect()
    # (Not asserted: whether a new loop took a dead one's address. When it did, the test above
    # checked that its engines still got a tick of their own.)


@pytest.mark.parametrize("kinds", [(a, b) for a in KINDS for b in KINDS])
def test_two_loops_in_two_threads_make_engines_at_once(kinds: tuple[str, str]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(kind: str, tag: bytes) -> None:
        loop = LOOP_FACTORIES[kind]()
        try:
            start.wait(GUARD)
            loop.run_until_complete(_send_on_new_sockets(60, tag))
        except BaseException as exc:  # (reported by the main thread)
            errors.append(exc)
        finally:
            loop.close()

    threads = [threading.Thread(target=run, args=(kind, b"t%d" % n)) for n, kind in enumerate(kinds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD * 4)
        assert not t.is_alive()
    assert not errors, errors
