"""The README's benchmark summary, made from a ``--json`` run: ``python -m benchmarks.summary FILE``.

One row per sender and loop, one column per workload (W1 in MB/s, the others in sends/s; the
median of the timed rounds), then the issue's targets with their ratios paired within a round.
It reads the JSON the harness wrote and computes nothing new, so the README and the run agree.
"""

from __future__ import annotations

import json
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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.summary RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print(summary(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
