"""The figures every benchmark reports, and the one table ``make bench`` prints.

Each benchmark builds a :class:`Report`, adds its figures (the figure, the baseline
measured in the same run, the goal and whether it was met) and calls :meth:`Report.save`:
that prints its rows and writes ``bench/results/parts/<bench>.json``. Run as a script,
this module joins the parts of the last run into one table, prints it and writes it to
``bench/results/<date>.json`` and ``bench/results/latest.json``; ``--readme`` also puts it
into ``bench/README.md`` (between the ``bench-table`` markers).

    uv run python bench/report.py [--readme]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTS = RESULTS / "parts"
README = HERE / "README.md"
BEGIN = "<!-- bench-table:begin -->"
END = "<!-- bench-table:end -->"


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Figure:
    """One row: ``value`` (in ``unit``) against ``baseline`` measured in the same run."""

    bench: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""
    load: float = field(default_factory=load_average)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.baseline):
            return None
        return self.value / self.baseline

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


class Report:
    """The figures of one benchmark run."""

    def __init__(self, bench: str, argv: list[str] | None = None) -> None:
        self.bench = bench
        self.argv = sys.argv[1:] if argv is None else argv
        self.figures: list[Figure] = []
        self.started = datetime.now(UTC)

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_name: str = "",
        goal: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> Figure:
        figure = Figure(self.bench, name, value, unit, baseline, baseline_name, goal, met, note)
        self.figures.append(figure)
        return figure

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "args": self.argv,
            "started": self.started.isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "figures": [f.as_json() for f in self.figures],
        }

    def save(self, directory: Path = PARTS) -> Path:
        """Print this benchmark's rows and write them for the joint table."""
        print()
        print(render(self.figures))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.bench}.json"
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        return path


def _number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def render(figures: list[Figure] | list[dict[str, Any]]) -> str:
    """A Markdown table of the figures."""
    rows = [f.as_json() if isinstance(f, Figure) else f for f in figures]
    lines = [
        "| bench | figure | value | baseline (same run) | ratio | goal | met | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = _number(row["baseline"], row["unit"])
        if row["baseline_name"] and row["baseline"] is not None:
            base = f"{base} ({row['baseline_name']})"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        met = {True: "met", False: "**NOT met**", None: "-"}[row["met"]]
        name = row["name"] + (f" ({row['note']})" if row["note"] else "")
        lines.append(
            f"| {row['bench']} | {name} | {_number(row['value'], row['unit'])} | {base} "
            f"| {ratio} | {row['goal'] or '-'} | {met} | {row['load']:.1f} |"
        )
    return "\n".join(lines)


def join(parts: Path = PARTS) -> dict[str, Any]:
    runs = [json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))]
    figures = [f for run in runs for f in run["figures"]]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "runs": [{k: v for k, v in run.items() if k != "figures"} for run in runs],
        "figures": figures,
    }


def update_readme(table: str, command: str, readme: Path = README) -> None:
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"{BEGIN}\nMade by `{command}` on {stamp} ({os.cpu_count()} CPUs).\n\n{table}\n{END}"
    readme.write_text(head + body + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true", help="put the table into README.md")
    parser.add_argument("--command", default="make bench", help="the command named in README")
    args = parser.parse_args()
    joined = join()
    if not joined["figures"]:
        sys.exit(f"no results under {PARTS}: run a benchmark first")
    table = render(joined["figures"])
    print(table)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(joined, indent=2) + "\n")
    if args.readme:
        update_readme(table, args.command)


if __name__ == "__main__":
    main()
