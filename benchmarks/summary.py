"""The README's benchmark summary, made from a ``--json`` run: ``python -m benchmarks.summary FILE``.

One row per sender and loop, one column per workload (W1 in MB/s, the others in sends/s; the
median of the timed rounds), then issue 6's targets with their ratios paired within a round,
then issue 11's targets (``--issue11``; ``--servers SERVERS.json``, the JSON of
``bench --servers --json``, adds the server rows), and with ``--plot PNG`` the chart.
It reads only the JSON the harnesses wrote (the issue 11 ratios are paired from its rounds
exactly as the harness pairs them), so the README and the runs agree.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

# Workload columns of the summary, in order (the slow-reader group has its own table in the
# full output; its target rows are in the targets table).
COLUMNS = [("W1", "W1 16x64 KiB MB/s", "mb_per_s"), ("W2", "W2 4x4 KiB sends/s", "sends_per_s"),
           ("W3", "W3 4x32 B sends/s", "sends_per_s"), ("W4", "W4 1x64 B sends/s", "sends_per_s"),
           ("U", "UDP 4x256 B sends/s", "sends_per_s")]  # fmt: skip


def _fmt(value: float, kind: str) -> str:
    if kind == "mb_per_s":
        return f"{value:,.0f}"
    return f"{value / 1000:,.0f}k"


def summary(data: dict[str, Any]) -> str:
    """The Markdown summary of one harness run."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple[str, str]] = []
    for case in data["cases"]:
        key = case["workload"]["key"]
        if key not in {c[0] for c in COLUMNS}:
            continue
        row_key = (case["label"], case["loop"] or "raw")
        if row_key not in rows:
            rows[row_key] = {}
            order.append(row_key)
        kind = next(c[2] for c in COLUMNS if c[0] == key)
        rows[row_key][key] = _fmt(case[kind][0], kind)  # [median, min, max]
    lines = [
        "| sender | loop | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " |",
    ]
    for label, loop in order:
        cells = [rows[(label, loop)].get(key, "-") for key, _, _ in COLUMNS]
        lines.append(f"| {label} | {loop} | " + " | ".join(cells) + " |")
    lines += ["", "| target (issue 6) | measured, median (min-max) | holds |", "| --- | ---: | --- |"]
    for target in data["targets"]:
        values = target["values"]
        unit = "" if "sendmsg" in target["target"] and "per" in target["target"] else "x"
        lines.append(
            f"| {target['target']} | {target['median']:.3g}{unit} ({min(values):.3g}-{max(values):.3g}) | "
            f"{'yes' if target['holds'] else 'NO'} |"
        )
    return "\n".join(lines)


def _case(data: dict[str, Any], key: str, case_id: str) -> dict[str, Any] | None:
    return next((c for c in data["cases"] if c["workload"]["key"] == key and c["case"] == case_id), None)


def _round_value(case: dict[str, Any], i: int, metric: str) -> float | None:
    """As ``run.Case.round_value``: sends/s ("rate") or µs per send ("cpu") of round ``i``."""
    rounds = case["rounds"]
    r = rounds[i] if i < len(rounds) else None
    if r is None or not r["ok"] or r["elapsed"] <= 0:
        return None
    sends = case["workload"]["sends"]
    return sends / r["elapsed"] if metric == "rate" else r["cpu"] * 1e6 / sends


def _paired(a: dict[str, Any] | None, b: dict[str, Any] | None, metric: str) -> list[float]:
    if a is None or b is None:
        return []
    out = []
    for i in range(min(len(a["rounds"]), len(b["rounds"]))):
        va, vb = _round_value(a, i, metric), _round_value(b, i, metric)
        if va is not None and vb is not None and vb > 0:
            out.append(va / vb)
    return out


def _row(text: str, values: list[float], goal: float, higher: bool) -> str:
    if not values:
        return f"| {text} | not measured in this run | - |"
    m = statistics.median(values)
    holds = m >= goal if higher else m <= goal
    return f"| {text} | {m:.3g}x ({min(values):.3g}-{max(values):.3g}) | {'yes' if holds else 'NO'} |"


