"""Issue 7, item 3: a real peer nobody here wrote: a stock ``redis-server``.

Several connections, several tasks per connection, >= 100,000 pipelined commands in all, each
command's RESP encoding split over several buffers (often mid-token), posted with ``wsa_send``.
Redis answers each connection's commands in the order their bytes arrived, so a reader per
connection compares every reply with the answer a model predicts, in posting order (SPEC S5.4:
posting order is wire order, whichever task posts). At the end the stored values are read back
with ``wsa_send_sync`` (the nonoverlapped path, S4) and compared with the model.

Where the server comes from: ``WSASEND_REDIS_PORT`` (``.ci/run`` starts one with
``ci/services.sh start``), else a ``redis-server`` binary on PATH started by this module, else
the test skips and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any, cast

import pytest

from wsasend import WSAOverlapped, closesocket, wsa_send, wsa_send_sync

from ._support import FdLedger, assert_no_writer, pattern_window

CONNS = 4
TASKS = 4
COMMANDS_PER_TASK = 6250  # CONNS * TASKS * this = 100,000 commands per run (the floor)
# Keys per task: small enough that GETs often find values, large enough to spread (arbitrary).
KEYS_PER_TASK = 48
# Most commands posted and not yet answered per connection before a task waits (arbitrary bound
# on memory; redis itself has no limit for normal clients).
MAX_UNANSWERED = 4000
GUARD = 120.0


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    env = os.environ.get("WSASEND_REDIS_PORT")
    if env:
        port = int(env)
        if not _ping(port):
            pytest.skip(f"WSASEND_REDIS_PORT={port} but no redis-server answers PING there")
        yield port
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "no redis-server reachable: set WSASEND_REDIS_PORT, or install Debian's redis-server "
            "(`bash ci/services.sh start` does both)"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="wsasend-redis-") as workdir:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                if _ping(port):
                    break
                if proc.poll() is not None:
                    pytest.skip(f"redis-server exited at start (rc={proc.returncode})")
                time.sleep(0.1)
            else:
                pytest.skip("redis-server started but never answered PING")
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# -- RESP ----------------------------------------------------------------------------------------


class IncompleteError(Exception):
    """The buffer ends inside a reply: read more."""


def parse_reply(buf: bytearray | bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``pos``: (value, next position); raises IncompleteError when cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise IncompleteError
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == 0x2B:  # +
        return ("+", line.decode()), pos
    if kind == 0x2D:  # -
        return ("-", line.decode()), pos
    if kind == 0x3A:  # :
        return int(line), pos
    if kind == 0x24:  # $
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise IncompleteError
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind == 0x2A:  # *
        items = []
        for _ in range(int(line)):
            item, pos = parse_reply(buf, pos)
            items.append(item)
        return items, pos
    raise AssertionError(f"not RESP: {bytes(buf[pos - 1 : pos + 40])!r}")


def encode_split(args: list[bytes | memoryview], salt: int) -> list[bytes | bytearray | memoryview]:
    """RESP for ``args``, as several buffers: a different split for different ``salt``.

    Every shape keeps each argument's bytes where they are (the values are memoryviews into the
    pattern, never copied); the framing is cut at arbitrary places, mid-token included, because
    a stream has no message boundaries and redis must not care where one buffer ends.
    """
    parts: list[bytes | bytearray | memoryview] = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    shape = salt % 4
    if shape == 0:
        return parts
    if shape == 1:
        # Cut the framing mid-token: "*3\r\n$3\r\n" becomes "*", "3\r", "\n$3\r\n".
        out: list[bytes | bytearray | memoryview] = []
        for part in parts:
            if isinstance(part, bytes) and len(part) > 2:
                out.extend((part[:1], bytearray(part[1:3]), part[3:]))
            else:
                out.append(part)
        return out
    if shape == 2:
        # Glue each length prefix to the argument before it where possible: fewer, odder buffers.
        out = [cast(bytes, parts[0]) + cast(bytes, parts[1])]  # framing: both built as bytes above
        out.extend(parts[2:])
        return out
    # Split each value into 3 views.
    out = []
    for part in parts:
        if isinstance(part, memoryview) and len(part) >= 3:
            k = len(part) // 3
            out.extend((part[:k], part[k : 2 * k], part[2 * k :]))
        else:
            out.append(part)
    return out


# -- the model -----------------------------------------------------------------------------------


class Model:
    """What redis must hold and answer, updated at posting time (posting order = wire order)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode()
        self.strings: dict[bytes, bytes] = {}
        self.lists: dict[bytes, list[bytes]] = {}
        self.counters: dict[bytes, int] = {}

    def command(self, conn: int, task: int, i: int) -> tuple[list[bytes | memoryview], Any]:
        """The i-th command of ``task`` on ``conn`` and the reply redis must give it."""
        key = self.prefix + b"s:%d:%d:%d" % (conn, task, (i * 31) % KEYS_PER_TASK)
        choice = (i * 2_654_435_761 + task) % 100
        if choice < 35:
            length = (i * 977 + conn * 13) % 1500
            value = pattern_window(i * 101 + task, length)
            self.strings[key] = bytes(value)
            return [b"SET", key, value], ("+", "OK")
        if choice < 60:
            return [b"GET", key], self.strings.get(key)
        if choice < 72:
            piece = pattern_window(i * 7 + conn, 1 + i % 64)
            new = self.strings.get(key, b"") + bytes(piece)
            self.strings[key] = new
            return [b"APPEND", key, piece], len(new)
        if choice < 84:
            counter = self.prefix + b"c:%d" % conn  # shared by the connection's tasks
            step = i % 1000 - 300
            self.counters[counter] = self.counters.get(counter, 0) + step
            return [b"INCRBY", counter, b"%d" % step], self.counters[counter]
        if choice < 95:
            lkey = self.prefix + b"l:%d:%d" % (conn, task % 2)  # shared by two tasks
            item = b"%d.%d.%d" % (conn, task, i)
            items = self.lists.setdefault(lkey, [])
            items.append(item)
            return [b"RPUSH", lkey, item], len(items)
        existed = key in self.strings
        self.strings.pop(key, None)
        return [b"DEL", key], int(existed)


