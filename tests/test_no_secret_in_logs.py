"""No secret in any log line: every service started as its own process, each URL setting
carrying a token, the JSON logs captured and searched.

The tokens sit where operators put them: a broker password, ``https://TOKEN@forge/...``
and ``https://user:TOKEN@forge/...`` config repo remotes, a database password, the
user part of a Slack API URL, an SMTP password, the Slack bot token and the GitHub
token. The config repo is served over smart HTTP, so the remotes with tokens really
are fetched and pushed; then the forge refuses every request with a message that echoes
the URL, so git's own stderr, as git-writer and promotion show it, carries the tokens too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from ferry_events import ArtifactPublished, CloudEvent
from ferry_kube_sim import KubeApiServer
from ferry_testing import BrokerNamespace, EventTap, ServiceProcess, make_bare_remote
from ferry_testing.broker_users import broker_user
from ferry_testing.git_http import GitHttpServer
from ferry_testing.github_api import GitHubApi
from ferry_testing.mail import MailServer
from ferry_testing.slack_api import SlackApi

pytestmark = [pytest.mark.amqp, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(400)]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODULES = {
    "artifact-ingest": "ferry_ingest",
    "git-writer": "ferry_gitwriter",
    "promotion": "ferry_promotion",
    "notifier": "ferry_notifier",
    "cluster-watcher": "ferry_watcher",
}


def _artifact(artifact_id: str) -> CloudEvent:
    artifact = json.loads((EXAMPLES / "artifact.json").read_text())
    artifact["id"] = artifact_id
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir())}
        for env in sorted((EXAMPLES / "manifests").iterdir())
    }
    return CloudEvent.new(
        ArtifactPublished(artifact=artifact, manifests=manifests), source="ferry/ci"
    )


def _starting_settings(process: ServiceProcess) -> dict[str, object]:
    for line in process.logs().splitlines():
        entry = json.loads(line)
        if entry.get("event") == "starting":
            settings: dict[str, object] = entry["settings"]
            return settings
    raise AssertionError(f"{process.module} logged no 'starting' line")


async def test_a_token_in_each_url_setting_is_absent_from_every_log_line(
    broker_ns: BrokerNamespace, event_tap: EventTap, postgres_url: str, tmp_path: Path
) -> None:
    token = {
        name: f"{name}-{secrets.token_hex(8)}"
        for name in ("amqp", "writer", "promotion", "database", "slackurl", "smtp")
    }
    bot_token = f"xoxb-{secrets.token_hex(8)}"
    github_token = f"ghp_{secrets.token_hex(12)}"
    make_bare_remote(tmp_path / "forge" / "config.git")
    database_url = postgres_url.replace("@", f":{token['database']}@", 1)
    processes: dict[str, ServiceProcess] = {}
    async with (
        broker_user(broker_ns.amqp_url, password=token["amqp"]) as (_, amqp_url),
        GitHttpServer(tmp_path / "forge") as forge,
        SlackApi() as slack,
        MailServer("mailer", token["smtp"]) as mail,
        KubeApiServer() as kube,
        GitHubApi(token=github_token) as github,
    ):
        writer_remote = forge.url("config.git", userinfo=f"ci:{token['writer']}")
        promotion_remote = forge.url("config.git", userinfo=token["promotion"])
        slack_url = slack.base_url.replace("http://", f"http://ferry:{token['slackurl']}@")
        common = broker_ns.env(
            FERRY_AMQP_URL=amqp_url,
            FERRY_LOG_FORMAT="json",
            FERRY_LOG_LEVEL="DEBUG",
            FERRY_HTTP_PORT="0",
            FERRY_RETRY_DELAYS="[0.5, 1.0]",
        )
        extra = {
            "git-writer": {"FERRY_CONFIG_REPO_URL": writer_remote},
            "promotion": {
                "FERRY_CONFIG_REPO_URL": promotion_remote,
                "FERRY_DATABASE_URL": database_url,
                "FERRY_SLACK_API_URL": slack_url,
                "FERRY_SLACK_BOT_TOKEN": bot_token,
                "FERRY_SLACK_SIGNING_SECRET": secrets.token_hex(8),
                "FERRY_CONFIG_MAX_AGE": "0.5",
            },
            "notifier": {
                "FERRY_SMTP_URL": mail.url,
                "FERRY_SLACK_API_URL": slack_url,
                "FERRY_SLACK_BOT_TOKEN": bot_token,
                "FERRY_GITHUB_TOKEN": github_token,
                "FERRY_GITHUB_API_URL": github.base_url,
            },
            "cluster-watcher": {
                "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                "FERRY_CLUSTER_ENVIRONMENTS": "dev",
            },
        }
        try:
            for service, module in MODULES.items():
                env = {
                    **common,
                    "FERRY_DATA_DIR": str(tmp_path / service),
                    **extra.get(service, {}),
                }
                processes[service] = ServiceProcess(
                    module, env, tmp_path / f"{service}.log"
                ).start()
            for process in processes.values():
                await process.logged('"event": "ready"')

            # the remotes with tokens work: a build is stored through the forge
            first = await broker_ns.publish(_artifact("master-1111111111-2222222222"))
            await event_tap.wait_one(
                "ferry.artifact.stored.v1",
                lambda e: e.correlationid == first.correlationid,
                timeout=45,
            )

            # the forge now refuses, echoing each remote with its token
            forge.refuse(f"access denied for {writer_remote} and {promotion_remote}")
            await broker_ns.publish(_artifact("master-3333333333-4444444444"))
            await processes["git-writer"].logged("remote error: access denied")
            await processes["promotion"].logged("remote error: access denied")
            forge.refuse(None)
        finally:
            # in threads: the loopback servers of this loop must keep answering meanwhile
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes.values()))

    lines = {service: p.logs().splitlines() for service, p in processes.items()}
    for service, service_lines in lines.items():
        assert service_lines, f"{service} logged nothing"
        for line in service_lines:
            json.loads(line)  # every line is a JSON log line
            for name, secret in {**token, "bot": bot_token, "github": github_token}.items():
                assert secret not in line, f"{service} logged the {name} token: {line}"
    # and what was masked is still there to read
    writer = _starting_settings(processes["git-writer"])
    assert writer["config_repo_url"] == forge.url("config.git", userinfo="ci:***")
    promotion = _starting_settings(processes["promotion"])
    assert promotion["config_repo_url"] == forge.url("config.git", userinfo="***")
    assert str(promotion["database_url"]).startswith("postgresql+asyncpg://postgres:***@")
    assert promotion["slack_bot_token"] == "***"
    notifier = _starting_settings(processes["notifier"])
    assert notifier["smtp_url"] == mail.url.replace(token["smtp"], "***")
    assert notifier["slack_api_url"] == slack.base_url.replace("http://", "http://ferry:***@")
    assert notifier["github_token"] == "***"
    for service in MODULES:
        settings = _starting_settings(processes[service])
        assert str(settings["amqp_url"]).endswith(":***@127.0.0.1:5672/"), service
    refused = [line for line in lines["git-writer"] if "remote error: access denied" in line]
    assert forge.url("config.git", userinfo="ci:***") in refused[0]
