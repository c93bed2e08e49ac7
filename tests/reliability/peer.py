"""Peer programs for the reliability tests, run as separate processes (``python peer.py MODE ...``).

Standard library only, so that it runs with any python3 and inside another network namespace
(``ip netns exec``). Two modes:

``frames``: the load server (issue 7, item 1). It listens, prints ``{"port": P}``, accepts
``--conns`` connections, parses each stream as sequence-numbered frames and checks every frame
against what the client must have built (see ``frame_payload``), checks that each of the client's
posting tasks arrives in its own sequence order, hashes each whole stream, and when every
connection has reached EOF prints one JSON report and exits.

``sink``: one connection, driven by commands on stdin, one JSON line answered per command. The
stream must be the position-dependent pattern of ``pattern_window``; the sink checks every byte
it reads against it, so "ok" means "what I read is exactly the first N bytes of the stream".
Commands: ``read N`` (read until N bytes in total), ``drain`` (read until EOF), ``reset``
(SO_LINGER 0, then close: the kernel sends RST), ``status``, ``quit``. SIGKILL needs no command.

Keep the frame format in sync with ``tests/reliability/frames.py`` (the client's side).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import selectors
import socket
import struct
import sys
import time

# Frame header: payload length, connection id, task id, sequence number, in network order.
HEADER = struct.Struct("!IIHI")
# Every stream starts with this hello and the connection id (u32).
HELLO = b"WSAL"
# Payloads are windows of one pool of random bytes (arbitrary seed and size; both sides make it).
POOL_SEED = 0x5EED
POOL_SIZE = 1 << 20
# Largest payload a frame may carry (the pool is doubled, so any window up to this fits).
MAX_PAYLOAD = 256 * 1024
# The sink's pattern: byte i of the stream is PATTERN_POOL[i % PATTERN_PERIOD]. The period is a
# prime, so no power-of-two chunk of loss, repeat or swap can go unseen.
PATTERN_PERIOD = 1_000_003


def make_pool(size: int = POOL_SIZE, seed: int = POOL_SEED) -> bytes:
    return random.Random(seed).randbytes(size)


def frame_payload_span(conn: int, task: int, seq: int) -> tuple[int, int]:
    """(offset into the pool, length) of the payload of frame ``seq`` of ``task`` on ``conn``.

    Mixed sizes: mostly small, some of a few KiB, and one in 97 large (up to MAX_PAYLOAD), so that
    sends pend and are partly consumed while small ones coalesce. The mix is arbitrary.
    """
    h = (conn * 2_654_435_761 + task * 40_503 + seq * 2_246_822_519) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0x5BD1E995) & 0xFFFFFFFF
    h ^= h >> 15
    kind = h % 97
    if kind == 0:
        length = 65536 + h % (MAX_PAYLOAD - 65536)
    elif kind < 12:
        length = 1024 + h % 7168
    elif kind < 16:
        length = 0
    else:
        length = h % 300
    return (h >> 7) % POOL_SIZE, length


class _FrameConn:
    __slots__ = ("buf", "conn_id", "digest", "errors", "frames", "nbytes", "next_seq", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.conn_id = -1
        self.digest = hashlib.blake2b(digest_size=16)
        self.nbytes = 0
        self.frames = 0
        self.next_seq: dict[int, int] = {}
        self.errors: list[str] = []

    def feed(self, data: bytes, pool2: bytes) -> None:
        self.digest.update(data)
        self.nbytes += len(data)
        buf = self.buf
        buf += data
        pos = 0
        if self.conn_id < 0:
            if len(buf) < 8:
                return
            if buf[:4] != HELLO:
                self.errors.append(f"bad hello {bytes(buf[:8])!r}")
            self.conn_id = struct.unpack_from("!I", buf, 4)[0]
            pos = 8
        hsize = HEADER.size
        while len(buf) - pos >= hsize:
            length, conn, task, seq = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - hsize < length:
                break
            start = pos + hsize
            if len(self.errors) < 20:
                off, want = frame_payload_span(conn, task, seq)
                if conn != self.conn_id:
                    self.errors.append(f"frame of conn {conn} on conn {self.conn_id}")
                if want != length:
                    self.errors.append(f"conn {conn} task {task} seq {seq}: length {length} != {want}")
                elif buf[start : start + length] != pool2[off : off + length]:
                    self.errors.append(f"conn {conn} task {task} seq {seq}: payload differs")
                expect = self.next_seq.get(task, 0)
                if seq != expect:
                    self.errors.append(f"conn {conn} task {task}: seq {seq} where {expect} was due")
            self.next_seq[task] = seq + 1
            self.frames += 1
            pos = start + length
        if pos:
            del buf[:pos]

    def report(self) -> dict[str, object]:
        errors = list(self.errors)
        if self.buf:
            errors.append(f"{len(self.buf)} bytes of a truncated frame at EOF")
        return {
            "conn": self.conn_id,
            "bytes": self.nbytes,
            "digest": self.digest.hexdigest(),
            "frames": self.frames,
            "tasks": {str(k): v for k, v in sorted(self.next_seq.items())},
            "errors": errors,
        }


def run_frames(args: argparse.Namespace) -> int:
    pool = make_pool()
    pool2 = pool + pool[:MAX_PAYLOAD]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, 0))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    print(json.dumps({"port": listener.getsockname()[1], "pid": os.getpid()}), flush=True)
    accepted = 0
    open_conns = 0
    reports: list[dict[str, object]] = []
    deadline = time.monotonic() + args.timeout
    while accepted < args.conns or open_conns:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"timed out: {accepted} accepted, {open_conns} open"}), flush=True)
            return 1
        for key, _ in sel.select(1.0):
            if key.data is None:
                while accepted < args.conns:
                    try:
                        sock, _addr = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    sel.register(sock, selectors.EVENT_READ, _FrameConn(sock))
                    accepted += 1
                    open_conns += 1
                if accepted >= args.conns:
                    sel.unregister(listener)
                continue
            conn: _FrameConn = key.data
            try:
                data = conn.sock.recv(262144)
            except BlockingIOError:
                continue
            except ConnectionError as exc:
                conn.errors.append(f"recv: {exc!r}")
                data = b""
            if data:
                conn.feed(data, pool2)
                continue
            sel.unregister(conn.sock)
            conn.sock.close()
            open_conns -= 1
            reports.append(conn.report())
    listener.close()
    print(json.dumps({"conns": reports}), flush=True)
    return 0


def pattern_pool() -> bytes:
    """The sink pattern's period, doubled so that any window up to the period is one slice."""
    base = random.Random(0xFACE).randbytes(PATTERN_PERIOD)
    return base + base


