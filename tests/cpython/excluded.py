"""CPython asyncio tests that do not pass on wsasend's loop, each with its reason (SPEC S9.1).

Measured on 3.11.7, 3.12.1 and 3.13.0 with the modules of :data:`MODULES`: every test that
passes on the stock loop passes on wsasend's, except those below. Keys are unittest ids; an id
a Python version does not have is simply not there.
"""

from __future__ import annotations

#: The CPython test modules the runner runs: the connection, stream, TLS and sendfile parts of
#: asyncio's contract (about 25 s on a quiet machine). test_events brings the TCP/Unix parts.
MODULES = (
    "test_streams",
    "test_server",
    "test_sslproto",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_ssl",
    "test_events",
)

_LOOPS = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")

#: Tests that patch or call asyncio's private internals: they test asyncio's implementation,
#: not the loop API, and cannot pass on any other implementation. Skipped by the runner.
EXCLUDED: dict[str, str] = {
    **{
        f"test.test_asyncio.test_events.{cls}.test_create_server_multiple_hosts_{fam}": (
            "mocks asyncio.base_events.socket and loop._start_serving/_stop_serving: with our"
            " server the real bind of 5.6.7.8 / ::2 happens"
        )
        for cls in _LOOPS
        for fam in ("ipv4", "ipv6")
    },
    **{
        f"test.test_asyncio.test_server.TestServer2.test_wait_closed_{name}": (
            "calls asyncio.Server's private _attach()/_detach() with 3.12's signature (no"
            " transport); WSAServer's take the transport, as 3.13's do"
        )
        for name in ("basic", "race")
    },
}


def excluded_here() -> dict[str, str]:
    """The tests the runner skips on wsasend's loop."""
    return dict(EXCLUDED)
