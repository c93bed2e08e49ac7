"""The compiled and the plain-Python builds (SPEC S10).

``wsasend.compiled`` must say the truth, and a run that expects one build must get it: CI sets
``WSASEND_EXPECT_COMPILED=1`` for its compiled run and ``WSASEND_PURE=1`` for its pure run, so
a build that silently fell back to Python (or a pure run that picked up a ``.so``) fails here.
The wheel-building tests check the fallbacks: no working C compiler means a pure wheel, and a C
failure in any one module means a pure wheel too, never a half-compiled one.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wsasend

ROOT = Path(__file__).resolve().parent.parent
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "buildsupport", "src")
# Nothing in this checkout must be importable from where the extensions would be written.
EXT_SUFFIXES = (".so", ".pyd")


def _module_file(name: str) -> str:
    return str(importlib.import_module(f"wsasend.{name}").__file__)


def _build_list(name: str = "COMPILED_MODULES") -> tuple[str, ...]:
    """A module tuple as buildsupport/wsasend_build.py spells it (read, not imported)."""
    tree = ast.parse((ROOT / "buildsupport" / "wsasend_build.py").read_text())
    for node in tree.body:
        target: ast.expr | None = None
        value_node: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target, value_node = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value_node = node.targets[0], node.value
        if isinstance(target, ast.Name) and target.id == name:
            assert value_node is not None
            value = ast.literal_eval(value_node)
            assert isinstance(value, tuple)
            return value
    raise AssertionError(f"{name} not found in buildsupport/wsasend_build.py")


def test_compiled_flag_is_a_bool_in_the_public_api() -> None:
    assert isinstance(wsasend.compiled, bool)
    assert "compiled" in wsasend.__all__


def test_the_package_and_the_build_name_the_same_modules() -> None:
    assert _build_list() == wsasend._COMPILED_MODULES


def test_compiled_says_what_was_imported_and_it_is_all_or_nothing() -> None:
    kinds = {name: _module_file(name).endswith(EXT_SUFFIXES) for name in wsasend._COMPILED_MODULES}
    assert set(kinds.values()) == {wsasend.compiled}, kinds
    # The modules that are never compiled stay Python in both builds.
    never = ("_errors", "_sync", "_server", "winsock", "_connect", "_sendfile", "_awaiting")
    for name in never:
        assert _module_file(name).endswith(".py")
    # The hand-written C helper (_iovsend.c) is built with them, and only with them.
    assert (importlib.util.find_spec("wsasend._iovsend") is not None) == wsasend.compiled


@pytest.mark.skipif(os.environ.get("WSASEND_EXPECT_COMPILED") != "1", reason="WSASEND_EXPECT_COMPILED=1 not set")
def test_the_compiled_run_really_runs_compiled_code() -> None:
    assert wsasend.compiled is True
    # The installed package, not the checkout's src/ (which never holds an extension).
    assert not _module_file("_engine").startswith(str(ROOT / "src"))


@pytest.mark.skipif(os.environ.get("WSASEND_PURE") != "1", reason="WSASEND_PURE=1 not set")
def test_the_pure_run_really_runs_python_sources() -> None:
    assert wsasend.compiled is False
    for name in wsasend._COMPILED_MODULES:
        assert _module_file(name).endswith(".py"), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF only (CODE_LAYOUT_FLAGS)")
@pytest.mark.skipif(os.environ.get("WSASEND_EXPECT_COMPILED") != "1", reason="WSASEND_EXPECT_COMPILED=1 not set")
@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf (binutils)")
def test_the_compiled_build_exports_only_module_init_and_calls_without_the_plt() -> None:
    # buildsupport's CODE_LAYOUT_FLAGS (issue 11): this compiler takes them (it built the package),
    # so every extension must show them: no symbol but PyInit_* exported, so calls between
    # mypyc's functions are direct, and no PLT entries, so calls into libpython skip the stub.
    libs = sorted(Path(wsasend.__file__).parent.parent.glob("wsasend*/**/*.so"))
    libs += sorted(Path(wsasend.__file__).parent.parent.glob("wsasend__mypyc*.so"))
    assert any("__mypyc" in p.name for p in libs) and any("_iovsend" in p.name for p in libs), libs
    for lib in libs:
        dyn = subprocess.run(["readelf", "--dyn-syms", "-W", str(lib)], capture_output=True, text=True, check=True)
        exported = set()
        for line in dyn.stdout.splitlines():
            cols = line.split()
            # Num: Value Size Type Bind Vis Ndx Name; defined (Ndx not UND) global functions/objects.
            if len(cols) >= 8 and cols[4] in ("GLOBAL", "WEAK") and cols[6] != "UND" and cols[3] in ("FUNC", "OBJECT"):
                exported.add(cols[7])
        assert exported and all(name.startswith("PyInit_") for name in exported), (lib.name, sorted(exported)[:10])
        relocs = subprocess.run(["readelf", "-r", "-W", str(lib)], capture_output=True, text=True, check=True)
        assert "JUMP_SLO" not in relocs.stdout, lib.name


def test_no_extension_module_in_the_source_tree() -> None:
    found = [p for p in (ROOT / "src").rglob("*") if p.name.endswith(EXT_SUFFIXES)]
    assert found == []


def test_a_send_in_this_build() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert wsasend.wsa_send_sync(a, [b"ab", memoryview(b"cd")]) == 4
        assert b.recv(10) == b"abcd"


# -- building wheels --------------------------------------------------------------------------


def _build_wheel(tmp_path: Path, env_extra: dict[str, str]) -> tuple[list[str], str]:
    """Builds a wheel of a copy of this checkout with the test's interpreter (no isolation: its
    setuptools and mypy); returns the wheel's file names and the build's output."""
    pytest.importorskip("setuptools")
    tree = tmp_path / "tree"
    for name in BUILD_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(src, tree / name)
    out = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k not in ("WSASEND_PURE", "PYTHONPATH")}
    env.update(env_extra)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(out), str(tree)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    (wheel,) = out.glob("wsasend-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert not [p for p in (tree / "src").rglob("*") if p.name.endswith(EXT_SUFFIXES)]
    return names, log


def _assert_pure_wheel(names: list[str]) -> None:
    assert not [n for n in names if n.endswith(EXT_SUFFIXES)], names
    for name in _build_list():  # at the top, or under .data/purelib after a failed compile
        assert any(n.endswith(f"wsasend/{name}.py") for n in names), name


def test_no_working_compiler_builds_a_pure_wheel(tmp_path: Path) -> None:
    names, log = _build_wheel(tmp_path, {"CC": "/bin/false"})
    _assert_pure_wheel(names)
    assert "building plain Python" in log


def test_WSASEND_PURE_builds_a_pure_wheel(tmp_path: Path) -> None:
    names, log = _build_wheel(tmp_path, {"WSASEND_PURE": "1"})
    _assert_pure_wheel(names)
    assert "building plain Python" in log


@pytest.mark.slow
@pytest.mark.parametrize("refused", ["_engine.c", "_iovsend.c"])
def test_one_module_failing_to_compile_makes_the_whole_wheel_pure(tmp_path: Path, refused: str) -> None:
    """A compiler that builds everything but one C file (a mypyc module's, or the hand-written
    helper's, built last): the wheel holds no extension at all (a half-compiled package would
    import the other modules compiled)."""
    if importlib.util.find_spec("mypyc") is None:
        pytest.skip("mypyc (mypy) is not installed in this environment")
    cc = shutil.which(os.environ.get("CC", "") or "cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    wrapper = tmp_path / "cc-but-not-engine"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'for arg in "$@"; do case "$arg" in */wsasend/{refused}) echo "refusing $arg" >&2; exit 1;; esac; done\n'
        f'exec {cc} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    names, log = _build_wheel(tmp_path, {"CC": str(wrapper)})
    assert "compiling with mypyc" in log  # the compiled build was tried...
    assert "refusing" in log and "C compilation failed" in log  # ...and failed on one module
    _assert_pure_wheel(names)


def _build_support() -> object:
    spec = importlib.util.spec_from_file_location("_wsasend_build_probe", ROOT / "buildsupport" / "wsasend_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_WRAPPERS = """\
