"""The package as a user gets it: a wheel in a fresh virtualenv runs the README and the demo.

Issue 12, section 5 (Acceptance): build the wheel from this checkout, install it (with its
runtime dependencies, and uvloop for the demo's second half) in a new virtualenv that does not
see this interpreter's packages, then, from a directory outside the checkout, run every README
example and ``python -m wsasend demo``. A README example is a ``python`` code block that ends
with ``asyncio.run(main())``: a complete script (the other blocks are fragments). The installed
CLI must not offer ``bench``, whose harness is not in the wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLES = [
    block
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    if block.rstrip().endswith("asyncio.run(main())")
]


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_README_has_runnable_examples() -> None:
    assert len(EXAMPLES) >= 2
    assert any("wsa_send(" in source for source in EXAMPLES)
    assert any("wsasend.create_server" in source for source in EXAMPLES)


def test_wheel_in_fresh_venv_runs_README_examples_and_demo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(ROOT)],
        cwd=tmp_path,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("wsasend-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wsasend/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith("/LICENSE") for name in names), names
    assert not any(name.startswith(("benchmarks/", "tests/")) for name in names), names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    installed = _run([py, "-m", "pip", "install", "--quiet", f"wsasend[uvloop] @ {wheel.as_uri()}"], cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([py, "-c", "import wsasend; print(wsasend.__file__)"], cwd=elsewhere)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout

    for index, source in enumerate(EXAMPLES, 1):
        script = elsewhere / f"readme_example_{index}.py"
        script.write_text(source)
        ran = _run([py, script.name], cwd=elsewhere, timeout=60)
        assert ran.returncode == 0, f"README example {index}:\n{source}\n{ran.stdout}{ran.stderr}"

    demo = _run([py, "-m", "wsasend", "demo"], cwd=elsewhere, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "uvloop is not installed" not in demo.stdout

    usage = _run([py, "-m", "wsasend", "--help"], cwd=elsewhere)
    assert usage.returncode == 0 and "{demo}" in usage.stdout and "bench" not in usage.stdout, usage.stdout
    bench = _run([py, "-m", "wsasend", "bench"], cwd=elsewhere)
    assert bench.returncode == 2 and "checkout" in bench.stderr, bench.stderr
