"""Buffer normalisation (SPEC S2): anything C-contiguous and bytes-like, or a WSABUF, without copying.

Pure: imports nothing from asyncio, socket or selectors.

Theory of operation: a send's buffers are captured once, when the call is made (the seed's
"transient" WSABUF array), into a fresh list that the caller can no longer change. ``bytes``
objects are kept as they are (immutable, and ``sendmsg`` takes them directly, so wrapping them
in a memoryview would only cost time); everything else becomes a one-byte-per-item memoryview,
so that counting (``nbytes``) and slicing agree byte for byte even for an ``array('i')`` or a
2-D view (CPython gh-135862 lost bytes by counting such views with ``len()``). Empty buffers
are dropped: they carry nothing and would only use up iovec slots.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Final, Union

import attrs

from ._compat import mypyc_attr
from ._errors import WSAError, WSAErrorCode

__all__ = ["IOV_MAX", "WSABUF", "Buffer", "gather_for_message", "normalize", "remaining", "split_last_byte"]


def _iov_max() -> int:
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (OSError, ValueError):  # pragma: no cover - every Linux has it
        value = -1
    # 1024 is Linux's UIO_MAXIOV; sendmsg with more fails EMSGSIZE (measured on these machines).
    return value if value > 0 else 1024


#: Most buffers one ``sendmsg`` may carry (``sysconf(SC_IOV_MAX)``, 1024 on Linux).
IOV_MAX: Final = _iov_max()

#: What the queue and ``sendmsg`` hold: ``bytes`` as given, or a byte ("B") memoryview.
Buffer = Union[bytes, memoryview]


# A plain Python class even in the compiled build: a compiled one would refuse a bad ``len``
# with a TypeError where the post must report WSAEFAULT (SPEC S2.2, S10).
@mypyc_attr(native_class=False)
@attrs.define(eq=False)
class WSABUF:
    """One Winsock ``WSABUF``: ``len`` bytes at the start of ``buf``.

    ``buf`` is any C-contiguous bytes-like object; ``len`` may be smaller than it, never larger
    or negative (that is WSAEFAULT when the buffer is posted, SPEC S2.2). Mirrors the C
    structure ``WSABUF { ULONG len; CHAR *buf; }``.
    """

    len: int
    buf: Any


def _view(obj: object, index: int) -> memoryview:
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        # S3.2: a wrong Python type is also a TypeError, with the real reason first.
        raise WSAError(
            WSAErrorCode.WSAEFAULT,
            reason=f"buffer {index} must be a bytes-like object, not {type(obj).__name__!r}",
            type_error=True,
        ) from None
    except ValueError:  # a released memoryview has no memory left
        raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"buffer {index} is a released memoryview") from None
    if not view.c_contiguous:
        raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"buffer {index} is not C-contiguous")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _one(obj: object, index: int) -> memoryview:
    if type(obj) is WSABUF:
        wsabuf: Any = obj  # read untyped: compiled code would check len's type itself (S10)
        length = wsabuf.len
        if not isinstance(length, int) or isinstance(length, bool):
            raise WSAError(
                WSAErrorCode.WSAEFAULT,
                reason=f"WSABUF {index}: len must be an int, not {type(length).__name__!r}",
                type_error=True,
            )
        view = _view(wsabuf.buf, index)
        if length < 0 or length > view.nbytes:
            raise WSAError(
                WSAErrorCode.WSAEFAULT,
                detail=f"WSABUF {index}: len {length} is outside its {view.nbytes}-byte buffer",
            )
        return view[:length] if length != view.nbytes else view
    return _view(obj, index)


def normalize(buffers: object) -> tuple[list[Buffer], int]:
    """Capture a send's buffers: ``(list of non-empty buffers, total bytes)``. Zero-copy.

    Args:
        buffers: a sequence of bytes-like objects or :class:`WSABUF`, or one bytes-like object.

    Raises:
        WSAError: WSAEFAULT when any buffer is not C-contiguous bytes-like memory or a WSABUF's
            ``len`` lies outside its buffer. Nothing has been sent (nothing is, before this).
    """
    out: list[Buffer] = []
    total = 0
    kind = type(buffers)
    if kind is bytes:
        n = len(buffers)  # type: ignore[arg-type]
        return ([buffers] if n else []), n  # type: ignore[list-item]
    if kind is not list and kind is not tuple:
        if kind is WSABUF or _is_bytes_like(buffers):
            buffers = (buffers,)
        elif isinstance(buffers, (str, dict, set, frozenset)) or not isinstance(buffers, Iterable):
            raise WSAError(
                WSAErrorCode.WSAEFAULT,
                reason=f"buffers must be a bytes-like object or a sequence of them, not {kind.__name__!r}",
                type_error=True,
            )
    append = out.append
    items: Iterable[object] = buffers  # type: ignore[assignment]
    for index, obj in enumerate(items):
        if type(obj) is bytes:
            if obj:
                total += len(obj)
                append(obj)
            continue
        view = _one(obj, index)
        n = view.nbytes
        if n:
            total += n
            append(view)
    return out, total


def _is_bytes_like(obj: object) -> bool:
    try:
        memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        return False
    except ValueError:  # a released memoryview: a buffer, but unusable (WSAEFAULT in _view)
        return True
    return True


def remaining(buffers: object, sent: object) -> list[memoryview]:
    """The tail of ``buffers`` left after ``sent`` bytes were consumed, as byte memoryviews.

    Zero-copy: each returned view points into the caller's own memory. Use it after a partial
    nonoverlapped send (SPEC S4.2) to resend the rest.

    Raises:
        WSAError: WSAEFAULT for a bad buffer (S2.2); WSAEINVAL when ``sent`` is negative or more
            than the buffers hold.
    """
    bufs, total = normalize(buffers)
    if not isinstance(sent, int) or sent < 0 or sent > total:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"sent={sent!r} is outside 0..{total}")
    out: list[memoryview] = []
    skip = sent
    for buf in bufs:
        n = len(buf)  # bytes or a "B" view: len() is the byte count here
        if skip >= n:
            skip -= n
            continue
        view = buf if type(buf) is memoryview else memoryview(buf)
        out.append(view[skip:] if skip else view)
        skip = 0
    return out


def gather_for_message(bufs: list[Buffer], iov_max: int = IOV_MAX) -> list[Buffer]:
    """Fit one message's buffers into one ``sendmsg`` (SPEC S2.3).

    A datagram must go out in one call, so when it has more than ``iov_max`` buffers the excess
    is joined into one scratch buffer: the only copy on the overlapped path, and only for a
    message of more than IOV_MAX pieces.
    """
    if len(bufs) <= iov_max:
        return bufs
    head = bufs[: iov_max - 1]
    head.append(b"".join(bufs[iov_max - 1 :]))
    return head


def split_last_byte(iov: list[Buffer]) -> tuple[list[Buffer], list[Buffer]]:
    """``iov`` cut before its last byte: (every byte but the last, the last byte), no copy.

    For MSG_OOB (SPEC S4.1): Linux marks urgent the last byte of each ``sendmsg`` made with the
    flag, *the last byte the kernel took*, so a send may carry MSG_OOB only on a call whose
    every byte is the send's last one. ``iov`` holds at least one byte; every buffer is
    ``bytes`` or a "B" memoryview, so ``len`` counts bytes.
    """
    head = list(iov)
    last = head.pop()
    while not len(last):
        last = head.pop()
    view = last if type(last) is memoryview else memoryview(last)
    if len(view) > 1:
        head.append(view[:-1])
    return head, [view[-1:]]
