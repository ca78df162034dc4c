"""The benchmark scripts work: bench/history.py builds a config repo with Ferry's trailers, and
bench/report.py joins the figures of a run into one table (no timings are asserted)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.amqp
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_time_to_production_bench_runs_make_run_and_splits_a_push_into_its_parts(
    tmp_path: Path,
) -> None:
    e2e = subprocess.run(
        [
            sys.executable, str(BENCH / "e2e.py"),
            "--pushes", "2", "--warmup", "0", "--baseline", "1", "--parts", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert e2e.returncode == 0, e2e.stdout[-3000:] + e2e.stderr[-3000:]
    figures = json.loads((tmp_path / "e2e.json").read_text())["figures"]
    names = [f["name"] for f in figures]
    assert names[0] == "p95 push --wait to rollout.succeeded in dev (2 pushes)"
    assert figures[0]["baseline"] > 0
    assert figures[0]["value"] > 0
    assert figures[0]["goal"] == "< 2 s"
    parts = [f for f in figures if f["name"].startswith("p50 part: ")]
    assert len(parts) == 7
    # the parts are consecutive stretches of one push: none is longer than the whole
    assert all(0 <= f["value"] <= figures[0]["value"] for f in parts)
