"""``python -m wsasend bench``: the matrix of issue 6, its table, its targets, JSON and a chart.

Per group of cases (one workload, or the slow reader's depths together) it makes one untimed
verify run per case (CRC32 and count checked by the receiver, send syscalls counted, peak
traced memory), then ``rounds`` timed rounds, interleaved and alternated: A B C, C B A, A B C,
... so that a noisy neighbour hits every case alike, a case's place in the round favours no
side of a pair, and ratios are taken between runs of the same round.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .harness import Receiver, RunResult, Sender, run_case
from .senders import all_senders, has_transport
from .workloads import Workload, full_matrix, quick_matrix, scaled

__all__ = ["Case", "main", "run_matrix"]

# Timed rounds per case. Arbitrary: 5 is the fewest whose median one hiccup cannot move, and
# keeps the quick matrix near 1.5 minutes on a loaded 2-core machine (the limit is 3).
QUICK_ROUNDS = 5
FULL_ROUNDS = 5


@dataclass
class Case:
    workload: Workload
    sender: Sender
    verify: RunResult | None = None
    rounds: list[RunResult | None] = field(default_factory=list)  # None: skipped (verify failed)

    @property
    def case_id(self) -> str:
        return self.sender.case_id

    @property
    def ok(self) -> bool:
        return self.verify is not None and self.verify.ok and all(r is not None and r.ok for r in self.rounds)

    def timed(self) -> list[RunResult]:
        return [r for r in self.rounds if r is not None and r.ok]

    def rates(self) -> list[float]:
        """Sends per second of each good timed round."""
        return [self.workload.sends / r.elapsed for r in self.timed() if r.elapsed > 0]

    def per_send(self, metric: str) -> list[float]:
        """Microseconds per send (``metric`` ``"elapsed"`` or ``"cpu"``) of each good round."""
        return [getattr(r, metric) * 1e6 / self.workload.sends for r in self.timed()]

    def round_value(self, index: int, metric: str) -> float | None:
        r = self.rounds[index] if index < len(self.rounds) else None
        if r is None or not r.ok or r.elapsed <= 0:
            return None
        if metric == "rate":
            return self.workload.sends / r.elapsed
        return float(getattr(r, metric)) * 1e6 / self.workload.sends

    @property
    def syscalls_per_send(self) -> float | None:
        v = self.verify
        if v is None or v.syscalls is None or not self.workload.sends:
            return None
        return v.syscalls / self.workload.sends


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (a line per group when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.done = 0
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        if not self.tty:
            return
        width = 30
        filled = width * self.done // self.total
        elapsed = time.monotonic() - self.started
        bar = "#" * filled + "." * (width - filled)
        line = f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s  {label}"
        sys.stderr.write(line[:119].ljust(119))
        sys.stderr.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r" + " " * 119 + "\r")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 119 + "\r")
            sys.stderr.flush()


# -- the matrix ------------------------------------------------------------------------------------


def _select(items: Sequence[Any], wanted: str | None, names: Any) -> list[Any]:
    if not wanted:
        return list(items)
    keys = {w.strip() for w in wanted.split(",") if w.strip()}
    return [item for item in items if keys & set(names(item))]


def build_cases(workloads: Sequence[Workload], senders: Sequence[Sender]) -> list[list[Case]]:
    """Cases grouped for interleaving: one group per workload (the slow reader is one group)."""
    groups: dict[str, list[Case]] = {}
    for w in workloads:
        for s in senders:
            if w.kind in s.kinds:
                groups.setdefault(w.group, []).append(Case(w, s))
    return [g for g in groups.values() if g]


def run_matrix(
    groups: list[list[Case]],
    rounds: int,
    *,
    receiver: Receiver | None = None,
    progress: Progress | None = None,
    recv_size: int = 0,
) -> dict[str, float]:
    """Fill in every case's verify run and timed rounds; return the seconds each group took.

    ``recv_size``: bytes per ``recv_into`` of the receiver it starts (0: its default).
    """
    own = receiver is None
    rx = receiver if receiver is not None else Receiver(recv_size)
    seconds: dict[str, float] = {}
    try:
        for group in groups:
            started = time.monotonic()
            if progress is not None:
                progress.note(f"{group[0].workload.group}: {group[0].workload.describe()}, {len(group)} cases")
            for case in group:
                if progress is not None:
                    progress.step(f"{case.workload.key} {case.case_id} verify")
                case.verify = run_case(rx, case.workload, case.sender, verify=True)
                if not case.verify.ok and progress is not None:
                    progress.note(f"  FAILED verify {case.workload.key} {case.case_id}: {case.verify.problem}")
            for r in range(rounds):
                # Alternated (A B C, C B A, ...), as the servers benchmark rotates its rounds:
                # no case always runs after another. (A case's place may matter: W1 on uvloop,
                # `await wsa_send` run last, 0.981x StreamWriter in 400 rounds, first 1.006x in
                # 200; alternated, 0.981x in 200: run-to-run spread is as large.)
                for case in group if r % 2 == 0 else group[::-1]:
                    if progress is not None:
                        progress.step(f"{case.workload.key} {case.case_id} round {r + 1}/{rounds}")
                    if case.verify is None or not case.verify.ok:
                        case.rounds.append(None)
                        continue
                    result = run_case(rx, case.workload, case.sender, verify=False)
                    if not result.ok and progress is not None:
                        progress.note(f"  FAILED round {r + 1} {case.workload.key} {case.case_id}: {result.problem}")
                    case.rounds.append(result)
            seconds[group[0].workload.group] = round(time.monotonic() - started, 1)
    finally:
        if own:
            rx.close()
    return seconds


# -- statistics and targets --------------------------------------------------------------------------


def _spread(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def paired(a: Case, b: Case, metric: str) -> list[float]:
    """``a / b`` of ``metric`` for each round where both ran fine (ratios paired within a round)."""
    out = []
    for i in range(min(len(a.rounds), len(b.rounds))):
        va, vb = a.round_value(i, metric), b.round_value(i, metric)
        if va is not None and vb is not None and vb > 0:
            out.append(va / vb)
    return out


@dataclass
class Target:
    text: str
    group: str
    num: str
    den: str | None
    metric: str  # "rate" (higher is better), "cpu" (per send, lower is better), "syscalls"
    goal: float
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def holds(self) -> bool | None:
        m = self.median
        if m is None:
            return None
        return m >= self.goal if self.metric == "rate" else m <= self.goal


def _find(groups: list[list[Case]], key: str, case_id: str) -> Case | None:
    for group in groups:
        for case in group:
            if case.workload.key == key and case.case_id == case_id:
                return case
    return None


def targets(groups: list[list[Case]]) -> list[Target]:
    """Issue 6's targets, each measured in this run (absent cases are left out)."""
    out: list[Target] = []
    for key in ("W3", "W4"):
        for loop, goal in (("uvloop", 5.0), ("asyncio", 4.0)):
            out.append(
                Target(
                    f"{key} posted back to back >= {goal:g}x {loop} writelines (sends/s)",
                    key,
                    f"wsa-posted[{loop}]",
                    f"writelines[{loop}]",
                    "rate",
                    goal,
                )
            )
    for loop in ("uvloop", "asyncio"):
        out.append(
            Target(
                f"W1 posted [{loop}] >= 0.95x raw sendmsg",
                "W1",
                f"wsa-posted[{loop}]",
                "raw-sendmsg[raw]",
                "rate",
                0.95,
            )
        )
        out.append(
            Target(
                f"W1 posted [{loop}] >= 1.0x uvloop writelines",
                "W1",
                f"wsa-posted[{loop}]",
                "writelines[uvloop]",
                "rate",
                1.0,
            )
        )
    for key in ("W1", "W2", "W3", "W4"):
        for loop in ("uvloop", "asyncio"):
            out.append(
                Target(
                    f"{key} await wsa_send per send >= 1.0x StreamWriter+drain [{loop}]",
                    key,
                    f"wsa-await[{loop}]",
                    f"streamwriter[{loop}]",
                    "rate",
                    1.0,
                )
            )
    slow = sorted((c.workload for g in groups for c in g if c.workload.kind == "stall"), key=lambda w: w.depth)
    if slow:
        lo, hi = slow[0], slow[-1]
        if lo.depth != hi.depth:
            for loop in ("uvloop", "asyncio"):
                out.append(
                    Target(
                        f"per-send CPU flat {lo.depth} -> {hi.depth} queued (<= 1.5x) [{loop}]",
                        f"{hi.key}/{lo.key}",
                        f"wsa-posted[{loop}]",
                        None,
                        "cpu",
                        1.5,
                    )
                )
    for key in ("W3", "W4", *(w.key for w in slow[-1:])):
        for loop in ("uvloop", "asyncio"):
            out.append(
                Target(
                    f"{key} <= 1 sendmsg per 16 sends [{loop}]", key, f"wsa-posted[{loop}]", None, "syscalls", 1 / 16
                )
            )
    measured: list[Target] = []
    for t in out:
        if t.metric == "cpu":
            hi_key, lo_key = t.group.split("/")
            a, b = _find(groups, hi_key, t.num), _find(groups, lo_key, t.num)
            if a is None or b is None:
                continue
            t.values = paired(a, b, "cpu")
        elif t.metric == "syscalls":
            a = _find(groups, t.group, t.num)
            if a is None or a.syscalls_per_send is None:
                continue
            t.values = [a.syscalls_per_send]
        else:
            a = _find(groups, t.group, t.num)
            b = _find(groups, t.group, t.den) if t.den else None
            if a is None or b is None:
                continue
            t.values = paired(a, b, "rate")
        measured.append(t)
    return measured


