"""Every Python example of docs/overlapped.md runs, on the default loop and on uvloop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "overlapped.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_docs_example_runs(index: int, loop: str) -> None:
    source = EXAMPLES[index]
    assert source.rstrip().endswith("asyncio.run(main())")
    if loop == "uvloop":
        source = source.rstrip()[: -len("asyncio.run(main())")] + "import uvloop\nuvloop.run(main())\n"
    exec(compile(source, f"{DOC.name} example {index + 1}", "exec"), {"__name__": "__doc_example__"})
