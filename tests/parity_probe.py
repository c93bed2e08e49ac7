"""Call the public API with arguments of the wrong type; print one line per call and its answer.

Run by tests/test_build_parity.py once on the compiled build and once on plain Python: the two
outputs must be the same (SPEC S10, "behaviour is identical in both"). mypyc checks a compiled
function's annotations before its body runs, with TypeErrors of its own, so a parameter that
takes user input must be typed ``object`` and checked by us; this probe is how a parameter that
is not finds its way into a failing test. Not a test module itself (no ``test_`` prefix).

Each line is ``call -> answer``: ``ok <type of the result>`` or ``<exception type>: <message>``,
with memory addresses removed. An unknown keyword is left out on purpose: mypyc's argument
parser words that TypeError differently from CPython's, and no annotation can change it.
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
import sys
import weakref
from collections.abc import Callable
from typing import Any

import wsasend
from wsasend import WSABUF, WSAEvent, WSAOverlapped, closesocket, max_message_size, remaining, set_max_pending

# The wrong (and a few right) values every parameter below is called with.
VALUES: list[tuple[str, Any]] = [
    ("None", None),
    ("1.5", 1.5),
    ("'s'", "s"),
    ("b'b'", b"b"),
    ("-1", -1),
    ("True", True),
    ("False", False),
    ("10**30", 10**30),
    ("[]", []),
    ("object()", object()),
]

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _answer(result: Any) -> str:
    return f"ok {type(result).__name__}"


def _failure(exc: BaseException) -> str:
    return _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")


async def _outcome(call: Callable[[Any, socket.socket], Any], value: Any, sock: socket.socket) -> str:
    try:
        result = call(value, sock)
        if asyncio.iscoroutine(result) or isinstance(result, WSAOverlapped):
            try:
                result = await asyncio.wait_for(result, 5.0)
            except Exception as exc:
                return "awaited " + _failure(exc)
        if isinstance(result, tuple) and result and isinstance(result[0], asyncio.Transport):
            result[0].abort()
            result = result[0]
        return _answer(result)
    except Exception as exc:
        return _failure(exc)


# The transport every transport call below uses (made by main) and a set event (so that a wait
# returns at once, unless its timeout is refused).
_TRANSPORT: list[Any] = []
_EVENT = WSAEvent()
_EVENT.set()

# Each call gets a value of VALUES and a fresh connected socket of its own (``s``).
CALLS: list[tuple[str, Callable[[Any, socket.socket], Any]]] = [
    ("WSAEvent().wait(v)", lambda v, s: _EVENT.wait(v)),
    ("WSAOverlapped().wait(v)", lambda v, s: WSAOverlapped().wait(v)),
    ("WSAOverlapped(v)", lambda v, s: WSAOverlapped(v)),
    ("ov.hEvent = v", lambda v, s: setattr(WSAOverlapped(), "hEvent", v)),
    ("weakref.ref(WSAOverlapped())", lambda v, s: weakref.ref(WSAOverlapped())),
    ("weakref.ref(WSAEvent(v))", lambda v, s: weakref.ref(WSAEvent(v))),
    ("setattr(WSAOverlapped(), 'custom', v)", lambda v, s: setattr(WSAOverlapped(), "custom", v)),
    ("remaining([b'ab'], v)", lambda v, s: remaining([b"ab"], v)),
    ("remaining(v, 0)", lambda v, s: remaining(v, 0)),
    ("WSABUF(v, 1)", lambda v, s: WSABUF(v, 1)),
    ("max_message_size(v)", lambda v, s: max_message_size(v)),
    ("set_max_pending(sock, v)", lambda v, s: set_max_pending(s, v)),
    ("set_max_pending(v, 1)", lambda v, s: set_max_pending(v, 1)),
    ("closesocket(v)", lambda v, s: closesocket(v)),
    ("wsa_send(sock, [b'x'], v)", lambda v, s: wsasend.wsa_send(s, [b"x"], v)),
    ("wsa_send(sock, v)", lambda v, s: wsasend.wsa_send(s, v)),
    ("wsa_send(sock, [b'x'], overlapped=v)", lambda v, s: wsasend.wsa_send(s, [b"x"], overlapped=v)),
    (
        "wsa_send(sock, [b'x'], completion_routine=v)",
        lambda v, s: wsasend.wsa_send(s, [b"x"], completion_routine=v),
    ),
    ("wsa_send(sock, [b'x'], address=v)", lambda v, s: wsasend.wsa_send(s, [b"x"], address=v)),
    ("wsa_send_sync(sock, [b'x'], v)", lambda v, s: wsasend.wsa_send_sync(s, [b"x"], v)),
    ("_TRANSPORT[0].send([b'x'], v)", lambda v, s: _TRANSPORT[0].send([b"x"], v)),
    ("_TRANSPORT[0].send(v)", lambda v, s: _TRANSPORT[0].send(v)),
    ("_TRANSPORT[0].send([b'x'], overlapped=v)", lambda v, s: _TRANSPORT[0].send([b"x"], overlapped=v)),
    ("_TRANSPORT[0].send([b'x'], completion_routine=v)", lambda v, s: _TRANSPORT[0].send([b"x"], completion_routine=v)),
    ("_TRANSPORT[0].write(v)", lambda v, s: _TRANSPORT[0].write(v)),
    ("weakref.ref(_TRANSPORT[0])", lambda v, s: weakref.ref(_TRANSPORT[0])() is _TRANSPORT[0]),
    ("_TRANSPORT[0].__weakref__", lambda v, s: _TRANSPORT[0].__weakref__),
    ("vars(_TRANSPORT[0])", lambda v, s: vars(_TRANSPORT[0])),
    ("_TRANSPORT[0].sendfile(file, v)", lambda v, s: _TRANSPORT[0].sendfile(io.BytesIO(b"xy"), v)),
    ("_TRANSPORT[0].sendfile(file, 0, v)", lambda v, s: _TRANSPORT[0].sendfile(io.BytesIO(b"xy"), 0, v)),
    ("_TRANSPORT[0].writelines(v)", lambda v, s: _TRANSPORT[0].writelines(v)),
    ("_TRANSPORT[0].get_extra_info(v)", lambda v, s: _TRANSPORT[0].get_extra_info(v)),
    ("_TRANSPORT[0].set_write_buffer_limits(v)", lambda v, s: _TRANSPORT[0].set_write_buffer_limits(v)),
    ("_TRANSPORT[0].set_write_buffer_limits(None, v)", lambda v, s: _TRANSPORT[0].set_write_buffer_limits(None, v)),
    (
        "connect_accepted_socket(max_pending_sends=v)",
        lambda v, s: wsasend.connect_accepted_socket(asyncio.Protocol, s, max_pending_sends=v),
    ),
    (
        "connect_accepted_socket(partial_messages=v)",
        lambda v, s: wsasend.connect_accepted_socket(asyncio.Protocol, s, partial_messages=v),
    ),
    (
        "connect_accepted_socket(ssl_handshake_timeout=v)",
        lambda v, s: wsasend.connect_accepted_socket(asyncio.Protocol, s, ssl_handshake_timeout=v),
    ),
    ("connect_accepted_socket(sock=v)", lambda v, s: wsasend.connect_accepted_socket(asyncio.Protocol, v)),
    ("create_connection(host=v, port=1)", lambda v, s: wsasend.create_connection(asyncio.Protocol, v, 1)),
    (
        "create_connection(sock=..., all_errors=v)",
        lambda v, s: wsasend.create_connection(asyncio.Protocol, sock=s, all_errors=v),
    ),
    (
        "create_unix_connection(sock=..., max_pending_sends=v)",
        lambda v, s: wsasend.create_unix_connection(asyncio.Protocol, sock=s, max_pending_sends=v),
    ),
]


async def main() -> None:
    print(f"compiled={wsasend.compiled}")
    ours, peer = socket.socketpair()
    transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
    _TRANSPORT.append(transport)
    for label, value in VALUES:
        for name, call in CALLS:
            pair = socket.socketpair()
            print(f"{name} [{label}] -> {await _outcome(call, value, pair[0])}")
            for end in pair:
                end.close()
    transport.abort()
    peer.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
