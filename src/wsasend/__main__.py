"""``python -m wsasend demo`` (a walkthrough on loopback) and ``python -m wsasend bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsasend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="a short walkthrough of WSASend semantics on loopback")
    bench = sub.add_parser("bench", help="benchmarks side by side with asyncio, uvloop and raw sendmsg")
    bench.add_argument("--full", action="store_true", help="the whole matrix (slow)")
    bench.add_argument("--plot", metavar="PNG", help="draw a bar chart (needs the 'plot' extra)")
    bench.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo()
    try:
        from benchmarks.run import main as bench_main  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("the benchmarks live in the source tree: run this from a checkout of wsasend", file=sys.stderr)
        return 2
    forwarded = list(rest)
    if args.full:
        forwarded.append("--full")
    if args.plot:
        forwarded += ["--plot", args.plot]
    if args.json:
        forwarded += ["--json", args.json]
    return int(bench_main(forwarded) or 0)


if __name__ == "__main__":
    sys.exit(main())
