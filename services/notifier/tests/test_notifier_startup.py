"""Start-up refuses what cannot work, saying where and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferry_notifier.bootstrap import ConfigurationError, build
from ferry_notifier.settings import NotifierSettings

BAD_ROUTES = """\
routes:
  - name: deploys
    to: ["slack:#deploys"]
  - name: oops
    match: {events: [rollout.failed], outcome: failure}
    to: [console]
"""


def test_python_m_refuses_a_malformed_routing_file_with_line_and_reason(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(BAD_ROUTES)
    env = {
        **os.environ,
        "FERRY_ROUTES_FILE": str(routes),
        "FERRY_SLACK_BOT_TOKEN": "xoxb-test",
        "FERRY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        "FERRY_LOG_FORMAT": "json",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ferry_notifier"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{routes} line 5: routes[1].match: unknown field 'outcome'" in result.stderr


def test_routes_to_an_unconfigured_channel_are_refused(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text('routes:\n  - to: ["email:ops@example.com"]\n')
    with pytest.raises(ConfigurationError, match="FERRY_SMTP_URL is not set"):
        build(NotifierSettings(routes_file=routes, smtp_url=""))


def test_a_broken_template_override_is_refused(tmp_path: Path) -> None:
    (tmp_path / "slack.j2").write_text("{% if %}")
    with pytest.raises(ConfigurationError, match="FERRY_TEMPLATES_DIR"):
        build(NotifierSettings(templates_dir=tmp_path))


def test_an_unreadable_routing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the routing file"):
        build(NotifierSettings(routes_file=tmp_path / "missing.yaml"))


def test_a_claim_lease_shorter_than_a_send_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="FERRY_CLAIM_LEASE"):
        build(NotifierSettings(claim_lease=5, send_timeout=10))
