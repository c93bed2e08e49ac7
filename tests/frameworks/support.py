"""Running a test's coroutine on wsasend's loop (S9.1), with the loop's exception handler checked."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import wsasend

T = TypeVar("T")
BASES = ["asyncio", "uvloop"]


def run_checked(main: Coroutine[Any, Any, T], base: str) -> T:
    """``wsasend.run(main, base=base)``, failing if the loop's exception handler fired."""
    reports: list[dict[str, Any]] = []

    async def checked() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reports.append(context))
        return await main

    result = wsasend.run(checked(), base=base)  # type: ignore[arg-type]
    assert not reports, f"the loop's exception handler fired: {reports!r}"
    return result
