"""Driving releases end to end: a build as artifact-ingest accepts it, and promotion's API
as a developer uses it (store a build, request a release, wait for its status).

    api = ReleaseApi(client, tokens, tap, ns, remote, service="payments")
    await api.store(accepted_build(EXAMPLES, "master-aaaaaaaaaa-1111111111"))
    done = await api.committed(environment="dev", intent="release", artifactId=...)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ferry_events import ArtifactAccepted, ArtifactSpec, CloudEvent
from ferry_testing.broker import BrokerNamespace, EventTap

__all__ = ["ReleaseApi", "accepted_build"]

#: The annotation the cluster simulator reads to fail a workload's rollout on purpose.
SIMULATE = "ferry.dev/simulate"


def accepted_build(
    examples: Path,
    artifact_id: str,
    *,
    branch: str = "master",
    application: dict[str, Any] | None = None,
    simulate: str = "",
) -> CloudEvent:
    """``examples/artifact.json`` and ``examples/manifests/`` as artifact-ingest accepts them,
    under ``artifact_id``; ``application`` overrides fields of its ``application``, and
    ``simulate`` (``crashloop``, ...) makes the cluster simulator fail its Deployments."""
    raw = json.loads((examples / "artifact.json").read_text())
    raw["id"] = artifact_id
    raw["application"]["branch"] = branch
    raw["application"].update(application or {})
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((examples / "manifests").iterdir())
        if env.is_dir()
    }
    if simulate:
        for files in manifests.values():
            files["deployment.yaml"] = files["deployment.yaml"].replace(
                "\nspec:", f"\n  annotations:\n    {SIMULATE}: {simulate}\nspec:", 1
            )
    spec = ArtifactSpec.model_validate(raw)
    return CloudEvent.new(
        ArtifactAccepted(artifact=spec, manifests=manifests), source="ferry/artifact-ingest"
    )


@dataclass
class ReleaseApi:
    """Promotion's API (``client``) with a bearer token per person, and the namespace's
    events (``tap``), for one service."""

    client: httpx.AsyncClient
    tokens: dict[str, str]
    tap: EventTap
    ns: BrokerNamespace
    remote: Path
    service: str

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def store(self, event: CloudEvent, *, timeout: float = 20) -> CloudEvent:
        """Publish an accepted build and wait until git-writer has stored it."""
        await self.ns.publish(event)
        return await self.tap.wait_one(
            "ferry.artifact.stored.v1", lambda e: e.causationid == event.id, timeout=timeout
        )

    async def request(self, who: str = "jane", **body: Any) -> str:
        """``POST /v1/releases`` for this service; the release id."""
        response = await self.client.post(
            "/v1/releases", json={"service": self.service, **body}, headers=self.auth(who)
        )
        assert response.status_code == 202, response.text
        return str(response.json()["releaseId"])

    async def wait(self, release_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        """The release once its status is one of ``statuses``."""
        async with asyncio.timeout(timeout):
            while True:
                response = await self.client.get(
                    f"/v1/releases/{release_id}", headers=self.auth("jane")
                )
                if response.status_code == 200 and response.json()["status"] in statuses:
                    found: dict[str, Any] = response.json()
                    return found
                await asyncio.sleep(0.05)

    async def committed(self, *, timeout: float = 20, **body: Any) -> dict[str, Any]:
        """Request a release and wait until it is decided; it must have been committed."""
        done = await self.wait(
            await self.request(**body), "committed", "rejected", "failed", timeout=timeout
        )
        assert done["status"] == "committed", done
        return done
