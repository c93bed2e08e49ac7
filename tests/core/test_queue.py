"""The pure send queue against a reference model (SPEC S2.3, S2.4, S4.4, S5.4, S5.7, S6.4).

No event loop and no socket anywhere: the "kernel" here is a number the test picks, and
Hypothesis picks it at every split point of every batch. After every step I compare the queue
with a plain-list model and run ``SendQueue.check()``:

- the bytes handed to the kernel, concatenated, are exactly the posted bytes in posting order
  (withdrawn sends left out), never repeated, skipped or reordered (S6.4);
- completions come out in posting order, each send exactly once;
- the sum of the completed counts equals the bytes the kernel consumed (S6.4), and ``fail()``
  gives the head its exact consumed count and every other send 0;
- ``withdraw()`` removes only sends none of whose bytes were consumed (S5.7);
- a batch holds at most ``iov_max`` buffers (S2.3); a message batch is exactly one message;
- a held stream send (a cork piece, S4.4) never reaches a batch, nor completes, until a send
  without the mark is submitted after it or ``release_held()`` lets it go.

The O(1) claims of the module docstring are checked by counting, not timing: an instrumented
``PendingSend`` subclass counts how many sends each call looks at.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import wsasend
from tests.helpers import every_split, pattern
from wsasend import _queue
from wsasend._buffers import IOV_MAX, WSABUF, normalize
from wsasend._queue import HELD_OP, PendingSend, SendCompletion, SendQueue, SendRun

#: The most bytes one stream batch coalesces behind its head, when the queue has such a cap.
BATCH_BYTES: float = getattr(_queue, "BATCH_BYTES", float("inf"))

# OS flag values the queue passes through untouched (it only compares them).
OOB = 0x1
DONTROUTE = 0x4
FLAG_CHOICES = (0, 0, 0, OOB, DONTROUTE)

_tags = itertools.count(1)


class Op(PendingSend):
    """A send with a name and its payload, as the model sees it."""

    __slots__ = ("data", "tag")

    tag: int
    data: bytes

    def __repr__(self) -> str:
        return f"Op({self.tag}, {len(self._bufs)} bufs, {self._nbytes} B, flags={self._flags}, more={self._more})"


def _as_kind(chunk: bytes, i: int) -> object:
    """The same bytes as one of the buffer kinds the public API takes (S1, S2)."""
    kind = i % 6
    if kind == 0:
        return chunk
    if kind == 1:
        return bytearray(chunk)
    if kind == 2:
        return memoryview(bytearray(chunk))
    if kind == 3:
        return array("B", chunk)
    if kind == 4 and len(chunk) % 4 == 0:
        return array("i", chunk)  # nbytes != len(): the gh-135862 trap
    # A WSABUF over a longer buffer: only ``len`` bytes belong to the send.
    return WSABUF(len(chunk), bytearray(chunk + b"\xee\xee"))


def make_op(sizes: list[int], flags: int = 0, more: bool = False) -> Op:
    """A loaded send whose buffers have these sizes (0 allowed: normalize drops them)."""
    tag = next(_tags)
    data = pattern(sum(sizes), seed=tag * 31)
    raw: list[object] = []
    pos = 0
    for i, size in enumerate(sizes):
        raw.append(_as_kind(data[pos : pos + size], i + tag))
        pos += size
    bufs, nbytes = normalize(raw)
    assert nbytes == len(data)
    op = Op()
    op._load(bufs, nbytes, flags, more)
    op.tag = tag
    op.data = data
    return op


def joined(iov: list[Any]) -> bytes:
    return b"".join(bytes(b) for b in iov)


class Model:
    """What the queue should hold, as plain lists."""

    def __init__(self, message_mode: bool, iov_max: int) -> None:
        self.message_mode = message_mode
        self.iov_max = iov_max
        self.live: list[Op] = []  # queued, in posting order
        self.head_consumed = 0
        self.consumed = bytearray()  # every byte the kernel took, in order
        self.expected = bytearray()  # the posted bytes the kernel is to get: not withdrawn, not failed
        # Sends that ended (whole, or failed), in the order the queue returned them, with the
        # count each ended with. Withdrawn sends are kept apart: they end with 0, out of order.
        self.finished: list[tuple[Op, int]] = []
        self.withdrawn: list[Op] = []
        self.ever_queued: list[Op] = []
        # Stream mode: the held sends (S4.4), by id; they are always the tail of ``live``.
        self.held: set[int] = set()

    @property
    def completed(self) -> list[Op]:
        return [op for op, _ in self.finished]

    @property
    def completed_bytes(self) -> int:
        return sum(count for _, count in self.finished)

    def stream_rest(self) -> bytes:
        """The bytes the kernel may be given next: the unsent stream up to the held sends."""
        return b"".join(op.data for op in self.live if id(op) not in self.held)[self.head_consumed :]

    def open_pieces(self) -> list[Op]:
        out: list[Op] = []
        for op in reversed(self.live):
            if not op._more:
                break
            out.append(op)
        out.reverse()
        return out

    def message_of(self, op: Op) -> list[Op]:
        """Every piece of ``op``'s message (S4.4), in order."""
        index = self.live.index(op)
        start = index
        while start > 0 and self.live[start - 1]._more:
            start -= 1
        end = index
        while end < len(self.live) - 1 and self.live[end]._more:
            end += 1
        return self.live[start : end + 1]


