"""``_iovsend.watch_poll``: the error watch's poll and dispatch in one C call (issue 11).

uvloop transports read through the loop's ErrorWatch, whose reader runs once per wake-up of the
loop; ``select.epoll.poll`` and a Python loop over its tuples cost ~2,600 instructions of a
request with one client. The C call must do what that loop does (``ErrorWatch._ready`` in the
plain-Python build): report each ready descriptor once, with its event mask, to the owner its
weak reference still holds, skip dead and unknown ones, and fail as ``epoll.poll`` fails.
Real sockets and a real epoll; the transports that use it are tested on both loops in
``tests/transport/test_watch_reads.py``.
"""

from __future__ import annotations

import errno
import select
import socket
import weakref
from typing import Any

import pytest

from wsasend import _errorwatch

POLL = _errorwatch._IOV_WATCH_POLL
pytestmark = pytest.mark.skipif(POLL is None, reason="plain-Python build: select.epoll.poll itself")


class _Owner:
    def __init__(self, log: list[tuple[str, int]], name: str, then: Any = None) -> None:
        self.log = log
        self.name = name
        self.then = then

    def _watch_event(self, events: int) -> None:
        self.log.append((self.name, events))
        if self.then is not None:
            self.then()


def _poll(epfd: int, owners: dict[int, Any]) -> None:
    assert POLL is not None
    POLL(epfd, owners)


def test_each_ready_descriptor_reaches_its_live_owner_once_with_its_mask() -> None:
    log: list[tuple[str, int]] = []
    pairs = [socket.socketpair() for _ in range(4)]
    with select.epoll() as ep:
        try:
            a, b, dead, unknown = (ours for ours, _peer in pairs)
            for sock in (a, b, dead, unknown):
                ep.register(sock.fileno(), select.EPOLLIN)
            owner_a, owner_b, gone = _Owner(log, "a"), _Owner(log, "b"), _Owner(log, "dead")
            owners = {
                a.fileno(): weakref.ref(owner_a),
                b.fileno(): weakref.ref(owner_b),
                dead.fileno(): weakref.ref(gone),
            }
            del gone  # (its reference is dead now: skipped)
            _poll(ep.fileno(), owners)
            assert log == []  # nothing readable yet
            for _ours, peer in pairs:
                peer.send(b"x")
            pairs[1][1].close()  # b's peer gone too: EPOLLIN | EPOLLHUP for b
            _poll(ep.fileno(), owners)
            assert sorted(log) == [("a", select.EPOLLIN), ("b", select.EPOLLIN | select.EPOLLHUP)]
        finally:
            for ours, peer in pairs:
                ours.close()
                peer.close()


def test_an_owner_that_drops_another_during_the_batch_is_safe() -> None:
    """A report may close other transports (the owners dict changes under the loop, and an
    owner may lose its last reference): the call holds what it uses."""
    log: list[tuple[str, int]] = []
    (a, pa), (b, pb) = socket.socketpair(), socket.socketpair()
    with select.epoll() as ep, a, pa, b, pb:
        ep.register(a.fileno(), select.EPOLLIN)
        ep.register(b.fileno(), select.EPOLLIN)
        owners: dict[int, Any] = {}
        holders: list[Any] = []

        def drop_all() -> None:
            owners.clear()
            holders.clear()

        first, second = _Owner(log, "a", drop_all), _Owner(log, "b", drop_all)
        holders.extend([first, second])
        owners[a.fileno()] = weakref.ref(first)
        owners[b.fileno()] = weakref.ref(second)
        del first, second
        pa.send(b"x")
        pb.send(b"x")
        _poll(ep.fileno(), owners)
        assert len(log) == 1 and owners == {}  # the second report found nobody


def test_an_exception_from_an_owner_propagates() -> None:
    def boom() -> None:
        raise KeyboardInterrupt

    log: list[tuple[str, int]] = []
    a, pa = socket.socketpair()
    with select.epoll() as ep, a, pa:
        ep.register(a.fileno(), select.EPOLLIN)
        owner = _Owner(log, "a", boom)
        pa.send(b"x")
        with pytest.raises(KeyboardInterrupt):
            _poll(ep.fileno(), {a.fileno(): weakref.ref(owner)})
        assert log == [("a", select.EPOLLIN)]


