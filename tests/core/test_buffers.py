"""Buffer normalisation, WSABUF, remaining() and gathering (SPEC S2).

Zero-copy is checked by identity and by shared memory: a write into the caller's object after
``normalize``/``remaining`` must show through the captured views.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from array import array
from typing import Any

import pytest

from tests.helpers import pattern
from wsasend import WSABUF, WSAError, WSAErrorCode, remaining
from wsasend._buffers import IOV_MAX, Buffer, gather_for_message, normalize


def flat(bufs: list[Any]) -> bytes:
    return b"".join(bytes(b) for b in bufs)


def test_IOV_MAX_is_the_systems() -> None:
    assert os.sysconf("SC_IOV_MAX") == IOV_MAX == 1024


def test_normalize_bytes_kept_as_is() -> None:
    data = b"header"
    bufs, total = normalize(data)  # a bare bytes-like object is one buffer (S1)
    assert total == 6 and len(bufs) == 1 and bufs[0] is data
    body = b"body!"
    bufs, total = normalize([data, body])
    assert total == 11 and bufs[0] is data and bufs[1] is body


def test_normalize_bytearray_shares_memory() -> None:
    ba = bytearray(b"abcdef")
    bufs, total = normalize([ba])
    assert total == 6
    view = bufs[0]
    assert isinstance(view, memoryview) and view.format == "B" and view.obj is ba
    ba[0] = ord("X")
    assert bytes(view) == b"Xbcdef", "a view, not a copy (S2.1)"


def test_normalize_memoryview_slice() -> None:
    backing = bytearray(pattern(100))
    bufs, total = normalize(memoryview(backing)[10:30])
    assert total == 20 and flat(bufs) == bytes(backing[10:30])
    backing[10] ^= 0xFF
    assert flat(bufs)[0] == backing[10]


def test_normalize_array_int_counts_bytes_not_items() -> None:
    arr = array("i", [1, -2, 3, 0x7FFFFFFF])
    bufs, total = normalize([arr])
    assert total == arr.itemsize * 4 == memoryview(arr).nbytes, "nbytes, never len() (gh-135862)"
    assert flat(bufs) == arr.tobytes()
    arr[0] = 0x01020304
    assert flat(bufs)[: arr.itemsize] == arr.tobytes()[: arr.itemsize]


def test_normalize_2d_memoryview() -> None:
    backing = bytearray(pattern(24))
    two_d = memoryview(backing).cast("B", (4, 6))
    assert len(two_d) == 4  # rows: counting with len() would lose 20 bytes
    bufs, total = normalize([two_d])
    assert total == 24 and flat(bufs) == bytes(backing)
    floats = memoryview(bytearray(48)).cast("d", (2, 3))
    assert normalize([floats])[1] == 48


def test_normalize_ctypes_array() -> None:
    arr = (ctypes.c_uint16 * 5)(1, 2, 3, 4, 5)
    bufs, total = normalize([arr])
    assert total == 10 and flat(bufs) == bytes(arr)


def test_normalize_mmap_shares_memory() -> None:
    with mmap.mmap(-1, 4096) as mm:
        mm[:5] = b"hello"
        bufs, total = normalize([mm])
        assert total == 4096 and flat(bufs)[:5] == b"hello"
        mm[:5] = b"HELLO"
        assert bytes(bufs[0][:5]) == b"HELLO", "an mmap is sent from its own pages"
        for b in bufs:
            if isinstance(b, memoryview):
                b.release()  # an mmap cannot close while exported
        del bufs


def test_normalize_drops_empty_buffers_and_captures_the_list() -> None:
    caller = [b"", bytearray(), b"ab", memoryview(b""), array("i"), b"c"]
    bufs, total = normalize(caller)
    assert total == 3 and flat(bufs) == b"abc" and len(bufs) == 2
    caller.clear()  # the list is transient (S2.1): clearing it changes nothing captured
    assert flat(bufs) == b"abc"
    assert normalize([]) == ([], 0)
    assert normalize(b"") == ([], 0)
    assert normalize(()) == ([], 0)
    assert normalize(x for x in [b"gen", b"erator"])[1] == 9


def test_WSABUF_len_rules() -> None:
    backing = bytearray(b"0123456789")
    # len shorter than the buffer: only len bytes belong to the send.
    bufs, total = normalize([WSABUF(4, backing)])
    assert total == 4 and flat(bufs) == b"0123"
    backing[0] = ord("x")
    assert flat(bufs) == b"x123", "a WSABUF is a view too"
    # len == size, and a bare WSABUF (not in a list).
    assert normalize(WSABUF(10, backing))[1] == 10
    # len 0: nothing to send, dropped.
    assert normalize([WSABUF(0, backing)]) == ([], 0)
    # len counts bytes, whatever the item size.
    ints = array("i", [7, 8, 9])
    assert flat(normalize([WSABUF(5, ints)])[0]) == ints.tobytes()[:5]


@pytest.mark.parametrize(
    "bad",
    [
        WSABUF(11, bytearray(10)),  # longer than its buffer
        WSABUF(-1, bytearray(10)),  # negative
        WSABUF(2.0, bytearray(10)),  # type: ignore[arg-type]
        WSABUF(True, bytearray(10)),  # a bool is not a length
        WSABUF(1, "text"),
        WSABUF(1, None),
    ],
    ids=["too-long", "negative", "float-len", "bool-len", "str-buf", "none-buf"],
)
def test_WSABUF_bad_is_WSAEFAULT(bad: WSABUF) -> None:
    with pytest.raises(WSAError) as info:
        normalize([b"fine", bad])
    assert info.value.winerror is WSAErrorCode.WSAEFAULT and info.value.bytes_sent == 0
    assert "1" in str(info.value), "the message names the bad buffer's index"


@pytest.mark.parametrize(
    "bad",
    [
        memoryview(b"abcdefgh")[::2],  # strided: not C-contiguous
        memoryview(bytearray(b"abcdef"))[::-1],  # reversed: negative stride
        memoryview(array("i", range(8)))[1::3],  # strided ints
    ],
    ids=["strided", "reversed", "strided-ints"],
)
def test_normalize_non_contiguous_is_WSAEFAULT(bad: memoryview) -> None:
    with pytest.raises(WSAError) as info:
        normalize([b"ok", bad])
    assert info.value.winerror is WSAErrorCode.WSAEFAULT
    assert "contiguous" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    ["text", 42, None, 1.5, {"a": 1}, {b"x"}, [b"ok", "text"], [b"ok", 7], [None], [[b"nested"]]],
    ids=["str", "int", "None", "float", "dict", "set", "list-str", "list-int", "list-None", "nested-list"],
)
def test_normalize_not_bytes_like_is_WSAEFAULT(bad: object) -> None:
    with pytest.raises(WSAError) as info:
        normalize(bad)
    assert info.value.winerror is WSAErrorCode.WSAEFAULT
    assert info.value.errno is None and info.value.bytes_sent == 0


def _kinds() -> list[object]:
    return [b"abc", bytearray(b"defg"), memoryview(b"hi"), array("i", [0x64636261]), WSABUF(3, bytearray(b"xyzQ"))]


def test_remaining_every_split_is_the_exact_tail_zero_copy() -> None:
    bufs = _kinds()
    whole = flat(normalize(bufs)[0])
    assert len(whole) == 3 + 4 + 2 + 4 + 3
    for sent in range(len(whole) + 1):
        tail = remaining(bufs, sent)
        assert flat(tail) == whole[sent:]
        assert all(isinstance(v, memoryview) and v.format == "B" and v.nbytes for v in tail)
    # Zero-copy: the views point into the caller's memory.
    backing = bytearray(b"0123456789")
    tail = remaining([b"ab", backing], 5)
    assert flat(tail) == b"3456789"
    backing[-1] = ord("!")
    assert flat(tail) == b"345678!"


def test_remaining_bad_counts_are_WSAEINVAL() -> None:
    for bad in (-1, 7, 1.0, None):
        with pytest.raises(WSAError) as info:
            remaining([b"abc", b"def"], bad)
        assert info.value.winerror is WSAErrorCode.WSAEINVAL
    with pytest.raises(WSAError) as info:
        remaining(["str"], 0)
    assert info.value.winerror is WSAErrorCode.WSAEFAULT
    assert remaining([b"abc"], 3) == [] and remaining([], 0) == []


def test_gather_for_message_fits_any_count_into_iov_max() -> None:
    few: list[Buffer] = [b"a", b"b"]
    assert gather_for_message(few, 4) is few, "no copy when the count fits"
    many: list[Any] = [bytes([i % 256]) for i in range(IOV_MAX + 500)]
    gathered = gather_for_message(list(many))
    assert len(gathered) == IOV_MAX
    assert flat(gathered) == flat(many), "one datagram, its bytes in order (S2.3)"
    assert all(g is m for g, m in zip(gathered[:-1], many, strict=False)), "the first IOV_MAX - 1 are not copied"
    small = gather_for_message([b"1", b"2", b"3", b"4", b"5"], 3)
    assert small == [b"1", b"2", b"345"]