def check(queue: SendQueue[Op], model: Model) -> None:
    """The queue agrees with the model, and S6.4 holds for everything so far."""
    queue.check()
    assert queue.sends() == model.live
    assert len(queue) == len(model.live)
    assert queue.head_consumed == model.head_consumed
    assert queue.unsent_bytes == sum(op._nbytes for op in model.live) - model.head_consumed
    # S6.4: what the kernel consumed is the posted stream, in order, nothing repeated or skipped ...
    assert bytes(model.consumed) == bytes(model.expected[: len(model.consumed)])
    # ... and, send by send, it is each ended send's consumed part, then the head's prefix.
    head_prefix = model.live[0].data[: model.head_consumed] if model.live else b""
    assert bytes(model.consumed) == b"".join(op.data[:count] for op, count in model.finished) + head_prefix
    # The sum of the completed counts equals the bytes consumed (plus the head's open part).
    assert model.completed_bytes + model.head_consumed == len(model.consumed)
    # Sends end in posting order, each exactly once.
    order = [model.ever_queued.index(op) for op in model.completed]
    assert order == sorted(order) and len(set(order)) == len(order)
    assert not set(map(id, model.withdrawn)) & set(map(id, model.completed))
    if model.message_mode:
        assert queue.has_open_message() == bool(model.open_pieces())
        assert queue.open_message_bytes == sum(op._nbytes for op in model.open_pieces())
        assert queue.sendable() == any(not op._more for op in model.live)
    else:
        assert queue.sendable() == any(id(op) not in model.held for op in model.live)
        assert {id(op) for op in model.live if op._flags & HELD_OP} == model.held
        assert queue.held == len(model.held)


# -- one step of each kind ----------------------------------------------------------------------


def step_submit(queue: SendQueue[Op], model: Model, op: Op, joinable: bool = False) -> None:
    """Submit ``op``; ``joinable``: name it the tail later sends may join, as the engine's
    post_list does for a plain send whose list it captured (only a stream send with bytes and
    no flags)."""
    queue.submit(op)
    if joinable:
        assert not model.message_mode and op._nbytes and not op._flags
        queue.join_tail_entry = op
    if op._flags & HELD_OP:
        model.held.add(id(op))
    else:
        model.held.clear()  # a send without the mark ends the run (S4.4)
    model.live.append(op)
    model.ever_queued.append(op)
    model.expected += op.data


def step_join(queue: SendQueue[Op], model: Model, op: Op) -> None:
    """Submit ``op`` (bytes, no flags) as a member of the run at the tail (SendQueue.join_tail)."""
    assert queue.join_tail_entry is not None and op._nbytes and not op._flags
    tail_entry = queue._ops[-1]
    before = len(queue._ops)
    queue.join_tail(op, op._bufs, op._nbytes)
    assert len(queue._ops) == before, "a joined send adds no entry"
    assert queue._ops[-1] is queue.join_tail_entry and isinstance(queue.join_tail_entry, SendRun)
    assert tail_entry is queue.join_tail_entry or tail_entry is model.live[-1], "the tail send became the run"
    model.held.clear()
    model.live.append(op)
    model.ever_queued.append(op)
    model.expected += op.data


