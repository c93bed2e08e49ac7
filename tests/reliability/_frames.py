"""Patterned frames with sequence numbers: interleaving, loss or repetition on the wire shows.

A frame is ``length (4) | sender (1) | seq (4) | body``; the body is a pattern that depends on
the sender and the sequence number, so a frame cut into by another sender's bytes fails the
parse at once, wherever the cut falls.
"""

from __future__ import annotations

import socket
import struct
import threading

HEADER = struct.Struct("!IBI")


def frame(sender: int, seq: int, size: int) -> bytes:
    """One frame of ``size`` body bytes from ``sender`` (0-255), number ``seq``."""
    unit = bytes(((sender * 31 + seq * 17 + i) & 0xFF) for i in range(251))
    body = (unit * (size // 251 + 1))[:size]
    return HEADER.pack(size, sender, seq) + body


class FrameReader:
    """Reads ``sock`` in a thread and parses frames; ``frames`` is what arrived, in order.

    ``error`` names the first malformed frame (the stream was cut into). ``total`` counts every
    byte received.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[tuple[int, int, int]] = []
        self.error: str | None = None
        self.total = 0
        self._buf = bytearray()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FrameReader:
        self.thread.start()
        return self

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            except OSError:
                return
            if not data:
                return
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Take ``data`` as read (the thread's way in; a test that reads by itself calls it)."""
        self.total += len(data)
        self._buf += data
        self._parse()

    def _parse(self) -> None:
        buf = self._buf
        while self.error is None and len(buf) >= HEADER.size:
            size, sender, seq = HEADER.unpack_from(buf)
            if size > 1 << 24:
                self.error = f"bad header after frame {len(self.frames)}: {bytes(buf[: HEADER.size])!r}"
                return
            if len(buf) < HEADER.size + size:
                return
            if buf[: HEADER.size + size] != frame(sender, seq, size):
                self.error = f"frame {len(self.frames)} (sender {sender}, seq {seq}, {size} bytes) was cut into"
                return
            self.frames.append((sender, seq, size))
            del buf[: HEADER.size + size]

    def wait_for(self, nbytes: int, timeout: float) -> bool:
        """Wait until ``nbytes`` have arrived (or the stream broke); True when they did."""
        deadline = threading.Event()
        waited = 0.0
        while self.total < nbytes and self.error is None and waited < timeout:
            deadline.wait(0.01)
            waited += 0.01
        return self.total >= nbytes

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10.0)

    def leftover(self) -> int:
        return len(self._buf)
