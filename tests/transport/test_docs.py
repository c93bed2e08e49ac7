"""Every Python example of docs/transport.md runs, on the default loop and on uvloop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "transport.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_have_server_and_client_examples() -> None:
    assert len(EXAMPLES) >= 4
    assert any("wsasend.create_server" in source for source in EXAMPLES)
    assert any("wsasend.create_connection" in source for source in EXAMPLES)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_docs_example_runs(index: int, loop: str) -> None:
    source = EXAMPLES[index]
    assert source.rstrip().endswith("asyncio.run(main())")
    if loop == "uvloop":
        source = source.rstrip()[: -len("asyncio.run(main())")] + "import uvloop\nuvloop.run(main())\n"
    exec(compile(source, f"{DOC.name} example {index + 1}", "exec"), {"__name__": "__doc_example__"})


def test_transport_names_are_public() -> None:
    import wsasend

    s7 = {"WSATransport", "WSAProtocol", "create_connection", "create_server", "connect_accepted_socket"}
    assert s7 | {"open_connection", "start_server", "WSAServer"} <= set(wsasend.__all__)
    assert wsasend.__all__ == sorted(wsasend.__all__)
    assert issubclass(wsasend.WSATransport, __import__("asyncio").Transport)
    assert issubclass(wsasend.WSAProtocol, __import__("asyncio").Protocol)