def step_flush_stream(queue: SendQueue[Op], model: Model, take: int | Callable[[int], int]) -> int:
    """One ``sendmsg``: the kernel takes at most ``take`` bytes of the batch (or asks ``take(size)``).

    The batch is taken as the engine takes it, :meth:`SendQueue.next_parts`: the sends' own
    lists, not copied (only the head's unsent rest and a list cut at ``iov_max`` are new)."""
    parts, flags = queue.next_parts()
    iov = [buf for part in parts for buf in part]
    assert queue.last_batch_buffers == len(iov)
    entries = list(queue._ops)
    for index, part in enumerate(parts[1:-1], 1):
        assert part is entries[index]._bufs, "a whole entry's list goes as it is (a send's, a run's)"
    assert queue.next_batch() == (iov, flags), "next_batch is next_parts joined (and asking twice changes nothing)"
    if id(model.live[0]) in model.held:
        assert (iov, flags) == ([], HELD_OP), "only held sends are left: nothing to send (S4.4)"
        return 0
    assert not flags & HELD_OP
    assert len(iov) <= model.iov_max
    assert all(memoryview(b).nbytes for b in iov), "an empty iovec entry wastes one of iov_max slots"
    batch = joined(iov)
    rest = model.stream_rest()
    assert rest.startswith(batch), "the batch must be the next unsent bytes, in order (S6.4)"
    # Every send whose bytes are in the batch carries the batch's flags (MSG_OOB ends its sendmsg).
    pos = -model.head_consumed
    for op in model.live:
        start, end = pos, pos + op._nbytes
        if start < len(batch) and end > 0 and op._nbytes:
            assert op._flags == flags, (op, flags)
        pos = end
    head = model.live[0]
    head_left = head._nbytes - model.head_consumed
    if head_left:
        assert batch, "a head send with bytes left must get some into the batch (progress)"
    if len(iov) < model.iov_max:
        # Coalescing (S5.4): below iov_max the batch holds the head's rest and the whole of each
        # following send of the same flags among the next iov_max - 1 sends, until the queue's
        # byte cap for one batch (if it has one) is reached.
        want = head_left
        for op in model.live[1 : model.iov_max]:
            if op._flags != head._flags or want >= BATCH_BYTES:
                break
            want += op._nbytes
        assert len(batch) >= want, (len(batch), want)
    n = min(take, len(batch)) if isinstance(take, int) else take(len(batch))
    before = len(model.live)
    done = queue.bytes_sent(n)
    model.consumed += batch[:n]
    # Model: pop every send whose last byte is now consumed, empty sends included once reached.
    position = model.head_consumed + n
    expected_done: list[Op] = []
    while model.live and model.live[0]._nbytes <= position and id(model.live[0]) not in model.held:
        op = model.live.pop(0)
        position -= op._nbytes
        expected_done.append(op)
    model.head_consumed = position
    assert done == expected_done, "completions in posting order, each exactly once"
    model.finished.extend((op, op._nbytes) for op in done)
    if n == 0 and not batch:
        assert len(model.live) < before, "an empty batch must complete the empty sends at the head"
    return n


def step_flush_message(queue: SendQueue[Op], model: Model) -> None:
    if not queue.sendable():
        assert queue.next_batch() == ([], 0)
        return
    iov, flags = queue.next_batch()
    assert len(iov) <= model.iov_max
    message = model.message_of(model.live[0])
    assert not message[-1]._more
    # One message, one sendmsg: all of its pieces gathered, its final piece's flags (S4.4, S2.3).
    assert joined(iov) == b"".join(op.data for op in message)
    assert flags == message[-1]._flags
    done = queue.bytes_sent(len(joined(iov)))
    assert done == message
    del model.live[: len(message)]
    model.finished.extend((op, op._nbytes) for op in done)
    model.consumed += b"".join(op.data for op in done)


def step_fail(queue: SendQueue[Op], model: Model) -> None:
    comps = queue.fail()
    assert [c.op for c in comps] == model.live
    assert all(isinstance(c, SendCompletion) for c in comps)
    want = [model.head_consumed] + [0] * (len(model.live) - 1) if model.live else []
    assert [c.bytes_sent for c in comps] == want, "fail(): the head keeps its exact count, the rest 0"
    model.finished.extend((cast(Op, c.op), c.bytes_sent) for c in comps)  # c.op is the queue's OpT, typed its bound
    # Failed sends will never be sent: their unsent bytes leave the expected stream.
    unsent = sum(op._nbytes for op in model.live) - model.head_consumed
    if unsent:
        del model.expected[len(model.expected) - unsent :]
    model.live.clear()
    model.held.clear()
    model.head_consumed = 0
    assert len(queue) == 0 and queue.unsent_bytes == 0 and not queue.sendable()


