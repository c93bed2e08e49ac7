"""The build backend of wsasend (SPEC S10): setuptools, plus mypyc when it can compile.

``pip install .`` compiles the hot modules (``COMPILED_MODULES``) with mypyc when this is
CPython with a working C compiler, and installs the same modules as plain Python otherwise.
Only then does the build ask for mypy (mypyc ships with it): a pure build (``WSASEND_PURE=1``,
no compiler, PyPy, or an editable install) needs nothing but setuptools, so it also works
offline. ``setup.py`` makes the final decision and falls back to pure Python, for every
module at once, if mypyc or the C compiler fails there.

Editable installs are always pure: they import ``src/`` directly, and a compiled ``.so`` in
``src/`` would hide later edits of the ``.py`` next to it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the rest of the PEP 517/660 hooks, unchanged)

#: The modules mypyc compiles, all into one shared library: all of them or none (SPEC S10).
#: Coroutines stay out of them (``_connect``, ``_sendfile``, ``_awaiting`` are Python): a
#: compiled coroutine throws into what it awaits with the three-argument throw(), deprecated
#: from Python 3.12 on. ``_transport`` needs ``_iovsend.support_weakrefs`` (see _iovsend.c).
#: The same on every supported Python.
COMPILED_MODULES = ("_queue", "_buffers", "_sockutil", "_overlapped", "_engine", "_api", "_transport", "_errorwatch")


#: What the compiled build needs at build time: mypyc (part of mypy), and our runtime dependency
#: attrs, since mypyc type-checks the modules first (without it, mypyc fails: a pure build).
MYPYC_REQUIREMENTS = ("mypy>=1.10", "attrs>=23.1")

#: Set to 1 (or true/yes/on) to build and install plain Python even where mypyc could compile.
PURE_ENV = "WSASEND_PURE"


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def compiler_works() -> bool:
    """Whether the C compiler build_ext would use (``$CC``, else Python's own) can compile an
    extension here: CPython's headers included, run exactly as configured."""
    return _compiles()


#: Extra C flags for the compiled build (issue 11), used where the compiler takes them (ELF
#: platforms; see :func:`code_layout_flags`). mypyc puts the whole package, with its runtime
#: library, in one C file; by default every one of its ~1,300 functions is an exported symbol, so
#: each call between them went through the PLT, and so did each call into libpython. A small
#: HTTP keep-alive server spent its extra CPU against the stock transport on cache misses, not
#: instructions (callgrind, uvloop, per request: 17.8k instructions against the stock server's
#: 17.7k, but 352 instruction-cache misses against 246 and 190 data-cache misses against 70).
#: With both flags: 262 and 140, and the server's CPU per request against the stock server's
#: went from 1.068x to 1.029x (medians of 16 paired rounds); 2% fewer instructions a send
#: behind a slow reader. Only ``PyInit_*`` needs to be exported (Python's headers mark it so).
CODE_LAYOUT_FLAGS = ("-fvisibility=hidden", "-fno-plt")


def _compiles(extra: tuple[str, ...] = ()) -> bool:
    """Whether the C compiler build_ext would use (``$CC``, else Python's own) compiles a probe
    that includes CPython's headers, with ``extra`` flags (warnings as errors: a flag the
    compiler merely ignores is not taken)."""
    if sys.implementation.name != "cpython":
        return False
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    if not cc or not os.path.exists(os.path.join(include, "Python.h")):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <Python.h>\nint wsasend_probe(void) { return Py_IsNone(Py_None); }\n")
        werror = ["-Werror"] if extra else []
        try:
            done = subprocess.run(
                [*cc, *werror, *extra, "-c", src, "-o", os.path.join(tmp, "probe.o"), "-I", include],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


def code_layout_flags() -> list[str]:
    """:data:`CODE_LAYOUT_FLAGS` where they apply (Linux/ELF) and the compiler takes them; else none
    (the build is still compiled, only without them)."""
    if not sys.platform.startswith("linux") or not _compiles(CODE_LAYOUT_FLAGS):
        return []
    return list(CODE_LAYOUT_FLAGS)


#: mypyc's argument parsers (its lib-rt, getargsfast.c). The general one parses the format
#: string on every call; the "simple" one first takes a call of positional arguments only
#: (no keywords, their count within the positional parameters) by copying the pointers.
_GENERAL_PARSE = "CPyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser"
_SIMPLE_PARSE = "CPyArg_ParseStackAndKeywordsSimple(args, nargs, kwnames, &parser"
_PARSER = re.compile(r'static CPyArg_Parser parser = \{"([^"]*)"')


def fast_positional_calls(c_source: str) -> tuple[str, int]:
    """Give mypyc's wrappers of functions with keyword-only parameters the simple parser.

    mypyc gives the simple parser only to functions without keyword-only parameters; every
    call of ``wsa_send(sock, buffers)`` or ``transport.send(buffers)`` (which have optional
    keyword-only ones) went through the general parser: ~400 instructions a call, 8% of a
    posted send behind a slow reader (issue 11). The simple parser's fast path is sound for
    them too: it copies the positional arguments into the first pointers, which are the
    positional parameters' in mypyc's order (positional, optional, then keyword-only), and
    leaves the keyword-only ones unset, as the general parser does when none is given; any
    call with a keyword, or with too few or too many positional arguments, still goes the
    general way (and its errors). Wrappers of functions with ``*args``/``**kwargs`` (``%`` in
    the format) or required keyword-only parameters (``@``) are left as they are.

    Returns the new source and how many wrappers were changed.
    """
    out: list[str] = []
    changed = 0
    fmt = None
    for line in c_source.splitlines(keepends=True):
        match = _PARSER.search(line)
        if match:
            fmt = match.group(1)
        elif _GENERAL_PARSE in line and fmt is not None:
            if "%" not in fmt and "@" not in fmt:
                line = line.replace(_GENERAL_PARSE, _SIMPLE_PARSE)
                changed += 1
            fmt = None
        out.append(line)
    return "".join(out), changed


def want_compiled() -> bool:
    """Whether to try the compiled build (setup.py still falls back if it fails)."""
    return not pure_requested() and compiler_works()


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    extra = list(MYPYC_REQUIREMENTS) if want_compiled() else []
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *extra]


def _pure(hook: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        os.environ[PURE_ENV] = "1"
        return hook(*args, **kwargs)

    run.__name__ = hook.__name__
    return run


get_requires_for_build_editable = _pure(_setuptools.get_requires_for_build_editable)
prepare_metadata_for_build_editable = _pure(_setuptools.prepare_metadata_for_build_editable)
build_editable = _pure(_setuptools.build_editable)