def run_sink(args: argparse.Namespace) -> int:
    pool2 = pattern_pool()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.rcvbuf:
        # Set before listen() so that the accepted socket (and its window scale) inherits it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    listener.bind((args.host, args.port))
    listener.listen(1)
    print(json.dumps({"port": listener.getsockname()[1], "pid": os.getpid()}), flush=True)
    listener.settimeout(args.timeout)
    sock, _ = listener.accept()
    listener.close()
    sock.settimeout(args.timeout)
    received = 0
    ok = True
    eof = False
    error = ""
    chunk = bytearray(262144)
    view = memoryview(chunk)

    def read_once(limit: int) -> int:
        nonlocal received, ok, eof, error
        try:
            n = sock.recv_into(view, limit)
        except (ConnectionError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            eof = True
            return 0
        if n == 0:
            eof = True
            return 0
        start = received % PATTERN_PERIOD
        if ok and view[:n] != pool2[start : start + n]:
            ok = False
        received += n
        return n

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        if cmd == "read":
            want = int(words[1])
            while received < want and not eof:
                read_once(min(len(chunk), want - received))
        elif cmd == "drain":
            while not eof:
                read_once(len(chunk))
        elif cmd == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        elif cmd == "quit":
            print(json.dumps({"received": received, "ok": ok, "eof": eof, "error": error}), flush=True)
            return 0
        print(json.dumps({"received": received, "ok": ok, "eof": eof, "error": error}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode", required=True)
    frames = sub.add_parser("frames")
    frames.add_argument("--conns", type=int, required=True)
    frames.add_argument("--host", default="127.0.0.1")
    frames.add_argument("--timeout", type=float, default=600.0)
    sink = sub.add_parser("sink")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=0)
    sink.add_argument("--rcvbuf", type=int, default=0)
    sink.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.mode == "frames":
        return run_frames(args)
    return run_sink(args)


if __name__ == "__main__":
    sys.exit(main())
