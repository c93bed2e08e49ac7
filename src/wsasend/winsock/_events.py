"""Events and waits of the facade: WSAEVENTs, alertable waits, SleepEx (SPEC S8.4, S8.6)."""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".
# ruff: noqa: N802, N803

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from .._errors import WSAError, WSAErrorCode
from .._overlapped import _CLOSED_LOOP_POLL, WSAEvent, _abandon_closed
from . import _startup as _st
from ._startup import (
    _CLOSED_EVENTS,
    WAIT_IO_COMPLETION,
    WSA_INFINITE,
    WSA_INVALID_EVENT,
    WSA_MAXIMUM_WAIT_EVENTS,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_FAILED,
    WSA_WAIT_IO_COMPLETION,
    WSA_WAIT_TIMEOUT,
    _fail,
    _ok,
    _started,
    _state,
)

# -- events and waits (S8.4, S8.6) ----------------------------------------------------------------


def _check_event(event: object) -> WSAEvent:
    if not isinstance(event, WSAEvent) or event in _CLOSED_EVENTS:
        raise WSAError(WSAErrorCode.WSA_INVALID_HANDLE, detail=f"{event!r} is not an open event")
    return event


# Auto-reset events (CreateEvent with bManualReset false), by id. Held until closed, like a
# Windows handle, so an id cannot be reused by another event while it is in here.
_AUTO_RESET: dict[int, WSAEvent] = {}
# Taken to consume an auto-reset event's signal: exactly one satisfied wait resets it.
_TAKE_LOCK = threading.Lock()


def _is_auto(event: WSAEvent) -> bool:
    return _AUTO_RESET.get(id(event)) is event


def _take(event: WSAEvent) -> bool:
    """The wait is satisfied by ``event`` (set): consume it if it is auto-reset; False if
    another waiter consumed it first."""
    if not _is_auto(event):
        return True
    with _TAKE_LOCK:
        if not event.is_set():
            return False
        event.reset()
        return True


def _take_all(events: list[WSAEvent]) -> bool:
    if not all(event.is_set() for event in events):
        return False
    autos = [event for event in events if _is_auto(event)]
    if not autos:
        return True
    with _TAKE_LOCK:
        if not all(event.is_set() for event in events):
            return False
        for event in autos:
            event.reset()
        return True


def CreateEvent(
    lpEventAttributes: object = None, bManualReset: bool = True, bInitialState: bool = False, lpName: object = None
) -> WSAEvent | None:
    """A new event, manual- or auto-reset (Win32's CreateEvent; SPEC S8.7).

    An auto-reset event (``bManualReset`` false) is reset by the wait it satisfies: when several
    threads wait on it, one set wakes exactly one of them. Waits here are
    ``WSAWaitForMultipleEvents``; the engine signals it like any ``hEvent``. ``WSASetEvent``,
    ``WSAResetEvent``, ``WSACloseEvent`` (and ``SetEvent``, ``ResetEvent``, ``CloseHandle``)
    work on it.

    Args:
        lpEventAttributes: must be None.
        lpName: must be None (named events are not supported).

    Returns:
        The :class:`~wsasend.WSAEvent`, or None with WSANOTINITIALISED or
        WSA_INVALID_PARAMETER (attributes or a name).
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return WSA_INVALID_EVENT
    if lpEventAttributes is not None or lpName is not None:
        _fail(WSAErrorCode.WSA_INVALID_PARAMETER)
        return WSA_INVALID_EVENT
    event = WSAEvent(bool(bInitialState))
    if not bManualReset:
        with _st._REGISTRY_LOCK:
            _AUTO_RESET[id(event)] = event
    _ok()
    return event


def SetEvent(hEvent: WSAEvent) -> bool:
    """Win32's SetEvent: ``WSASetEvent``."""
    return WSASetEvent(hEvent)


def ResetEvent(hEvent: WSAEvent) -> bool:
    """Win32's ResetEvent: ``WSAResetEvent``."""
    return WSAResetEvent(hEvent)


