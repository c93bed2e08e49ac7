"""The receiver: a separate process that drains every byte and acks when it has them all.

Run as ``python -m benchmarks.receiver ACK_FD`` by :mod:`benchmarks.harness`. It reads one JSON
job per line on stdin, answers ``{"port": ...}`` once it listens, receives, writes one byte to
the pipe ``ACK_FD`` when it holds every byte of a cycle (so the sender's clock stops only when
the data is really across: kernel buffering flatters nobody), and answers a report line
``{"bytes": ..., "datagrams": ..., "crc": ..., "extra": ..., "error": ...}`` on stdout.

It drains with ``recv_into`` into one preallocated buffer, so the receiver allocates nothing
per call; the CRC32 and count are computed only in verify runs (``"verify": true``).

Job fields: ``proto`` (``"tcp"`` or ``"udp"``), ``bytes`` (per run), ``cycles`` (acks per run;
with ``"stall": true`` the receiver reads nothing of a cycle until a ``go`` line arrives on
stdin), ``datagrams`` (UDP: how many to expect), ``sockbuf`` (SO_RCVBUF, 0 for the default),
``recv_size`` (TCP: bytes per ``recv_into``, 0 for ``_RECV_BUF``), ``verify``. After the last
ack it counts any extra byte: until EOF (TCP) or, for UDP, whatever is queued when the ``done``
line arrives.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import zlib
from typing import Any, BinaryIO

# recv_into buffer: one preallocated block. Arbitrary size, large enough that one call takes
# whatever loopback TCP has queued (tcp_rmem max is 32 MiB here, but a read rarely finds more
# than a few MiB).
_RECV_BUF = 4 * 1024 * 1024
# Hang guard: a receiver that hears nothing for this long gives up and reports what it has.
_GUARD_SECONDS = 60.0
# UDP: once datagrams flow, this much silence means the rest were dropped by the kernel.
_UDP_IDLE_SECONDS = 2.0
# UDP receive buffer we ask for (SO_RCVBUFFORCE as root, else SO_RCVBUF capped by rmem_max), so
# that a Python receiver loses as little as it can to a faster sender.
_UDP_RCVBUF = 32 * 1024 * 1024


def _set_rcvtimeo(sock: socket.socket, seconds: float) -> None:
    # SO_RCVTIMEO rather than settimeout(): a Python socket with a timeout polls before every
    # recv, and that extra syscall would slow the receiver down.
    sec = int(seconds)
    usec = int((seconds - sec) * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", sec, usec))


def _reply(out: BinaryIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj).encode() + b"\n")
    out.flush()


def _wait_line(inp: BinaryIO, want: bytes) -> None:
    line = inp.readline().strip()
    if line != want:
        raise RuntimeError(f"expected {want!r} from the harness, got {line!r}")


def _tcp(job: dict[str, Any], inp: BinaryIO, out: BinaryIO, ack_fd: int, state: dict[str, bool]) -> dict[str, Any]:
    verify = bool(job["verify"])
    total = int(job["bytes"])
    cycles = int(job["cycles"])
    stall = bool(job.get("stall"))
    sockbuf = int(job.get("sockbuf", 0))
    size = int(job.get("recv_size") or _RECV_BUF)
    per_cycle = total // cycles
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        if sockbuf:
            # Set on the listener so the accepted socket has it from the handshake on (the
            # window scale is chosen then).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sockbuf)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        _reply(out, {"port": listener.getsockname()[1]})
        state["acking"] = True
        listener.settimeout(_GUARD_SECONDS)
        conn, _ = listener.accept()
    with conn:
        conn.settimeout(None)
        _set_rcvtimeo(conn, _GUARD_SECONDS)
        buf = bytearray(size)
        view = memoryview(buf)
        recv_into = conn.recv_into
        crc = 0
        got = 0
        for _ in range(cycles):
            if stall:
                _wait_line(inp, b"go")
            left = per_cycle
            while left:
                n = recv_into(view, left if left < size else size)
                if not n:
                    raise RuntimeError(f"EOF after {got} of {total} bytes")
                if verify:
                    crc = zlib.crc32(view[:n], crc)
                left -= n
                got += n
            os.write(ack_fd, b"\x01")
        state["acking"] = False
        extra = 0
        while True:
            n = recv_into(view)
            if not n:
                break
            extra += n
    return {"bytes": got, "datagrams": 0, "crc": crc if verify else None, "extra": extra}


def _udp(job: dict[str, Any], inp: BinaryIO, out: BinaryIO, ack_fd: int, state: dict[str, bool]) -> dict[str, Any]:
    verify = bool(job["verify"])
    expect = int(job["datagrams"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            # SO_RCVBUFFORCE (33 on Linux) needs CAP_NET_ADMIN; without it rmem_max caps us.
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), _UDP_RCVBUF)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
        sock.bind(("127.0.0.1", 0))
        _reply(out, {"port": sock.getsockname()[1]})
        state["acking"] = True
        buf = bytearray(65536)
        view = memoryview(buf)
        recv_into = sock.recv_into
        crc = 0
        got = 0
        count = 0
        lost = 0
        _set_rcvtimeo(sock, _GUARD_SECONDS)
        while count < expect:
            try:
                n = recv_into(view)
            except BlockingIOError:
                lost = expect - count
                break
            if count == 0:
                _set_rcvtimeo(sock, _UDP_IDLE_SECONDS)
            if verify:
                crc = zlib.crc32(view[:n], crc)
            got += n
            count += 1
        os.write(ack_fd, b"\x01")
        state["acking"] = False
        _wait_line(inp, b"done")
        extra = 0
        while True:
            try:
                extra += len(sock.recv(65536, socket.MSG_DONTWAIT))
            except BlockingIOError:
                break
    return {"bytes": got, "datagrams": count, "lost": lost, "crc": crc if verify else None, "extra": extra}


def serve(ack_fd: int, inp: BinaryIO, out: BinaryIO) -> None:
    """Answer jobs until EOF or a ``{"proto": "quit"}`` job."""
    while True:
        line = inp.readline()
        if not line:
            return
        job = json.loads(line)
        proto = job.get("proto")
        if proto == "quit":
            return
        # While the harness waits for an ack, a failure answers with a zero byte (a "nack") so
        # that it stops waiting at once instead of at its hang guard.
        state = {"acking": False}
        try:
            if proto == "tcp":
                report = _tcp(job, inp, out, ack_fd, state)
            elif proto == "udp":
                report = _udp(job, inp, out, ack_fd, state)
            else:
                raise ValueError(f"unknown proto {proto!r}")
            report["error"] = None
        except Exception as exc:
            if state["acking"]:
                os.write(ack_fd, b"\x00")
            report = {"bytes": -1, "datagrams": 0, "crc": None, "extra": 0, "error": f"{type(exc).__name__}: {exc}"}
        _reply(out, report)


def main() -> None:
    ack_fd = int(sys.argv[1])
    serve(ack_fd, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
