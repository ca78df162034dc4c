"""The benchmark scripts work: bench/history.py builds a config repo with Ferry's trailers, and
bench/report.py joins the figures of a run into one table (no timings are asserted)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module(name: str):  # type: ignore[no-untyped-def]
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_history_builds_a_repo_with_ferrys_layout_and_trailers(tmp_path: Path) -> None:
    history = _module("history")
    layout = history.build_repo(tmp_path / "config.git", 3, 40)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(tmp_path / "config.git"), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    assert int(git("rev-list", "--count", "main")) == 40 == layout.commits
    files = git("ls-tree", "-r", "--name-only", "main").split()
    for service in layout.services:
        for env in ("dev", "staging", "prod"):
            running = layout.running[(service, env)]
            assert f"environments/{env}/{service}/{service}/artifact.json" in files
            spec = json.loads(
                git("show", f"main:environments/{env}/{service}/{service}/artifact.json")
            )
            assert spec["id"] == running
        assert all(f"builds/{service}/{a}/artifact.json" in files for a in layout.builds[service])
    trailers = git("log", "-1", "--format=%(trailers:only)", "main")
    assert "Ferry-Event-Id: " in trailers
    assert "Ferry-Service: " in trailers
    ids = git("log", "--format=%(trailers:key=Ferry-Event-Id,valueonly)", "main").split()
    assert len(ids) == len(set(ids)) == 40


def test_report_joins_the_figures_into_one_table(tmp_path: Path) -> None:
    report = _module("report")
    run = report.Report("demo", argv=[])
    run.add(
        "stored", 300.0, "artifacts/s", baseline=30.0, baseline_name="git", goal=">= 10x", met=True
    )
    run.add("p95", 120.0, "ms", goal="< 100 ms", met=False)
    run.save(tmp_path)
    joined = report.join(tmp_path)
    assert [f["name"] for f in joined["figures"]] == ["stored", "p95"]
    assert joined["figures"][0]["ratio"] == 10.0
    table = report.render(joined["figures"])
    assert (
        "| demo | stored | 300 artifacts/s | 30 artifacts/s (git) | 10.00x | >= 10x | met |"
        in table
    )
    assert "**NOT met**" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"# B\n\nbefore\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    report.update_readme(table, "make bench", readme)
    text = readme.read_text()
    assert "old" not in text
    assert "before" in text
    assert "after" in text
    assert table in text
