"""``WSATransport.sendfile``: a file as one more overlapped send in the socket's queue (S9.3).

Plain Python in every build (SPEC S10): these are coroutines, and a mypyc-compiled coroutine
throws into what it awaits with the three-argument ``throw()``, deprecated from Python 3.12 on
(a DeprecationWarning at every cancellation). The transport's ``sendfile``,
``_sendfile_native`` and ``_sendfile_fallback`` methods return these coroutines.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import stat
from typing import TYPE_CHECKING, Any, Final

from ._errors import WSAError, WSAErrorCode

if TYPE_CHECKING:
    from ._overlapped import WSAOverlapped
    from ._transport import WSATransport

__all__ = ["check_sendfile_params", "fallback", "fatal_for_connection", "native", "sendfile"]

#: Bytes read and sent per chunk by the sendfile fallback (asyncio reads 16 KiB; a larger chunk
#: costs fewer round trips through the executor for the same memory order).
_SENDFILE_CHUNK: Final = 256 * 1024


def fatal_for_connection(exc: WSAError) -> bool:
    """True when a send that could not start (S5.2) says the connection itself is gone.

    The kernel said it (``errno`` is set), and it is not a message too large for the kernel,
    which fails that message alone. The engine's flush treats the same errors as fatal.
    """
    return exc.errno is not None and exc.errno != errno.EMSGSIZE


def check_sendfile_params(file: Any, offset: object, count: object) -> None:
    """asyncio's checks of ``sock_sendfile``'s arguments, with its messages."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


def _checked(file: Any, offset: object, count: object) -> tuple[int, int | None]:
    check_sendfile_params(file, offset, count)
    assert isinstance(offset, int) and (count is None or isinstance(count, int))
    return offset, count


def _regular_file(file: Any) -> tuple[int, int]:
    """``(descriptor, size)`` of a file ``os.sendfile`` can read, else ``(-1, 0)``."""
    try:
        fd = file.fileno()
        st = os.fstat(fd)
    except (AttributeError, io.UnsupportedOperation, OSError, ValueError, TypeError):
        return -1, 0
    if not isinstance(fd, int) or not stat.S_ISREG(st.st_mode):
        return -1, 0
    return fd, st.st_size


def _pause_reading(transport: WSATransport) -> bool:
    """Stop reading for the length of a sendfile, as asyncio's both paths do (S9.3): True when
    it was reading (and must resume after). A protocol that answers in ``data_received``
    otherwise wrote into the file's bytes (the fallback: its reply inside the file on the wire)
    or met "sendfile is in progress" and lost the connection (native; adversarial pass)."""
    reading = transport.is_reading()
    if reading:
        transport.pause_reading()
    return reading


async def sendfile(transport: WSATransport, file: Any, offset: object, count: object, fallback_ok: bool) -> int:
    """:meth:`WSATransport.sendfile` (see there)."""
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    # Through the methods, as before they were coroutines here: a subclass may override them.
    try:
        return await transport._sendfile_native(file, offset, count)
    except asyncio.SendfileNotAvailableError:
        if not fallback_ok:
            raise
    return await transport._sendfile_fallback(file, offset, count)


