"""The benchmark table of docs/performance.md, rendered from one run's JSON (so the table is
that run's).

python bench/readme_table.py bench/README-results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def figure(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "%":
        return f"{value:.1f}%"
    digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f} {unit}".strip()


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(report: dict[str, Any]) -> str:
    load_before = ", ".join(f"{x:.1f}" for x in report.get("load_before", []))
    load_after = ", ".join(f"{x:.1f}" for x in report.get("load_after", []))
    lines = [
        f"One run of `python bench/run.py`, {report['date']}: {report['cores']} cores, "
        f"{report['machine']}, Python {report['python']}; load average (1, 5, 15 min) "
        f"{load_before or '?'} before, {load_after or '?'} after.",
        "",
        "| scenario | measure (settings) | heygen-watcher | baseline | ratio | must | aim | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    scenario = None
    for row in report["rows"]:
        shown = "" if row["scenario"] == scenario else cell(row["scenario"])
        scenario = row["scenario"]
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else ""
        met = "" if row["ok"] is None else "yes" if row["ok"] else "**no**"
        lines.append(
            f"| {shown} | {cell(row['measure'].strip())} | {figure(row['ours'], row['unit'])} | "
            f"{figure(row['baseline'], row['unit'])} | {ratio} | {cell(row['must'])} | "
            f"{cell(row['aim'])} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a JSON report written by bench/run.py")
    args = parser.parse_args()
    print(render(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
