"""Servers benchmark (issue 11, item 5): real clients against a small server, stock vs wsasend.

Two tiny servers, each built once on the stock transport (``loop.create_server``) and once on
``WSATransport`` (``wsasend.create_server``), on both loops:

- **HTTP/1.1 keep-alive**: one gathered reply per request, ``[header, body]`` as a list
  (stock: ``transport.writelines``; ours: ``transport.send`` or ``transport.writelines``),
  driven by ``ab -k -c 50`` (ApacheBench; Debian's ``apache2-utils``), and with a connection
  per request (``ab`` without ``-k``) by 50 clients at a time (HC) and by one (HC1: every
  connection finds the server idle, the set-up and tear-down of each paid in full).
- **RESP** (enough Redis for ``redis-benchmark -t ping,set,get``: PING, SET, GET, inline and
  multibulk, plus CONFIG GET): one write per reply (stock: ``transport.write``; ours:
  ``transport.send([reply])``), driven by ``redis-benchmark`` with and without ``-P 16``
  (Debian's ``redis-tools``). With pipelining, the replies to one read are posted back to back:
  the engine's coalescing (SPEC S5.4) is what is measured there.

Each server runs in its own process (``python -m benchmarks.servers serve ...``), a fresh one
every round, warmed up by one untimed client run (see ``run_matrix``). Its CPU time
is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, every thread; ``/proc/<pid>/stat``
ticks where schedstat is missing) just before and after each client run, so the number is the
server's own CPU per request, whatever the client costs. Rounds are paired: within one round
every case of a group runs once, one after the other (stock and wsasend alternate), and the
ratios reported are medians of per-round ratios, so a noisy neighbour hits both sides alike.

Loads are bounded by count (``-n``) and by a wall-clock guard, and stay on 127.0.0.1.
Missing clients are installed with ``apt-get`` when running as root (``--install``), else the
workloads that need them are skipped with a message saying what to install.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HTTP_BODY", "http_reply", "main", "serve"]

_ROOT = Path(__file__).resolve().parent.parent

#: The HTTP body: a small page (1 KiB, arbitrary: a typical small API response).
HTTP_BODY = bytes(range(97, 123)) * 39 + b"0123456789"  # 1024 bytes
assert len(HTTP_BODY) == 1024
_HTTP_HEADER = (
    b"HTTP/1.1 200 OK\r\nServer: wsasend-bench\r\nContent-Type: text/plain\r\n"
    b"Connection: keep-alive\r\nContent-Length: %d\r\n\r\n" % len(HTTP_BODY)
)

# Client concurrency (issue 11: `ab -k -c 50`) and redis-benchmark's pipeline depth.
CONCURRENCY = 50
PIPELINE = 16
# Wall-clock guard on one client run: only turns a hang into an error.
GUARD_SECONDS = 120.0
LOOPS = ("asyncio", "uvloop")
# Debian packages that provide the clients.
PACKAGES = {"ab": "apache2-utils", "redis-benchmark": "redis-tools"}


def http_reply() -> list[bytes]:
    """The reply to every request: header and body, two buffers (one gathered send)."""
    return [_HTTP_HEADER, HTTP_BODY]


# -- the servers (run in their own process) -------------------------------------------------------


class HttpServerProtocol(asyncio.Protocol):
    """HTTP/1.x keep-alive: every request (headers ending in a blank line) gets ``http_reply()``.

    Requests have no body (``GET``, as ``ab`` and ``wrk`` send). HTTP/1.0 requests without
    ``Keep-Alive`` and requests with ``Connection: close`` get their reply, then the connection
    is closed, as a real server does.
    """

    def __init__(self, reply: Callable[[asyncio.BaseTransport, list[bytes]], object]) -> None:
        self._reply = reply
        self._buf = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        start = 0
        transport = self.transport
        assert transport is not None
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end < 0:
                break
            head = buf[start:end]
            start = end + 4
            self._reply(transport, [_HTTP_HEADER, HTTP_BODY])
            lower = head.lower()
            if b"connection: close" in lower or (b"http/1.0" in lower and b"keep-alive" not in lower):
                transport.close()
                self._buf = b""
                return
        self._buf = buf[start:]


def _resp_commands(buf: bytes, start: int) -> tuple[list[list[bytes]], int]:
    """Parse complete commands (multibulk ``*N`` or inline) from ``buf[start:]``."""
    out: list[list[bytes]] = []
    n = len(buf)
    while start < n:
        if buf[start] == 42:  # b"*": multibulk
            eol = buf.find(b"\r\n", start)
            if eol < 0:
                break
            count = int(buf[start + 1 : eol])
            pos = eol + 2
            args: list[bytes] = []
            for _ in range(count):
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return out, start
                size = int(buf[pos + 1 : eol])
                end = eol + 2 + size
                if end + 2 > n:
                    return out, start
                args.append(buf[eol + 2 : end])
                pos = end + 2
            out.append(args)
            start = pos
        else:  # inline command
            eol = buf.find(b"\r\n", start)
            if eol < 0:
                break
            line = buf[start:eol].split()
            start = eol + 2
            if line:
                out.append(line)
    return out, start


class RespServerProtocol(asyncio.Protocol):
    """A tiny Redis: PING, SET, GET, CONFIG GET (for redis-benchmark's start), one write per reply."""

    def __init__(self, reply: Callable[[asyncio.BaseTransport, bytes], object], store: dict[bytes, bytes]) -> None:
        self._reply = reply
        self._store = store
        self._buf = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        commands, used = _resp_commands(buf, 0)
        self._buf = buf[used:]
        transport = self.transport
        assert transport is not None
        reply = self._reply
        store = self._store
        for args in commands:
            name = args[0].upper()
            if name == b"PING":
                out = b"+PONG\r\n" if len(args) == 1 else b"$%d\r\n%s\r\n" % (len(args[1]), args[1])
            elif name == b"SET" and len(args) >= 3:
                store[args[1]] = args[2]
                out = b"+OK\r\n"
            elif name == b"GET" and len(args) == 2:
                value = store.get(args[1])
                out = b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
            elif name == b"CONFIG" and len(args) == 3 and args[1].upper() == b"GET":
                out = b"*2\r\n$%d\r\n%s\r\n$0\r\n\r\n" % (len(args[2]), args[2])
            else:
                out = b"-ERR unknown command\r\n"
            reply(transport, out)


def _stock_writelines(transport: Any, bufs: list[bytes]) -> None:
    transport.writelines(bufs)


def _wsa_send(transport: Any, bufs: list[bytes]) -> None:
    transport.send(bufs)


def _stock_write(transport: Any, data: bytes) -> None:
    transport.write(data)


def _wsa_send_one(transport: Any, data: bytes) -> None:
    transport.send([data])


#: (protocol, impl) -> (uses wsasend, reply function). ``stock`` is the baseline of each protocol.
IMPLS: dict[tuple[str, str], tuple[bool, Callable[[Any, Any], None]]] = {
    ("http", "stock"): (False, _stock_writelines),
    ("http", "wsa-send"): (True, _wsa_send),
    ("http", "wsa-writelines"): (True, _stock_writelines),
    ("resp", "stock"): (False, _stock_write),
    ("resp", "wsa-send"): (True, _wsa_send_one),
    ("resp", "wsa-write"): (True, _stock_write),
}


def _new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def serve(proto: str, impl: str, *, ready: Callable[[int], None], stop: asyncio.Future[None]) -> None:
    """Serve ``proto`` with ``impl`` on 127.0.0.1 (a free port, passed to ``ready``) until ``stop``."""
    use_wsa, reply = IMPLS[(proto, impl)]
    store: dict[bytes, bytes] = {}
    if proto == "http":

        def factory() -> asyncio.BaseProtocol:
            return HttpServerProtocol(reply)

    else:

        def factory() -> asyncio.BaseProtocol:
            return RespServerProtocol(reply, store)

    loop = asyncio.get_running_loop()
    server: Any
    if use_wsa:
        import wsasend

        server = await wsasend.create_server(factory, "127.0.0.1", 0, backlog=1024)
    else:
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await stop


def _serve_main(proto: str, impl: str, loop_name: str) -> int:
    """The server process: print the port, serve until stdin closes."""
    loop = _new_loop(loop_name)
    asyncio.set_event_loop(loop)
    stop: asyncio.Future[None] = loop.create_future()

    def ready(port: int) -> None:
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()

    def stdin_closed() -> None:
        if not os.read(0, 4096) and not stop.done():
            stop.set_result(None)

    loop.add_reader(0, stdin_closed)
    # WSASEND_BENCH_PROFILE=FILE: cProfile the server (pstats dump to FILE when it stops).
    profile_to = os.environ.get("WSASEND_BENCH_PROFILE")
    prof = None
    if profile_to:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        loop.run_until_complete(serve(proto, impl, ready=ready, stop=stop))
    finally:
        if prof is not None and profile_to:
            prof.disable()
            prof.dump_stats(profile_to)
        loop.remove_reader(0)
        loop.close()
    return 0


# -- the driver --------------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """Seconds of CPU used so far by every thread of process ``pid``."""
    total = 0
    found = False
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
                found = True
        except (OSError, ValueError, IndexError):
            continue
    if found:
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime), counted from 1 with pid and comm as 1 and 2.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """One server in its own process; ``close()`` (stdin EOF) stops it."""

    def __init__(self, proto: str, impl: str, loop: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        self.name = f"{proto}:{impl}[{loop}]"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers", "serve", proto, impl, loop],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(_ROOT),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.close()
            raise RuntimeError(f"server {self.name} did not start (status {self.proc.poll()})")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    def close(self) -> None:
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Workload:
    """One client load: ``key`` names it; ``requests`` is the count of one run."""

    key: str
    proto: str
    client: str  # "ab" or "redis-benchmark"
    requests: int
    pipeline: int = 1
    # ab only: False for a new connection per request (HTTP/1.0 without Keep-Alive: the server
    # closes after its reply), the connection set-up and tear-down of an ordinary server.
    keepalive: bool = True
    # Clients at a time (ab -c, redis-benchmark -c). One (HC1): every connection finds the
    # server idle, nothing shared between connections in a wake-up of its loop.
    concurrency: int = CONCURRENCY

    def describe(self) -> str:
        c = self.concurrency
        if self.client == "ab" and not self.keepalive:
            return f"HTTP, a connection per request, ab -c {c}, {self.requests} requests, 1 KiB body"
        if self.client == "ab":
            return f"HTTP keep-alive, ab -k -c {c}, {self.requests} requests, 1 KiB body"
        p = f" -P {self.pipeline}" if self.pipeline > 1 else ", no pipelining"
        return f"RESP, redis-benchmark -c {c}{p} -t ping,set,get, {self.requests} requests per test"


def default_workloads(scale: float = 1.0) -> list[Workload]:
    def n(v: int) -> int:
        return max(100, int(v * scale))

    return [
        Workload("H", "http", "ab", n(40000)),
        Workload("HC", "http", "ab", n(10000), keepalive=False),
        Workload("HC1", "http", "ab", n(3000), keepalive=False, concurrency=1),
        Workload("R1", "resp", "redis-benchmark", n(5000)),
        Workload("R16", "resp", "redis-benchmark", n(20000), PIPELINE),
    ]


#: The workloads with tiny counts, for the harness test: (key, protocol, client, pipeline,
#: keep-alive, concurrency).
TINY = (
    ("H", "http", "ab", 1, True, CONCURRENCY),
    ("HC", "http", "ab", 1, False, CONCURRENCY),
    ("HC1", "http", "ab", 1, False, 1),
    ("R1", "resp", "redis-benchmark", 1, True, CONCURRENCY),
    ("R16", "resp", "redis-benchmark", PIPELINE, True, CONCURRENCY),
)


@dataclass
class ClientResult:
    ok: bool
    requests: int = 0
    rps: float = 0.0
    cpu: float = 0.0  # server CPU seconds during the run
    problem: str = ""

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu * 1e6 / self.requests if self.requests else 0.0


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=GUARD_SECONDS, check=False)


