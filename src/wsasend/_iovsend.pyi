# The compiled build's C helper (_iovsend.c); absent from the plain-Python build.
from typing import Any

def sendmsg(fd: int, buffers: list[Any], flags: int, /) -> int: ...
