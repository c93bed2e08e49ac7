"""``wsa_send`` knows its engine's loop is running here without asking asyncio (issue 11).

On Python 3.11 ``asyncio.get_running_loop()`` makes a ``getpid()`` syscall per call, so
``wsa_send`` first asks the socket's engine whether its loop runs in this thread
(``SendEngine.runs_here``: asyncio loops record their thread, uvloop's installs its own
async-generator hooks while it runs). These tests hold the rule that check must keep: a send
always goes to the engine of the loop that runs in the calling thread (SPEC S5, S5.10, S5.11),
never to the engine of a loop that stopped, or that runs in another thread, whatever the two
loops are; and when something else replaced uvloop's hooks the send still works (asyncio is
asked). Real sockets; every pair of loop kinds.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from typing import Any

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import read_exactly
from wsasend import _api, _engine, wsa_send

GUARD = 30.0
KINDS = sorted(LOOP_FACTORIES)


def _engine_loop(ov: wsasend.WSAOverlapped) -> Any:
    engine = ov._engine
    assert engine is not None
    return engine.loop


@pytest.mark.parametrize("first", KINDS)
@pytest.mark.parametrize("second", KINDS)
def test_after_a_loop_stops_the_next_loop_in_the_thread_gets_the_socket(first: str, second: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        loops = [LOOP_FACTORIES[first](), LOOP_FACTORIES[second]()]
        try:
            for i, loop in enumerate(loops):

                async def send(i: int = i) -> Any:
                    ov = wsa_send(a, [b"%d" % i])
                    assert await asyncio.wait_for(ov, GUARD) == 1
                    # Sent through the engine of the loop running now, not the stopped one's.
                    assert _engine_loop(ov) is asyncio.get_running_loop()
                    return ov

                loop.run_until_complete(send())
            assert b.recv(10) == b"01"
        finally:
            for loop in loops:
                loop.close()


@pytest.mark.parametrize("owner", KINDS)
@pytest.mark.parametrize("caller", KINDS)
def test_a_send_from_another_threads_loop_goes_to_that_loops_engine(owner: str, caller: str) -> None:
    """The socket's engine belongs to a loop that is running, in another thread: a send from
    this thread's loop is this loop's (S5.11 then orders the two engines), not the other's."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        other = LOOP_FACTORIES[owner]()
        ready = threading.Event()
        stop: list[asyncio.Future[None]] = []

        async def own() -> None:
            stop.append(asyncio.get_running_loop().create_future())
            assert await wsa_send(a, [b"a"]) == 1  # the engine is the other loop's now
            ready.set()
            await stop[0]

        thread = threading.Thread(target=other.run_until_complete, args=(own(),))
        thread.start()
        try:
            assert ready.wait(GUARD)
            here = LOOP_FACTORIES[caller]()
            try:

                async def send() -> None:
                    ov = wsa_send(a, [b"b", b"c"])
                    assert _engine_loop(ov) is asyncio.get_running_loop()
                    assert _engine_loop(ov) is not other
                    assert await asyncio.wait_for(ov, GUARD) == 2
                    assert await asyncio.wait_for(read_exactly(b, 3), GUARD) == b"abc"

                here.run_until_complete(send())
            finally:
                here.close()
        finally:
            if stop:
                other.call_soon_threadsafe(stop[0].set_result, None)
            thread.join(GUARD)
            other.close()
        assert not thread.is_alive()


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_asyncgen_hooks_only_make_it_ask_asyncio(kind: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        loop = LOOP_FACTORIES[kind]()

        async def main() -> None:
            assert await wsa_send(a, [b"1"]) == 1
            hooks = sys.get_asyncgen_hooks()
            sys.set_asyncgen_hooks(firstiter=lambda agen: None, finalizer=hooks.finalizer)
            try:
                for c in b"234":
                    ov = wsa_send(a, [bytes([c])])
                    assert _engine_loop(ov) is asyncio.get_running_loop()
                    assert await asyncio.wait_for(ov, GUARD) == 1
            finally:
                sys.set_asyncgen_hooks(*hooks)
            assert await asyncio.wait_for(read_exactly(b, 4), GUARD) == b"1234"

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()


@pytest.mark.skipif(wsasend.compiled, reason="compiled: _api's module constant cannot be replaced to count calls")
@pytest.mark.parametrize("kind", KINDS)
def test_sends_on_the_engines_own_loop_do_not_ask_asyncio(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the check (Python 3.11's getpid per get_running_loop): only the send that
    makes the engine asks asyncio for the running loop."""
    calls = []
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        calls.append(1)
        return real()

    monkeypatch.setattr(_api, "_get_running_loop", counting)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        loop = LOOP_FACTORIES[kind]()

        async def main() -> None:
            for i in range(20):
                await wsa_send(a, [bytes([65 + i])])
            assert await asyncio.wait_for(read_exactly(b, 20), GUARD) == bytes(range(65, 85))

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    assert len(calls) == 1


# -- the compiled build's C form of uvloop's check (Python 3.11) --------------------------------

FIRSTITER_SELF_IS = _engine._FIRSTITER_SELF_IS


@pytest.mark.skipif(FIRSTITER_SELF_IS is None, reason="compiled build on Python 3.11 only")
@pytest.mark.parametrize("kind", KINDS)
def test_the_c_check_answers_as_the_hooks_do(kind: str) -> None:
    """``firstiter_self_is(obj)`` is ``sys.get_asyncgen_hooks().firstiter.__self__ is obj``:
    True for the loop running here (both loops install their bound method), False for any other
    object, for a hook that is not a bound method, and where no loop runs."""
    assert FIRSTITER_SELF_IS is not None
    other = LOOP_FACTORIES[kind]()
    loop = LOOP_FACTORIES[kind]()
    seen: list[tuple[bool, bool, bool, bool]] = []

    async def main() -> None:
        running = asyncio.get_running_loop()
        hooks = sys.get_asyncgen_hooks()
        assert getattr(hooks.firstiter, "__self__", None) is running  # what the C check mirrors
        in_thread: list[bool] = []
        thread = threading.Thread(target=lambda: in_thread.append(FIRSTITER_SELF_IS(running)))
        thread.start()
        thread.join(GUARD)
        sys.set_asyncgen_hooks(firstiter=lambda agen: None, finalizer=hooks.finalizer)
        try:
            replaced = FIRSTITER_SELF_IS(running)
        finally:
            sys.set_asyncgen_hooks(*hooks)
        seen.append((FIRSTITER_SELF_IS(running), FIRSTITER_SELF_IS(other), in_thread == [False], replaced))

    try:
        loop.run_until_complete(main())
        after = FIRSTITER_SELF_IS(loop)
    finally:
        loop.close()
        other.close()
    assert seen == [(True, False, True, False)]
    assert after is False  # the loop stopped: its hooks are gone from this thread


@pytest.mark.parametrize("kind", KINDS)
def test_each_way_of_knowing_answers_for_its_loop(kind: str) -> None:
    """On 3.11, ``runs_here`` asks the thread's firstiter hook first (both loops install
    theirs), then, for an asyncio loop whose hook was replaced, the thread id it records; uvloop
    records none, so there it answers False (the caller asks asyncio). From 3.12 on it asks
    asyncio. Never True in another thread, or once the loop stopped."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        loop = LOOP_FACTORIES[kind]()
        seen: list[tuple[bool, bool, bool, bool]] = []

        async def main() -> _engine.SendEngine:
            ov = wsa_send(a, [b"1"])
            engine = ov._engine
            assert engine is not None
            assert await asyncio.wait_for(ov, GUARD) == 1
            before = engine.runs_here()
            in_thread: list[bool] = []
            thread = threading.Thread(target=lambda: in_thread.append(engine.runs_here()))
            thread.start()
            thread.join(GUARD)
            hooks = sys.get_asyncgen_hooks()
            sys.set_asyncgen_hooks(firstiter=lambda agen: None, finalizer=hooks.finalizer)
            try:
                replaced = engine.runs_here()
            finally:
                sys.set_asyncgen_hooks(*hooks)
            seen.append((before, in_thread == [False], replaced, engine.runs_here()))  # (last: restored)
            return engine

        try:
            engine = loop.run_until_complete(main())
            after = engine.runs_here()
        finally:
            loop.close()
        assert b.recv(10) == b"1"
    # (an asyncio loop keeps its thread id while it runs: still known with the hook replaced;
    # from 3.12 on asyncio itself is asked, which knows either loop)
    assert seen == [(True, True, kind == "asyncio" or _engine._RUNNING_LOOP_IS_CHEAP, True)]
    assert after is False