def step_withdraw(queue: SendQueue[Op], model: Model, target: Op) -> None:
    in_queue = target in model.live
    started = in_queue and model.live[0] is target and model.head_consumed > 0
    assert queue.is_started(target) == started
    removed = queue.withdraw(target)
    if not in_queue:
        assert removed == []
        return
    if started:
        assert removed is None, "a partly consumed send cannot be withdrawn (S5.7)"
        return
    group = model.message_of(target) if model.message_mode else [target]
    if model.message_mode and not group[-1]._more and target is not group[-1]:
        assert removed is None, "a piece of an ended message goes with it (S5.7)"
        return
    assert removed == group
    # Cut the withdrawn bytes out of the expected stream (they were never consumed).
    offset = len(model.consumed) - model.head_consumed
    for op in model.live:
        if op is group[0]:
            break
        offset += op._nbytes
    size = sum(op._nbytes for op in group)
    del model.expected[offset : offset + size]
    for op in group:
        model.live.remove(op)
        model.held.discard(id(op))
    model.withdrawn.extend(group)


def step_release(queue: SendQueue[Op], model: Model) -> None:
    queue.release_held()
    model.held.clear()


def step_drop_open(queue: SendQueue[Op], model: Model) -> None:
    pieces = model.open_pieces()
    out = queue.drop_open_message()
    assert out == pieces
    if pieces:
        offset = len(model.expected) - sum(op._nbytes for op in pieces)
        del model.expected[offset:]
        del model.live[len(model.live) - len(pieces) :]
    assert not queue.has_open_message() and queue.open_message_bytes == 0


# -- Hypothesis ---------------------------------------------------------------------------------


def shapes(iov_max: int) -> st.SearchStrategy[list[int]]:
    """Buffer sizes of one send: empty buffers, 0-buffer sends, mixed sizes, more than iov_max."""
    small = st.lists(st.integers(0, 9), max_size=6)
    mixed = st.lists(st.sampled_from([0, 1, 2, 7, 64, 300, 4096]), max_size=4)
    # Many buffers: more than iov_max (and, with iov_max = IOV_MAX, more than 1024).
    many = st.tuples(st.integers(iov_max - 2, iov_max * 2 + 5), st.integers(0, 7)).map(
        lambda t: [(t[1] + 3 * i) % 4 for i in range(t[0])]
    )
    return st.one_of(small, small, mixed, many)


ACTIONS_STREAM = ["submit"] * 5 + ["join"] * 3 + ["flush"] * 5 + ["withdraw", "withdraw_gone", "fail", "release"]
ACTIONS_MESSAGE = ["submit"] * 5 + ["flush"] * 4 + ["withdraw", "withdraw_gone", "fail", "drop_open"]


# Runs (SendQueue.join_tail, issue 11): mostly joins, every kind of step between them.
ACTIONS_RUNS = ["submit"] * 2 + ["join"] * 6 + ["flush"] * 4 + ["withdraw", "withdraw_gone", "fail", "release"]


@given(data=st.data(), message_mode=st.booleans(), iov_max=st.sampled_from([2, 3, 5, 16, IOV_MAX]))
def test_SendQueue_matches_model_under_random_operations(data: st.DataObject, message_mode: bool, iov_max: int) -> None:
    run_model(data, message_mode, iov_max, ACTIONS_MESSAGE if message_mode else ACTIONS_STREAM)


@settings(max_examples=300)
@given(data=st.data(), iov_max=st.sampled_from([2, 3, 5, 16, IOV_MAX]))
def test_SendQueue_runs_report_each_send_as_its_own_entry(data: st.DataObject, iov_max: int) -> None:
    """Sends joined into runs (the engine's post_list, issue 11) complete, fail and withdraw one
    by one exactly as if each were queued alone: same completions in posting order, same counts
    (S6.4), same withdraw rule (S5.7), and each whole send's buffers dropped once sent (S2)."""
    run_model(data, False, iov_max, ACTIONS_RUNS)


