"""deploy/grafana/ferry-dora.json: valid JSON whose every query names gauges and labels that
insights really exports (ferry_insights.entrypoints.gauges)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from ferry_insights.entrypoints import gauges

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ferry-dora.json"


def exported() -> dict[str, set[str]]:
    """Gauge name -> its label names, from the module insights serves /metrics with."""
    found: dict[str, set[str]] = {}
    for value in vars(gauges).values():
        if isinstance(value, Gauge):
            found[value._name] = set(value._labelnames)
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_query_uses_an_exported_gauge_and_its_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    metrics = exported()
    assert {
        "ferry_dora_deployments_per_day",
        "ferry_dora_lead_time_seconds",
        "ferry_dora_change_failure_rate",
        "ferry_dora_time_to_restore_seconds",
    } <= set(metrics)
    used = set()
    for expr in expressions(dashboard):
        for name, labels in re.findall(r"(ferry_[a-z_]+)\{([^}]*)\}", expr):
            assert name in metrics, (name, expr)
            for label in re.findall(r"([a-z_]+)\s*=~?", labels):
                assert label in metrics[name], (label, expr)
            used.add(name)
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            for label in grouping.split(","):
                assert any(label.strip() in names for names in metrics.values()), expr
    assert len(used) == 4  # each key has a panel
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "environment"}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
