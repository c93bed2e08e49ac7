"""What the compiled and the plain-Python builds share (SPEC S10).

``mypyc_attr`` without a runtime dependency on mypy_extensions: mypyc reads the decorator when
it compiles; at run time it only has to exist. A plain-Python install may lack
mypy_extensions, so it then does nothing. ``is_extension_file`` tells a compiled module from
its ``.py`` source.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:

        def mypyc_attr(*attrs, **kwattrs):
            return lambda cls: cls


def is_extension_file(path: str | None) -> bool:
    """True when ``path`` (a module's ``__file__``) is a compiled extension, not a ``.py``."""
    return path is not None and path.endswith(tuple(EXTENSION_SUFFIXES))


__all__ = ["is_extension_file", "mypyc_attr"]