def run_model(data: st.DataObject, message_mode: bool, iov_max: int, actions: list[str]) -> None:
    """Random steps against the model, then a drain; the checks of :func:`check` after each."""
    queue: SendQueue[Op] = SendQueue(message_mode=message_mode, iov_max=iov_max)
    model = Model(message_mode, iov_max)
    steps = data.draw(st.integers(1, 30), label="steps")
    for _ in range(steps):
        action = data.draw(st.sampled_from(actions), label="action")
        if action == "submit":
            sizes = data.draw(shapes(iov_max), label="sizes")
            flags = data.draw(st.sampled_from(FLAG_CHOICES), label="flags")
            more = message_mode and data.draw(st.booleans(), label="MSG_PARTIAL")
            if not message_mode and data.draw(st.integers(0, 3), label="held") == 0:
                flags |= HELD_OP  # a cork piece (S4.4)
                event("a held stream send")
            op = make_op(sizes, flags, more)
            if len(op._bufs) > iov_max:
                event(f"a send of more than iov_max buffers (iov_max={iov_max})")
            if not op._bufs:
                event("a send of no bytes")
            joinable = not message_mode and bool(op._nbytes) and not flags
            joinable = joinable and data.draw(st.integers(0, 3), label="joinable") > 0
            step_submit(queue, model, op, joinable)
        elif action == "join":
            if queue.join_tail_entry is None:
                continue
            op = make_op(data.draw(shapes(iov_max), label="sizes"))
            if not op._nbytes:
                continue  # (the engine joins only sends with bytes)
            event("a run of three sends or more" if isinstance(queue._ops[-1], SendRun) else "a run is made")
            if queue.head_consumed and len(queue._ops) == 1:
                event("a send joins a run partly sent")
            step_join(queue, model, op)
        elif action == "flush":
            if message_mode:
                step_flush_message(queue, model)
            elif model.live:
                # Every split point of the batch is a possible kernel answer.
                step_flush_stream(queue, model, lambda size: data.draw(st.integers(0, size), label="kernel takes"))
            else:
                assert queue.next_batch() == ([], 0)
        elif action == "withdraw" and model.live:
            target = data.draw(st.sampled_from(model.live), label="withdraw")
            event("withdraw refused (started)" if queue.is_started(target) else "withdraw allowed")
            step_withdraw(queue, model, target)
        elif action == "withdraw_gone":
            gone = [op for op in model.ever_queued if op not in model.live]
            if gone:
                step_withdraw(queue, model, data.draw(st.sampled_from(gone), label="withdraw gone"))
        elif action == "fail":
            if model.head_consumed:
                event("fail with the head partly consumed")
            step_fail(queue, model)
        elif action == "drop_open":
            step_drop_open(queue, model)
        elif action == "release":
            step_release(queue, model)
        check(queue, model)
    # Drain: everything left goes out (message mode: an open message stays until ended; stream
    # mode: held sends go once released, as at a graceful close).
    if not message_mode:
        step_release(queue, model)
    for _ in range(10_000):
        if not queue.sendable():
            break
        if message_mode:
            step_flush_message(queue, model)
        else:
            step_flush_stream(queue, model, 1 << 62)
        check(queue, model)
    if message_mode:
        assert model.live == model.open_pieces()
    else:
        assert not model.live and len(queue) == 0
        assert bytes(model.consumed) == bytes(model.expected), "S6.4: every posted byte, once, in order"
    assert model.completed_bytes == len(model.consumed)
    # No send completed twice.
    assert len({id(op) for op in model.completed}) == len(model.completed)


# -- every split point, exhaustively, on fixed scenarios ----------------------------------------

SCENARIOS: dict[str, list[tuple[list[int], int]]] = {
    "mixed": [([3, 0, 5], 0), ([], 0), ([1], 0), ([0, 0], 0), ([4, 2], 0)],
    "flags-change": [([2, 3], 0), ([1], OOB), ([], 0), ([4], 0), ([2, 2], DONTROUTE)],
    "empty-head": [([], 0), ([0], OOB), ([5], 0), ([], 0)],
    "many-buffers": [([1] * 7 + [2], 0), ([], 0), ([1, 1, 1], 0)],
}


def build(scenario: list[tuple[list[int], int]], iov_max: int) -> tuple[SendQueue[Op], Model]:
    queue: SendQueue[Op] = SendQueue(iov_max=iov_max)
    model = Model(False, iov_max)
    for sizes, flags in scenario:
        step_submit(queue, model, make_op(sizes, flags))
    check(queue, model)
    return queue, model


