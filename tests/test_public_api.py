"""The public surface matches SPEC S1."""

from __future__ import annotations

import wsasend

# SPEC S1, plus the stream helpers and the server class of issue 4, and S10's build flag.
DOCUMENTED = {
    "CompletedSend",
    # S9.1: the loop (issue 12).
    "EventLoopPolicy",
    "WSAEventLoop",
    "create_unix_connection",
    "create_unix_server",
    "install",
    "new_event_loop",
    "new_uvloop_event_loop",
    "run",
    "compiled",
    "MSG_DONTROUTE",
    "MSG_OOB",
    "MSG_PARTIAL",
    "WSABUF",
    "WSAError",
    "WSAErrorCode",
    "WSAEvent",
    "WSAOverlapped",
    "WSAProtocol",
    "WSAServer",
    "WSATransport",
    "closesocket",
    "connect_accepted_socket",
    "create_connection",
    "create_server",
    "errno_to_wsa",
    "max_message_size",
    "open_connection",
    "remaining",
    "set_max_pending",
    "start_server",
    "wsa_send",
    "wsa_send_sync",
}


def test_all_matches_documented_api() -> None:
    assert set(wsasend.__all__) == DOCUMENTED
    for name in wsasend.__all__:
        assert getattr(wsasend, name) is not None


def test_flag_values_are_winsocks() -> None:
    assert (wsasend.MSG_OOB, wsasend.MSG_DONTROUTE, wsasend.MSG_PARTIAL) == (0x1, 0x4, 0x8000)


def test_wsa_send_takes_a_keyword_only_address() -> None:
    """S8.7 (issue 13): a datagram's own destination, keyword-only, None by default."""
    import inspect

    param = inspect.signature(wsasend.wsa_send).parameters["address"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
