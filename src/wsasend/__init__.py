"""wsasend: Winsock's WSASend semantics for asyncio on Linux.

``n = await wsa_send(sock, [header, body, trailer])`` sends the buffers as one gathered
``sendmsg`` vector, without copying them, and completes like an overlapped WSASend. See the
README and docs/semantics.md (sections S1-S10, the "SPEC" the docstrings cite) for the contract.

:data:`compiled` says which build is running (SPEC S10): True when the hot modules are the
mypyc-compiled extensions, False when they are plain Python.
"""

import sys as _sys

from ._api import closesocket, set_max_pending, wsa_send
from ._buffers import WSABUF, remaining
from ._compat import is_extension_file
from ._connect import connect_accepted_socket, create_connection, create_unix_connection, open_connection
from ._errors import WSAError, WSAErrorCode, errno_to_wsa
from ._loop import EventLoopPolicy, WSAEventLoop, install, new_event_loop, new_uvloop_event_loop, run
from ._overlapped import CompletedSend, WSAEvent, WSAOverlapped
from ._server import WSAServer, create_server, create_unix_server, start_server
from ._sockutil import MSG_DONTROUTE, MSG_OOB, MSG_PARTIAL, max_message_size
from ._sync import wsa_send_sync
from ._transport import WSAProtocol, WSATransport

#: The modules a compiled build compiles with mypyc (all of them, or none: SPEC S10), as
#: buildsupport/wsasend_build.py's COMPILED_MODULES.
_COMPILED_MODULES = ("_queue", "_buffers", "_sockutil", "_overlapped", "_engine", "_api", "_transport", "_errorwatch")


def _is_extension(name: str) -> bool:
    return is_extension_file(getattr(_sys.modules[f"{__name__}.{name}"], "__file__", None))


#: True when this is the mypyc-compiled build, False for plain Python (SPEC S10). Behaviour is
#: the same in both; ``pip install .`` compiles where it can, ``WSASEND_PURE=1`` forces Python.
compiled: bool = all(_is_extension(_m) for _m in _COMPILED_MODULES)

if compiled:
    # Their compiled code reads their globals without owning them: keep the modules to the
    # end of the process, past the interpreter's last collection (see _iovsend.c).
    from . import _iovsend as _iov

    for _m in _COMPILED_MODULES:
        _iov.keep_alive(_sys.modules[f"{__name__}.{_m}"])
    del _iov, _m

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
    "compiled",
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