def drain(queue: SendQueue[Op], model: Model, chunk: int) -> int:
    """Drain with a kernel that takes at most ``chunk`` bytes per sendmsg; return the calls."""
    calls = 0
    while queue:
        step_flush_stream(queue, model, chunk)
        check(queue, model)
        calls += 1
        assert calls < 10_000, "no progress"
    assert bytes(model.consumed) == bytes(model.expected)
    return calls


@pytest.mark.parametrize("iov_max", [2, 3, IOV_MAX])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_SendQueue_every_split_of_first_batch_then_every_chunk_size(name: str, iov_max: int) -> None:
    scenario = SCENARIOS[name]
    total = sum(sum(sizes) for sizes, _ in scenario)
    # The first sendmsg takes each possible count k, then the rest is drained whole ...
    first, _ = build(scenario, iov_max)
    first_batch = len(joined(first.next_batch()[0]))
    for k in every_split(first_batch):
        queue, model = build(scenario, iov_max)
        step_flush_stream(queue, model, k)
        check(queue, model)
        drain(queue, model, total + 1)
        assert model.completed == model.ever_queued
    # ... and a kernel that takes exactly k bytes per call, for every k.
    for k in range(1, total + 1):
        queue, model = build(scenario, iov_max)
        drain(queue, model, k)
        assert model.completed == model.ever_queued


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_SendQueue_fail_after_every_split_gives_exact_counts(name: str) -> None:
    scenario = SCENARIOS[name]
    total = sum(sum(sizes) for sizes, _ in scenario)
    for k in every_split(total):
        queue, model = build(scenario, 3)
        while len(model.consumed) < k and queue:
            step_flush_stream(queue, model, k - len(model.consumed))
            check(queue, model)
        assert len(model.consumed) == k
        step_fail(queue, model)
        check(queue, model)
        # Whatever was consumed is accounted for exactly once, by the sends it belonged to.
        assert model.completed_bytes == k
        assert model.completed == model.ever_queued


def test_SendQueue_withdraw_only_unstarted_sends() -> None:
    queue, model = build([([4], 0), ([3], 0), ([2], 0)], IOV_MAX)
    a, b, c = model.live
    step_flush_stream(queue, model, 2)  # a is half sent
    assert queue.is_started(a) and not queue.is_started(b)
    assert queue.withdraw(a) is None
    assert list(queue._ops) == [a, b, c], "a refused withdraw leaves the queue as it was"
    step_withdraw(queue, model, c)  # not started: leaves, its bytes never reach the kernel
    assert queue.unsent_bytes == 2 + 3
    step_withdraw(queue, model, b)
    check(queue, model)
    drain(queue, model, 100)
    assert bytes(model.consumed) == a.data
    assert queue.withdraw(a) == [], "a completed send is no longer queued"


def test_SendQueue_held_sends_wait_for_a_send_without_the_mark() -> None:
    # S4.4, cork: held sends (an empty one too) are neither batched nor completed by a flush
    # that reaches them; the next send without the mark lets the whole run go with it.
    queue, model = build([([4], 0)], IOV_MAX)
    for sizes in ([], [3], [2, 1]):
        step_submit(queue, model, make_op(sizes, HELD_OP))
    check(queue, model)
    assert step_flush_stream(queue, model, 100) == 4
    assert len(model.live) == 3 and queue.held == 3 and not queue.sendable()
    assert queue.next_batch() == ([], HELD_OP)
    check(queue, model)
    held = list(model.live)
    step_submit(queue, model, make_op([5], 0))
    assert queue.held == 0 and all(op._flags == 0 for op in held)
    iov, flags = queue.next_batch()
    assert (joined(iov), flags) == (b"".join(op.data for op in model.live), 0)  # one batch
    drain(queue, model, 100)
    assert model.completed == model.ever_queued


