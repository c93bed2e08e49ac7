"""Test fixtures: every async test runs on the default asyncio loop AND on uvloop.

The loop factories below are pytest-asyncio's ``pytest_asyncio_loop_factories`` hook, so each
``async def test_...`` is collected twice, ``[asyncio]`` and ``[uvloop]``. Every loop they make
records calls of its exception handler; the autouse ``no_loop_errors`` fixture fails any test
during which the handler fired, unless the test took the records through ``loop_errors``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Exception-handler calls seen by the loops of the current test, and whether the test took them.
_HANDLER_CALLS: list[dict[str, Any]] = []
_TAKEN = [False]


def _record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    _HANDLER_CALLS.append(context)


def _asyncio_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_record)
    return loop


def _uvloop_loop() -> asyncio.AbstractEventLoop:
    loop = uvloop.new_event_loop()
    loop.set_exception_handler(_record)
    return loop


LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": _asyncio_loop,
    "uvloop": _uvloop_loop,
}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    return LOOP_FACTORIES


@pytest.fixture
def loop_errors() -> list[dict[str, Any]]:
    """The exception-handler calls of this test; taking it allows them (the test checks them)."""
    _TAKEN[0] = True
    return _HANDLER_CALLS


@pytest.fixture(autouse=True)
def no_loop_errors() -> Iterator[None]:
    _HANDLER_CALLS.clear()
    _TAKEN[0] = False
    yield
    calls = list(_HANDLER_CALLS)
    _HANDLER_CALLS.clear()
    if calls and not _TAKEN[0]:
        pytest.fail(f"the loop's exception handler fired: {calls!r}")
