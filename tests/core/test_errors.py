"""Winsock error codes, the one exception class and the errno table (SPEC S3).

The seed's error table is copied below word for word: each row must be a ``WSAErrorCode`` with
Winsock's number, and ``WSAError``'s message must carry the seed's description.
"""

from __future__ import annotations

import copy
import errno
import pickle
import re
from pathlib import Path

import pytest

from wsasend import WSAError, WSAErrorCode, errno_to_wsa
from wsasend._errors import ERRNO_TO_WSA, translate_oserror

# The seed's table (seeds/000_8c740a50231ba250.txt, "Return Values"), with Winsock's numbers
# from winsock2.h / winerror.h.
SEED_TABLE: dict[str, tuple[int, str]] = {
    "WSANOTINITIALISED": (10093, "A successful WSAStartup call must occur before using this function."),
    "WSAENETDOWN": (10050, "The network subsystem has failed."),
    "WSAEACCES": (10013, "The requested address is a broadcast address, but the appropriate flag was not set."),
    "WSAEINTR": (10004, "The socket was closed."),
    "WSAEINPROGRESS": (
        10036,
        "A blocking Winsock call is in progress, or the service provider is still processing a callback function.",
    ),
    "WSAEFAULT": (
        10014,
        "The lpBuffers, lpNumberOfBytesSent, lpOverlapped, or lpCompletionRoutine argument is not totally "
        "contained in a valid part of the user address space.",
    ),
    "WSAENETRESET": (
        10052,
        "The connection has been broken due to keep-alive activity detecting a failure while the operation "
        "was in progress.",
    ),
    "WSAENOBUFS": (10055, "The Windows Sockets provider reports a buffer deadlock."),
    "WSAENOTCONN": (10057, "The socket is not connected."),
    "WSAENOTSOCK": (10038, "The descriptor is not a socket."),
    "WSAEOPNOTSUPP": (
        10045,
        "MSG_OOB was specified, but the socket is not stream style such as type SOCK_STREAM, out of band (OOB) "
        "data is not supported in the communication domain associated with this socket, MSG_PARTIAL is not "
        "supported, or the socket is unidirectional and supports only receive operations.",
    ),
    "WSAESHUTDOWN": (
        10058,
        "The socket has been shut down. It is not possible to call WSASend on a socket after shutdown has been "
        "invoked with how set to SD_SEND or SD_BOTH.",
    ),
    "WSAEWOULDBLOCK": (
        10035,
        "For overlapped sockets, there are too many outstanding overlapped I/O requests. For nonoverlapped "
        "sockets, the socket is marked as nonblocking and the send operation cannot be completed immediately.",
    ),
    "WSAEMSGSIZE": (
        10040,
        "The socket is message-oriented, and the message is larger than the maximum supported by the "
        "underlying transport.",
    ),
    "WSAEINVAL": (
        10022,
        "The socket has not been bound with bind (Windows Sockets) or the socket is not created with the "
        "overlapped flag.",
    ),
    "WSAECONNABORTED": (10053, "The virtual circuit was terminated due to a time-out or other failure."),
    "WSAECONNRESET": (10054, "The virtual circuit was reset by the remote side."),
    "WSA_IO_PENDING": (
        997,
        "An overlapped operation was successfully initiated and completion will be indicated at a later time.",
    ),
    "WSA_OPERATION_ABORTED": (995, "The overlapped operation has been canceled due to the closure of the socket."),
}

# S3.1: the codes beyond the seed's table, with Winsock's numbers.
S31_EXTRAS: dict[str, int] = {
    "WSAETIMEDOUT": 10060,
    "WSA_IO_INCOMPLETE": 996,
    "WSA_INVALID_PARAMETER": 87,
    "WSA_INVALID_HANDLE": 6,
    "WSAEBADF": 10009,
    "WSAEISCONN": 10056,
    "WSAEHOSTUNREACH": 10065,
    "WSAENETUNREACH": 10051,
    "WSAECONNREFUSED": 10061,
}

# S3.3: Wine's direct table, as the SPEC lists it.
S33_TABLE: dict[int, str] = {
    errno.EPIPE: "WSAECONNRESET",
    errno.ECONNRESET: "WSAECONNRESET",
    errno.EBADF: "WSAENOTSOCK",
    errno.ENOTSOCK: "WSAENOTSOCK",
    errno.EDESTADDRREQ: "WSAENOTCONN",
    errno.ENOTCONN: "WSAENOTCONN",
    errno.EMSGSIZE: "WSAEMSGSIZE",
    errno.ENOBUFS: "WSAENOBUFS",
    errno.ENOMEM: "WSAENOBUFS",
    errno.ENETRESET: "WSAENETRESET",
    errno.ENETDOWN: "WSAENETDOWN",
    errno.ECONNABORTED: "WSAECONNABORTED",
    errno.ETIMEDOUT: "WSAETIMEDOUT",
    errno.EACCES: "WSAEACCES",
    errno.EPERM: "WSAEACCES",
    errno.EOPNOTSUPP: "WSAEOPNOTSUPP",
    errno.EAGAIN: "WSAEWOULDBLOCK",
}