# -- output ------------------------------------------------------------------------------------------


def _fmt_rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _fmt_spread(s: tuple[float, float, float] | None, fmt: Any) -> str:
    if s is None:
        return "-"
    med, lo, hi = s
    return f"{fmt(med)} ({fmt(lo)}-{fmt(hi)})"


def _fmt_ratio(s: tuple[float, float, float] | None) -> str:
    return _fmt_spread(s, lambda v: f"{v:.2f}")


def _fmt_opt(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _peak_kib(case: Case) -> float | None:
    v = case.verify
    return v.peak / 1024 if v is not None and v.peak is not None else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _verify_cell(case: Case) -> str:
    v = case.verify
    if v is None:
        return "-"
    if not v.ok:
        return "FAIL"
    bad = sum(1 for r in case.rounds if r is None or not r.ok)
    return "ok" if not bad else f"ok, {bad} round(s) failed"


def table(groups: list[list[Case]]) -> str:
    """The results as Markdown tables, one per group."""
    lines: list[str] = []
    for group in groups:
        w0 = group[0].workload
        if w0.kind == "stall":
            lines.append(f"### Slow reader: sends of {w0.nbufs}x{w0.bufsize} B posted into a stalled reader")
            lines.append("")
            lines.append(
                "| sender | loop | queued | sends/run | wall µs/send | CPU µs/send | sendmsg/send | peak KiB | verify |"
            )
            lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
            for case in sorted(group, key=lambda c: (c.sender.loop or "", c.sender.key, c.workload.depth)):
                w = case.workload
                queued = case.verify.queued if case.verify is not None else None
                lines.append(
                    f"| {case.sender.label} | {case.sender.loop or 'raw'} | {queued if queued is not None else '-'}"
                    f" of {w.depth} | {w.sends} x{w.cycles} cycles"
                    f" | {_fmt_spread(_spread(case.per_send('elapsed')), lambda v: f'{v:.2f}')}"
                    f" | {_fmt_spread(_spread(case.per_send('cpu')), lambda v: f'{v:.2f}')}"
                    f" | {_fmt_opt(case.syscalls_per_send, '.3f')}"
                    f" | {_fmt_opt(_peak_kib(case), '.0f')}"
                    f" | {_verify_cell(case)} |"
                )
            lines.append("")
            continue
        lines.append(f"### {w0.key} {w0.describe()}")
        lines.append("")
        lines.append(
            "| sender | loop | sends/s median (min-max) | MB/s | x raw sendmsg (paired) | CPU µs/send"
            " | sendmsg/send | peak KiB | verify |"
        )
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        raw = next((c for c in group if c.case_id == "raw-sendmsg[raw]"), None)
        for case in group:
            w = case.workload
            rates = _spread(case.rates())
            mbs = f"{rates[0] * w.send_bytes / 1e6:.0f}" if rates else "-"
            vs_raw = _spread(paired(case, raw, "rate")) if raw is not None else None
            lines.append(
                f"| {case.sender.label} | {case.sender.loop or 'raw'} | {_fmt_spread(rates, _fmt_rate)} | {mbs}"
                f" | {_fmt_ratio(vs_raw)} | {_fmt_opt(_median(case.per_send('cpu')), '.2f')}"
                f" | {_fmt_opt(case.syscalls_per_send, '.3f')}"
                f" | {_fmt_opt(_peak_kib(case), '.0f')}"
                f" | {_verify_cell(case)} |"
            )
        lines.append("")
    return "\n".join(lines)


def targets_table(measured: list[Target]) -> str:
    lines = ["### Targets of issue 6 (ratios paired within a round; median (min-max))", ""]
    lines.append("| target | measured | holds |")
    lines.append("| --- | ---: | --- |")
    for t in measured:
        s = _spread(t.values)
        if t.metric == "syscalls":
            cell = f"{t.values[0]:.4f} sendmsg/send (goal <= {t.goal:.4f})"
        elif t.metric == "cpu":
            cell = f"{_fmt_ratio(s)}x (goal <= {t.goal:g}x)"
        else:
            cell = f"{_fmt_ratio(s)}x (goal >= {t.goal:g}x)"
        holds = {True: "yes", False: "NO", None: "-"}[t.holds]
        lines.append(f"| {t.text} | {cell} | {holds} |")
    lines.append("")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        info["uvloop"] = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        info["uvloop"] = None
    import wsasend

    info["wsasend"] = wsasend.__version__
    # Which build ran (SPEC S10): the mypyc-compiled modules or plain Python.
    info["compiled"] = bool(getattr(wsasend, "compiled", False))
    info["wsatransport"] = has_transport()
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        info["commit"] = commit + ("+dirty" if dirty else "") if commit else None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def to_json(groups: list[list[Case]], measured: list[Target], meta: dict[str, Any]) -> dict[str, Any]:
    cases = []
    for group in groups:
        for case in group:
            w = case.workload
            rates = _spread(case.rates())
            cases.append(
                {
                    "group": w.group,
                    "workload": asdict(w),
                    "sender": case.sender.key,
                    "loop": case.sender.loop,
                    "label": case.sender.label,
                    "case": case.case_id,
                    "verify": asdict(case.verify) if case.verify is not None else None,
                    "rounds": [asdict(r) if r is not None else None for r in case.rounds],
                    "sends_per_s": rates,
                    "mb_per_s": [v * w.send_bytes / 1e6 for v in rates] if rates else None,
                    "wall_us_per_send": _spread(case.per_send("elapsed")),
                    "cpu_us_per_send": _spread(case.per_send("cpu")),
                    "syscalls_per_send": case.syscalls_per_send,
                    "ok": case.ok,
                }
            )
    return {
        **meta,
        "cases": cases,
        "targets": [
            {"target": t.text, "values": t.values, "median": t.median, "goal": t.goal, "holds": t.holds}
            for t in measured
        ],
    }


def plot(groups: list[list[Case]], path: str) -> None:
    """A bar chart: one panel per group, median with min-max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 1.0 * len(groups) + 0.22 * sum(len(g) for g in groups)))
    grid = fig.add_gridspec(len(groups), 1, height_ratios=[len(g) + 2 for g in groups])
    for i, group in enumerate(groups):
        ax = fig.add_subplot(grid[i, 0])
        w0 = group[0].workload
        names, meds, los, his = [], [], [], []
        for case in group:
            if w0.kind == "stall":
                s = _spread(case.per_send("cpu"))
                names.append(f"{case.case_id} depth {case.workload.depth}")
            else:
                s = _spread(case.rates())
                names.append(case.case_id)
            med, lo, hi = s if s is not None else (0.0, 0.0, 0.0)
            meds.append(med)
            los.append(med - lo)
            his.append(hi - med)
        colours = ["#c0392b" if n.startswith(("wsa", "wsatransport")) else "#7f8c8d" for n in names]
        ax.barh(range(len(names)), meds, xerr=[los, his], color=colours, capsize=2)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        if w0.kind == "stall":
            ax.set_title(
                f"slow reader, {w0.nbufs}x{w0.bufsize} B: sender CPU µs per send (lower is better)", fontsize=9
            )
        else:
            ax.set_title(f"{w0.key} {w0.describe()}: sends/s (higher is better)", fontsize=9)
        positive = [m for m in meds if m > 0]
        if positive and max(positive) > 20 * min(positive):
            ax.set_xscale("log")  # the raw 64-per-call ceiling would flatten every other bar
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    # No "Software" tag naming matplotlib's web site: nothing in the repository points outside it.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def profile_cases(groups: list[list[Case]], top: int) -> str:
    """cProfile one untimed run of each case (after a warm-up run); the top functions by own time.

    Deterministic profiling slows Python code, not syscalls, so the split is skewed towards
    Python: use it to see where the Python time goes, not for rates.
    """
    import cProfile
    import io
    import pstats

    out = []
    with Receiver() as rx:
        for group in groups:
            for case in group:
                run_case(rx, case.workload, case.sender, verify=False)
                prof = cProfile.Profile()
                prof.enable()
                result = run_case(rx, case.workload, case.sender, verify=False)
                prof.disable()
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
                status = f"{result.elapsed * 1e6 / case.workload.sends:.2f} µs/send" if result.ok else result.problem
                out.append(f"## {case.workload.key} {case.case_id} ({status}, profiled)\n{text.getvalue()}")
    return "\n".join(out)


# -- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsasend bench", description=__doc__)
    p.add_argument("--full", action="store_true", help="the whole matrix of issue 6 (long)")
    p.add_argument(
        "--servers",
        action="store_true",
        help="instead: the servers benchmark of issue 11 (ab / redis-benchmark against HTTP and RESP"
        " servers, stock vs wsasend; see --servers --help)",
    )
    p.add_argument("--plot", metavar="PNG", help="draw a bar chart (needs matplotlib: the 'plot' extra)")
    p.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    p.add_argument("--rounds", type=int, help=f"timed rounds per case (default {QUICK_ROUNDS}; --full {FULL_ROUNDS})")
    p.add_argument("--workloads", help="comma-separated workload keys or groups (W1,W2,W3,W4,S,U)")
    p.add_argument("--senders", help="comma-separated sender keys or case ids, e.g. wsa-posted,writelines[uvloop]")
    p.add_argument("--max-sends", type=int, help="cap every workload at this many sends (smoke runs)")
    p.add_argument(
        "--recv-size",
        type=int,
        default=0,
        metavar="BYTES",
        help="bytes per recv_into of the TCP receiver (default 4 MiB: one call takes whatever is queued;"
        " asyncio's transports read 256 KiB, a StreamReader 64 KiB)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        metavar="TOP",
        help="instead of timing, cProfile one run of each selected case and print the TOP functions",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables. Returns 0, or 1 when any run failed verification."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    if "--servers" in argv:
        # Issue 11: real clients against small servers (benchmarks/servers.py has its own options).
        from . import servers

        return servers.main([a for a in argv if a != "--servers"])
    args = _parser().parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "--plot needs matplotlib, which is not installed. Install the optional extra:\n"
                "    pip install 'wsasend[plot]'   (or: pip install -c ci/constraints.txt matplotlib)",
                file=sys.stderr,
            )
            return 2
    rounds = args.rounds if args.rounds is not None else (FULL_ROUNDS if args.full else QUICK_ROUNDS)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    if args.recv_size < 0:
        print("--recv-size must be positive (0: the receiver's default)", file=sys.stderr)
        return 2
    workloads = full_matrix() if args.full else quick_matrix()
    workloads = _select(workloads, args.workloads, lambda w: (w.key, w.group))
    if args.max_sends:
        workloads = [scaled(w, args.max_sends) for w in workloads]
    senders = _select(all_senders(), args.senders, lambda s: (s.key, s.case_id))
    groups = build_cases(workloads, senders)
    if not groups:
        print("nothing to run: no sender matches those workloads", file=sys.stderr)
        return 2
    ncases = sum(len(g) for g in groups)
    if args.profile:
        print(profile_cases(groups, args.profile))
        return 0
    meta: dict[str, Any] = {
        "command": "python -m wsasend bench " + " ".join(argv),
        "mode": "full" if args.full else "quick",
        "rounds": rounds,
        "recv_size": args.recv_size or None,
        "machine": machine(),
    }
    progress = Progress(ncases * (1 + rounds), enabled=not args.quiet)
    started = time.monotonic()
    try:
        meta["group_seconds"] = run_matrix(groups, rounds, progress=progress, recv_size=args.recv_size)
    finally:
        progress.close()
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    measured = targets(groups)
    m = meta["machine"]
    print(
        f"wsasend bench ({meta['mode']}, {rounds} timed rounds per case, {ncases} cases, {meta['seconds']} s)\n"
        f"machine: {m.get('cpu', '?')}, {m['cpus']} CPUs, Linux {m['kernel']}, Python {m['python']},"
        f" uvloop {m['uvloop']}, wsasend {m['wsasend']} ({m['commit']},"
        f" {'compiled' if m.get('compiled') else 'pure Python'}),"
        f" load {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}"
        + (f"\nreceiver: recv_into of {args.recv_size} bytes" if args.recv_size else "")
        + "\n"
    )
    print(table(groups))
    print(targets_table(measured))
    failed = [f"{c.workload.key} {c.case_id}" for g in groups for c in g if not c.ok]
    if failed:
        print(f"FAILED (verify or a timed run): {', '.join(failed)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(groups, measured, meta), f, indent=1)
    if args.plot:
        plot(groups, args.plot)
        print(f"chart written to {args.plot}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
