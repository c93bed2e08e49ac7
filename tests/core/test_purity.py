"""The pure core imports no I/O (STYLE.md "Import direction", SPEC S6.4 lives in ``_queue``).

``_errors``, ``_buffers`` and ``_queue`` must not import ``asyncio``, ``socket`` or
``selectors``, directly or through the package modules they import. I check it twice: by
reading the source with ``ast`` (following relative imports), and by loading the three files
in a fresh interpreter, outside the ``wsasend`` package, and looking at ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import wsasend

PACKAGE_DIR = Path(wsasend.__file__).parent
# _compat: mypyc_attr for the compiled build (SPEC S10), typing only.
PURE = ("_compat", "_errors", "_buffers", "_queue")
FORBIDDEN = {"asyncio", "socket", "selectors"}


def imports_of(source: str, module: str) -> tuple[set[str], set[str]]:
    """(absolute top-level modules, sibling ``wsasend`` modules) that ``source`` imports.

    Dynamic imports (``__import__``, ``importlib.import_module``) are reported as the absolute
    module ``"<dynamic>"`` so that they cannot hide an I/O import.
    """
    absolute: set[str] = set()
    siblings: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            absolute.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module is not None
                top = node.module.split(".")[0]
                if top == "wsasend":
                    siblings.update(_wsasend_targets(node.module, [a.name for a in node.names]))
                else:
                    absolute.add(top)
            elif node.level == 1:
                if node.module:
                    siblings.add(node.module.split(".")[0])
                else:  # from . import _x
                    siblings.update(alias.name for alias in node.names)
            else:
                absolute.add("<outside the package>")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module"):
                absolute.add("<dynamic>")
    return absolute, siblings


def _wsasend_targets(module: str, names: list[str]) -> set[str]:
    parts = module.split(".")
    if len(parts) > 1:
        return {parts[1]}
    return {"__init__"} | set(names)


def closure(start: str) -> dict[str, set[str]]:
    """Every package module reachable from ``start`` -> its absolute imports."""
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = PACKAGE_DIR / f"{name}.py"
        assert path.exists(), f"{start} imports wsasend.{name}, which is not a module file"
        absolute, siblings = imports_of(path.read_text(encoding="utf-8"), name)
        seen[name] = absolute
        todo.extend(siblings)
    return seen


@pytest.mark.parametrize("module", PURE)
def test_pure_core_imports_no_io_modules(module: str) -> None:
    reached = closure(module)
    assert module in reached
    for name, absolute in reached.items():
        assert not absolute & FORBIDDEN, f"wsasend.{name} (reached from {module}) imports {absolute & FORBIDDEN}"
        assert "<dynamic>" not in absolute and "<outside the package>" not in absolute, name
    # The closure stays inside the core: it never reaches the engine, the API or the sockets.
    assert set(reached) <= set(PURE), f"{module} reaches {set(reached) - set(PURE)}"


def test_import_checker_would_catch_io_imports() -> None:
    # The checker itself must see every spelling, or the test above proves nothing.
    samples = {
        "import socket": {"socket"},
        "import asyncio.events": {"asyncio"},
        "from selectors import DefaultSelector": {"selectors"},
        "def f():\n    import socket": {"socket"},
        "import importlib\nm = importlib.import_module('socket')": {"importlib", "<dynamic>"},
        "s = __import__('socket')": {"<dynamic>"},
    }
    for source, expected in samples.items():
        assert imports_of(source, "sample")[0] == expected, source
    assert imports_of("from ._engine import SendEngine", "sample")[1] == {"_engine"}
    assert imports_of("from . import _api", "sample")[1] == {"_api"}
    assert imports_of("from wsasend._sync import x", "sample")[1] == {"_sync"}
    assert "__init__" in imports_of("from wsasend import wsa_send", "sample")[1]


def test_pure_core_loads_without_io_modules_in_a_fresh_interpreter() -> None:
    # Load the three files as a package of their own ("purecore"), so that wsasend/__init__.py
    # (which does import the engine) never runs, then look at what got imported.
    script = textwrap.dedent(
        f"""
        import importlib.util, sys, types
        pkg = types.ModuleType("purecore")
        pkg.__path__ = [{str(PACKAGE_DIR)!r}]
        sys.modules["purecore"] = pkg
        for name in {list(PURE)!r}:
            spec = importlib.util.spec_from_file_location("purecore." + name, {str(PACKAGE_DIR)!r} + "/" + name + ".py")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
        q = sys.modules["purecore._queue"].SendQueue()
        print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))
        print(sorted(m for m in sys.modules if m.startswith(("purecore", "wsasend"))))
        """
    )
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60, check=True)
    loaded_io, loaded_pkg = (ast.literal_eval(line) for line in out.stdout.strip().splitlines())
    assert loaded_io == [], f"the pure core pulled in {loaded_io}"
    assert loaded_pkg == sorted(["purecore", *(f"purecore.{m}" for m in PURE)])