@pytest.mark.parametrize("name", sorted(SEED_TABLE))
def test_WSAErrorCode_has_every_seed_code_with_its_winsock_number(name: str) -> None:
    number, description = SEED_TABLE[name]
    code = WSAErrorCode[name]
    assert int(code) == number
    assert WSAErrorCode(number) is code
    err = WSAError(code)
    assert str(err) == f"[{name} {number}] {description}", "the seed's wording, word for word (S3.2)"
    assert err.description == description


@pytest.mark.parametrize("name", sorted(S31_EXTRAS))
def test_WSAErrorCode_has_the_S31_extras(name: str) -> None:
    code = WSAErrorCode[name]
    assert int(code) == S31_EXTRAS[name]
    text = str(WSAError(code))
    assert text.startswith(f"[{name} {S31_EXTRAS[name]}] ") and len(text) > len(name) + 12


def test_WSAErrorCode_is_an_IntEnum_of_unique_numbers() -> None:
    values = [int(c) for c in WSAErrorCode]
    assert len(values) == len(set(values))
    assert set(SEED_TABLE) | set(S31_EXTRAS) <= {c.name for c in WSAErrorCode}
    connreset: int = WSAErrorCode.WSAECONNRESET  # an int, usable where Winsock code compares numbers
    assert connreset == 10054


def test_WSAError_message_format() -> None:
    err = WSAError(WSAErrorCode.WSAECONNRESET)
    assert str(err) == "[WSAECONNRESET 10054] The virtual circuit was reset by the remote side."
    detailed = WSAError(WSAErrorCode.WSAEMSGSIZE, detail="message of 70000 bytes > 65507")
    assert str(detailed) == (
        "[WSAEMSGSIZE 10040] The socket is message-oriented, and the message is larger than the maximum "
        "supported by the underlying transport. (message of 70000 bytes > 65507)"
    )
    # OSError's fields keep working for code that reads them.
    caused = WSAError(WSAErrorCode.WSAECONNRESET, errno=errno.EPIPE)
    assert caused.args == (errno.EPIPE, str(err)) and caused.strerror == str(err)
    assert "[WSAECONNRESET 10054]" in repr(caused)


def test_WSAError_attributes() -> None:
    err = WSAError(WSAErrorCode.WSAECONNRESET, errno=errno.EPIPE, bytes_sent=1234)
    assert err.winerror is WSAErrorCode.WSAECONNRESET
    assert err.errno == errno.EPIPE
    assert err.bytes_sent == 1234
    plain = WSAError(WSAErrorCode.WSAEFAULT)
    assert plain.errno is None and plain.bytes_sent == 0, "no errno when the package decided it alone"
    # An int is accepted and becomes the enum member.
    assert WSAError(10040).winerror is WSAErrorCode.WSAEMSGSIZE  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WSAError(12345)  # type: ignore[arg-type]


# S3.2: the builtin class each code is also an instance of; every other code is a plain WSAError.
BUILTIN_FOR_CODE: dict[WSAErrorCode, type[OSError]] = {
    WSAErrorCode.WSAECONNRESET: ConnectionResetError,
    WSAErrorCode.WSAECONNABORTED: ConnectionAbortedError,
    WSAErrorCode.WSA_OPERATION_ABORTED: ConnectionAbortedError,
    WSAErrorCode.WSAESHUTDOWN: BrokenPipeError,
    WSAErrorCode.WSAETIMEDOUT: TimeoutError,
    WSAErrorCode.WSAEWOULDBLOCK: BlockingIOError,
    WSAErrorCode.WSAEINTR: InterruptedError,
    WSAErrorCode.WSAECONNREFUSED: ConnectionRefusedError,
}
# Every builtin OSError subclass that some code could be confused with.
OSERROR_BUILTINS = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    TimeoutError,
    BlockingIOError,
    InterruptedError,
    ConnectionRefusedError,
    ConnectionError,
    FileNotFoundError,
    PermissionError,
    ChildProcessError,
    ProcessLookupError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)


