"""WSAProtocol, the protocol a WSATransport tells of every completed send (SPEC S7.2).

Users subclass it, so it lives in a module the compiled build leaves interpreted (it is not in
``buildsupport.COMPILED_MODULES``): compiled, a class mypyc keeps non-native still gets
compiled methods, which refuse a ``self`` of any subclass, and a subclass's
``super().send_completed(ov)`` raised ``TypeError: wsasend._transport.WSAProtocol object
expected`` there while the pure build ran it (adversarial pass). Its one method is never on
the hot path: the transport skips this no-op (see ``_transport._wants_completions``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._overlapped import CompletedSend

__all__ = ["WSAProtocol"]


class WSAProtocol(asyncio.Protocol):
    """An :class:`asyncio.Protocol` that is told of every completed send (SPEC S7.2).

    Any protocol with a ``send_completed`` method gets the calls; subclassing this class is only
    a convenience (and its no-op default costs nothing: the transport skips it).
    """

    def send_completed(self, overlapped: CompletedSend) -> None:
        """Called once per completed send of the transport, in posting order.

        Every ``send``, ``write`` and ``writelines`` that posted bytes completes exactly once,
        successfully (``overlapped.error == 0``, ``transferred`` == its size) or not (its
        ``WSAError`` in ``overlapped.exception``, ``transferred`` = the bytes the kernel took).
        It runs through ``loop.call_soon``, after the send's completion routine (S5.3), and
        before ``connection_lost``. An exception raised here goes to the loop's exception handler.

        ``overlapped`` is a :class:`CompletedSend`: that send's ``error``, ``transferred``,
        ``exception``, ``nbytes`` (and ``pending`` False, ``result()``), frozen when it completed.
        The object the send was posted with is ``overlapped.overlapped`` (the one ``send()``
        returned; ``write()`` makes its own). It is a snapshot because the overlapped itself may
        be posting another send by now: a routine that reposts with the same overlapped (the
        classic Winsock pattern), or a task that awaited it and reused it, runs before this call.
        """