def WSACreateEvent() -> WSAEvent | None:
    """A new manual-reset event, not signalled (Winsock's WSACreateEvent).

    Returns:
        The :class:`~wsasend.WSAEvent`, or WSA_INVALID_EVENT (None) with WSANOTINITIALISED.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return WSA_INVALID_EVENT
    return WSAEvent()


def _event_call(event: object, action: Callable[[WSAEvent], object]) -> bool:
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return False
    try:
        action(_check_event(event))
    except WSAError as exc:
        _fail(exc.winerror)
        return False
    return True


def WSASetEvent(hEvent: WSAEvent) -> bool:
    """Signal the event (Winsock's WSASetEvent). False with WSA_INVALID_HANDLE for a bad one."""
    return _event_call(hEvent, WSAEvent.set)


def WSAResetEvent(hEvent: WSAEvent) -> bool:
    """Clear the event (Winsock's WSAResetEvent). False with WSA_INVALID_HANDLE for a bad one."""
    return _event_call(hEvent, WSAEvent.reset)


def WSACloseEvent(hEvent: WSAEvent) -> bool:
    """Close the event: any later use of it is WSA_INVALID_HANDLE (Winsock's WSACloseEvent)."""

    def close(event: WSAEvent) -> None:
        with _st._REGISTRY_LOCK:
            _CLOSED_EVENTS.add(event)
            if _AUTO_RESET.get(id(event)) is event:
                del _AUTO_RESET[id(event)]

    return _event_call(hEvent, close)


def _timeout_seconds(ms: object) -> float | None:
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        raise WSAError(WSAErrorCode.WSA_INVALID_PARAMETER, detail=f"timeout {ms!r} ms")
    return None if ms >= WSA_INFINITE else ms / 1000.0


def _watch_sources(events: list[WSAEvent]) -> float | None:
    """Abort the sends of closed loops behind ``events`` (S5.12); the slice to wait in while a
    send behind one of them is pending on a live loop, else None (no slicing)."""
    step = None
    for event in events:
        send = event._source
        engine = send._engine if send is not None and send._pending else None
        if engine is not None:
            if engine.loop.is_closed():
                _abandon_closed(engine)
            step = _CLOSED_LOOP_POLL
    return step


def _wait(events: list[WSAEvent], wait_all: bool, timeout: float | None, alertable: bool) -> int:
    """The wait of WSAWaitForMultipleEvents and SleepEx: events, APCs and time-out, no polling.

    Order of checks, as Windows' kernel does them: a satisfied wait wins over queued routines,
    and queued routines win over the time-out.
    """
    state = _state()
    alertable = alertable and not state.in_apc
    wake = state.wake
    listener = wake.set
    for event in events:
        event._add_listener(listener)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wake.clear()  # before looking: a set() from now on ends the wait below
            if events:
                if wait_all:
                    if _take_all(events):
                        return WSA_WAIT_EVENT_0
                else:
                    for index, event in enumerate(events):
                        if event.is_set() and _take(event):
                            return WSA_WAIT_EVENT_0 + index
            if alertable and state.run_apcs():
                return WSA_WAIT_IO_COMPLETION
            # S5.12: a send behind one of the events whose loop was closed bare (no hook ran)
            # is aborted here, which sets its event; while such a send is pending the wait
            # looks again every _CLOSED_LOOP_POLL (as WSAEvent.wait does).
            step = _watch_sources(events)
            if deadline is None:
                wake.wait(step)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return WSA_WAIT_TIMEOUT
                wake.wait(left if step is None else min(left, step))
    finally:
        for event in events:
            event._remove_listener(listener)


def WSAWaitForMultipleEvents(events: Iterable[WSAEvent], wait_all: bool, timeout_ms: int, alertable: bool) -> int:
    """Wait for one or all of ``events``, a time-out, or (alertable) completion routines (S8.4, S8.6).

    Mirrors Winsock's ``WSAWaitForMultipleEvents(cEvents, lphEvents, fWaitAll, dwTimeout,
    fAlertable)``, the count being the list's length. Blocks this thread: inside a running loop,
    await the overlapped or ``event.wait_async()`` instead.

    Args:
        events: 1 to ``WSA_MAXIMUM_WAIT_EVENTS`` (64) open events.
        wait_all: wait until every event is signalled at once, rather than any one.
        timeout_ms: milliseconds, or ``WSA_INFINITE``; 0 only looks.
        alertable: run this thread's queued completion routines, if any, and return.

    Returns:
        ``WSA_WAIT_EVENT_0 + i`` for the lowest signalled event ``i`` (``WSA_WAIT_EVENT_0``
        when ``wait_all``), ``WSA_WAIT_IO_COMPLETION`` after running completion routines,
        ``WSA_WAIT_TIMEOUT``, or ``WSA_WAIT_FAILED`` with ``WSAGetLastError()``:
        WSANOTINITIALISED, WSA_INVALID_PARAMETER (no events, more than 64, bad time-out, one
        event twice with ``wait_all``, as Win32 refuses it), WSA_INVALID_HANDLE (an entry that
        is not an open event).
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return WSA_WAIT_FAILED
    try:
        try:
            evs = list(events)
        except TypeError:
            raise WSAError(WSAErrorCode.WSA_INVALID_PARAMETER, detail="events is not a list") from None
        if not 1 <= len(evs) <= WSA_MAXIMUM_WAIT_EVENTS:
            raise WSAError(
                WSAErrorCode.WSA_INVALID_PARAMETER,
                detail=f"{len(evs)} events (1 to {WSA_MAXIMUM_WAIT_EVENTS} allowed)",
            )
        checked = [_check_event(event) for event in evs]
        if wait_all and len({id(event) for event in checked}) < len(checked):
            # Win32 refuses one object twice in a wait for all (ERROR_INVALID_PARAMETER): it
            # could never be told apart from itself when it resets (an auto-reset event).
            raise WSAError(WSAErrorCode.WSA_INVALID_PARAMETER, detail="the same event twice with wait_all")
        timeout = _timeout_seconds(timeout_ms)
    except WSAError as exc:
        _fail(exc.winerror)
        return WSA_WAIT_FAILED
    return _wait(checked, bool(wait_all), timeout, bool(alertable))


def SleepEx(dwMilliseconds: int, bAlertable: bool) -> int:
    """Sleep; alertable, run this thread's queued completion routines and wake (Win32 SleepEx).

    A kernel32 function rather than a Winsock one, so it works without ``WSAStartup`` (the
    routines of sends aborted by the last ``WSACleanup`` still need a wait to run in).

    Args:
        dwMilliseconds: how long, or ``INFINITE``.
        bAlertable: return early once completion routines queued to this thread have run.
            Inside a completion routine, a wait is never alertable (no nesting, S5.3).

    Returns:
        0 when the time ran out, ``WAIT_IO_COMPLETION`` (0xC0) after running routines.

    Raises:
        WSAError: WSA_INVALID_PARAMETER for a negative or non-int time.
    """
    timeout = _timeout_seconds(dwMilliseconds)
    if not bAlertable:
        if timeout is None:
            threading.Event().wait()
        else:
            time.sleep(timeout)
        return 0
    result = _wait([], False, timeout, True)
    return WAIT_IO_COMPLETION if result == WSA_WAIT_IO_COMPLETION else 0
