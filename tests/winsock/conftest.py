"""Fixtures for the facade's tests (SPEC S8).

``provider`` runs a test twice, with the provider thread's loop an asyncio loop and a uvloop
one, both recording exception-handler calls (the suite's autouse guard then fails the test if
the provider's loop reported one). ``started`` is one plain ``WSAStartup`` for the async tests,
which already run on both loops. Both undo every startup afterwards and check the provider
thread is gone, so no test inherits another's state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.conftest import LOOP_FACTORIES
from wsasend import winsock


def _provider_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wsasend-provider"]


def _reset() -> None:
    while winsock.WSACleanup() == 0:
        pass
    assert winsock.WSAGetLastError() == winsock.WSANOTINITIALISED
    # Routines a test left queued in this (the main) thread must not run in the next test.
    state = winsock._state()
    state.apcs.clear()
    state.last_error = 0
    for thread in _provider_threads():
        thread.join(10.0)
    assert not _provider_threads(), "the provider thread outlived the last WSACleanup"


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def provider(request: pytest.FixtureRequest) -> Iterator[str]:
    """WSAStartup with the provider on an asyncio loop, then on a uvloop one (S8.1's public choice)."""
    _reset()
    winsock.WSAStartup(0x0202, loop=LOOP_FACTORIES[request.param])
    try:
        yield request.param
    finally:
        _reset()


@pytest.fixture
def started() -> Iterator[None]:
    """One WSAStartup with the default provider (uvloop when installed)."""
    _reset()
    winsock.WSAStartup(0x0202)
    try:
        yield
    finally:
        _reset()


@pytest.fixture
def not_started() -> Iterator[None]:
    _reset()
    yield
    _reset()
