"""``_sockutil.accepted_socket`` and ``close_socket``: ``socket.socket(..., fileno=fd)`` and
``sock.close()`` without their interpreted frames (issue 11, workload HC).

What must hold, in both builds: the accepted socket is the object the class would have made
(family, type, protocol, descriptor, blocking mode, ``makefile``, ``close``), a descriptor that
is no socket raises as the constructor does, and ``close_socket`` closes exactly as ``close()``
does: at once for a plain socket, only when the last ``makefile()`` object closes if one is
open, and through the class's own ``close()`` for a subclass.
"""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from wsasend import _sockutil


def _accepted_pair() -> tuple[socket.socket, int, socket.socket]:
    """A listener, the descriptor of a connection it accepted (not wrapped yet), and its client."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    fd, _addr = listener._accept()  # type: ignore[attr-defined]
    return listener, fd, client


def test_an_accepted_socket_is_what_the_class_makes() -> None:
    listener, fd, client = _accepted_pair()
    listener2, fd2, client2 = _accepted_pair()
    with listener, client, listener2, client2:
        made = _sockutil.accepted_socket(int(socket.AF_INET), int(socket.SOCK_STREAM), 0, fd)
        reference = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd2)
        with made, reference:
            assert type(made) is socket.socket
            for name in ("family", "type", "proto"):
                assert getattr(made, name) == getattr(reference, name), name
            assert made.family is socket.AF_INET and made.type is socket.SOCK_STREAM
            assert made.fileno() == fd
            assert made.gettimeout() == reference.gettimeout()
            assert made.getpeername() == client.getsockname()
            assert repr(made).startswith(f"<socket.socket fd={fd}, family=")
            # It talks, and makefile() (which counts on __init__'s attributes) works.
            client.sendall(b"ping\n")
            with made.makefile("rb") as reader:
                assert reader.readline() == b"ping\n"
            made.sendall(b"pong")
            assert client.recv(4) == b"pong"
        assert made.fileno() == -1
        assert getattr(made, "_closed") is True  # noqa: B009


def test_a_descriptor_that_is_no_socket_raises_as_the_constructor_does() -> None:
    with tempfile.TemporaryFile() as f:
        fd = f.fileno()
        with pytest.raises(OSError) as expected:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd)
        with pytest.raises(OSError) as got:
            _sockutil.accepted_socket(int(socket.AF_INET), int(socket.SOCK_STREAM), 0, fd)
        assert got.value.errno == expected.value.errno
        os.fstat(fd)  # (still open: the caller closes it, as it did after the constructor)


def test_close_socket_closes_a_plain_socket_at_once() -> None:
    a, b = socket.socketpair()
    with b:
        _sockutil.close_socket(a)
        assert a.fileno() == -1
        assert getattr(a, "_closed") is True  # noqa: B009
        assert _sockutil.is_closed(a)
        assert b.recv(1) == b""  # the peer sees it: the descriptor is closed, not only marked


def test_close_socket_waits_for_an_open_makefile_as_close_does() -> None:
    a, b = socket.socketpair()
    with b:
        reader = a.makefile("rb")
        _sockutil.close_socket(a)
        assert getattr(a, "_closed") is True  # noqa: B009
        assert a.fileno() != -1  # the file still holds the descriptor, as after a.close()
        b.sendall(b"x")
        assert reader.read(1) == b"x"
        reader.close()
        assert a.fileno() == -1
        assert b.recv(1) == b""


def test_close_socket_calls_a_subclass_close() -> None:
    calls: list[str] = []

    class Tracked(socket.socket):
        def close(self) -> None:
            calls.append("close")
            super().close()

    a, b = socket.socketpair()
    tracked = Tracked(a.family, a.type, a.proto, fileno=a.detach())
    with b:
        _sockutil.close_socket(tracked)
        assert calls == ["close"]
        assert tracked.fileno() == -1


class _MySocket(socket.socket):
    """A subclass: ``descriptor`` and ``is_closed`` ask its own methods and attributes."""


@pytest.mark.parametrize("cls", [socket.socket, _MySocket])
@pytest.mark.parametrize("end", ["open", "close", "detach", "bare close", "makefile open"])
def test_descriptor_and_is_closed_answer_as_fileno_and_closed(cls: type[socket.socket], end: str) -> None:
    """``descriptor`` is ``fileno()`` and ``is_closed`` is ``_closed or fileno() < 0``, for a
    plain socket (read in C in the compiled build) and a subclass, in every state a transport
    meets: open, closed, detached, closed by the C type's own ``close`` behind the object's
    back, and closed while a ``makefile()`` object keeps the descriptor open."""
    sock = cls(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = sock.fileno()
    kept = None
    if end == "close":
        sock.close()
    elif end == "detach":
        os.close(sock.detach())
    elif end == "bare close":
        socket._socket.socket.close(sock)  # type: ignore[attr-defined]
    elif end == "makefile open":
        kept = sock.makefile("rb")
        sock.close()
    try:
        assert _sockutil.descriptor(sock) == sock.fileno()
        expected = bool(getattr(sock, "_closed", False)) or sock.fileno() < 0
        assert _sockutil.is_closed(sock) is expected
        assert expected is (end != "open")
        if end == "makefile open":
            assert sock.fileno() == fd  # (the descriptor stays open for the file object)
    finally:
        if kept is not None:
            kept.close()
        sock.close()


@pytest.mark.parametrize("cls", [socket.socket, _MySocket])
def test_io_refs_add_is_getattr_then_setattr_of_the_count(cls: type[socket.socket]) -> None:
    """``io_refs_add(sock, delta, default)`` is ``getattr(sock, "_io_refs", default) + delta``,
    stored (a delta of 0 only reads), on a socket whose count ``makefile()`` and ``close()``
    use too: the count it writes is the one ``close()`` waits for."""
    with cls(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        assert _sockutil.io_refs_add(sock, 0, 7) == 0 == sock._io_refs  # type: ignore[attr-defined]
        reader = sock.makefile("rb")  # (the socket's own count: 1)
        assert _sockutil.io_refs_add(sock, 1, 0) == 2 == sock._io_refs  # type: ignore[attr-defined]
        fd = sock.fileno()
        sock.close()  # two holds: the descriptor stays open
        assert sock.fileno() == fd and _sockutil.is_closed(sock)
        reader.close()  # one hold left (ours): still open
        assert sock.fileno() == fd
        assert _sockutil.io_refs_add(sock, -1, 1) == 0 == sock._io_refs  # type: ignore[attr-defined]
        sock.close()
        assert sock.fileno() == -1


def test_io_refs_add_takes_the_default_for_an_unset_count() -> None:
    """A socket object whose ``__init__`` never ran has no ``_io_refs``: the default is used,
    and stored plus ``delta`` as setattr would."""
    sock = socket.socket.__new__(socket.socket)
    assert not hasattr(sock, "_io_refs")
    assert _sockutil.io_refs_add(sock, 0, 5) == 5
    assert not hasattr(sock, "_io_refs")  # (a read stores nothing)
    assert _sockutil.io_refs_add(sock, 2, 5) == 7 == sock._io_refs  # type: ignore[attr-defined]


def test_an_accepted_socket_has_the_slots_init_sets() -> None:
    listener, fd, client = _accepted_pair()
    with listener, client:
        made = _sockutil.accepted_socket(int(socket.AF_INET), int(socket.SOCK_STREAM), 0, fd)
        with made:
            assert _slot(made, "_io_refs") == 0 and _slot(made, "_closed") is False
        assert _slot(made, "_closed") is True
        made2 = _sockutil.accepted_socket(int(socket.AF_INET), int(socket.SOCK_STREAM), 0, os.dup(client.fileno()))
        _sockutil.close_socket(made2)  # (the C close after _closed, as close() does)
        assert _slot(made2, "_closed") is True and made2.fileno() == -1


def _slot(sock: socket.socket, name: str) -> object:
    """One of socket.socket's own slots (``_io_refs``, ``_closed``), as Python reads it."""
    return getattr(sock, name)
