"""``python -m wsasend demo`` (a walkthrough on loopback) and ``python -m wsasend bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["bench"]:
        # Everything after "bench" belongs to the harness, --help included.
        try:
            from benchmarks.run import main as bench_main  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            print("the benchmarks live in the source tree: run this from a checkout of wsasend", file=sys.stderr)
            return 2
        return int(bench_main(args[1:]) or 0)
    parser = argparse.ArgumentParser(prog="python -m wsasend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="a short walkthrough of WSASend semantics on loopback")
    sub.add_parser("bench", help="benchmarks side by side with asyncio, uvloop and raw sendmsg (see bench --help)")
    parser.parse_args(args)
    from ._demo import run_demo

    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
