"""CPython's own asyncio tests pass on wsasend's loop (SPEC S9.1, S9.2, S9.3).

Each module of :data:`tests.cpython.excluded.MODULES` runs in a subprocess
(``python -m tests.cpython.runner``) with every loop a wsasend loop; a test that fails there
fails here, unless tests/cpython/excluded.py lists it with its reason. Skipped where the
interpreter does not ship its ``test`` package.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cpython.excluded import EXCLUDED, MODULES

ROOT = Path(__file__).resolve().parents[2]
BAD = {"fail", "error", "xpass"}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("module", MODULES)
def test_cpython_asyncio_module_passes_on_wsasend_loop(module: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("test.test_asyncio") is None:
        pytest.skip("this interpreter does not ship CPython's test package")
    out = tmp_path / "outcomes.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cpython.runner", "--json", str(out), module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert out.exists(), proc.stderr[-5000:]
    outcomes: dict[str, str] = json.loads(out.read_text())
    assert outcomes, f"{module}: no test ran"
    failed = {test for test, outcome in outcomes.items() if outcome in BAD}

    assert not failed, f"{sorted(failed)}\n{proc.stderr[-20000:]}"
    # The excluded ones were skipped, not run.
    assert all(outcomes[test] == "skip" for test in EXCLUDED if test in outcomes)