def test_SendQueue_message_mode_batches_one_whole_message() -> None:
    queue: SendQueue[Op] = SendQueue(message_mode=True, iov_max=4)
    model = Model(True, 4)
    p1 = make_op([2, 3], DONTROUTE, more=True)
    p2 = make_op([1] * 9, 0, more=True)  # more buffers than iov_max: gathered (S2.3)
    end = make_op([], 0)
    lone = make_op([5], OOB)
    empty = make_op([])  # S2.4: a datagram send of nothing is one empty datagram
    for op in (p1, p2):
        step_submit(queue, model, op)
    assert not queue.sendable() and queue.next_batch() == ([], 0), "an open message is not sendable"
    assert queue.open_message_bytes == 14
    for op in (end, lone, empty):
        step_submit(queue, model, op)
    check(queue, model)
    iov, flags = queue.next_batch()
    assert len(iov) == 4 and joined(iov) == p1.data + p2.data and flags == 0
    assert queue.bytes_sent(0) == [p1, p2, end], "a message completes whole whatever the count"
    assert queue.next_batch() == ([lone._bufs[0]], OOB)
    assert queue.bytes_sent(5) == [lone]
    assert queue.next_batch() == ([], 0) and queue.sendable()
    assert queue.bytes_sent(0) == [empty]
    assert not queue


def test_SendQueue_message_mode_withdraw_takes_the_whole_message() -> None:
    queue: SendQueue[Op] = SendQueue(message_mode=True)
    model = Model(True, IOV_MAX)
    ops = [make_op([1], more=True), make_op([2], more=True), make_op([3]), make_op([4], more=True)]
    for op in ops:
        step_submit(queue, model, op)
    step_withdraw(queue, model, ops[1])  # a piece of an ended message: refused (None)
    assert list(queue._ops) == ops
    step_withdraw(queue, model, ops[2])  # its ending send takes the whole message with it
    assert list(queue._ops) == [ops[3]]
    check(queue, model)
    step_withdraw(queue, model, ops[3])  # the open message's only piece
    assert not queue.has_open_message() and queue.open_message_bytes == 0
    check(queue, model)


def test_SendQueue_rejects_impossible_counts() -> None:
    queue: SendQueue[Op] = SendQueue()
    queue.submit(make_op([3]))
    with pytest.raises(ValueError):
        queue.bytes_sent(4)
    with pytest.raises(ValueError):
        queue.bytes_sent(-1)
    with pytest.raises(ValueError):
        SendQueue(iov_max=1)
    queue.check()
    assert queue.unsent_bytes == 3


# -- O(1) amortised bookkeeping, by counting ------------------------------------------------------


# CountingOp counts reads through Python properties. The compiled queue (SPEC S10) reads its
# sends' C fields directly and never calls them, so these tests run on the pure build only; CI's
# pure run (WSASEND_PURE=1) checks the very same _queue.py source.
counts_reads = pytest.mark.skipif(wsasend.compiled, reason="property-counted reads need the pure-Python queue")


class CountingOp(PendingSend):
    """A send that records which sends the queue looked at (reads of its fields)."""

    __slots__ = ("_c_bufs", "_c_flags", "_c_more", "_c_nbytes")

    seen: set[int] = set()  # noqa: RUF012 - one shared recorder, reset by the tests
    reads = [0]  # noqa: RUF012

    def _touch(self) -> None:
        CountingOp.seen.add(id(self))
        CountingOp.reads[0] += 1

    @property
    def _bufs(self) -> Any:
        self._touch()
        return self._c_bufs

    @_bufs.setter
    def _bufs(self, value: Any) -> None:
        self._c_bufs = value

    @property
    def _nbytes(self) -> int:
        self._touch()
        return self._c_nbytes

    @_nbytes.setter
    def _nbytes(self, value: int) -> None:
        self._c_nbytes = value

    @property
    def _flags(self) -> int:
        self._touch()
        return self._c_flags

    @_flags.setter
    def _flags(self, value: int) -> None:
        self._c_flags = value

    @property
    def _more(self) -> bool:
        self._touch()
        return self._c_more

    @_more.setter
    def _more(self, value: bool) -> None:
        self._c_more = value


def counting_queue(n_ops: int, iov_max: int, message_mode: bool = False) -> SendQueue[CountingOp]:
    queue: SendQueue[CountingOp] = SendQueue(iov_max=iov_max, message_mode=message_mode)
    for _ in range(n_ops):
        op = CountingOp()
        op._load([b"x"], 1)
        queue.submit(op)
    return queue


def reset_counts() -> None:
    CountingOp.seen.clear()
    CountingOp.reads[0] = 0


