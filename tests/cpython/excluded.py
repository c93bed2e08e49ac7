"""CPython asyncio tests that do not run on wsasend's loop, each with its reason (SPEC S9.1).

Only tests that patch or inspect asyncio's private internals belong here (a private transport
class, ``_SelectorSocketTransport`` attributes, mocks of ``BaseEventLoop`` internals): they test
asyncio's implementation, not the loop API. Keys are unittest ids; a key names one test on the
Python versions that have it.
"""

from __future__ import annotations

#: test id -> why it cannot pass on any loop but asyncio's own selector transports.
EXCLUDED: dict[str, str] = {}

#: test id -> why it fails today, to be fixed (kept honest: the runner's test fails when one passes).
EXPECTED_FAILURES: dict[str, str] = {}


def excluded_here() -> dict[str, str]:
    return dict(EXCLUDED)
