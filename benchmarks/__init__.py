"""The benchmark harness of issue 6: ``wsa_send`` side by side with asyncio, uvloop and raw ``sendmsg``.

Run it with ``python -m wsasend bench`` (quick matrix), ``--full`` (the whole matrix of the
issue), ``--plot out.png`` and ``--json FILE``; see ``docs/benchmarks.md``.

Layout:

* :mod:`benchmarks.workloads`: the payloads (W1-W4, the slow reader, UDP datagrams) and the
  CRC32 of the exact byte stream each one must produce.
* :mod:`benchmarks.receiver`: the receiver, a separate process that drains with ``recv_into``
  into a preallocated buffer and acks (one byte on a pipe) when it holds every byte.
* :mod:`benchmarks.senders`: one function per way of sending (raw ``sendmsg``, asyncio and
  uvloop transports and streams, ``loop.sock_sendall``, ``wsa_send``, ``WSATransport.send``).
* :mod:`benchmarks.harness`: runs one case (verify run or timed run) against the receiver.
* :mod:`benchmarks.run`: the matrix, interleaved rounds, statistics, the table, JSON and plot.
"""