def run_ab(port: int, requests: int, concurrency: int = CONCURRENCY, *, keepalive: bool = True) -> ClientResult:
    """``ab -k`` (``ab`` for a connection per request): checks the count, failures, and every
    byte received (header + body per reply)."""
    keep = ["-k"] if keepalive else []
    proc = _run(
        ["ab", "-q", *keep, "-s", "30", "-c", str(concurrency), "-n", str(requests), f"http://127.0.0.1:{port}/"]
    )
    out = proc.stdout

    def grab(label: str) -> str | None:
        m = re.search(rf"^{label}:\s+([\d.]+)", out, re.MULTILINE)
        return m.group(1) if m else None

    complete, failed, transferred, rps = (
        grab("Complete requests"),
        grab("Failed requests"),
        grab("Total transferred"),
        grab("Requests per second"),
    )
    if proc.returncode != 0 or None in (complete, failed, transferred, rps):
        return ClientResult(False, problem=f"ab failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    assert complete is not None and failed is not None and transferred is not None and rps is not None
    problems = []
    if int(complete) != requests:
        problems.append(f"{complete} of {requests} requests completed")
    if int(failed):
        problems.append(f"{failed} failed requests")
    expected = requests * (len(_HTTP_HEADER) + len(HTTP_BODY))
    if int(transferred) != expected:
        problems.append(f"{transferred} bytes received, expected {expected}")
    return ClientResult(not problems, requests=requests, rps=float(rps), problem="; ".join(problems))


#: redis-benchmark's tests for ``-t ping,set,get`` (PING runs inline and multibulk).
RESP_TESTS = ("PING_INLINE", "PING_MBULK", "SET", "GET")


def run_redis_benchmark(port: int, requests: int, pipeline: int, concurrency: int = CONCURRENCY) -> ClientResult:
    """``redis-benchmark -t ping,set,get``: every test must report; requests/s over all of them."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(concurrency), "-n", str(requests)]
    cmd += ["-P", str(pipeline), "-t", "ping,set,get", "--csv"]
    proc = _run(cmd)
    rates: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] in RESP_TESTS:
            with contextlib.suppress(ValueError):
                rates[cells[0]] = float(cells[1])
    missing = [t for t in RESP_TESTS if not rates.get(t)]
    if proc.returncode != 0 or missing:
        return ClientResult(
            False,
            problem=f"redis-benchmark failed ({proc.returncode}), no result for {missing}: "
            f"{(proc.stderr or proc.stdout).strip()[-300:]}",
        )
    total = requests * len(RESP_TESTS)
    # A test too short for its millisecond clock reports "inf" requests/s (a tiny run on a fast
    # machine): it took no measurable time. With every test so, requests/s is not measured (0.0,
    # left out of the paired ratios); each test still reported.
    seconds = sum(requests / r for r in rates.values() if math.isfinite(r))
    return ClientResult(True, requests=total, rps=total / seconds if seconds > 0 else 0.0)


def run_client(w: Workload, server: ServerProcess) -> ClientResult:
    """One bounded client run against ``server``, with the server's CPU measured around it."""
    cpu0 = server.cpu()
    if w.client == "ab":
        result = run_ab(server.port, w.requests, w.concurrency, keepalive=w.keepalive)
    else:
        result = run_redis_benchmark(server.port, w.requests, w.pipeline, w.concurrency)
    result.cpu = server.cpu() - cpu0
    if server.proc.poll() is not None:
        result.ok = False
        result.problem = f"the server exited (status {server.proc.returncode}); " + result.problem
    return result


# -- the matrix -------------------------------------------------------------------------------------


@dataclass
class Case:
    workload: Workload
    impl: str
    loop: str
    rounds: list[ClientResult] = field(default_factory=list)

    @property
    def case_id(self) -> str:
        return f"{self.impl}[{self.loop}]"

    def good(self) -> list[ClientResult]:
        return [r for r in self.rounds if r.ok]


def _impls(proto: str, wanted: set[str] | None) -> list[str]:
    names = [impl for (p, impl) in IMPLS if p == proto]
    return [i for i in names if wanted is None or i in wanted or i == "stock"]


def missing_clients() -> list[str]:
    return [c for c in PACKAGES if shutil.which(c) is None]


def install_clients(log: Callable[[str], None]) -> None:
    """Install the missing clients from Debian's packages (root and apt-get only)."""
    missing = missing_clients()
    if not missing:
        return
    pkgs = sorted({PACKAGES[c] for c in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(f"cannot install {', '.join(pkgs)} here (needs root and apt-get)")
        return
    log(f"installing {', '.join(pkgs)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], check=False, env=env, timeout=600)


def run_matrix(
    workloads: Sequence[Workload],
    loops: Sequence[str],
    rounds: int,
    impls: set[str] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> list[list[Case]]:
    """Every workload x impl x loop, ``rounds`` paired rounds (all cases of a group per round,
    in an order rotated by one case each round).

    Every round starts a fresh server process per case and gives it one untimed warm-up run
    (it must verify) before the timed one. One process kept for all rounds carried its own
    bias into every round of its case: on this 2-core machine one server process ran every
    round at about 14 us of CPU per request where the next, same code, ran at about 10 (issue
    11), so a run's paired median moved by that much from run to run. Fresh processes make
    that bias one more per-round noise, which the median of the rounds evens out.
    """
    groups: list[list[Case]] = []
    for w in workloads:
        if shutil.which(w.client) is None:
            log(f"{w.key}: skipped, {w.client} is not installed (Debian package {PACKAGES[w.client]})")
            continue
        group = [Case(w, impl, loop) for loop in loops for impl in _impls(w.proto, impls)]
        log(f"{w.key}: {w.describe()}, {len(group)} cases x {rounds} rounds")
        warm = Workload(w.key, w.proto, w.client, max(100, w.requests // 10), w.pipeline, w.keepalive)
        for r in range(rounds):
            servers: dict[tuple[str, str, str], ServerProcess] = {}
            try:
                live = []
                for case in group:
                    key = (w.proto, case.impl, case.loop)
                    servers[key] = ServerProcess(*key)
                    result = run_client(warm, servers[key])
                    if result.ok:
                        live.append(case)
                    else:
                        log(f"  FAILED warm-up {w.key} {case.case_id} (round {r + 1}): {result.problem}")
                        case.rounds.append(result)  # (this round's result: failed)
                # Each round starts at the next case (A B C, B C A, C A B, ...): no case always
                # runs first (right after the warm-ups), so a position effect does not bias one
                # side of every pair.
                k = r % len(live) if live else 0
                for case in live[k:] + live[:k]:
                    result = run_client(w, servers[(w.proto, case.impl, case.loop)])
                    if not result.ok:
                        log(f"  FAILED round {r + 1} {w.key} {case.case_id}: {result.problem}")
                    case.rounds.append(result)
            finally:
                for server in servers.values():
                    server.close()
            log(f"  round {r + 1}/{rounds} done")
        groups.append(group)
    return groups


def paired(a: Case, b: Case, metric: str) -> list[float]:
    """``a / b`` of ``metric`` ("cpu" per request or "rps") for each round both ran fine."""
    out = []
    for ra, rb in zip(a.rounds, b.rounds, strict=False):
        if ra.ok and rb.ok:
            va = ra.cpu_us_per_request if metric == "cpu" else ra.rps
            vb = rb.cpu_us_per_request if metric == "cpu" else rb.rps
            if va > 0 and vb > 0:  # (0: requests/s not measured, see run_redis_benchmark)
                out.append(va / vb)
    return out


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def table(groups: list[list[Case]]) -> str:
    """Markdown: per workload, each case's requests/s and server CPU per request, and the
    paired ratios against the stock server of the same loop."""
    lines: list[str] = []
    for group in groups:
        w = group[0].workload
        lines += [f"### {w.key}: {w.describe()}", ""]
        lines.append(
            "| server | loop | requests/s median (min-max) | server CPU µs/request | CPU vs stock (paired) "
            "| requests/s vs stock (paired) | rounds ok |"
        )
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
        for case in group:
            stock = next(c for c in group if c.loop == case.loop and c.impl == "stock")
            good = case.good()
            cpu_ratio = "1" if case is stock else _spread(paired(case, stock, "cpu"), ".2f")
            rps_ratio = "1" if case is stock else _spread(paired(case, stock, "rps"), ".2f")
            lines.append(
                f"| {case.impl} | {case.loop} | {_spread([r.rps for r in good], ',.0f')}"
                f" | {_spread([r.cpu_us_per_request for r in good], '.1f')} | {cpu_ratio} | {rps_ratio}"
                f" | {len(good)}/{len(case.rounds)} |"
            )
        lines.append("")
    lines.append(
        "CPU vs stock < 1 means the wsasend server spends less CPU per request. Medians of ratios "
        "paired within a round; the machine is shared, so single rounds move by 10-30%."
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsasend bench --servers", description=__doc__)
    p.add_argument("--rounds", type=int, default=5, help="paired rounds per case (default 5)")
    p.add_argument(
        "--workloads",
        help=(
            "comma-separated: H (HTTP keep-alive), HC (HTTP, a connection per request), HC1 (the same,"
            " one client at a time), R1 (RESP), R16 (RESP -P 16)"
        ),
    )
    p.add_argument("--loops", help="comma-separated: asyncio,uvloop (default both)")
    p.add_argument("--impls", help="comma-separated: wsa-send,wsa-writelines,wsa-write (stock always runs)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every request count (default 1)")
    p.add_argument("--install", action="store_true", help="apt-get install missing clients (root only)")
    p.add_argument("--json", metavar="FILE", help="write every round as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the servers benchmark and print its tables. 1 when a run failed, 2 when nothing ran."""
    args = _parser().parse_args(list(argv) if argv is not None else None)

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    if args.install:
        install_clients(log)
    workloads = default_workloads(args.scale)
    if args.workloads:
        keys = {k.strip() for k in args.workloads.split(",")}
        workloads = [w for w in workloads if w.key in keys]
    loops = [lp.strip() for lp in args.loops.split(",")] if args.loops else list(LOOPS)
    impls = {i.strip() for i in args.impls.split(",")} if args.impls else None
    missing = missing_clients()
    if missing:
        pkgs = " ".join(sorted({PACKAGES[c] for c in missing}))
        log(f"not installed: {', '.join(missing)}; install with `apt-get install -y {pkgs}` (or pass --install)")
    started = time.monotonic()
    groups = run_matrix(workloads, loops, args.rounds, impls, log)
    if not groups:
        print("nothing ran: no client is installed for the selected workloads", file=sys.stderr)
        return 2
    import wsasend

    compiled = getattr(wsasend, "compiled", None)
    print(
        f"wsasend servers bench ({args.rounds} paired rounds, {time.monotonic() - started:.0f} s, "
        f"wsasend {wsasend.__version__}{'' if compiled is None else f', compiled={compiled}'}, "
        f"Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f})\n"
    )
    print(table(groups))
    if args.json:
        import json

        data = [
            {
                "workload": c.workload.key,
                "impl": c.impl,
                "loop": c.loop,
                "rounds": [vars(r) for r in c.rounds],
                "cpu_vs_stock": paired(c, next(s for s in g if s.loop == c.loop and s.impl == "stock"), "cpu"),
            }
            for g in groups
            for c in g
        ]
        Path(args.json).write_text(json.dumps(data, indent=1))
    failed = any(not r.ok for g in groups for c in g for r in c.rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(_serve_main(*sys.argv[2:5]))
    sys.exit(main())