def drain_counting(queue: SendQueue[CountingOp], take: int) -> tuple[int, int, int]:
    """Drain, the kernel taking at most ``take`` bytes a call; (calls, max sends seen by one
    next_batch, total field reads)."""
    calls = worst = 0
    reset_counts()
    total_reads = 0
    while queue:
        CountingOp.seen.clear()
        iov, _ = queue.next_batch()
        worst = max(worst, len(CountingOp.seen))
        assert len(iov) <= queue.iov_max
        CountingOp.seen.clear()
        done = queue.bytes_sent(min(take, len(iov)))
        # bytes_sent looks at the sends it completes and at most one more (the new head).
        assert len(CountingOp.seen) <= len(done) + 1
        calls += 1
    total_reads = CountingOp.reads[0]
    return calls, worst, total_reads


@counts_reads
@pytest.mark.parametrize("take", [1, 5, 10**9])
def test_SendQueue_work_per_send_does_not_grow_with_queue_length(take: int) -> None:
    iov_max = 16
    results = {}
    for n_ops in (500, 20_000):
        queue = counting_queue(n_ops, iov_max)
        reset_counts()
        assert queue.unsent_bytes == n_ops
        assert not CountingOp.seen, "unsent_bytes is a running counter: it looks at no send"
        calls, worst, reads = drain_counting(queue, take)
        # One next_batch looks at no more than iov_max + 1 sends, however long the queue is ...
        assert worst <= iov_max + 1
        # ... and the whole drain reads each send's fields a bounded number of times.
        results[n_ops] = reads / n_ops
        assert calls >= n_ops // min(take, iov_max)
    assert results[20_000] <= results[500] * 1.05 + 0.5, results
    assert results[20_000] <= 4 * (iov_max + 2)


@counts_reads
def test_SendQueue_a_run_of_empty_sends_is_not_scanned_per_batch() -> None:
    # 0-buffer sends add nothing to the iov, so only the send-count bound stops the coalescing
    # scan: without it one next_batch would walk the whole queue.
    iov_max = 16
    queue: SendQueue[CountingOp] = SendQueue(iov_max=iov_max)
    ops = []
    for i in range(20_001):
        op = CountingOp()
        op._load([b"x"] if i == 20_000 else [], 1 if i == 20_000 else 0)
        queue.submit(op)
        ops.append(op)
    reset_counts()
    iov, _ = queue.next_batch()
    assert iov == [] and len(CountingOp.seen) <= iov_max + 1
    reset_counts()
    done = queue.bytes_sent(0)
    assert done == ops[:-1], "the empty sends at the head complete, in order"
    assert CountingOp.reads[0] <= 3 * 20_001
    assert queue.next_batch() == ([b"x"], 0)


@counts_reads
def test_SendQueue_message_mode_work_is_per_message() -> None:
    queue = counting_queue(5_000, 16, message_mode=True)
    reset_counts()
    calls = 0
    while queue.sendable():
        CountingOp.seen.clear()
        queue.next_batch()
        assert len(CountingOp.seen) == 1, "a one-piece message batch looks at its own send only"
        queue.bytes_sent(1)
        calls += 1
    assert calls == 5_000 and CountingOp.reads[0] <= 10 * 5_000


class CountingBytes(bytes):
    """A buffer that counts how often its length is asked for."""

    lens = [0]  # noqa: RUF012

    def __len__(self) -> int:
        CountingBytes.lens[0] += 1
        return super().__len__()


def _walk_one_buffer_per_call(n_bufs: int) -> tuple[int, int]:
    op = PendingSend()
    op._load([CountingBytes(b"ab") for _ in range(n_bufs)], 2 * n_bufs)
    queue: SendQueue[PendingSend] = SendQueue(iov_max=8)
    queue.submit(op)
    CountingBytes.lens[0] = 0
    calls = 0
    while queue:
        iov, _ = queue.next_batch()
        assert len(iov) <= 8
        queue.bytes_sent(2 if queue.unsent_bytes > 2 else queue.unsent_bytes)
        calls += 1
    return calls, CountingBytes.lens[0]


def test_SendQueue_partial_head_progress_is_not_rescanned() -> None:
    # A send of many buffers, consumed one buffer per sendmsg: the head's position is kept as
    # (buffer index, offset), so the buffers are walked once in all, not once per call.
    small_calls, small_lens = _walk_one_buffer_per_call(200)
    big_calls, big_lens = _walk_one_buffer_per_call(4_000)
    assert (small_calls, big_calls) == (200, 4_000)
    assert big_lens <= 4 * 4_000
    assert big_lens / 4_000 <= small_lens / 200 + 1


def test_every_split_helper_covers_every_count() -> None:
    assert list(every_split(3)) == [0, 1, 2, 3]
