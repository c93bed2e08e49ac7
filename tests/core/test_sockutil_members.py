"""``_sockutil.sock_type`` / ``sock_family``: the C socket's own int members (issue 11).

A new connection reads them several times; ``socket.socket``'s properties of the same names
make an enum member per read. Both builds must answer exactly as the properties do (as plain
ints), for every kind of socket the package takes, and refuse what is not a socket as the
member descriptors do. The compiled build reads them through ``_iovsend``'s C readers.
"""

from __future__ import annotations

import socket

import pytest

import wsasend
from wsasend import _sockutil

KINDS = [
    (socket.AF_INET, socket.SOCK_STREAM),
    (socket.AF_INET6, socket.SOCK_STREAM),
    (socket.AF_INET, socket.SOCK_DGRAM),
    (socket.AF_INET6, socket.SOCK_DGRAM),
    (socket.AF_UNIX, socket.SOCK_STREAM),
    (socket.AF_UNIX, socket.SOCK_DGRAM),
    (socket.AF_UNIX, socket.SOCK_SEQPACKET),
]


@pytest.mark.parametrize(("family", "kind"), KINDS)
def test_the_members_are_the_properties_as_ints(family: int, kind: int) -> None:
    # (SOCK_NONBLOCK and SOCK_CLOEXEC in the type argument: the properties leave them out too.)
    with socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC) as sock:
        got = (_sockutil.sock_type(sock), _sockutil.sock_family(sock))
        assert got == (sock.type, sock.family) == (kind, family)
        assert type(got[0]) is int and type(got[1]) is int


def test_a_closed_or_detached_socket_keeps_its_members() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.close()
    assert (_sockutil.sock_type(sock), _sockutil.sock_family(sock)) == (socket.SOCK_DGRAM, socket.AF_INET)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    socket.close(other.detach())
    assert (_sockutil.sock_type(other), _sockutil.sock_family(other)) == (socket.SOCK_STREAM, socket.AF_UNIX)


@pytest.mark.parametrize("thing", [object(), None, 3, "socket"])
def test_what_is_not_a_socket_is_refused(thing: object) -> None:
    with pytest.raises(TypeError):
        _sockutil.sock_type(thing)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _sockutil.sock_family(thing)  # type: ignore[arg-type]


def test_the_compiled_build_reads_them_in_c() -> None:
    readers = (_sockutil._IOV_SOCK_TYPE, _sockutil._IOV_SOCK_FAMILY)
    if wsasend.compiled:
        assert all(r is not None and type(r).__name__ == "builtin_function_or_method" for r in readers)
    else:
        assert readers == (None, None)
