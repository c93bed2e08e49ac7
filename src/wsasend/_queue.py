"""The pure, ordered send queue: every rule about ordering, partial consumption and completion.

Pure: no asyncio, socket or selectors here. The engine makes the syscall and feeds the count in.

Theory of operation
-------------------
A *send* (``PendingSend``) is a captured list of buffers plus its byte total. Sends wait in
one deque, in posting order. The engine asks :meth:`SendQueue.next_batch` what to hand to one
``sendmsg`` (for a stream, :meth:`SendQueue.next_parts`: the same buffers as the sends' own
lists, not joined), makes the call, and reports what the kernel took with :meth:`SendQueue.bytes_sent`,
which pops and returns every send that is now whole, in posting order. On an error,
:meth:`SendQueue.fail` empties the queue and says, for each send, how many of its bytes the
kernel had consumed before the failure.

Only the head send can be partly consumed (the kernel takes a stream in order), so the queue
keeps the head's progress in three numbers (buffer index, offset in that buffer, bytes
consumed) instead of touching every send on every ``sendmsg``. A running total of unsent bytes
makes ``unsent_bytes`` O(1). Each send is appended once, popped once, and looked at by
``next_batch`` only while it sits within the first IOV_MAX buffers of the queue, so the work
per send is O(1) amortised no matter how long the queue grows.

Stream sockets: a batch runs across sends (that is the coalescing), up to ``iov_max`` buffers,
and stops where the flags change (MSG_OOB must mark the end of its own ``sendmsg``). A stream
send may be *held* (``HELD_OP`` in its flags: a ``MSG_PARTIAL`` piece of a transport made with
``partial_messages="cork"``, SPEC S4.4): held sends are always the queue's tail, are never
handed to the kernel, and the next send submitted without the mark (or :meth:`release_held`,
at a graceful close) clears it from all of them, so they go out gathered with what follows.

Runs (stream mode; issue 11): the engine's fast path queues a plain send behind the one it
queued last as a *member* of one entry, a :class:`SendRun`, whose buffer list is the members'
buffers in order (:meth:`SendQueue.join_tail`; at most RUN_BUFS buffers and about RUN_BYTES).
A run is invisible outside the queue: ``bytes_sent`` returns its members as they become whole
(a run partly sent drops its wholly sent buffers then, S2), ``fail`` gives each member its own
count, ``withdraw`` takes a member out alone, and ``len()`` counts members (S5.6). Member
boundaries are buffer boundaries, so a member's bytes are found by summing its predecessors.

Message sockets: one message is one ``sendmsg``. A message is a run of MSG_PARTIAL pieces ended
by a send without the flag (SPEC S4.4); the batch is exactly that run, and a message whose
final piece has not been posted yet is not sendable, so the queue stalls behind it.

Invariants (checked by :meth:`SendQueue.check` in the tests after every step):
- ``unsent_bytes`` == sum of queued sends' sizes - ``head_consumed``.
- Completions come out in posting order; a send is returned by ``bytes_sent`` exactly once.
- ``head_consumed`` > 0 only in stream mode, and only for the head send.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, Generic, TypeVar, cast

import attrs

from ._buffers import IOV_MAX, Buffer, gather_for_message
from ._compat import mypyc_attr

#: Most bytes a stream batch gathers by coalescing sends behind the head (the head itself goes
#: as posted). Issue 7: uncapped, 1 GiB posted as 4,600 slices took 12 s to drain, each batch
#: gathering ~1 GiB of views for the kernel to take ~200 KiB. Issue 11: at 8 MiB, a reader that
#: drains as it goes let loopback TCP take up to 13.7 MB in one non-blocking call, and bulk
#: sends (W1, 16x64 KiB) to a reader of 64 KiB to 1 MiB ``recv`` calls moved at 0.4-0.8x the
#: bytes per second of a blocking 1 MiB ``sendmsg`` (a reader of 4 MiB calls saw no
#: difference); at 1 MiB they match it, and 4x4 KiB sends keep their speed. A batch smaller than
#: the socket could take costs one more system call per MiB, against ~200 us of copying it.
BATCH_BYTES: Final = 1024 * 1024

#: The queue-flags mark of a held stream send (see the theory of operation): above every
#: ``sendmsg`` flag and the engine's own marks, so a held send never coalesces with a send
#: before it; ``next_batch`` returns it alone (``[], HELD_OP``) when only held sends are left.
HELD_OP: Final = 1 << 42

#: Most buffers, and bytes, of a run (see :meth:`SendQueue.join_tail`): a send joins the run at the
#: tail only while the run has fewer bytes than RUN_BYTES and the send's buffers fit in RUN_BUFS.
#: Small enough that a batch rarely gathers a run's buffers the kernel has no room for (a run
#: at the head goes whole, as any head send does, up to IOV_MAX), large enough that a run's own
#: costs (one object, its list of sends) are shared by a dozen or more sends.
RUN_BUFS: Final = 64
RUN_BYTES: Final = 64 * 1024

__all__ = ["BATCH_BYTES", "HELD_OP", "RUN_BUFS", "RUN_BYTES", "PendingSend", "SendCompletion", "SendQueue", "SendRun"]

# The deque's methods, unbound. Compiled, ``ops.append(op)`` on a deque (not a native type) looks
# the method up by name on every call, and a hoisted bound method is a generic call; calling the
# method descriptor is one direct vectorcall (issue 11, slow reader: ``submit`` measured ~280
# instructions a send, most of it that lookup). Interpreted, it costs the same as the method call.
# (And the class, Final: a name that is not is looked up in the module's dict at every use.)
_DEQUE: Final = deque
_APPEND: Final = deque.append
_POPLEFT: Final = deque.popleft
_APPENDLEFT: Final = deque.appendleft


# Compiled, it still lets Python classes (the tests' ops) extend it (SPEC S10).
@mypyc_attr(allow_interpreted_subclasses=True)
class PendingSend:
    """One posted send as the queue sees it: captured buffers, byte total, flags.

    :class:`~wsasend.WSAOverlapped` extends this class so that a post allocates one object,
    not two (the hot path of the benchmarks). The fields are the queue's; user code reads the
    overlapped's public properties instead.
    """

    __slots__ = ("_bufs", "_flags", "_more", "_nbytes")

    # Invariant: _nbytes == sum of the byte lengths of _bufs. Empty buffers may appear (the
    # engine's post_list keeps them rather than pay a test per buffer); they carry nothing.
    _bufs: list[Buffer]
    _nbytes: int
    # Flags handed to sendmsg with this send's bytes (OS values, e.g. socket.MSG_OOB).
    _flags: int
    # Message sockets: True while this is a MSG_PARTIAL piece of a message not yet ended.
    _more: bool

    def _load(self, bufs: list[Buffer], nbytes: int, flags: int = 0, more: bool = False) -> None:
        self._bufs = bufs
        self._nbytes = nbytes
        self._flags = flags
        self._more = more


class SendRun(PendingSend):
    """Consecutive plain sends in the queue as one entry: their buffers in one list (issue 11).

    The queue never hands a run out: :meth:`SendQueue.bytes_sent`, :meth:`SendQueue.fail` and
    :meth:`SendQueue.withdraw` report each of its sends (``_members``, the ones not yet complete,
    in posting order) on its own, exactly as if each were an entry of its own. What a run saves
    is per-send queue work: one deque entry, one buffer list to gather and free, one
    ``op._bufs`` walk per batch for the whole run.

    Its ``_bufs`` are the members' buffers, in order, minus those already sent and dropped
    (S2: a member's memory is let go once its bytes are sent); ``_skip`` is how many bytes of
    the first member were in those dropped buffers. Invariant:
    ``sum(m._nbytes for m in _members) == _nbytes + _skip``.
    """

    __slots__ = ("_members", "_skip")

    def __init__(self, first: PendingSend) -> None:
        self._bufs = first._bufs
        self._nbytes = first._nbytes
        self._flags = first._flags
        self._more = False
        # (Typed as the queue's sends, not Any: compiled, ``member._nbytes`` of an Any is a
        # generic attribute lookup, ~250 instructions a send in bytes_sent.)
        self._members: list[PendingSend] = [first]
        self._skip = 0


# A run's members hold no buffers of their own (their run does); never changed.
_NO_BUFFERS: Final[list[Buffer]] = []


@attrs.frozen
class SendCompletion:
    """A send ended by :meth:`SendQueue.fail` or :meth:`SendQueue.withdraw`.

    ``bytes_sent`` is how many of its bytes the kernel consumed before the end (SPEC S6.4).
    """

    op: PendingSend
    bytes_sent: int


OpT = TypeVar("OpT", bound=PendingSend)


class SendQueue(Generic[OpT]):
    """Posted sends in order, with O(1) accounting (see the module's theory of operation).

    Args:
        message_mode: True for SOCK_DGRAM/SOCK_SEQPACKET (one send is one message).
        iov_max: most buffers per batch.
    """

    def __init__(self, *, message_mode: bool = False, iov_max: int = IOV_MAX, solo_flags: int = 0) -> None:
        if iov_max < 2:
            raise ValueError("iov_max must be at least 2")
        self.message_mode = message_mode
        # Flags whose sends are never coalesced with another (the engine passes MSG_OOB: the
        # urgent mark belongs at the end of that one send, not of a batch).
        self.solo_flags = solo_flags
        # Whether the last batch reached the end of its last send; only kept up to date for
        # solo batches (the engine drops MSG_OOB from a batch that does not end its send).
        self.last_batch_ends_op = True
        self.iov_max = iov_max
        # The entries: sends, and runs of sends (SendRun: never handed out, see there).
        self._ops: deque[PendingSend] = _DEQUE()
        # Invariant: == sum(op._nbytes for op in _ops) - _head_consumed.
        self._unsent = 0
        # Stream mode: progress of the head send (buffer index, offset in it, bytes consumed).
        self._head_buf = 0
        self._head_off = 0
        self._head_consumed = 0
        # Message mode: number of ended messages in the queue, and the bytes of the pieces of the
        # message still open at the tail (for the WSAEMSGSIZE check of S4.4).
        self._closed_messages = 0
        self._open_bytes = 0
        # Message mode: how many sends the last batch covered (bytes_sent pops that many).
        self._batch_ops = 0
        # Stream mode: the bytes of the sends wholly in the last batch, plus the head's rest
        # (an upper bound when the head alone has more than iov_max buffers). The engine
        # compares it with what the kernel took to size the next batch.
        self.last_batch_bytes = 0
        # Stream mode: how many buffers the last batch holds (next_batch's, or next_parts').
        self.last_batch_buffers = 0
        # How many sends were ever submitted: a send's number tells whether it is still the
        # last one submitted (the engine joins writes only to that one, see extend_tail).
        self.submitted = 0
        # Stream mode: how many sends at the tail are held (HELD_OP, SPEC S4.4).
        self._held = 0
        # Sends in the queue beyond one per entry: sum(len(run._members) - 1) over the runs.
        self._extra = 0
        # Stream mode: the tail entry, while later sends may join it (see join_tail): set by
        # its submitter (the engine's post_list), None from the next submit, withdraw or
        # failure on, and once the queue is empty (it left: entries leave from the head).
        self.join_tail_entry: PendingSend | None = None

    # -- inspection ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """The sends in the queue (S5.6 counts them), a run's one by one."""
        return len(self._ops) + self._extra

    def __bool__(self) -> bool:
        return bool(self._ops)

    @property
    def unsent_bytes(self) -> int:
        """Bytes posted and not yet consumed by the kernel. O(1)."""
        return self._unsent

    @property
    def head_consumed(self) -> int:
        """Bytes of the head send already consumed (0 unless it was partly sent); a run's first
        member is the head send when a run is the head entry."""
        if self._ops:
            head = self._ops[0]
            if type(head) is SendRun:
                return head._skip + self._head_consumed
        return self._head_consumed

    @property
    def open_message_bytes(self) -> int:
        """Message mode: bytes of the MSG_PARTIAL pieces of the message not yet ended."""
        return self._open_bytes

    def has_open_message(self) -> bool:
        """Message mode: True while MSG_PARTIAL pieces wait for their final piece."""
        return bool(self._ops) and self._ops[-1]._more

    def sendable(self) -> bool:
        """True when :meth:`next_batch` has something for the kernel or a send to complete."""
        if not self._ops:
            return False
        if self.message_mode:
            return self._closed_messages > 0
        return self._held < len(self._ops)

    @property
    def held(self) -> int:
        """Stream mode: how many sends at the tail are held (S4.4's cork pieces)."""
        return self._held

    def is_started(self, op: OpT) -> bool:
        """True when some of ``op``'s bytes reached the kernel (it can no longer be withdrawn)."""
        if not self._ops:
            return False
        head = self._ops[0]
        first = head._members[0] if type(head) is SendRun else head
        return first is op and self.head_consumed > 0

    def sends(self) -> list[OpT]:
        """Every send in the queue, in posting order (a run's one by one). O(n)."""
        out: list[OpT] = []
        for op in self._ops:
            if type(op) is SendRun:
                out += cast("list[OpT]", op._members)
            else:
                out.append(cast(OpT, op))
        return out

    # -- inputs ---------------------------------------------------------------------------------

    def submit(self, op: OpT) -> None:
        """Append a loaded send at the tail (its ``_load`` was called)."""
        entry: PendingSend = op
        _APPEND(self._ops, entry)
        self.join_tail_entry = None
        self._unsent += op._nbytes
        self.submitted += 1
        if self.message_mode:
            if op._more:
                self._open_bytes += op._nbytes
            else:
                self._open_bytes = 0
                self._closed_messages += 1
        elif self._held or op._flags & HELD_OP:
            if op._flags & HELD_OP:
                self._held += 1
            else:
                self._unhold(len(self._ops) - 1)

    def release_held(self) -> None:
        """Stream mode: let the held sends go without a send after them (a graceful close)."""
        if self._held:
            self._unhold(len(self._ops))

    def _unhold(self, end: int) -> None:
        ops = self._ops
        for index in range(end - self._held, end):
            op = ops[index]
            op._flags &= ~HELD_OP
        self._held = 0

    def join_tail(self, op: OpT, bufs: list[Buffer], nbytes: int) -> None:
        """Stream mode: submit ``op``, a send of ``bufs`` (``nbytes`` > 0, no flags) whose
        ``_bufs`` are not read, as a member of the run at the tail (issue 11).

        The tail entry must be ``join_tail_entry``: a run, or a plain send with no flags whose
        buffer list is the queue's own (captured at submit), which its submitter named so; the
        caller checks RUN_BUFS and RUN_BYTES. A tail send becomes the run's first member, its list the
        run's. ``bufs`` are captured (S2.1: the references, not the bytes).
        """
        tail = self.join_tail_entry
        assert tail is not None
        if type(tail) is SendRun:
            run = tail
        else:
            run = SendRun(tail)
            tail._bufs = _NO_BUFFERS
            self._ops[-1] = run  # (the head's progress, if it is the head, is in the same list)
            self.join_tail_entry = run
        captured = run._bufs
        captured += bufs  # (a local's ``+=``: a direct extend compiled; the attribute's is generic)
        run._nbytes += nbytes
        run._members.append(op)
        op._bufs = _NO_BUFFERS
        self._unsent += nbytes
        self._extra += 1
        self.submitted += 1

    def extend_tail(self, op: OpT, bufs: list[Buffer], nbytes: int) -> None:
        """Stream mode: add ``bufs`` (``nbytes`` bytes) to the end of ``op``, the queue's tail,
        whose buffer list is the queue's own (captured at submit); the op may be partly sent.

        ``op`` must be the last send submitted (``submitted`` has not moved since): the same
        object submitted again (an overlapped reposted, S5.5) is another send.
        """
        op._bufs += bufs
        op._nbytes += nbytes
        self._unsent += nbytes

    def next_batch(self, max_bytes: int = BATCH_BYTES) -> tuple[list[Buffer], int]:
        """The buffers and flags for the next ``sendmsg``, from the head, in one new list.

        Stream mode: up to ``iov_max`` buffers across sends of equal flags, the head's
        consumed prefix skipped (as a zero-copy memoryview slice). Message mode: every buffer
        of the first ended message, gathered to at most ``iov_max`` (S2.3). An empty list with
        a non-empty queue means "complete the empty sends at the head" (stream) or "nothing is
        sendable" (message mode, when only an open message is queued).
        """
        if self.message_mode:
            if not self._ops:
                return [], 0
            return self._message_batch()
        return self._stream_batch(max_bytes, True)

    def next_parts(self, max_bytes: int = BATCH_BYTES) -> tuple[list[Any], int]:
        """Stream mode: the batch of :meth:`next_batch` as the lists it is made of, not joined.

        A list of buffer lists: each send's own (the head's unsent rest, and a list cut at
        ``iov_max``, in new ones), in order, for the compiled build's ``sendmsg`` of several lists
        (``_iovsend.sendmsg_parts``; issue 11: growing the joined list cost more than the rest
        of the gathering). The lists are the queue's: the caller reads them, and must neither
        change nor keep them.
        """
        return self._stream_batch(max_bytes, False)

    def _stream_batch(self, max_bytes: int, join: bool) -> tuple[list[Any], int]:
        # The stream batch, joined (next_batch) or as its lists (next_parts): one walk for both,
        # so the two cannot disagree; the plain-Python build joins (its socket.sendmsg needs
        # one sequence, and joining later cost it 3% of a send behind a slow reader).
        ops = self._ops
        if not ops:
            self.last_batch_buffers = 0
            return [], 0
        iov_max = self.iov_max
        head = ops[0]
        flags = head._flags
        if flags & HELD_OP:
            self.last_batch_buffers = 0
            return [], HELD_OP  # only held sends are left (the coalescing below stops at them)
        bufs = head._bufs
        if self._head_buf or self._head_off:
            first = bufs[self._head_buf]
            view = first if type(first) is memoryview else memoryview(first)
            lead: list[Any] = [view[self._head_off :]]
            lead += bufs[self._head_buf + 1 : self._head_buf + iov_max]
        elif len(bufs) > iov_max:
            lead = bufs[:iov_max]
        else:
            lead = list(bufs) if join else bufs
        out = lead if join else [lead]
        room = iov_max - len(lead)
        size = head._nbytes - self._head_consumed
        if flags & self.solo_flags:
            self.last_batch_bytes = size
            self.last_batch_buffers = iov_max - room
            self.last_batch_ends_op = self._head_buf + iov_max >= len(bufs)
            return out, flags
        if room <= 0 or len(ops) == 1 or size >= max_bytes:
            self.last_batch_bytes = size
            self.last_batch_buffers = iov_max - room
            return out, flags
        # Coalesce the following sends. Scanning stops after iov_max sends so that a run of
        # empty sends cannot make one batch cost more than O(iov_max), and at max_bytes.
        # (``out +=``, not a hoisted ``out.extend``: the compiled build calls a hoisted bound
        # method through the generic call protocol, ~250 instructions a send behind a slow
        # reader, and ``+=`` on a list is a direct extend in both builds.)
        following = iter(ops)  # (iterated, not indexed: a deque's index is a generic call)
        next(following)  # the head, gathered above
        index = 0  # (counted by hand: enumerate() is one more generic iterator a send)
        for op in following:
            if op._flags != flags:
                break
            obufs = op._bufs
            nbufs = len(obufs)
            if nbufs >= room:
                if join:
                    out += obufs[:room]
                else:
                    out.append(obufs[:room])
                room = 0
                break
            if join:
                out += obufs
            else:
                out.append(obufs)
            room -= nbufs
            size += op._nbytes
            index += 1  # noqa: SIM113 (see above: enumerate is slower compiled)
            if index >= iov_max or size >= max_bytes:
                break
        self.last_batch_bytes = size
        self.last_batch_buffers = iov_max - room
        return out, flags

    def _message_batch(self) -> tuple[list[Buffer], int]:
        if self._closed_messages == 0:
            self._batch_ops = 0
            return [], 0
        ops = self._ops
        head = ops[0]
        if not head._more:
            self._batch_ops = 1
            bufs = head._bufs
            if len(bufs) > self.iov_max:
                bufs = gather_for_message(bufs, self.iov_max)
            return bufs, head._flags
        iov: list[Buffer] = []
        count = 0
        for op in ops:
            iov.extend(op._bufs)
            count += 1
            if not op._more:
                break
        self._batch_ops = count
        if len(iov) > self.iov_max:
            iov = gather_for_message(iov, self.iov_max)
        return iov, ops[count - 1]._flags

    def bytes_sent(self, n: int) -> list[OpT]:
        """The kernel consumed ``n`` bytes of the last batch: pop and return the whole sends.

        Each returned send is complete with ``op._nbytes`` bytes transferred, in posting order.
        Sends of zero bytes at the head are completed as soon as they are reached. In message
        mode the batch's message is complete whatever ``n`` is (a datagram goes whole or not at
        all), and the empty sends behind it are not touched.
        """
        ops = self._ops
        done: list[OpT] = []
        if self.message_mode:
            count = self._batch_ops
            self._batch_ops = 0
            if count:
                self._closed_messages -= 1
                for _ in range(count):
                    op = ops.popleft()
                    self._unsent -= op._nbytes
                    done.append(cast(OpT, op))
            return done
        if n < 0 or n > self._unsent:
            raise ValueError(f"bytes_sent({n}) with {self._unsent} bytes unsent")
        self._unsent -= n
        consumed = self._head_consumed
        # Pop first, put the partly sent one back: the head is looked at once (``ops[0]`` on a
        # deque is a generic call compiled, ~110 instructions a send behind a slow reader).
        # Held sends are never reached, not even empty ones.
        for _ in range(len(ops) - self._held):
            op = _POPLEFT(ops)
            left = op._nbytes - consumed
            if n < left:
                _APPENDLEFT(ops, op)
                if n:
                    self._advance_head(op, n)
                    if type(op) is SendRun:
                        self._settle_run(op, done)
                return done
            n -= left
            if type(op) is SendRun:
                members = op._members
                done += cast("list[OpT]", members)
                self._extra -= len(members) - 1
            else:
                done.append(cast(OpT, op))  # (direct: see next_batch's ``+=``)
            consumed = 0
            if self._head_consumed:
                self._head_consumed = self._head_buf = self._head_off = 0
        if not ops:
            self.join_tail_entry = None
        return done

    def _settle_run(self, run: SendRun, done: list[OpT]) -> None:
        # The run at the head took more bytes: its members now whole go to ``done`` (in order,
        # after the entries before it), and the buffers wholly sent are dropped (S2), the
        # head's progress moved back by as much. (Members never have 0 bytes, and the run is
        # not whole, so the scan stops at a member.)
        consumed = run._skip + self._head_consumed
        members = run._members
        whole = 0
        while members[whole]._nbytes <= consumed:
            consumed -= members[whole]._nbytes
            whole += 1
        if not whole:
            return
        done += cast("list[OpT]", members[:whole])
        del members[:whole]
        self._extra -= whole
        sent = self._head_buf
        if sent:
            run._nbytes -= self._head_consumed - self._head_off
            del run._bufs[:sent]
            self._head_consumed = self._head_off
            self._head_buf = 0
        run._skip = consumed - self._head_consumed

    def _advance_head(self, op: PendingSend, n: int) -> None:
        self._head_consumed += n
        bufs = op._bufs
        index = self._head_buf
        off = self._head_off + n
        size = len(bufs[index])
        while off >= size:
            off -= size
            index += 1
            size = len(bufs[index])
        self._head_buf = index
        self._head_off = off

    def fail(self) -> list[SendCompletion]:
        """Empty the queue after an error: every send, in order, with its consumed bytes.

        The head send keeps the bytes the kernel took from it; every other send took none.
        """
        out: list[SendCompletion] = []
        if self._ops:  # (an empty queue, as at every transport's close: no list or deque call)
            out = [SendCompletion(op, 0) for op in self.sends()]
            consumed = self.head_consumed  # (the head send's: a run's first member's)
            if consumed:
                out[0] = SendCompletion(out[0].op, consumed)
            self._ops.clear()
        self._unsent = 0
        self._head_buf = self._head_off = self._head_consumed = 0
        self._closed_messages = 0
        self._open_bytes = 0
        self._batch_ops = 0
        self._held = 0
        self._extra = 0
        self.join_tail_entry = None
        return out

    # -- file sends (SPEC S9.3) ------------------------------------------------------------------
    # A file send is a send with no buffers whose bytes the engine produces with os.sendfile
    # when it reaches the head. Its flags are a value no other send has, so next_batch never
    # coalesces across it and returns ([], its flags) when it is the head; the engine then feeds
    # its progress here instead of to bytes_sent. Its progress is head_consumed, as for any
    # head, so fail() and withdraw() give exact counts without knowing it is a file.

    def head_file_sent(self, n: int) -> list[OpT]:
        """The head is a file send and ``n`` more of its bytes were consumed: ``[head]`` once whole."""
        op = self._ops[0]
        consumed = self._head_consumed + n
        if n < 0 or consumed > op._nbytes:
            raise ValueError(f"head_file_sent({n}) with {op._nbytes - self._head_consumed} bytes left")
        self._unsent -= n
        if consumed < op._nbytes:
            self._head_consumed = consumed
            return []
        self._head_consumed = 0
        self.join_tail_entry = None  # (a file send is never one; this clears it if it left)
        return [cast(OpT, self._ops.popleft())]

    def head_file_ended(self) -> OpT:
        """The head file send ends early (the file was shorter than posted): pop it.

        Its ``_nbytes`` becomes the bytes it consumed, so it completes with that count.
        """
        op = self._ops.popleft()
        self._unsent -= op._nbytes - self._head_consumed
        op._nbytes = self._head_consumed
        self._head_consumed = 0
        self.join_tail_entry = None
        return cast(OpT, op)

    def fail_head(self) -> SendCompletion:
        """Remove the head send alone, after an error of its own: it, with its consumed bytes."""
        op = self._ops.popleft()
        self._unsent -= op._nbytes - self._head_consumed
        self.join_tail_entry = None
        comp = SendCompletion(op, self._head_consumed)
        self._head_buf = self._head_off = self._head_consumed = 0
        return comp

    def drop_open_message(self) -> list[OpT]:
        """Message mode: remove and return the pieces of the message still open (S4.4)."""
        out: list[OpT] = []
        ops = self._ops
        self.join_tail_entry = None
        while ops and ops[-1]._more:
            op = ops.pop()
            self._unsent -= op._nbytes
            out.append(cast(OpT, op))
        out.reverse()
        self._open_bytes = 0
        return out

    def withdraw(self, op: OpT) -> list[OpT] | None:
        """Remove a send none of whose bytes reached the kernel (SPEC S5.7).

        Returns the sends removed (in message mode, every piece of ``op``'s message goes with
        it: a message cannot lose a piece), ``[]`` when ``op`` is not queued, and ``None`` when
        it is partly consumed and must finish so the stream stays whole, or when it is a piece
        of a message already ended: that message is withdrawn only through its ending send,
        whose owner may be nobody who could be told (a transport's write()).
        """
        ops = self._ops
        self.join_tail_entry = None  # (whatever leaves, the next send starts a new entry)
        try:
            index = ops.index(op)
        except ValueError:
            return [] if self.message_mode else self._withdraw_member(op)
        if index == 0 and self._head_consumed:
            return None
        if not self.message_mode:
            del ops[index]
            self._unsent -= op._nbytes
            if op._flags & HELD_OP:
                self._held -= 1
            return [op]
        start = index
        while start > 0 and ops[start - 1]._more:
            start -= 1
        end = index
        while end < len(ops) - 1 and ops[end]._more:
            end += 1
        closed = not ops[end]._more
        if closed and end != index:
            return None
        removed = [cast(OpT, ops[i]) for i in range(start, end + 1)]
        for _ in removed:
            del ops[start]
        for r in removed:
            self._unsent -= r._nbytes
        if closed:
            self._closed_messages -= 1
        else:
            self._open_bytes = 0
        return removed

    def _withdraw_member(self, op: OpT) -> list[OpT] | None:
        # withdraw() of a send that is a run's member: its buffers leave the run's list (member
        # boundaries are buffer boundaries), its bytes the run's count. O(queue), as withdraw is.
        ops = self._ops
        for index, entry in enumerate(ops):
            if type(entry) is not SendRun:
                continue
            members = entry._members
            pos = -1
            for i, member in enumerate(members):
                if member is op:
                    pos = i
                    break
            if pos < 0:
                continue
            if index == 0 and pos == 0 and (entry._skip or self._head_consumed):
                return None  # partly sent: it must finish
            bufs = entry._bufs
            start = -entry._skip
            for i in range(pos):
                start += members[i]._nbytes
            first = 0
            at = 0
            while at < start:
                at += len(bufs[first])
                first += 1
            last = first
            size = 0
            while size < op._nbytes:
                size += len(bufs[last])
                last += 1
            del bufs[first:last]
            del members[pos]
            entry._nbytes -= op._nbytes
            self._unsent -= op._nbytes
            if members:
                self._extra -= 1
            else:
                del ops[index]  # (nothing of it was sent: a head with no progress)
            return [op]
        return []

    # -- debugging ----------------------------------------------------------------------------

    def check(self) -> None:
        """Assert the invariants (slow: for tests and debug runs only)."""
        total = sum(op._nbytes for op in self._ops)
        assert self._unsent == total - self._head_consumed, (self._unsent, total, self._head_consumed)
        runs = [op for op in self._ops if type(op) is SendRun]
        assert self._extra == sum(len(r._members) - 1 for r in runs), (self._extra, runs)
        for run in runs:
            assert run._members, "a run in the queue has a send"
            assert all(m._nbytes > 0 and not m._flags for m in run._members)
            assert run._nbytes == sum(len(b) for b in run._bufs), "a run's count is its buffers'"
            assert sum(m._nbytes for m in run._members) == run._nbytes + run._skip
            assert run._skip == 0 or run is self._ops[0], "only the head run has dropped bytes"
            assert run._skip + (self._head_consumed if run is self._ops[0] else 0) < run._members[0]._nbytes
        tail = self.join_tail_entry
        if tail is not None:
            assert self._ops and self._ops[-1] is tail and not tail._flags, "the join tail is the tail"
            assert type(tail) is SendRun or tail._bufs is not _NO_BUFFERS
        if self.message_mode:
            assert self._head_consumed == 0
            closed = sum(1 for op in self._ops if not op._more)
            assert closed == self._closed_messages, (closed, self._closed_messages)
        else:
            marks = [bool(op._flags & HELD_OP) for op in self._ops]
            assert sum(marks) == self._held, (marks, self._held)
            assert not any(marks[: len(marks) - self._held]), marks  # held sends are the tail
            assert not (self._held and marks[0] and self._head_consumed)
        if not self.message_mode and self._head_consumed and self._ops[0]._bufs:
            # (a file send's progress has no buffers)
            head = self._ops[0]
            assert 0 < self._head_consumed < head._nbytes
            prefix = sum(len(b) for b in head._bufs[: self._head_buf]) + self._head_off
            assert prefix == self._head_consumed