@pytest.mark.parametrize("code", list(WSAErrorCode), ids=lambda c: c.name)
@pytest.mark.parametrize("err", [None, errno.EPIPE, errno.ECONNRESET, errno.EAGAIN, errno.ETIMEDOUT])
def test_WSAError_is_the_builtin_of_its_code_and_no_other(code: WSAErrorCode, err: int | None) -> None:
    exc = WSAError(code, errno=err, bytes_sent=7)
    assert isinstance(exc, WSAError) and isinstance(exc, OSError)
    assert exc.winerror is code and exc.errno == err and exc.bytes_sent == 7
    expected = BUILTIN_FOR_CODE.get(code)
    # The builtin comes from the code, not from the errno (OSError(EPIPE, ...) alone would
    # become BrokenPipeError whatever Winsock code it stands for), with one addition: a
    # WSAECONNRESET from EPIPE is also the BrokenPipeError asyncio's transports raise there.
    also = BrokenPipeError if code is WSAErrorCode.WSAECONNRESET and err == errno.EPIPE else None
    for builtin in OSERROR_BUILTINS:
        should = any(cls is not None and issubclass(cls, builtin) for cls in (expected, also))
        assert isinstance(exc, builtin) is should, (code.name, builtin.__name__)
    assert not isinstance(exc, TypeError)
    if expected is None:
        assert type(exc) is WSAError
    # Caught both ways: as the one class, and as the builtin.
    with pytest.raises(WSAError):
        raise exc
    if expected is not None:
        with pytest.raises(expected) as info:
            raise exc
        assert info.value is exc


def test_WSAError_except_OSError_keeps_working() -> None:
    with pytest.raises(OSError) as info:
        raise WSAError(WSAErrorCode.WSAENOTSOCK, errno=errno.EBADF)
    assert info.value.errno == errno.EBADF
    try:
        raise WSAError(WSAErrorCode.WSAESHUTDOWN, errno=errno.EPIPE, bytes_sent=5)
    except OSError as exc:  # what code written for plain sockets catches
        assert isinstance(exc, WSAError) and exc.winerror is WSAErrorCode.WSAESHUTDOWN and exc.bytes_sent == 5
    else:  # pragma: no cover
        pytest.fail("not raised")


@pytest.mark.parametrize("code", [WSAErrorCode.WSAEFAULT, WSAErrorCode.WSAEINVAL])
def test_WSAError_type_error_for_a_wrong_python_type(code: WSAErrorCode) -> None:
    exc = WSAError(code, reason="flags must be an int, not 'str'", type_error=True)
    assert isinstance(exc, TypeError) and isinstance(exc, WSAError) and exc.winerror is code
    assert str(exc) == f"[{code.name} {int(code)}] flags must be an int, not 'str'"
    assert exc.description == WSAError(code).description, "the seed's text is still there"
    with pytest.raises(TypeError):
        raise exc
    # Only those two codes can be a TypeError; other codes ignore type_error.
    assert not isinstance(WSAError(WSAErrorCode.WSAECONNRESET, type_error=True), TypeError)
    assert not isinstance(WSAError(code), TypeError)


def test_WSAError_reason_replaces_the_seed_description() -> None:
    exc = WSAError(WSAErrorCode.WSAEINVAL, reason="cancel() must be called in the loop's thread", detail="x")
    assert str(exc) == "[WSAEINVAL 10022] cancel() must be called in the loop's thread (x)"
    assert exc.args == (None, str(exc)) and exc.strerror == str(exc)


def test_WSAError_repr_shows_the_code() -> None:
    exc = WSAError(WSAErrorCode.WSAECONNRESET)
    assert "WSAECONNRESET" in repr(exc) and "None" not in repr(exc)
    full = WSAError(WSAErrorCode.WSAEMSGSIZE, errno=errno.EMSGSIZE, bytes_sent=3)
    assert repr(full) == (
        f"WSAError(WSAErrorCode.WSAEMSGSIZE, errno={errno.EMSGSIZE}, bytes_sent=3, message={str(full)!r})"
    )


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("code", list(WSAErrorCode), ids=lambda c: c.name)
def test_WSAError_every_class_pickles_and_copies(protocol: int, code: WSAErrorCode) -> None:
    for type_error in (False, True):
        err = WSAError(code, errno=errno.EPIPE, bytes_sent=5, reason="why", detail="d", type_error=type_error)
        for clone in (pickle.loads(pickle.dumps(err, protocol)), copy.copy(err), copy.deepcopy(err)):
            assert type(clone) is type(err)
            assert (clone.winerror, clone.errno, clone.bytes_sent) == (code, errno.EPIPE, 5)
            assert str(clone) == str(err) and repr(clone) == repr(err) and clone.args == err.args


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_WSAError_pickles_and_copies(protocol: int) -> None:
    err = WSAError(WSAErrorCode.WSAECONNRESET, errno=errno.ECONNRESET, bytes_sent=77, detail="peer reset")
    for clone in (pickle.loads(pickle.dumps(err, protocol)), copy.copy(err), copy.deepcopy(err)):
        assert type(clone) is type(err) and isinstance(clone, ConnectionResetError)
        assert clone.winerror is WSAErrorCode.WSAECONNRESET
        assert clone.errno == errno.ECONNRESET
        assert clone.bytes_sent == 77
        assert str(clone) == str(err)
    none = pickle.loads(pickle.dumps(WSAError(WSAErrorCode.WSAEFAULT), protocol))
    assert none.errno is None and none.bytes_sent == 0 and type(none) is WSAError


