"""A typed user script that passes ``mypy --strict`` against asyncio passes against wsasend.

Issue 12, section 5: ``create_connection`` / ``connect_accepted_socket`` return
``tuple[WSATransport, P]`` for a factory of ``P`` (typeshed's loop methods), so a script reading
its own protocol's attributes type-checks unchanged after swapping ``loop.create_connection``
for ``wsasend.create_connection``. One mypy run checks three files: the asyncio original (the
script really is valid asyncio code), the wsasend port (must be clean), and the port with one
wrong attribute (must fail: proves the protocol type is inferred, not ``Any``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (the dev extra)"),
]

SCRIPT = """\
from __future__ import annotations

import asyncio
import socket

{imports}


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(data)


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        if sum(map(len, self.chunks)) >= 5:
            self.done.set_result(None)


async def main() -> int:
    loop = asyncio.get_running_loop()
    server = await {create_server}(Echo, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    transport, client = await {create_connection}(Client, "127.0.0.1", port)
    transport.write(b"hello")
    await client.done
    n: int = len(b"".join(client.{attr}))
    transport.close()
    a, b = socket.socketpair()
    t2, p2 = await {connect_accepted_socket}(Echo, a)
    size: int = len(p2.received)
    t2.close()
    b.close()
    reader, writer = await {open_connection}("127.0.0.1", port)
    writer.write(b"x")
    await writer.drain()
    line: bytes = await reader.readexactly(1)
    writer.close()
    await writer.wait_closed()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server2 = await {start_server}(handle, "127.0.0.1", 0)
    server2.close()
    server.close()
    await server.wait_closed()
    del loop
    return n + size + len(line)


if __name__ == "__main__":
    print(asyncio.run(main()))
"""

ASYNCIO = {
    "imports": "",
    "create_server": "loop.create_server",
    "create_connection": "loop.create_connection",
    "connect_accepted_socket": "loop.connect_accepted_socket",
    "open_connection": "asyncio.open_connection",
    "start_server": "asyncio.start_server",
}
WSASEND = {
    "imports": "import wsasend",
    "create_server": "wsasend.create_server",
    "create_connection": "wsasend.create_connection",
    "connect_accepted_socket": "wsasend.connect_accepted_socket",
    "open_connection": "wsasend.open_connection",
    "start_server": "wsasend.start_server",
}


def test_typing_user_script_passes_mypy_strict_on_wsasend(tmp_path: Path) -> None:
    files = {
        "user_asyncio.py": SCRIPT.format(attr="chunks", **ASYNCIO),
        "user_wsasend.py": SCRIPT.format(attr="chunks", **WSASEND),
        "user_wsasend_bad.py": SCRIPT.format(attr="no_such_attribute", **WSASEND),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy_cache")]
        + [name for name in files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("user_asyncio.py")], out
    assert not [e for e in errors if e.startswith("user_wsasend.py")], out
    bad = [e for e in errors if e.startswith("user_wsasend_bad.py")]
    assert len(bad) == 1 and '"Client" has no attribute "no_such_attribute"' in bad[0], out


def test_typing_user_script_runs(tmp_path: Path) -> None:
    """The wsasend port is not only well typed: it runs (on the default loop)."""
    script = tmp_path / "user_wsasend.py"
    script.write_text(SCRIPT.format(attr="chunks", **WSASEND))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "6"