async def native(transport: WSATransport, file: Any, offset_arg: object, count_arg: object) -> int:
    """:meth:`WSATransport._sendfile_native`: the file by ``os.sendfile``, queued (see there)."""
    if transport._message_mode:
        raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
    offset, count = _checked(file, offset_arg, count_arg)
    fd, size = _regular_file(file)
    if fd < 0:
        raise asyncio.SendfileNotAvailableError("not a regular file")
    # As asyncio's: a count is sent up to the file's end as it is when the bytes go (a file
    # that grew meanwhile, or a /proc file, whose size reads 0, gives more than its size said:
    # clamped to that size, count=1000 of /proc/self/maps sent nothing where asyncio sends
    # 1000). Without a count, asyncio's native sendfile, like ours, sends the size it reads
    # first (0 for a /proc file).
    nbytes = max(size - offset, 0) if count is None else count
    if not nbytes:
        return 0
    engine = transport._engine
    sock = transport._sock
    assert engine is not None and sock is not None
    try:
        ov = engine.post_file(sock, file, fd, offset, nbytes)
    except WSAError as exc:
        if fatal_for_connection(exc):
            transport._fatal_error(exc, "Fatal write error on WSATransport")
        raise
    # Waited for through its future, not ``await ov``: awaiting an overlapped flushes at
    # once (flush_for), which could finish a small file inside this call, whereas asyncio's
    # sendfile is always "in progress" for at least one loop iteration after it starts
    # (CPython's test_sendfile_prevents_bare_write counts on it). The batch window flushes
    # it on the next iteration instead.
    waiter: asyncio.Future[int] = transport._loop.create_future()
    ov._waiter = waiter
    transport._sendfiles += 1
    reading = _pause_reading(transport)
    sent = 0
    try:
        sent = await waiter
    except WSAError as exc:
        sent = exc.bytes_sent
        if exc.winerror is WSAErrorCode.WSAEINVAL and not sent:
            # The file itself failed before a byte went (os.sendfile's EBADF for a file open
            # for writing only, EINVAL where the file system has no sendfile): asyncio's rule
            # for a native sendfile that sent nothing, so sendfile() takes the fallback (S9.3).
            raise asyncio.SendfileNotAvailableError("os.sendfile call failed") from exc
        raise
    except asyncio.CancelledError:
        if ov.pending and not ov.cancel():
            # S5.7: it started, so it cannot be withdrawn and goes out whole in the background.
            # The position says what the peer gets, as the fallback's does (with the block in
            # flight): the end of the file send, now; set back if it ends short, when it ends.
            sent = nbytes
            _settle_position_when_done(transport._loop, ov, file, fd, offset, offset + nbytes)
        else:
            # Withdrawn before its first byte (0), or already completed, even when the task
            # was cancelled before it could take the result: what it consumed.
            sent = ov.transferred
        raise
    finally:
        transport._sendfiles -= 1
        if reading:
            transport.resume_reading()
        if sent > 0:
            os.lseek(fd, offset + sent, os.SEEK_SET)  # asyncio's _sock_sendfile_update_filepos
    return sent


def _settle_position_when_done(
    loop: asyncio.AbstractEventLoop, ov: WSAOverlapped, file: Any, fd: int, offset: int, expected: int
) -> None:
    """When the file send ``ov``, cancelled but started, ends: if it ended short of
    ``expected`` (the connection failed, the file was shorter), put the file's position after
    the last byte it consumed. Its awaiter's future was cancelled with the task: a new one,
    which the engine resolves at completion as it would the awaiter's, tells us."""
    done: asyncio.Future[int] = loop.create_future()
    ov._waiter = done

    def settle(fut: asyncio.Future[int]) -> None:
        if not fut.cancelled():
            fut.exception()  # (retrieved: nobody else awaits it, so no "never retrieved" log)
        if getattr(file, "closed", False):
            return  # its descriptor number may be another file's by now
        try:
            # Not if the caller moved the position since the cancel: the position is theirs.
            if os.lseek(fd, 0, os.SEEK_CUR) == expected:
                os.lseek(fd, offset + ov.transferred, os.SEEK_SET)
        except OSError:
            pass  # the descriptor went (closed under the file object)

    done.add_done_callback(settle)


async def fallback(transport: WSATransport, file: Any, offset_arg: object, count_arg: object) -> int:
    """:meth:`WSATransport._sendfile_fallback`: read and send ``file`` in chunks, each one send
    in the queue (asyncio's fallback)."""
    offset, count = _checked(file, offset_arg, count_arg)
    if offset:
        file.seek(offset)
    total = 0
    reading = _pause_reading(transport)
    try:
        while True:
            size = _SENDFILE_CHUNK if count is None else min(count - total, _SENDFILE_CHUNK)
            if size <= 0:
                return total
            buf = bytearray(size)
            n = await transport._loop.run_in_executor(None, file.readinto, buf)
            if not n:
                return total
            try:
                ov = transport.send([memoryview(buf)[:n]])
            except WSAError as exc:
                # A send that could not start (close(), abort() or write_eof() since the last
                # block): the blocks before it were consumed, so the count is theirs (S6.4).
                # The refusal is a fresh error, ours alone: give it the count, keep its message.
                exc.bytes_sent = total
                raise
            try:
                await ov
            except WSAError as exc:
                err = WSAError(exc.winerror, errno=exc.errno, bytes_sent=total + exc.bytes_sent)
                total += exc.bytes_sent
                raise err from exc
            except asyncio.CancelledError:
                # S5.7: a chunk that had started goes out whole, in the background; count it,
                # so that the file's position says what the peer gets (as asyncio's does). A
                # chunk withdrawn before its first byte completed with WSA_OPERATION_ABORTED.
                if ov.pending or not ov.error:
                    total += n
                raise
            total += n
    finally:
        if reading:
            transport.resume_reading()
        if total > 0 and getattr(file, "seekable", bool)():  # (a pipe has no position to set)
            file.seek(offset + total)
