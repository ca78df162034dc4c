"""Two cluster-watchers of one cluster, both restarted mid-way, against the real consumers:
promotion records each rollout result once and the notifier tells people once, and a crash
of the rolled-out release's pods is a degraded workload, not a failed release.

Everything is real: the broker, git-writer and promotion on a bare git remote, the notifier
sending e-mail to a loopback SMTP server, and the watchers' kubernetes_asyncio client
against the Kubernetes API test server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferry_events import ArtifactAccepted, ArtifactSpec, CloudEvent
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_notifier.bootstrap import build as build_notifier
from ferry_notifier.settings import NotifierSettings
from ferry_promotion.adapters.tokens import hash_token
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, EventTap, running
from ferry_testing.mail import MailServer
from ferry_watcher.bootstrap import build as build_watcher
from ferry_watcher.settings import WatcherSettings

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARTIFACT = "master-dddddddddd-4444444444"
STARTED = "ferry.rollout.started.v1"
SUCCEEDED = "ferry.rollout.succeeded.v1"
FAILED = "ferry.rollout.failed.v1"
DEGRADED = "ferry.workload.degraded.v1"
ROUTES = """\
routes:
  - name: the cluster's news
    match: {events: ["rollout.*", "workload.degraded"]}
    to: ["email:ops@example.com"]
"""


def accepted(artifact_id: str) -> CloudEvent:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw["id"] = artifact_id
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }
    return CloudEvent.new(
        ArtifactAccepted(artifact=ArtifactSpec.model_validate(raw), manifests=manifests),
        source="ferry/artifact-ingest",
    )


@contextlib.asynccontextmanager
async def consumers(
    ns: BrokerNamespace, remote: Path, smtp: MailServer, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """git-writer, promotion (its API client and a token) and the notifier, running."""
    token = secrets.token_urlsafe(16)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {
                        "subject": "jane",
                        "email": "jane@example.com",
                        "roles": ["developer"],
                        "sha256": hash_token(token),
                    }
                ]
            }
        )
    )
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    writer = build_git_writer(
        GitWriterSettings(**ns.settings(), data_dir=tmp_path / "gw", config_repo_url=str(remote))
    )
    promotion = await build_promotion(
        PromotionSettings(
            **ns.settings(),
            data_dir=tmp_path / "promotion",
            config_repo_url=str(remote),
            api_tokens_file=tokens,
        )
    )
    notifier = build_notifier(
        NotifierSettings(
            **ns.settings(),
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
            smtp_url=smtp.url,
            routes_file=routes,
            delivery_backoff=0.05,
        )
    )
    async with (
        running(writer),
        running(promotion.runtime),
        running(notifier),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{promotion.runtime.http_port}", timeout=10
        ) as client,
    ):
        yield client, {"Authorization": f"Bearer {token}"}


async def release_when(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    release_id: str,
    done: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            response = await client.get(f"/v1/releases/{release_id}", headers=auth)
            if response.status_code == 200 and done(response.json()):
                found: dict[str, Any] = response.json()
                return found
            await asyncio.sleep(0.05)


async def test_a_pair_of_watchers_restarted_reports_each_fact_once_downstream(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with (
        KubeApiServer(bookmark_interval=0.5) as kube,
        MailServer() as smtp,
        consumers(broker_ns, bare_remote, smtp, tmp_path) as (client, auth),
    ):
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

        @contextlib.asynccontextmanager
        async def pair() -> AsyncIterator[None]:
            """Two watchers of the cluster, as two replicas run (each its own runtime)."""
            apps = [
                build_watcher(
                    WatcherSettings(
                        **broker_ns.settings(),
                        kubeconfig=kubeconfig,
                        cluster_name="eu-1",
                        cluster_environments="dev",
                    )
                )
                for _ in range(2)
            ]
            async with running(apps[0].runtime), running(apps[1].runtime):
                for app in apps:
                    await app.wait_synced()
                yield

        await broker_ns.publish(accepted(ARTIFACT))
        await event_tap.wait_one("ferry.artifact.stored.v1", timeout=20)
        response = await client.post(
            "/v1/releases",
            json={
                "service": json.loads((EXAMPLES / "artifact.json").read_text())["service"],
                "environment": "dev",
                "intent": "release",
                "artifactId": ARTIFACT,
            },
            headers=auth,
        )
        assert response.status_code == 202, response.text
        release_id = response.json()["releaseId"]
        committed = await release_when(
            client, auth, release_id, lambda r: r["status"] in ("committed", "rejected")
        )
        assert committed["status"] == "committed", committed

        # Flux applies it; both watchers see it roll out
        dep = k.deployment(
            committed["service"],
            namespace=committed["namespace"],
            artifact_id=ARTIFACT,
            release_id=release_id,
            environment="dev",
            replicas=2,
        )
        async with pair():
            dep = kube.create(dep)
            namespace, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
            kube.update_status(
                "Deployment", namespace, name, k.rollout_status(dep, updated=1, ready=1)
            )
            kube.update_status("Deployment", namespace, name, k.complete_status(dep))
            await event_tap.wait_for(SUCCEEDED, count=2)
            await release_when(client, auth, release_id, lambda r: r["status"] == "rolled-out")

        # both restart; then the release's pods crash
        async with pair():
            await event_tap.wait_for(SUCCEEDED, count=4)  # finished just now: re-announced
            kube.create(
                k.pod_for(
                    dep,
                    f"{name}-7d9-x",
                    owner_uid="rs-uid-1",
                    containers=[
                        k.container_status(
                            name, waiting="CrashLoopBackOff", last_terminated="Error", restarts=3
                        )
                    ],
                )
            )
            kube.update_status("Deployment", namespace, name, k.degraded_status(dep, ready=0))
            await event_tap.wait_for(DEGRADED, count=2)

        mails = await smtp.wait_for(3)
        await asyncio.sleep(2.0)  # what the copies would have sent by now, had they been sent
        release = await release_when(client, auth, release_id, lambda r: True)

    copies = {t: [e.id for e in event_tap.of_type(t)] for t in (STARTED, SUCCEEDED, DEGRADED)}
    assert {t: (len(ids), len(set(ids))) for t, ids in copies.items()} == {
        STARTED: (2, 1),
        SUCCEEDED: (4, 1),
        DEGRADED: (2, 1),
    }
    assert event_tap.of_type(FAILED) == []
    # promotion: one result, and the crash did not fail the release
    assert release["status"] == "rolled-out"
    kinds = [t["eventType"] for t in release["timeline"]]
    assert kinds.count(SUCCEEDED) == 1
    assert kinds.count(STARTED) == 1
    assert FAILED not in kinds
    # the notifier: each fact once
    subjects = sorted(m.subject for m in smtp.to("ops@example.com"))
    assert len(mails) == len(subjects) == 3, subjects
    assert sum("degraded now: CrashLoopBackOff" in s for s in subjects) == 1
    assert sum("is rolled out in dev" in s for s in subjects) == 1
