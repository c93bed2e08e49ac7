"""``mypyc_attr`` without a runtime dependency on mypy_extensions (SPEC S10).

mypyc reads the decorator when it compiles; at run time it only has to exist. A plain-Python
install may lack mypy_extensions, so it then does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:

        def mypyc_attr(*attrs, **kwattrs):
            return lambda cls: cls


__all__ = ["mypyc_attr"]
