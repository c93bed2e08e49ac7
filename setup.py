"""Builds wsasend: compiled with mypyc where possible, plain Python otherwise (SPEC S10).

Metadata lives in pyproject.toml; this file only adds the mypyc extensions. See
buildsupport/wsasend_build.py for when the compiled build is tried. Any failure, of mypyc or of
the C compiler on any module, drops every extension: the wheel is then the plain-Python package,
never a half-compiled one. The build directory is emptied first, so no ``.so`` from an earlier
build can slip into a pure wheel, and nothing is ever written into ``src/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "buildsupport"))

from wsasend_build import COMPILED_MODULES, code_layout_flags, fast_positional_calls, want_compiled  # noqa: E402


def _say(msg: str) -> None:
    print(f"wsasend build: {msg}", file=sys.stderr, flush=True)


# The one hand-written C module (see _mypyc_extensions).
IOVSEND = Extension("wsasend._iovsend", sources=[os.path.join("src", "wsasend", "_iovsend.c")])

# The setup.py commands that build code; the others (egg_info, dist_info, sdist: metadata) run
# before the build requirements are installed and need no extension.
BUILDING = {"build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel"}


def _mypyc_extensions() -> list[Any]:
    if not BUILDING & set(sys.argv[1:]):
        return []
    if not want_compiled():
        _say("building plain Python (WSASEND_PURE set, or no working C compiler / CPython)")
        return []
    try:
        from mypyc.build import mypycify

        paths = [os.path.join("src", "wsasend", f"{m}.py") for m in COMPILED_MODULES]
        # mypyc type-checks first. No incremental cache (/dev/null): every build checks what is
        # installed now, never what an earlier build (another Python, another env) saw.
        exts = mypycify(
            ["--cache-dir", os.devnull, *paths],
            opt_level="3",
            group_name="wsasend",
            target_dir=os.path.join("build", "mypyc"),
        )
    except BaseException as exc:  # mypy missing, a type error, a mypyc crash: all mean pure
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        _say(f"mypyc failed ({exc!r}): building plain Python")
        return []
    changed = 0
    for ext in exts:  # (mypyc wrote its C already; build_ext compiles it later)
        for path in ext.sources:
            if path.endswith(".c"):
                with open(path) as f:
                    text, n = fast_positional_calls(f.read())
                if n:
                    with open(path, "w") as f:
                        f.write(text)
                changed += n
    _say(f"positional calls parsed the simple way in {changed} wrappers (see fast_positional_calls)")
    flags = code_layout_flags()  # (see CODE_LAYOUT_FLAGS there: where the server's CPU went)
    for ext in [*exts, IOVSEND]:
        ext.extra_compile_args = [*ext.extra_compile_args, *flags]
    shown = " ".join(flags) or "(none)"
    _say(f"compiling with mypyc: {', '.join(COMPILED_MODULES)}; and C: {IOVSEND.name}; extra flags: {shown}")
    # The one hand-written C module (issue 11): sendmsg(2) of a list of buffers without
    # socket.sendmsg's per-buffer argument parsing. Built with the mypyc modules, so it is
    # dropped with them if anything fails (AllOrNothingBuildExt).
    return [*exts, IOVSEND]


class CleanBuild(build):
    """Starts from an empty build/lib: a stale extension there would ship in the wheel."""

    def run(self) -> None:
        shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()


class AllOrNothingBuildExt(build_ext):
    """Compiles every extension or none: one C failure removes them all (never half-compiled)."""

    def run(self) -> None:
        try:
            super().run()
        except (Exception, SystemExit) as exc:  # CompileError, LinkError, DistutilsExecError...
            _say(f"C compilation failed ({exc!r}): installing plain Python for every module")
            for ext in self.extensions:
                for path in (self.get_ext_fullpath(ext.name),):
                    if os.path.exists(path):
                        os.remove(path)
            self.extensions = []
            self.distribution.ext_modules = []

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []


setup(
    ext_modules=_mypyc_extensions(),
    cmdclass={"build": CleanBuild, "build_ext": AllOrNothingBuildExt},
)