def issue11(data: dict[str, Any], servers: list[dict[str, Any]] | None = None) -> str:
    """Issue 11's targets (compiled build, both loops) as a Markdown table, paired per round."""
    loops = ("asyncio", "uvloop")
    lines = ["| target (issue 11) | measured, median (min-max) | holds |", "| --- | ---: | --- |"]
    for key in ("W3", "W4"):
        for loop in loops:
            lines.append(
                _row(
                    f"{key} posted >= 5x {loop} writelines (sends/s) [{loop}]",
                    _paired(_case(data, key, f"wsa-posted[{loop}]"), _case(data, key, f"writelines[{loop}]"), "rate"),
                    5.0,
                    True,
                )
            )
    for key in ("W1", "W2", "W3", "W4"):
        for loop in loops:
            lines.append(
                _row(
                    f"{key} await wsa_send per send >= 1.0x StreamWriter+drain [{loop}]",
                    _paired(_case(data, key, f"wsa-await[{loop}]"), _case(data, key, f"streamwriter[{loop}]"), "rate"),
                    1.0,
                    True,
                )
            )
    # The servers' targets: HTTP keep-alive <= 1.0x the stock server's CPU per request, RESP
    # pipelined (-P 16) >= 1.5x cheaper. Unpipelined RESP has no target (its table shows it).
    what = {"H": ("HTTP keep-alive (ab -k -c 50)", 1.0, "<= 1.0x"), "R16": ("RESP -P 16", 1 / 1.5, ">= 1.5x cheaper")}
    for row in servers or []:
        if row["impl"] == "stock" or row["workload"] not in what:
            continue
        title, goal, text = what[row["workload"]]
        lines.append(
            _row(
                f"{title} server CPU/request, {row['impl']} vs stock {text} [{row['loop']}]",
                row["cpu_vs_stock"],
                goal,
                False,
            )
        )
    for loop in loops:
        lines.append(
            _row(
                f"U datagrams posted >= 0.9x DatagramTransport.sendto [{loop}]",
                _paired(_case(data, "U", f"wsa-posted[{loop}]"), _case(data, "U", f"sendto[{loop}]"), "rate"),
                0.9,
                True,
            )
        )
    for key in ("S1000", "S10000"):
        for loop in loops:
            lines.append(
                _row(
                    f"{key} slow reader CPU/send <= 1.0x uvloop writelines [{loop}]",
                    _paired(_case(data, key, f"wsa-posted[{loop}]"), _case(data, key, "writelines[uvloop]"), "cpu"),
                    1.0,
                    False,
                )
            )
    for loop in loops:
        lines.append(
            _row(
                f"W1 bulk posted >= 0.95x raw sendmsg [{loop}]",
                _paired(_case(data, "W1", f"wsa-posted[{loop}]"), _case(data, "W1", "raw-sendmsg[raw]"), "rate"),
                0.95,
                True,
            )
        )
    return "\n".join(lines)


def servers_summary(servers: list[dict[str, Any]]) -> str:
    """The README's servers table, from ``bench --servers --json``: server CPU µs per request
    (median of the rounds), and wsasend/stock ratios paired within a round (CPU and requests/s).
    """
    titles = {
        "H": "HTTP keep-alive, `ab -k -c 50`",
        "HC": "HTTP, a connection per request, `ab -c 50`",
        "HC1": "HTTP, a connection per request, one client at a time, `ab -c 1`",
        "R1": "RESP, `redis-benchmark`",
        "R16": "RESP, `redis-benchmark -P 16`",
    }

    def good(row: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in row["rounds"] if r["ok"] and r["requests"]]

    lines = [
        "| workload | server | loop | server CPU µs/request | CPU vs stock (paired) | requests/s vs stock (paired) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in servers:
        stock = next(
            s for s in servers if s["workload"] == row["workload"] and s["loop"] == row["loop"] and s["impl"] == "stock"
        )
        cpu = statistics.median(r["cpu"] * 1e6 / r["requests"] for r in good(row))
        if row is stock:
            cpu_ratio = rps_ratio = "1"
        else:
            rps = [
                a["rps"] / b["rps"]
                for a, b in zip(row["rounds"], stock["rounds"], strict=False)
                if a["ok"] and b["ok"] and b["rps"] > 0
            ]
            c = row["cpu_vs_stock"]
            cpu_ratio = f"**{statistics.median(c):.2f}x** ({min(c):.2f}-{max(c):.2f})"
            rps_ratio = f"{statistics.median(rps):.2f}x ({min(rps):.2f}-{max(rps):.2f})"
        title = titles.get(row["workload"], row["workload"])
        lines.append(f"| {title} | {row['impl']} | {row['loop']} | {cpu:.1f} | {cpu_ratio} | {rps_ratio} |")
    return "\n".join(lines)


def plot_json(data: dict[str, Any], path: str) -> None:
    """The harness's bar chart (``run.plot``), drawn from a ``--json`` file instead of a live run."""
    from benchmarks.harness import RunResult, Sender
    from benchmarks.run import Case, plot
    from benchmarks.workloads import Workload

    groups: dict[str, list[Case]] = {}
    for c in data["cases"]:
        sender = Sender(c["sender"], c["label"], c["loop"], frozenset(), fn=None)  # type: ignore[arg-type]
        rounds = [RunResult(**r) if r is not None else None for r in c["rounds"]]
        case = Case(Workload(**c["workload"]), sender, None, rounds)
        groups.setdefault(c["group"], []).append(case)
    plot(list(groups.values()), path)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__)
    p.add_argument("results", metavar="RESULTS.json", help="the JSON of `python -m wsasend bench --json`")
    p.add_argument("--issue11", action="store_true", help="also issue 11's targets table")
    p.add_argument("--servers", metavar="SERVERS.json", help="with --issue11: `bench --servers --json` rows")
    p.add_argument("--plot", metavar="PNG", help="also draw the chart (needs matplotlib)")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        data = json.load(f)
    print(summary(data))
    if args.issue11:
        servers = None
        if args.servers:
            with open(args.servers, encoding="utf-8") as f:
                servers = json.load(f)
        print()
        print(issue11(data, servers))
        if servers:
            print()
            print(servers_summary(servers))
    if args.plot:
        plot_json(data, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
