"""The public surface matches SPEC S1."""

from __future__ import annotations

import wsasend

# SPEC S1, plus the stream helpers and the server class of issue 4, and S10's build flag.
DOCUMENTED = {
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
