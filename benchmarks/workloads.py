"""The workloads of issue 6 and the payload each send carries.

Every send of a workload posts ``nbufs`` buffers of ``bufsize`` bytes. The buffers come from a
pool of distinct random ``bytes`` objects (what users pass), reused round robin: send ``i``
posts ``pool[i % len(pool)]``. Neighbouring sends differ, so a lost, repeated or swapped send
changes the CRC32 the receiver computes in the verify run, and the byte count catches the rest.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
import zlib
from dataclasses import dataclass, replace
from functools import cache

__all__ = ["Payload", "Workload", "file_for", "full_matrix", "payload_for", "quick_matrix", "scaled"]

KiB = 1024
MiB = 1024 * KiB

# Bytes of distinct payload per workload. Arbitrary: large enough that a send is never next to
# an equal one, small enough that W1's pool (32 sends of 1 MiB) costs no more than 32 MiB.
_POOL_BYTES = 32 * MiB
# Most distinct sends in a pool. Arbitrary (a prime, so the cycle lines up with nothing else).
_POOL_SENDS = 257
# Seed of the payload bytes: fixed, so every run sends the same bytes.
_SEED = 0x57A5E4D

# Socket buffer size of the slow-reader case: small enough that most of the posted sends wait in
# the sender's queue rather than in the kernel, large enough that loopback TCP does not crawl
# (tests/helpers.py SMALL_BUF: 4 KiB buffers move about 50 KB/s on these machines).
SLOW_READER_SOCKBUF = 64 * KiB


@dataclass(frozen=True)
class Workload:
    """One row group of the table: what each send carries and how many sends a run makes.

    ``kind`` is ``"stream"`` (loopback TCP), ``"stall"`` (loopback TCP whose reader starts only
    once ``depth`` sends have been posted, ``sends // depth`` times per run: the slow reader),
    ``"dgram"`` (connected loopback UDP, one datagram per send) or ``"file"`` (loopback TCP: the
    byte stream of the sends, written to a file once, sent as one file: SPEC S9.3's sendfile).
    """

    key: str
    title: str
    nbufs: int
    bufsize: int
    sends: int
    kind: str = "stream"
    depth: int = 0
    sockbuf: int = 0

    @property
    def send_bytes(self) -> int:
        return self.nbufs * self.bufsize

    @property
    def total_bytes(self) -> int:
        return self.sends * self.send_bytes

    @property
    def cycles(self) -> int:
        return self.sends // self.depth if self.depth else 1

    @property
    def group(self) -> str:
        """Cases of one group are timed in the same interleaved rounds."""
        return "S" if self.kind == "stall" else self.key

    def describe(self) -> str:
        size = _human(self.total_bytes)
        if self.kind == "stall":
            return f"{self.title}: {self.depth} sends of {self.nbufs}x{_human(self.bufsize)} queued, x{self.cycles}"
        if self.kind == "file":
            return f"{self.title}: one file of {size} (a 'send' below is {_human(self.send_bytes)} of it)"
        return f"{self.title}: {self.sends} sends, {size}"


def _human(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


def _slow(depth: int, total: int) -> Workload:
    return Workload(
        key=f"S{depth}",
        title="slow reader",
        nbufs=4,
        bufsize=KiB,
        sends=max(depth, total // depth * depth),
        kind="stall",
        depth=depth,
        sockbuf=SLOW_READER_SOCKBUF,
    )


def full_matrix() -> list[Workload]:
    """The whole matrix of issue 6."""
    return [
        Workload("W1", "16x64 KiB", 16, 64 * KiB, 512),  # 512 MiB
        Workload("W2", "4x4 KiB", 4, 4 * KiB, 16384),  # 256 MiB
        Workload("W3", "4x32 B", 4, 32, 500_000),
        Workload("W4", "1x64 B", 1, 64, 500_000),
        # Slow reader: 10,000 sends per run, queued 100, 1,000 or 10,000 at a time.
        _slow(100, 10_000),
        _slow(1_000, 10_000),
        _slow(10_000, 10_000),
        Workload("U", "UDP 4x256 B", 4, 256, 100_000, kind="dgram"),
        Workload("F", "sendfile", 1, MiB, 256, kind="file"),  # 256 MiB (issue 12, section 3)
    ]


def quick_matrix() -> list[Workload]:
    """A smaller matrix with the same shape, for ``python -m wsasend bench`` (<= 3 minutes)."""
    return [
        Workload("W1", "16x64 KiB", 16, 64 * KiB, 128),  # 128 MiB
        Workload("W2", "4x4 KiB", 4, 4 * KiB, 4096),  # 64 MiB
        Workload("W3", "4x32 B", 4, 32, 50_000),
        Workload("W4", "1x64 B", 1, 64, 50_000),
        _slow(100, 10_000),
        _slow(1_000, 10_000),
        _slow(10_000, 10_000),
        Workload("U", "UDP 4x256 B", 4, 256, 30_000, kind="dgram"),
        Workload("F", "sendfile", 1, MiB, 64, kind="file"),  # 64 MiB
    ]


def scaled(workload: Workload, max_sends: int) -> Workload:
    """``workload`` with at most ``max_sends`` sends (and depth), for tests and smoke runs."""
    sends = min(workload.sends, max_sends)
    if workload.kind == "stall":
        depth = min(workload.depth, sends)
        return replace(workload, key=f"S{depth}", depth=depth, sends=sends // depth * depth)
    return replace(workload, sends=sends)


class Payload:
    """The pool of distinct sends of one (nbufs, bufsize) shape."""

    def __init__(self, nbufs: int, bufsize: int) -> None:
        rng = random.Random(_SEED ^ (nbufs << 32) ^ bufsize)
        count = max(2, min(_POOL_SENDS, _POOL_BYTES // (nbufs * bufsize)))
        #: ``pool[k]`` is the list of buffers of send ``k`` (and of every send ``k + j * len(pool)``).
        self.pool: list[list[bytes]] = [[rng.randbytes(bufsize) for _ in range(nbufs)] for _ in range(count)]
        self._crc_cache: dict[int, int] = {}

    def expected_crc(self, sends: int) -> int:
        """CRC32 of the byte stream of ``sends`` sends (the receiver must compute the same)."""
        crc = self._crc_cache.get(sends)
        if crc is not None:
            return crc
        pool = self.pool
        full, rest = divmod(sends, len(pool))
        crc = 0
        if full:
            period = b"".join(b for bufs in pool for b in bufs)
            for _ in range(full):
                crc = zlib.crc32(period, crc)
            del period
        for bufs in pool[:rest]:
            for b in bufs:
                crc = zlib.crc32(b, crc)
        self._crc_cache[sends] = crc
        return crc


@cache
def payload_for(nbufs: int, bufsize: int) -> Payload:
    """The (cached) payload of a shape: every sender of a workload sends the very same bytes."""
    return Payload(nbufs, bufsize)


_file_dir: str | None = None


def _remove_files() -> None:
    if _file_dir is not None:
        shutil.rmtree(_file_dir, ignore_errors=True)


@cache
def file_for(nbufs: int, bufsize: int, sends: int) -> str:
    """A file holding the byte stream of ``sends`` sends of the shape's payload (made once per
    process, removed at exit), so a file workload's receiver checks the very CRC of the others."""
    global _file_dir
    if _file_dir is None:
        _file_dir = tempfile.mkdtemp(prefix="wsasend-bench-")
        atexit.register(_remove_files)
    pool = payload_for(nbufs, bufsize).pool
    path = os.path.join(_file_dir, f"f-{nbufs}x{bufsize}x{sends}.bin")
    with open(path, "wb") as f:
        for i in range(sends):
            f.writelines(pool[i % len(pool)])
    return path
