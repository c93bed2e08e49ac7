"""Run CPython's own asyncio tests (``test.test_asyncio``) against wsasend's loop (SPEC S9.1).

``python -m tests.cpython.runner [--stock] [--json FILE] MODULE...`` runs the named modules of
the interpreter's ``test`` package with unittest. Without ``--stock`` every loop they make is
wsasend's (asyncio flavour): ``asyncio.SelectorEventLoop`` and the default policy are replaced
before the modules are imported, so ``asyncio.new_event_loop()``, ``self.new_loop()`` and
``asyncio.SelectorEventLoop(selector)`` all make a :class:`wsasend.WSAEventLoop`, whose
connection methods hand out WSATransports. ``--stock`` runs the same tests on the stock loop,
for comparison. The outcome of every test goes to ``--json`` as ``{test id: outcome}``.

Tests listed in :mod:`tests.cpython.excluded` are skipped (with their reason) on our loop.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.unix_events
import importlib
import json
import sys
import time
import unittest
from typing import Any

OUTCOMES = ("pass", "fail", "error", "skip", "xfail", "xpass")


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, str] = {}

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.outcomes.setdefault(test.id(), "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self.outcomes[test.id()] = "fail"

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self.outcomes[test.id()] = "error"

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self.outcomes[test.id()] = "skip"

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self.outcomes[test.id()] = "xfail"

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self.outcomes[test.id()] = "xpass"

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcomes[test.id()] = "fail"


def use_wsasend_loop() -> None:
    """Make every loop asyncio makes a wsasend loop (before the test modules are imported)."""
    import wsasend

    class Policy(wsasend.EventLoopPolicy):
        def __init__(self) -> None:
            super().__init__("asyncio")

    asyncio.SelectorEventLoop = wsasend.WSAEventLoop
    asyncio.unix_events.SelectorEventLoop = wsasend.WSAEventLoop
    asyncio.DefaultEventLoopPolicy = Policy
    asyncio.unix_events.DefaultEventLoopPolicy = Policy
    asyncio.set_event_loop_policy(Policy())


def _skip_excluded(suite: unittest.TestSuite, excluded: dict[str, str]) -> None:
    for test in list(_iter(suite)):
        reason = excluded.get(test.id())
        if reason is not None:
            setattr(test, test._testMethodName, unittest.skip(f"excluded: {reason}")(lambda: None))


def _iter(suite: unittest.TestSuite) -> Any:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter(item)
        else:
            yield item


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock", action="store_true", help="run on the stock loop, for comparison")
    parser.add_argument("--json", help="write {test id: outcome} here")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-k", dest="patterns", action="append", help="only tests whose id contains this")
    parser.add_argument("modules", nargs="+", help="e.g. test_streams test_server")
    args = parser.parse_args(argv)
    if not args.stock:
        use_wsasend_loop()
    from tests.cpython.excluded import excluded_here

    excluded = {} if args.stock else excluded_here()
    suite = unittest.TestSuite()
    for name in args.modules:
        module = importlib.import_module(f"test.test_asyncio.{name}")
        loader = unittest.TestLoader()
        if args.patterns:
            loader.testNamePatterns = [f"*{p}*" for p in args.patterns]
        loaded = loader.loadTestsFromModule(module)
        _skip_excluded(loaded, excluded)
        suite.addTest(loaded)
    runner = unittest.TextTestRunner(
        stream=sys.stderr, verbosity=2 if args.verbose else 1, resultclass=_Recorder, buffer=True
    )
    start = time.monotonic()
    result = runner.run(suite)
    assert isinstance(result, _Recorder)
    counts = {o: sum(1 for v in result.outcomes.values() if v == o) for o in OUTCOMES}
    print(
        f"{'stock' if args.stock else 'wsasend'} {' '.join(args.modules)}: {counts} in {time.monotonic() - start:.1f}s"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.outcomes, out, indent=1, sort_keys=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
