"""Promotion and git-writer together on one broker namespace and one bare remote: every
intent from an API call to a commit in the remote and a ``committed`` status."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferry_events import CloudEvent
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_promotion.adapters.tokens import hash_token
from ferry_promotion.bootstrap import PromotionService
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, EventTap, log_subjects, running, show, trailer_values
from ferry_testing.releases import ReleaseApi, accepted_build

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ROLES = {
    "jane": ["developer", "releaser:prod"],
    "bob": ["developer", "releaser:prod"],
    "root": ["admin"],
}


def artifact(artifact_id: str, branch: str = "master") -> CloudEvent:
    return accepted_build(EXAMPLES, artifact_id, branch=branch)


@dataclass
class Flow(ReleaseApi):
    promotion: PromotionService


@contextlib.asynccontextmanager
async def flow(
    ns: BrokerNamespace, tap: EventTap, remote: Path, tmp_path: Path, **promotion_settings: Any
) -> AsyncIterator[Flow]:
    """Promotion and git-writer on ``ns`` and ``remote``; ``promotion_settings`` go to
    promotion's settings (for instance ``prometheus_url``)."""
    tokens = {name: secrets.token_urlsafe(16) for name in ROLES}
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {
                        "subject": n,
                        "email": f"{n}@example.com",
                        "roles": r,
                        "sha256": hash_token(tokens[n]),
                    }
                    for n, r in ROLES.items()
                ]
            }
        )
    )
    writer = build_git_writer(
        GitWriterSettings(**ns.settings(), data_dir=tmp_path / "gw", config_repo_url=str(remote))
    )
    promotion = await build_promotion(
        PromotionSettings(
            **ns.settings(),
            data_dir=tmp_path / "promotion",
            config_repo_url=str(remote),
            api_tokens_file=tokens_file,
            config_max_age=0.5,
            **promotion_settings,
        )
    )
    async with (
        running(writer),
        running(promotion.runtime),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{promotion.runtime.http_port}", timeout=10
        ) as client,
    ):
        service = json.loads((EXAMPLES / "artifact.json").read_text())["service"]
        yield Flow(client, tokens, tap, ns, remote, service, promotion)


async def test_release_promote_rollback_end_to_end(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        await f.store(artifact("master-aaaaaaaaaa-1111111111"))
        await f.store(artifact("master-bbbbbbbbbb-2222222222"))

        first = await f.request(
            environment="dev", intent="release", artifactId="master-aaaaaaaaaa-1111111111"
        )
        done = await f.wait(first, "committed", "rejected", "failed")
        assert done["status"] == "committed", done
        committed = await f.tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.data["releaseId"] == first
        )
        assert done["commitSha"] == committed.data["commitSha"]

        latest = await f.request(environment="dev", intent="release", branch="master")
        assert (await f.wait(latest, "committed", "rejected"))["artifactId"] == (
            "master-bbbbbbbbbb-2222222222"
        )
        promote = await f.request(environment="staging", intent="promote")
        promoted = await f.wait(promote, "committed", "rejected")
        assert promoted["status"] == "committed", promoted
        assert promoted["promotedFrom"] == "dev"

        back = await f.request(environment="dev", intent="rollback")
        rolled = await f.wait(back, "committed", "rejected")
        assert rolled["artifactId"] == "master-aaaaaaaaaa-1111111111", rolled
        named = await f.request(
            environment="dev", intent="rollback", artifactId="master-bbbbbbbbbb-2222222222"
        )
        assert (await f.wait(named, "committed", "rejected"))["status"] == "committed"

        titles = log_subjects(f.remote)
        assert any(t.startswith(f"[staging/{f.service}] promote master-bbbbbbbbbb") for t in titles)
        assert any(t.startswith(f"[dev/{f.service}] rollback master-aaaaaaaaaa") for t in titles)
        assert trailer_values(f.remote, "Ferry-Release-Id")[:4] == [named, back, promote, latest]
        assert trailer_values(f.remote, "Ferry-Promoted-From") == ["dev"]
        spec = json.loads(
            show(f.remote, f"environments/dev/{promoted['namespace']}/{f.service}/artifact.json")
        )
        assert spec["id"] == "master-bbbbbbbbbb-2222222222"
        history = (
            await f.client.get(f"/v1/services/{f.service}/history", headers=f.auth("jane"))
        ).json()["history"]
        assert [h["intent"] for h in history[:3]] == ["rollback", "rollback", "promote"]


async def test_policy_through_git_writer_then_auto_release_and_approval(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        policy = {
            "autoRelease": [{"branch": "master", "environment": "dev"}],
            "approvals": [{"environment": "prod", "required": 1}],
        }
        put = await f.client.put(f"/v1/policies/{f.service}", json=policy, headers=f.auth("root"))
        assert put.status_code == 202, put.text
        await f.tap.wait_one("ferry.policy.changed.v1", timeout=20)
        assert "autoRelease" in show(f.remote, f"policies/{f.service}.yaml")

        await f.store(artifact("master-cccccccccc-3333333333"))
        auto = await f.tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.data["intent"] == "auto-release", timeout=20
        )
        assert auto.data["artifactId"] == "master-cccccccccc-3333333333"

        prod = await f.request(
            environment="prod", intent="release", artifactId="master-cccccccccc-3333333333"
        )
        await f.wait(prod, "awaiting-approval")
        own = await f.client.post(f"/v1/releases/{prod}/approve", headers=f.auth("jane"))
        assert own.status_code == 403
        ok = await f.client.post(f"/v1/releases/{prod}/approve", headers=f.auth("bob"))
        assert ok.status_code == 200, ok.text
        done = await f.wait(prod, "committed", "rejected")
        assert done["status"] == "committed", done
        assert log_subjects(f.remote)[0].startswith(f"[prod/{f.service}] release master-cccccccccc")