def test_bad_arguments_and_a_bad_descriptor_fail_as_epoll_poll_does() -> None:
    raw: Any = POLL
    with pytest.raises(TypeError):
        raw("3", {})
    with pytest.raises(TypeError):
        raw(3, [])
    ep = select.epoll()
    fd = ep.fileno()
    ep.close()
    with pytest.raises(OSError) as caught:
        _poll(fd, {})
    assert caught.value.errno in (9, 22)  # EBADF (or EINVAL, were the number reused meanwhile)
    with socket.socket() as not_an_epoll, pytest.raises(OSError) as caught:
        _poll(not_an_epoll.fileno(), {})
    assert caught.value.errno == 22  # EINVAL
    # An owner that is not a weak reference: a TypeError on every version (3.11 and 3.12 raised
    # SystemError, "bad argument to internal function": review, stop 51).
    a, pa = socket.socketpair()
    with select.epoll() as ready, a, pa:
        ready.register(a.fileno(), select.EPOLLIN)
        pa.send(b"x")
        for bad in ("not a weak reference", None):
            with pytest.raises(TypeError, match="weakref"):
                raw(ready.fileno(), {a.fileno(): bad})


CTL = _errorwatch._IOV_EPOLL_CTL


@pytest.mark.parametrize("way", ["ours", "select.epoll"])
def test_epoll_ctl_is_the_epoll_objects_register_modify_and_unregister(way: str) -> None:
    """``_iovsend.epoll_ctl`` (the error watch's registrations, compiled) does what the epoll
    object's methods do, side by side on real sockets: the registration's mask, its data (the
    descriptor: what ``poll`` reports), and the same errors (FileExistsError for a second
    add, FileNotFoundError for a change or removal of nothing, EBADF for a closed descriptor)."""
    assert CTL is not None
    ep = select.epoll()
    a, b = socket.socketpair()
    ctl = CTL
    ours = way == "ours"

    def add(fd: int, mask: int) -> None:
        ctl(ep.fileno(), _errorwatch._CTL_ADD, fd, mask) if ours else ep.register(fd, mask)

    def mod(fd: int, mask: int) -> None:
        ctl(ep.fileno(), _errorwatch._CTL_MOD, fd, mask) if ours else ep.modify(fd, mask)

    def delete(fd: int) -> None:
        ctl(ep.fileno(), _errorwatch._CTL_DEL, fd, 0) if ours else ep.unregister(fd)

    with ep, a, b:
        add(a.fileno(), select.EPOLLIN)
        assert ep.poll(0) == []  # nothing to read yet
        b.send(b"x")
        assert ep.poll(0) == [(a.fileno(), select.EPOLLIN)]
        with pytest.raises(FileExistsError):
            add(a.fileno(), select.EPOLLIN)
        mod(a.fileno(), select.EPOLLONESHOT)  # errors only, once: data no longer reported
        assert ep.poll(0) == []
        mod(a.fileno(), select.EPOLLIN | select.EPOLLOUT)
        assert ep.poll(0) == [(a.fileno(), select.EPOLLIN | select.EPOLLOUT)]
        delete(a.fileno())
        assert ep.poll(0) == []
        with pytest.raises(FileNotFoundError):
            mod(a.fileno(), select.EPOLLIN)
        with pytest.raises(FileNotFoundError):
            delete(a.fileno())
        closed = socket.socket()
        closed_fd = closed.fileno()
        closed.close()
        with pytest.raises(OSError) as bad:
            add(closed_fd, select.EPOLLIN)
        assert bad.value.errno == errno.EBADF


def test_epoll_ctl_refuses_bad_arguments() -> None:
    assert CTL is not None
    with pytest.raises(TypeError):
        CTL(1, 2, 3)
    with pytest.raises(TypeError):
        CTL("3", _errorwatch._CTL_ADD, 0, 1)
    with pytest.raises(OverflowError):
        CTL(1 << 40, _errorwatch._CTL_ADD, 0, 1)
    with pytest.raises(OverflowError):
        CTL(3, _errorwatch._CTL_ADD, 0, 1 << 40)
