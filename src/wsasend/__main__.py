"""``python -m wsasend demo``: a walkthrough of WSASend semantics on loopback.

From a checkout of the repository, ``python -m wsasend bench`` also runs the benchmarks
(``benchmarks/``, which the wheel does not ship): the command is listed only where it can run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

# What an installed package without the benchmark harness says to ``bench``.
_NO_BENCH = (
    "python -m wsasend bench runs the benchmarks, which live in a checkout of the repository "
    "(benchmarks/), not in the installed package: run `make bench` from a checkout"
)


def _have_bench() -> bool:
    """True when the benchmark harness is importable: run from a checkout's top directory."""
    try:
        return importlib.util.find_spec("benchmarks.run") is not None
    except (ImportError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    have_bench = _have_bench()
    if args[:1] == ["bench"]:
        if not have_bench:
            print(_NO_BENCH, file=sys.stderr)
            return 2
        # Everything after "bench" belongs to the harness, --help included.
        from benchmarks.run import main as bench_main  # type: ignore[import-not-found,unused-ignore]

        return int(bench_main(args[1:]) or 0)
    parser = argparse.ArgumentParser(prog="python -m wsasend", description="wsasend's command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="a short walkthrough of WSASend semantics on loopback")
    if have_bench:
        sub.add_parser("bench", help="benchmarks side by side with asyncio, uvloop and raw sendmsg (see bench --help)")
    parser.parse_args(args)
    from ._demo import run_demo

    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