PyObject *CPyPy_f(PyObject *self, PyObject *const *args, size_t nargs, PyObject *kwnames) {
    static CPyArg_Parser parser = {"OO|O$OOO:f", kwlist, 0};
    if (!CPyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &obj_a, &obj_b, &obj_c, &obj_d, &obj_e, &obj_f)) {
PyObject *CPyPy_g(PyObject *self, PyObject *const *args, size_t nargs, PyObject *kwnames) {
    static CPyArg_Parser parser = {"%OO:g", kwlist, 0};
    if (!CPyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &obj_args, NULL, &obj_a, &obj_b)) {
PyObject *CPyPy_h(PyObject *self, PyObject *const *args, size_t nargs, PyObject *kwnames) {
    static CPyArg_Parser parser = {"O|$O@O:h", kwlist, 0};
    if (!CPyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &obj_a, &obj_b, &obj_c)) {
PyObject *CPyPy_k(PyObject *self, PyObject *const *args, size_t nargs, PyObject *kwnames) {
    static CPyArg_Parser parser = {"O|O:k", kwlist, 0};
    if (!CPyArg_ParseStackAndKeywordsSimple(args, nargs, kwnames, &parser, &obj_a, &obj_b)) {
"""


def test_fast_positional_calls_changes_only_keyword_only_wrappers() -> None:
    """buildsupport's fast_positional_calls (issue 11): the simple parser for a wrapper whose
    parameters are positional, optional and optional keyword-only (``f``); never for one with
    ``*args``/``**kwargs`` (``g``, ``%``) or required keyword-only parameters (``h``, ``@``)."""
    support: Any = _build_support()
    text, changed = support.fast_positional_calls(_WRAPPERS)
    assert changed == 1
    lines = text.splitlines()
    assert "CPyArg_ParseStackAndKeywordsSimple(args" in lines[2]
    assert "CPyArg_ParseStackAndKeywords(args" in lines[5] and "CPyArg_ParseStackAndKeywords(args" in lines[8]
    assert [a for a, b in zip(lines, _WRAPPERS.splitlines(), strict=True) if a != b] == [lines[2]]


def test_calls_of_wsa_send_and_send_parse_as_the_signature_says() -> None:
    """The compiled wrappers (their parser, see fast_positional_calls) take calls as plain
    Python does: positional and keyword arguments go where they belong, keyword-only parameters
    stay keyword-only, and a bad call is a TypeError with nothing sent."""

    async def run(a: socket.socket, b: socket.socket) -> None:
        bad_calls: list[Callable[[], object]] = [
            lambda: wsasend.wsa_send(a, [b"x"], 0, None),  # type: ignore[call-arg]
            lambda: wsasend.wsa_send(a),  # type: ignore[call-arg]
            lambda: wsasend.wsa_send(a, [b"x"], nonsense=1),  # type: ignore[call-arg]
            lambda: wsasend.wsa_send(a, buffers=[b"x"], sock=a),  # type: ignore[misc]
        ]
        for bad in bad_calls:
            with pytest.raises(TypeError):
                bad()
        ov = wsasend.WSAOverlapped()
        assert await wsasend.wsa_send(a, [b"1"]) == 1
        assert await wsasend.wsa_send(a, [b"2"], 0) == 1
        assert await wsasend.wsa_send(a, [b"3"], flags=0, overlapped=ov) == 1
        assert await wsasend.wsa_send(sock=a, buffers=[b"4"]) == 1
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, a)
        with pytest.raises(TypeError):
            transport.send([b"x"], 0, None)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            transport.send()  # type: ignore[call-arg]
        assert await transport.send([b"5"]) == 1
        assert await transport.send([b"6"], 0, overlapped=wsasend.WSAOverlapped()) == 1
        transport.close()
        assert b.recv(10) == b"123456"

    a, b = socket.socketpair()
    with a, b:
        asyncio.run(run(a, b))
