"""aiohttp, unchanged, on wsasend's loop (SPEC S9.1): every connection is a WSATransport.

An aiohttp web app (plain, streaming and static-file responses, a WebSocket echo) served by
``web.AppRunner``/``TCPSite`` and driven by aiohttp's own client, on wsasend's loop over
asyncio and over uvloop; every response is checked byte for byte. Static files go through
``loop.sendfile``, which the loop sends through the WSATransport's ordered queue (S9.3).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import wsasend
import wsasend._loop
from tests.frameworks.support import BASES, run_checked
from tests.helpers import pattern

GUARD = 60.0
STREAM_CHUNKS = [pattern(n, i) for i, n in enumerate([1, 1000, 70_000, 300_000, 5])]


@pytest.mark.parametrize("base", BASES)
def test_aiohttp_app_on_wsasend_loop(base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    static = tmp_path / "blob.bin"
    blob = os.urandom(3 << 20)
    static.write_bytes(blob)
    # aiohttp's static files go through loop.sendfile: natively (os.sendfile through the
    # transport's queue, S9.3) for a regular file, never by the read-and-send fallback.
    sendfiles: list[tuple[int, int | None]] = []
    fallbacks: list[tuple[int, int | None]] = []
    real_native = wsasend._loop.wsa_sendfile_native
    real_fallback = wsasend._loop.wsa_sendfile

    async def counting_native(loop: Any, transport: Any, file: Any, offset: int = 0, count: Any = None) -> int:
        sendfiles.append((offset, count))
        return await real_native(loop, transport, file, offset, count)

    async def counting_fallback(loop: Any, transport: Any, file: Any, offset: int = 0, count: Any = None) -> int:
        fallbacks.append((offset, count))
        return await real_fallback(loop, transport, file, offset, count)

    monkeypatch.setattr(wsasend._loop, "wsa_sendfile_native", counting_native)
    monkeypatch.setattr(wsasend._loop, "wsa_sendfile", counting_fallback)
    server_transports: list[asyncio.BaseTransport | None] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        server_transports.append(request.transport)
        return await handler(request)  # type: ignore[no-any-return]

    async def plain(request: web.Request) -> web.Response:
        return web.Response(body=b"hello " + request.query.get("name", "").encode())

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in STREAM_CHUNKS:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data[::-1])
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, wsasend.WSAEventLoop if base == "asyncio" else wsasend._loop._uvloop_loop_class())
        app = web.Application(middlewares=[record])
        app.router.add_get("/", plain)
        app.router.add_get("/stream", stream)
        app.router.add_get("/ws", echo)
        app.router.add_static("/static/", tmp_path)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        client_transports: list[asyncio.BaseTransport | None] = []
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/", params={"name": "wsasend"}) as resp:
                    assert resp.status == 200
                    assert await resp.read() == b"hello wsasend"
                async with session.get(f"{url}/stream") as resp:
                    client_transports.append(resp.connection.transport if resp.connection else None)
                    assert await resp.read() == b"".join(STREAM_CHUNKS)
                async with session.get(f"{url}/static/blob.bin") as resp:
                    # Held while the body is unread (a short body is read at once, with the headers).
                    client_transports.append(resp.connection.transport if resp.connection else None)
                    assert resp.status == 200
                    assert await resp.read() == blob
                async with session.get(f"{url}/static/blob.bin", headers={"Range": "bytes=1000-1999999"}) as resp:
                    assert resp.status == 206
                    assert await resp.read() == blob[1000:2_000_000]
                async with session.ws_connect(f"{url}/ws") as ws:
                    await ws.send_str("abc")
                    assert await ws.receive_str(timeout=GUARD) == "cba"
                    big = pattern(1 << 20, 9)
                    await ws.send_bytes(big)
                    assert await ws.receive_bytes(timeout=GUARD) == big
                    await ws.close()
        finally:
            await runner.cleanup()
        assert len(server_transports) == 5
        # Every connection, server side and client side, is a WSATransport.
        assert all(isinstance(t, wsasend.WSATransport) for t in server_transports), server_transports
        assert len(client_transports) == 2
        assert all(isinstance(t, wsasend.WSATransport) for t in client_transports), client_transports
        # The static file went through the loop's sendfile, whole and then from the range.
        assert sendfiles == [(0, len(blob)), (1000, 2_000_000 - 1000)]
        assert fallbacks == []

    run_checked(main(), base)