@pytest.mark.parametrize("err", sorted(S33_TABLE))
def test_errno_to_wsa_follows_the_S33_table(err: int) -> None:
    assert errno_to_wsa(err) is WSAErrorCode[S33_TABLE[err]]
    assert ERRNO_TO_WSA[err] is WSAErrorCode[S33_TABLE[err]]


def test_errno_to_wsa_unknown_and_eintr() -> None:
    # EINTR is retried, never surfaced (S3.3): it has no row.
    assert errno.EINTR not in ERRNO_TO_WSA
    assert errno_to_wsa(None) is WSAErrorCode.WSAEINVAL
    assert errno_to_wsa(99999) is WSAErrorCode.WSAEINVAL
    assert errno_to_wsa(errno.EWOULDBLOCK) is WSAErrorCode.WSAEWOULDBLOCK


def test_WSAError_from_oserror_chains_the_cause() -> None:
    cause = ConnectionResetError(errno.ECONNRESET, "reset")
    err = WSAError.from_oserror(cause, bytes_sent=9)
    assert err.winerror is WSAErrorCode.WSAECONNRESET and err.errno == errno.ECONNRESET
    assert err.bytes_sent == 9 and err.__cause__ is cause
    same = WSAError(WSAErrorCode.WSAEFAULT)
    assert WSAError.from_oserror(same) is same, "a WSAError is not translated twice"


def test_translate_oserror_context_manager() -> None:
    with pytest.raises(WSAError) as info, translate_oserror(bytes_sent=3):
        raise OSError(errno.ENETDOWN, "down")
    assert info.value.winerror is WSAErrorCode.WSAENETDOWN and info.value.bytes_sent == 3
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENETDOWN
    original = WSAError(WSAErrorCode.WSAEMSGSIZE)
    with pytest.raises(WSAError) as info2, translate_oserror():
        raise original
    assert info2.value is original
    with pytest.raises(ValueError), translate_oserror():
        raise ValueError("not an OSError: untouched")


# -- docs/errors.md stays true -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DOC_PREFIXES = {"S:": "tests/sync/test_sync_send.py", "C:": "tests/core/", "L:": "tests/loop/", "W:": "tests/winsock/"}


def test_errors_doc_has_a_row_for_every_code() -> None:
    doc = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| WSA")}
    for name, (number, _) in SEED_TABLE.items():
        assert name in rows and f"| {number} |" in rows[name], name
    for name, number in S31_EXTRAS.items():
        assert name in rows and f"| {number} |" in rows[name], name
    for code in WSAErrorCode:  # and every code beyond those (WSAEAFNOSUPPORT, WSAEADDRNOTAVAIL, ...)
        assert code.name in rows and f"| {int(code)} |" in rows[code.name], code.name
    assert "WSAECONNRESET" in doc.split("### Caveat")[1], "the S3.3 caveat is documented"


def test_errors_doc_cites_tests_that_exist() -> None:
    doc = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    refs = re.findall(r"`([SCLW]:[\w/.]*(?:::)?\w+)(?:\[[^\]]*\])?`", doc)
    assert len(refs) > 40
    for ref in refs:
        prefix, rest = ref[:2], ref[2:]
        if "::" in rest:
            path = ROOT / (DOC_PREFIXES[prefix] + rest.split("::")[0])
            name = rest.split("::")[1]
        else:
            path, name = ROOT / DOC_PREFIXES[prefix], rest
        assert path.is_file(), f"{ref}: no file {path}"
        assert re.search(rf"^(async )?def {name}\(", path.read_text(encoding="utf-8"), re.M), f"{ref}: no such test"
