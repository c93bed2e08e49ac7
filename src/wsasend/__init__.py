"""wsasend: Winsock's WSASend semantics for asyncio on Linux.

``n = await wsa_send(sock, [header, body, trailer])`` sends the buffers as one gathered
``sendmsg`` vector, without copying them, and completes like an overlapped WSASend. See the
README and docs/semantics.md (sections S1-S10, the "SPEC" the docstrings cite) for the contract.
"""

from ._api import closesocket, set_max_pending, wsa_send
from ._buffers import WSABUF, remaining
from ._errors import WSAError, WSAErrorCode, errno_to_wsa
from ._loop import EventLoopPolicy, WSAEventLoop, install, new_event_loop, new_uvloop_event_loop, run
from ._overlapped import CompletedSend, WSAEvent, WSAOverlapped
from ._server import WSAServer, create_server, create_unix_server, start_server
from ._sockutil import MSG_DONTROUTE, MSG_OOB, MSG_PARTIAL, max_message_size
from ._sync import wsa_send_sync
from ._transport import (
    WSAProtocol,
    WSATransport,
    connect_accepted_socket,
    create_connection,
    create_unix_connection,
    open_connection,
)

__all__ = [
    "CompletedSend",
    "EventLoopPolicy",
    "MSG_DONTROUTE",
    "MSG_OOB",
    "MSG_PARTIAL",
    "WSABUF",
    "WSAError",
    "WSAErrorCode",
    "WSAEvent",
    "WSAEventLoop",
    "WSAOverlapped",
    "WSAProtocol",
    "WSAServer",
    "WSATransport",
    "closesocket",
    "connect_accepted_socket",
    "create_connection",
    "create_server",
    "create_unix_connection",
    "create_unix_server",
    "errno_to_wsa",
    "install",
    "max_message_size",
    "new_event_loop",
    "new_uvloop_event_loop",
    "open_connection",
    "remaining",
    "run",
    "set_max_pending",
    "start_server",
    "wsa_send",
    "wsa_send_sync",
]

__version__ = "0.1.0"
