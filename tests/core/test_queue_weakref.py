"""No weak reference to a send queue can outlive it and point at freed memory (SPEC S10).

Compiled on Python 3.11, mypyc gave ``SendQueue`` (it extends ``typing.Generic``) a weak
reference list that its dealloc never cleared: the first test's script crashed the interpreter
(SIGSEGV) on main at f5e9af1. Nothing needs a queue weakly, so the compiled build refuses weak
references to it on every version, as mypyc's class does by itself from 3.12 on; the plain
Python class keeps them, and they die with the queue.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import weakref
from typing import Any, cast

import pytest

import wsasend
from wsasend._queue import SendQueue

# Queues freed by their reference count with the collector off, each weakly referenced if the
# build allows it, then the freed memory reused and every reference called.
_SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from wsasend._queue import SendQueue

    gc.disable()
    refs, fired, refused = [], [], 0
    for _ in range(100):
        queue = SendQueue()
        try:
            refs.append(weakref.ref(queue, fired.append))
        except TypeError:
            refused += 1
        del queue
    junk = [bytearray(200) for _ in range(1000)]
    print(refused, sum(r() is not None for r in refs), len(fired))
    """
)


def test_weak_references_to_freed_queues_are_refused_or_dead() -> None:
    run = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # Compiled: all 100 refused. Plain Python: none refused, none alive, 100 callbacks run.
    assert run.stdout.split() == (["100", "0", "0"] if wsasend.compiled else ["0", "0", "100"])


def test_a_queue_has_no_weakref_attribute_when_compiled() -> None:
    queue: SendQueue[Any] = SendQueue()
    if wsasend.compiled:
        with pytest.raises(TypeError, match="weak reference"):
            weakref.ref(queue)
        assert not hasattr(queue, "__weakref__")
    else:
        ref = weakref.ref(queue)
        assert ref() is queue
        del queue
        assert ref() is None


@pytest.mark.skipif(not wsasend.compiled, reason="the compiled build's C helper")
def test_no_weakrefs_checks_its_argument() -> None:
    from wsasend import _iovsend

    _iovsend.no_weakrefs(SendQueue)  # again: nothing changes
    with pytest.raises(TypeError, match="needs a class"):
        _iovsend.no_weakrefs(cast(Any, object()))
    with pytest.raises(TypeError, match="not a compiled class"):
        _iovsend.no_weakrefs(int)  # (a static type)


@pytest.mark.skipif(not wsasend.compiled or sys.version_info >= (3, 12), reason="3.11's weakref offset")
def test_no_weakrefs_asks_type_for_the_subclasses_not_the_class() -> None:
    """A class's own ``__subclasses__`` cannot hide a subclass from the check that refuses a
    class with subclasses (they copied the offset): review, stop 51, an override returning an
    iterator was read as an empty list."""
    from wsasend import _iovsend

    class Base:
        @classmethod
        def __subclasses__(cls) -> Any:
            return iter(type.__subclasses__(cls))  # (not a list)

    class Sub(Base):
        pass

    with pytest.raises(RuntimeError, match="already has subclasses"):
        _iovsend.no_weakrefs(cast(Any, Base))
    assert Sub.__weakrefoffset__ == Base.__weakrefoffset__ != 0
