"""The examples of docs/winsock.md run as written (SPEC S8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "winsock.md"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_has_its_examples() -> None:
    assert len(_examples()) == 3


@pytest.mark.usefixtures("not_started")
@pytest.mark.parametrize("index", [0, 1, 2], ids=["ported-from-c", "completion-routine", "iocp-echo-server"])
def test_doc_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_examples()[index], f"{DOC}:example{index}", "exec"), {"__name__": "__doc_example__"})
    if index == 0:
        assert capsys.readouterr().out == "1000005 bytes sent\n"
    if index == 2:
        assert capsys.readouterr().out == "echoed 3 x 200000 bytes through 4 workers on one port\n"


CONFORMANCE = DOC.with_name("conformance.md")
_PREFIXES = {
    "C": "test_conformance",
    "T": "test_threads",
    "L": "test_in_loop",
    "F": "test_facade",
    "W": "test_windows",
    "P": "test_ports",
    "N": "test_net_events",
    "K": "test_calls",
    "D": "test_datagrams",
}


def test_conformance_doc_names_real_tests_and_every_conformance_test() -> None:
    """docs/conformance.md only names tests that exist, and names every conformance test."""
    import importlib

    text = CONFORMANCE.read_text()
    named = set(re.findall(r"`([CTLFWPNKD]):(test_\w+)", text))
    assert named
    for prefix, name in named:
        module = importlib.import_module(f"tests.winsock.{_PREFIXES[prefix]}")
        if name.endswith("_"):  # "test_f1_..." style ranges
            assert any(attr.startswith(name) for attr in dir(module)), name
        else:
            assert callable(getattr(module, name, None)), f"{prefix}:{name} does not exist"
    for prefix in ("C", "W", "P", "N", "K", "D"):  # every test of these modules is in the tables
        module = importlib.import_module(f"tests.winsock.{_PREFIXES[prefix]}")
        listed = {name for p, name in named if p == prefix}
        tests = {attr for attr in dir(module) if attr.startswith("test_")}
        assert tests - listed == set(), f"{_PREFIXES[prefix]} tests missing from docs/conformance.md"
