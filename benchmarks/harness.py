"""Run one case (one sender on one workload) against the receiver process, timed or verified.

A *verify run* is untimed: the sender's socket counts its send calls, ``tracemalloc`` traces
the send phase, and the receiver computes CRC32 and count, which must match the workload's
exact byte stream. A *timed run* uses a plain socket and none of that, and measures wall time
(``perf_counter``) and the sender process's CPU time (``process_time``) from just before the
first send to the receiver's last ack.

How syscalls are counted (verify runs): the sender's socket is a :class:`CountingSocket`, a
``socket.socket`` subclass that counts every ``sendmsg``/``send``/``sendto``/``sendall`` call
made through the Python object (raw senders, ``wsa_send``, asyncio's selector transports and
``sock_sendall`` on both loops); plus the delta of ``syscw`` in ``/proc/self/io``, which counts
``write``/``writev`` syscalls, which is what uvloop's libuv stream transports use (it bypasses
the Python object). Linux does not count ``sendmsg``/``sendto`` in ``syscw``, so the two never
overlap. The one blind spot: uvloop's datagram transport sends through libuv with ``sendmsg``,
which neither sees (reported as unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import select
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .workloads import Payload, Workload, payload_for

__all__ = ["CountingSocket", "Receiver", "Run", "RunResult", "Sender", "run_case"]

# Hang guard for one run (the sends plus the wait for the last ack). Generous: --full's slowest
# case takes a few seconds; this only turns a hang into an error.
GUARD_SECONDS = 120.0
# How long to wait for the receiver's report once the sender is done.
_REPORT_SECONDS = 30.0

_ROOT = Path(__file__).resolve().parent.parent


class CountingSocket(socket.socket):
    """A socket that counts the send calls made through it (each one is one syscall)."""

    calls = 0  # per instance once incremented; class default 0

    def sendmsg(self, *args: Any) -> int:
        self.calls += 1
        return super().sendmsg(*args)

    def send(self, *args: Any) -> int:
        self.calls += 1
        return super().send(*args)

    def sendto(self, *args: Any) -> int:
        self.calls += 1
        return super().sendto(*args)

    def sendall(self, *args: Any) -> None:
        self.calls += 1
        super().sendall(*args)


def syscw() -> int:
    """``write``/``writev`` syscalls this process made so far (``/proc/self/io``), or -1."""
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"syscw:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Receiver:
    """The receiver process (:mod:`benchmarks.receiver`) and its ack pipe."""

    def __init__(self, recv_size: int = 0) -> None:
        # Bytes per recv_into call on a TCP connection, 0 for the receiver's default (see
        # benchmarks.receiver; ``--recv-size``).
        self.recv_size = recv_size
        self.proc: subprocess.Popen[bytes] | None = None
        self.ack_fd = -1
        self.start()

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.receiver", str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(write_fd,),
            env=env,
            cwd=str(_ROOT),
        )
        os.close(write_fd)
        self.ack_fd = read_fd

    def close(self) -> None:
        proc = self.proc
        if proc is not None:
            self.proc = None
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write(b'{"proto": "quit"}\n')
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self.ack_fd >= 0:
            os.close(self.ack_fd)
            self.ack_fd = -1

    def restart(self) -> None:
        """Kill and start again: after a failed run its state (and stale acks) are unknown."""
        proc = self.proc
        if proc is not None:
            proc.kill()
        self.close()
        self.start()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, line: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"the receiver did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the receiver exited (status {self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def request(self, job: dict[str, Any]) -> int:
        """Send a job; return the port the receiver listens on."""
        self._write(json.dumps(job).encode())
        reply = self._read(_REPORT_SECONDS)
        if "port" not in reply:
            raise RuntimeError(f"the receiver refused the job: {reply.get('error')}")
        return int(reply["port"])

    def go(self) -> None:
        self._write(b"go")

    def done(self) -> None:
        self._write(b"done")

    def report(self, timeout: float = _REPORT_SECONDS) -> dict[str, Any]:
        return self._read(timeout)

    def wait_ack(self, timeout: float = GUARD_SECONDS) -> None:
        """Block until the next ack (for the raw, loop-less senders)."""
        ready, _, _ = select.select([self.ack_fd], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no ack within {timeout} s")
        _check_ack(os.read(self.ack_fd, 1))


def _check_ack(byte: bytes) -> None:
    if byte != b"\x01":
        raise RuntimeError("the receiver failed (see its report)" if byte == b"\x00" else "the ack pipe closed")


@dataclass
class Run:
    """What a sender gets: the connected socket, the sends, the clock and the acks.

    A sender sets itself up (transport, stream...), calls :meth:`start` right before its first
    send, sends ``sends()`` in order, and waits for the ack(s): :meth:`ack` on a loop,
    :meth:`ack_sync` without one. Slow-reader senders post ``depth`` sends, call :meth:`go`
    (the receiver starts reading), then wait for the ack, ``cycles`` times.
    """

    workload: Workload
    payload: Payload
    sock: socket.socket
    receiver: Receiver
    verify: bool
    t0: float = 0.0
    t1: float = 0.0
    cpu0: float = 0.0
    cpu1: float = 0.0
    acks: int = 0
    syscw0: int = 0
    syscw1: int = 0
    gos: int = 0
    peak: int | None = None
    queued: int | None = None
    _it: Iterator[list[bytes]] | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return self.workload.sends

    @property
    def depth(self) -> int:
        return self.workload.depth

    @property
    def cycles(self) -> int:
        return self.workload.cycles

    def sends(self) -> Iterator[list[bytes]]:
        """The run's sends, in order (one iterator per run: slow readers take it in slices)."""
        if self._it is None:
            self._it = itertools.islice(itertools.cycle(self.payload.pool), self.workload.sends)
        return self._it

    def start(self) -> None:
        if self.verify:
            if isinstance(self.sock, CountingSocket):
                self.sock.calls = 0
            tracemalloc.start()
            self.syscw0 = syscw()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()

    def _acked(self, byte: bytes) -> None:
        t = time.perf_counter()
        _check_ack(byte)
        self.acks += 1
        if self.acks == self.cycles:
            self.t1 = t
            self.cpu1 = time.process_time()
            if self.verify:
                self.syscw1 = syscw()
                self.peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()

    def ack_sync(self) -> None:
        ready, _, _ = select.select([self.receiver.ack_fd], [], [], GUARD_SECONDS)
        if not ready:
            raise TimeoutError(f"no ack within {GUARD_SECONDS} s")
        self._acked(os.read(self.receiver.ack_fd, 1))

    async def ack(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        fd = self.receiver.ack_fd

        def readable() -> None:
            if not fut.done():
                fut.set_result(os.read(fd, 1))

        loop.add_reader(fd, readable)
        try:
            byte = await fut
        finally:
            loop.remove_reader(fd)
        self._acked(byte)

    def go(self) -> None:
        """Slow reader: let the receiver read the cycle's bytes."""
        self.gos += 1  # each go is one write(2) to the receiver's stdin: not a send syscall
        self.receiver.go()

    def note_queued(self, count: int) -> None:
        """Slow reader: how many sends were still queued in user space when the reader started."""
        self.queued = count if self.queued is None else max(self.queued, count)

    @property
    def syscalls(self) -> int | None:
        """Send syscalls of the send phase (verify runs), or None when they cannot be counted."""
        if not self.verify or self.syscw0 < 0:
            return None
        calls = self.sock.calls if isinstance(self.sock, CountingSocket) else 0
        return calls + (self.syscw1 - self.syscw0 - self.gos)


SyncFn = Callable[[Run], None]
AsyncFn = Callable[[Run], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Sender:
    """One way of sending. ``loop`` is ``None`` (raw, blocking), ``"asyncio"`` or ``"uvloop"``."""

    key: str
    label: str
    loop: str | None
    kinds: frozenset[str]
    fn: SyncFn | AsyncFn
    #: Syscalls cannot be counted (uvloop's datagram transport): report them as unknown.
    uncounted: bool = False

    @property
    def case_id(self) -> str:
        return f"{self.key}[{self.loop or 'raw'}]"


@dataclass
class RunResult:
    ok: bool
    problem: str = ""
    elapsed: float = 0.0
    cpu: float = 0.0
    syscalls: int | None = None
    peak: int | None = None
    queued: int | None = None
    lost: int = 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _connect(workload: Workload, port: int, counting: bool) -> socket.socket:
    kind = socket.SOCK_DGRAM if workload.kind == "dgram" else socket.SOCK_STREAM
    sock: socket.socket = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio and uvloop do
            if workload.sockbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, workload.sockbuf)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    if counting:
        sock = CountingSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    return sock


def _run_sender(sender: Sender, ctx: Run) -> None:
    if sender.loop is None:
        sender.fn(ctx)
        return

    async def guarded() -> None:
        async with asyncio.timeout(GUARD_SECONDS):
            await sender.fn(ctx)  # type: ignore[misc]

    with asyncio.Runner(loop_factory=_loop_factory(sender.loop)) as runner:
        runner.run(guarded())


def run_case(receiver: Receiver, workload: Workload, sender: Sender, *, verify: bool) -> RunResult:
    """One run of ``sender`` on ``workload``; checks the receiver's count (and CRC when verifying)."""
    payload = payload_for(workload.nbufs, workload.bufsize)
    expected_crc = payload.expected_crc(workload.sends) if verify else None
    dgram = workload.kind == "dgram"
    job = {
        "proto": "udp" if dgram else "tcp",
        "bytes": workload.total_bytes,
        "datagrams": workload.sends if dgram else 0,
        "cycles": workload.cycles,
        "stall": workload.kind == "stall",
        "sockbuf": workload.sockbuf,
        "recv_size": receiver.recv_size,
        "verify": verify,
    }
    port = receiver.request(job)
    sock = _connect(workload, port, counting=verify)
    ctx = Run(workload=workload, payload=payload, sock=sock, receiver=receiver, verify=verify)
    failure = ""
    try:
        _run_sender(sender, ctx)
    except Exception as exc:
        failure = f"sender failed: {type(exc).__name__}: {exc}"
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        if sock.fileno() >= 0:
            sock.close()
    if failure:
        try:
            report = receiver.report(1.0)
            if report.get("error"):
                failure += f"; receiver: {report['error']}"
        except (TimeoutError, RuntimeError, ValueError):
            pass
        receiver.restart()
        return RunResult(ok=False, problem=failure)
    if dgram:
        receiver.done()
    report = receiver.report()
    result = RunResult(
        ok=True,
        elapsed=ctx.t1 - ctx.t0,
        cpu=ctx.cpu1 - ctx.cpu0,
        syscalls=None if sender.uncounted else ctx.syscalls,
        peak=ctx.peak,
        queued=ctx.queued,
        lost=int(report.get("lost", 0)),
    )
    problems = []
    if report.get("error"):
        problems.append(f"receiver: {report['error']}")
    if result.lost:
        problems.append(f"the kernel dropped {result.lost} of {workload.sends} datagrams (receiver too slow)")
    elif report["bytes"] != workload.total_bytes:
        problems.append(f"received {report['bytes']} bytes, expected {workload.total_bytes}")
    if dgram and not result.lost and report["datagrams"] != workload.sends:
        problems.append(f"received {report['datagrams']} datagrams, expected {workload.sends}")
    if report.get("extra"):
        problems.append(f"{report['extra']} bytes more than sent")
    if verify and report.get("crc") != expected_crc:
        problems.append(f"CRC32 {report.get('crc')} != expected {expected_crc}")
    if problems:
        result.ok = False
        result.problem = "; ".join(problems)
    return result