class RedisConn:
    def __init__(self, conn_id: int, sock: socket.socket, model: Model) -> None:
        self.id = conn_id
        self.sock = sock
        self.fd = sock.fileno()
        self.model = model
        self.expected: deque[Any] = deque()
        self.answered = 0
        self.posted = 0
        self.mismatches: list[str] = []
        self.caught_up = asyncio.Event()
        self.ops: list[tuple[WSAOverlapped, int]] = []

    async def writer(self, task: int) -> None:
        outstanding: list[WSAOverlapped] = []
        for i in range(COMMANDS_PER_TASK):
            args, reply = self.model.command(self.id, task, i)
            bufs = encode_split(args, i + task)
            ov = wsa_send(self.sock, bufs)
            # The expected reply is queued right after the post: posting order is wire order.
            self.expected.append(reply)
            self.posted += 1
            outstanding.append(ov)
            if i % 128 == 127:
                await ov
                assert all(not o.pending and o.error == 0 and o.transferred == o.nbytes for o in outstanding)
                outstanding.clear()
            while len(self.expected) > MAX_UNANSWERED:
                self.caught_up.clear()
                await asyncio.wait_for(self.caught_up.wait(), GUARD)
        for ov in outstanding:
            assert await ov == ov.nbytes

    async def reader(self, total: int) -> None:
        loop = asyncio.get_running_loop()
        buf = bytearray()
        while self.answered < total:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 18), GUARD)
            assert data, f"redis closed connection {self.id} after {self.answered} replies"
            buf += data
            pos = 0
            while True:
                try:
                    reply, new = parse_reply(buf, pos)
                except IncompleteError:
                    break
                pos = new
                want = self.expected.popleft()
                if reply != want and len(self.mismatches) < 10:
                    self.mismatches.append(f"reply {self.answered}: {reply!r:.80} != {want!r:.80}")
                self.answered += 1
            del buf[:pos]
            if len(self.expected) <= MAX_UNANSWERED // 2:
                self.caught_up.set()
        assert not buf


def _verify_stored(port: int, model: Model) -> None:
    """Read every key back through ``wsa_send_sync`` on a plain blocking socket and compare."""
    keys = sorted(model.strings)
    commands: list[list[bytes | memoryview]] = [[b"GET", k] for k in keys]
    commands += [[b"LRANGE", k, b"0", b"-1"] for k in sorted(model.lists)]
    commands += [[b"GET", k] for k in sorted(model.counters)]
    expected: list[Any] = [model.strings[k] for k in keys]
    expected += [model.lists[k] for k in sorted(model.lists)]
    expected += [b"%d" % model.counters[k] for k in sorted(model.counters)]
    everything = [k for k in keys] + sorted(model.lists) + sorted(model.counters)
    commands.append([b"DEL", *everything])  # and clean up after ourselves
    expected.append(len(everything))
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        bufs: list[bytes | bytearray | memoryview] = []
        for i, args in enumerate(commands):
            bufs.extend(encode_split(args, i))
        sent = wsa_send_sync(sock, bufs)  # a blocking socket: sends everything (S4.2)
        assert sent == sum(len(memoryview(b)) for b in bufs)
        buf = bytearray()
        got: list[Any] = []
        pos = 0
        while len(got) < len(expected):
            try:
                reply, pos = parse_reply(buf, pos)
            except IncompleteError:
                data = sock.recv(1 << 18)
                assert data
                buf += data
                continue
            got.append(reply)
    assert got == expected


async def _run_clients(port: int, model: Model) -> int:
    loop = asyncio.get_running_loop()
    conns: list[RedisConn] = []
    try:
        for i in range(CONNS):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            conns.append(RedisConn(i, sock, model))
        per_conn = TASKS * COMMANDS_PER_TASK
        jobs = []
        for conn in conns:
            jobs.append(conn.reader(per_conn))
            jobs.extend(conn.writer(t) for t in range(TASKS))
        await asyncio.wait_for(asyncio.gather(*jobs), GUARD)
        for conn in conns:
            assert conn.mismatches == [], conn.mismatches
            assert conn.answered == conn.posted == per_conn
            assert not conn.expected
            assert_no_writer(loop, conn.sock, conn.fd)
        return sum(c.answered for c in conns)
    finally:
        for conn in conns:
            with contextlib.suppress(OSError):
                closesocket(conn.sock)


async def test_redis_pipelined_100k_commands(redis_port: int) -> None:
    """Issue 7.3: every reply correct and in order, the stored values check out."""
    fds = FdLedger()
    model = Model(f"wsasend-test:{uuid.uuid4().hex}:")
    answered = await _run_clients(redis_port, model)
    assert answered >= 100_000
    _verify_stored(redis_port, model)
    fds.assert_no_leak()
