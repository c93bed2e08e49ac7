"""The compiled build and plain Python answer every call of tests/parity_probe.py alike (SPEC S10).

The probe calls the public API with wrong-typed arguments (and a few right ones) and prints each
answer. This test runs it in two fresh interpreters, one on the build under test (the compiled
one: the suite's own ``wsasend``) and one on the ``.py`` sources with ``WSASEND_PURE=1``, and
compares the outputs line by line. A dozen parameters of the compiled build answered with
mypyc's own TypeError where plain Python gave a WSAError, a ValueError, an OSError or a result,
until they were typed ``object`` (tests/transport/test_bad_arguments.py pins each answer); this
test is what finds the next one (it fails on a ``flags: int`` put back into
``WSATransport.send``). It runs where there is a compiled build to compare: ``make test`` and CI's compiled run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import wsasend

_ROOT = Path(__file__).resolve().parent.parent
_SRC = _ROOT / "src"
_PROBE = Path(__file__).resolve().parent / "parity_probe.py"


def _probe(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(_PROBE)], env=env, cwd=str(_ROOT), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.skipif(not wsasend.compiled, reason="needs the compiled build to compare with plain Python")
@pytest.mark.skipif(not (_SRC / "wsasend" / "__init__.py").is_file(), reason="needs the .py sources (a checkout)")
def test_compiled_and_pure_builds_answer_wrong_arguments_alike() -> None:
    compiled_env = dict(os.environ)
    compiled_env.pop("WSASEND_PURE", None)
    pure_env = dict(compiled_env, WSASEND_PURE="1", PYTHONPATH=str(_SRC))
    compiled = _probe(compiled_env)
    pure = _probe(pure_env)
    assert compiled[0] == "compiled=True" and pure[0] == "compiled=False"
    assert len(compiled) > 300  # every call answered (36 calls x 10 values, and the build line)
    different = [f"compiled: {c}\n    pure: {p}" for c, p in zip(compiled[1:], pure[1:], strict=True) if c != p]
    assert not different, "\n".join(different)
