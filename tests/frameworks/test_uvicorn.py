"""uvicorn (an ASGI server), unchanged, on wsasend's loop (SPEC S9.1), driven by httpx.

Two ways in, both on each base loop: a ``uvicorn.Server`` served inside wsasend's running loop
(``wsasend.run``), and uvicorn running its own loop from ``Config(loop="wsasend:new_event_loop")``
(what ``uvicorn --loop wsasend:new_event_loop`` does). Responses are checked byte for byte, and
every connection uvicorn holds is a WSATransport (as is httpx's, on our loop).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn

import wsasend
from tests.frameworks.support import BASES, run_checked
from tests.helpers import pattern

GUARD = 60.0
CHUNKS = [pattern(n, i) for i, n in enumerate([1, 999, 65_536, 400_000, 7])]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_app(seen: list[Any], servers: list[uvicorn.Server]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        # The connections uvicorn holds right now (this request's among them).
        seen.extend(proto.transport for proto in servers[0].server_state.connections)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/echo":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")],
                }
            )
            await send({"type": "http.response.body", "body": body[::-1]})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def config(app: Any, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False, **kw)


def bound_port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


@pytest.mark.parametrize("base", BASES)
def test_uvicorn_server_inside_wsasend_loop(base: str) -> None:
    seen: list[Any] = []
    servers: list[uvicorn.Server] = []

    async def main() -> None:
        server = uvicorn.Server(config(make_app(seen, servers)))
        servers.append(server)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        port = bound_port(server)
        payload = pattern(2 << 20, 5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=GUARD) as client:
            resp = await client.post("/echo", content=payload)
            assert resp.status_code == 200 and resp.content == payload[::-1]
            resp = await client.get("/stream")
            assert resp.content == b"".join(CHUNKS)
        server.should_exit = True
        await asyncio.wait_for(task, GUARD)

    run_checked(main(), base)
    assert len(seen) >= 2
    assert all(isinstance(t, wsasend.WSATransport) for t in seen), seen


@pytest.mark.parametrize("factory", ["wsasend:new_event_loop", "wsasend:new_uvloop_event_loop"])
def test_uvicorn_runs_its_own_wsasend_loop(factory: str) -> None:
    """``uvicorn --loop wsasend:new_event_loop``: uvicorn makes the loop with our factory."""
    seen: list[Any] = []
    servers: list[uvicorn.Server] = []
    server = uvicorn.Server(config(make_app(seen, servers), loop=factory))
    servers.append(server)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + GUARD
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{bound_port(server)}", timeout=GUARD) as client:
            resp = client.post("/echo", content=b"abc" * 100_000)
            assert resp.content == (b"abc" * 100_000)[::-1]
            assert client.get("/stream").content == b"".join(CHUNKS)
    finally:
        server.should_exit = True
        thread.join(GUARD)
    assert not thread.is_alive()
    assert seen and all(isinstance(t, wsasend.WSATransport) for t in seen), seen
