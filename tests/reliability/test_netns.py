"""Issue 7, item 2: a real link between two network namespaces, cut mid-transfer; netem delay/loss.

The test process stays in the root namespace; the peer (``peer.py sink``) runs in a namespace of
its own (``ip netns exec``), reached over a veth pair. Needs root and ``ip``; every test skips
with the reason when the sandbox refuses ``ip netns add``, and the netem test skips when the
kernel has no ``sch_netem`` (probed, not assumed).

Checks after each: no hang, exact counts (S6.4) against the kernel's own ``sendmsg`` answers,
the peer read an exact prefix (all of it when the link came back), no leaked fds or writers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from wsasend import WSAErrorCode, closesocket

from ._support import FdLedger, LedgerSocket, PeerProcess, check_exact, settle
from .test_faults import BUF, GUARD, Stream, _finish, _until

# The veth pair's /30 lies in 10.213.0.0/16, an arbitrary private block that nothing else here
# uses; each test process takes its own /30 (from its pid), so two runs side by side (a developer
# and CI on one machine) never share an address.
# TCP_USER_TIMEOUT for the permanent cut: how long the kernel keeps retransmitting before it
# gives up with ETIMEDOUT (without it a cut link leaves the sends pending for ~15 minutes, which
# is TCP's promise, not a hang of ours). Arbitrary: short enough for CI, long enough to be real.
USER_TIMEOUT_MS = 1500


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Link:
    """A namespace with a veth pair to the root namespace; ``up()``/``down()`` cut the cable."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.ns = f"wsasend-r7-{tag}"
        self.host_if = f"wr7h{tag}"
        self.peer_if = f"wr7p{tag}"
        block = os.getpid() % 16384  # 16384 /30 blocks in a /16
        base = f"10.213.{block // 64}."
        self.host_addr = base + str((block % 64) * 4 + 1)
        self.peer_addr = base + str((block % 64) * 4 + 2)

    def create(self) -> str | None:
        """Make it; returns the reason when this machine refuses (then nothing is left behind)."""
        if os.geteuid() != 0:
            return "needs root for ip netns"
        if shutil.which("ip") is None:
            return "no `ip` (Debian package iproute2)"
        made = _ip("netns", "add", self.ns, check=False)
        if made.returncode != 0:
            return f"`ip netns add` refused in this sandbox: {made.stderr.strip()}"
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
            _ip("link", "set", self.peer_if, "netns", self.ns)
            _ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            _ip("-n", self.ns, "addr", "add", f"{self.peer_addr}/30", "dev", self.peer_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.ns, "link", "set", self.peer_if, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            self.destroy()
            return f"veth setup refused: {exc.stderr.strip()}"
        return None

    def destroy(self) -> None:
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.ns, check=False)

    def down(self) -> None:
        _ip("-n", self.ns, "link", "set", self.peer_if, "down")

    def up(self) -> None:
        _ip("-n", self.ns, "link", "set", self.peer_if, "up")

    def netem(self, *spec: str) -> str | None:
        """Add a netem qdisc on both ends; returns the reason when the kernel has none."""
        for args in (["qdisc", "add", "dev", self.host_if], ["-n", self.ns, "qdisc", "add", "dev", self.peer_if]):
            done = subprocess.run(
                ["tc", *args, "root", "netem", *spec], capture_output=True, text=True, check=False, timeout=30
            )
            if done.returncode != 0:
                return f"tc netem unavailable: {done.stderr.strip() or done.returncode} (kernel without sch_netem)"
        return None


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    link = Link()
    reason = link.create()
    if reason is not None:
        pytest.skip(reason)
    try:
        yield link
    finally:
        link.destroy()


async def _connect(link: Link, peer: PeerProcess) -> LedgerSocket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
    raw.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(raw, (link.peer_addr, peer.port)), GUARD)
    return LedgerSocket.wrap(raw)


def _netns_sink(link: Link) -> PeerProcess:
    return PeerProcess("sink", "--host", link.peer_addr, "--rcvbuf", str(BUF), "--timeout", "120", netns=link.ns)


async def test_netns_link_cut_then_restored(link: Link) -> None:
    """The link goes down mid-transfer and comes back: sends wait, then all finish byte-exact."""
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    peer = _netns_sink(link)
    try:
        stream = Stream(await _connect(link, peer))
        # TCP_USER_TIMEOUT would end a long cut; this one is shorter, so turn it off again.
        stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 0)
        stream.post_many(800)  # ~3 MB
        got = await peer.command("read 500000", GUARD)
        assert got["ok"]
        link.down()
        try:
            peer.send("drain")
            await asyncio.sleep(0.5)  # real time with the cable cut (not an assertion on timing)
            assert stream.pending() > 0  # nothing fails while TCP retransmits
            assert all(ov.error == 0 for ov, _ in stream.ops)
        finally:
            link.up()
        await settle(stream.ops, GUARD)
        total = _finish(stream, loop)
        assert total == stream.offset
        closesocket(stream.sock)
        got = await peer.line(GUARD)
        assert got == {"received": total, "ok": True, "eof": True, "error": ""}
    finally:
        link.up()
        peer.close()
    del stream  # drop our last reference to the socket before counting fds
    fds.assert_no_leak()


async def test_netns_link_cut_for_good(link: Link) -> None:
    """The link goes down for good: the kernel gives up (TCP_USER_TIMEOUT) and every pending send
    fails with the kernel's error and an exact count; the peer read an exact prefix (S6.3, S6.4)."""
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    peer = _netns_sink(link)
    try:
        stream = Stream(await _connect(link, peer))
        stream.post_many(800)
        got = await peer.command("read 500000", GUARD)
        assert got["ok"]
        link.down()
        try:
            await _until(lambda: stream.pending() == 0, "sends still pending after the kernel gave up")  # noqa: F821
            await settle(stream.ops, GUARD)
            total = _finish(stream, loop)
            errors = {ov.error for ov, _ in stream.ops if ov.error}
            assert errors, "the cut failed no send"
            assert errors <= {WSAErrorCode.WSAETIMEDOUT, WSAErrorCode.WSAEHOSTUNREACH, WSAErrorCode.WSAENETUNREACH}
            closesocket(stream.sock)
        finally:
            link.up()
        got = await peer.command("status", GUARD)
        assert got["ok"] and got["received"] <= total
    finally:
        link.up()
        peer.kill()
        peer.close()
    del stream  # drop our last reference to the socket before counting fds
    fds.assert_no_leak()


async def test_netns_netem_delay_and_loss(link: Link) -> None:
    """Delay and loss on the link (tc netem): a 2 MB transfer still arrives byte-exact."""
    reason = link.netem("delay", "5ms", "loss", "2%")
    if reason is not None:
        pytest.skip(reason)
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    peer = _netns_sink(link)
    try:
        stream = Stream(await _connect(link, peer))
        stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 0)
        peer.send("drain")
        stream.post_many(500)
        await settle(stream.ops, 120.0)
        total = _finish(stream, loop)
        assert total == stream.offset
        closesocket(stream.sock)
        got = await peer.line(120.0)
        assert got == {"received": total, "ok": True, "eof": True, "error": ""}
        assert check_exact(stream.ops) == total
    finally:
        for args in (
            ["qdisc", "del", "dev", link.host_if, "root"],
            ["-n", link.ns, "qdisc", "del", "dev", link.peer_if, "root"],
        ):
            subprocess.run(["tc", *args], capture_output=True, check=False, timeout=30)
        peer.close()
    del stream  # drop our last reference to the socket before counting fds
    fds.assert_no_leak()
