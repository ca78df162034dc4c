"""Fixtures for promotion's tests: a config repo written like git-writer writes it, tokens,
and promotion running in-process against the real broker, git and database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferry_events import (
    ArtifactSpec,
    CloudEvent,
    ReleaseApproved,
    ReleaseCommitted,
    derived_id,
)
from ferry_promotion.adapters.tokens import hash_token
from ferry_promotion.bootstrap import PromotionService, build
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, EventTap, git, running

PEOPLE = {
    "alice": ("alice@example.com", ["developer"]),
    "bob": ("bob@example.com", ["developer", "releaser:prod"]),
    "carol": ("carol@example.com", ["admin"]),
    "dave": ("dave@example.com", ["developer", "releaser:prod"]),
    "vic": ("vic@example.com", ["viewer"]),
}


@dataclass
class Tokens:
    path: Path
    tokens: dict[str, str]

    def header(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    issued = {name: secrets.token_urlsafe(24) for name in PEOPLE}
    entries = [
        {
            "subject": name,
            "email": email,
            "name": name.title(),
            "slackUserId": f"U{name.upper()}",
            "roles": roles,
            "sha256": hash_token(issued[name]),
        }
        for name, (email, roles) in PEOPLE.items()
    ]
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return Tokens(path, issued)


class ConfigWriter:
    """Writes the config repo the way git-writer does (for tests that do not run git-writer)."""

    def __init__(self, remote: Path, work: Path) -> None:
        self.remote = remote
        self.work = work
        self._lock = asyncio.Lock()
        git("init", "--quiet", "--initial-branch=main", str(work))
        git("config", "user.email", "git-writer@example.com", cwd=work)
        git("config", "user.name", "git-writer", cwd=work)
        git("remote", "add", "origin", str(remote), cwd=work)

    def _commit(self, title: str, trailers: dict[str, str]) -> str:
        git("add", "-A", cwd=self.work)
        body = "\n".join(f"{k}: {v}" for k, v in trailers.items())
        git("commit", "--quiet", "--allow-empty", "-m", title, "-m", body or "-", cwd=self.work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def write(self, path: str, text: str | None, title: str = "edit") -> str:
        target = self.work / path
        if text is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return self._commit(title, {})

    def store(
        self,
        service: str,
        artifact_id: str,
        *,
        branch: str = "master",
        author: str = "ann@example.com",
        namespace: str = "",
        environments: tuple[str, ...] = ("dev", "staging", "prod"),
        end: datetime | None = None,
    ) -> ArtifactSpec:
        spec = ArtifactSpec.model_validate(
            {
                "id": artifact_id,
                "service": service,
                "namespace": namespace,
                "application": {
                    "branch": branch,
                    "sha": "0" * 40,
                    "authorEmail": author,
                    "authorName": author.split("@", maxsplit=1)[0],
                    "message": f"change {artifact_id}",
                },
                "ci": {"end": (end or datetime.now(UTC)).isoformat()},
            }
        )
        folder = self.work / "builds" / service / artifact_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "artifact.json").write_text(json.dumps(spec.to_wire(), indent=2))
        for env in environments:
            (folder / env).mkdir(exist_ok=True)
            (folder / env / "deployment.yaml").write_text(f"kind: Deployment\n# {artifact_id}\n")
        self._commit(
            f"[builds/{service}] store {artifact_id}",
            {"Ferry-Artifact-Id": artifact_id, "Ferry-Service": service},
        )
        return spec

    def release(
        self,
        environment: str,
        service: str,
        artifact_id: str,
        *,
        namespace: str | None = None,
        release_id: str = "",
        intent: str = "release",
        actor: str = "someone@example.com",
        event_id: str = "",
        promoted_from: str | None = None,
    ) -> str:
        spec = json.loads(
            (self.work / "builds" / service / artifact_id / "artifact.json").read_text()
        )
        namespace = namespace or spec.get("namespace") or service
        env_root = self.work / "environments" / environment
        if env_root.is_dir():
            for old in env_root.glob(f"*/{service}"):
                for file in old.iterdir():
                    file.unlink()
                old.rmdir()
        folder = env_root / namespace / service
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "artifact.json").write_text(json.dumps(spec, indent=2))
        trailers = {
            "Ferry-Event-Id": event_id or secrets.token_hex(8),
            "Ferry-Release-Id": release_id or secrets.token_hex(8),
            "Ferry-Artifact-Id": artifact_id,
            "Ferry-Service": service,
            "Ferry-Environment": environment,
            "Ferry-Intent": intent,
            "Ferry-Actor": actor,
        }
        if promoted_from:
            trailers["Ferry-Promoted-From"] = promoted_from
        return self._commit(
            f"[{environment}/{service}] {intent} {artifact_id} by {actor}", trailers
        )


@pytest.fixture
def config(bare_remote: Path, tmp_path: Path) -> ConfigWriter:
    return ConfigWriter(bare_remote, tmp_path / "writer")


@dataclass
class Harness:
    service: PromotionService
    client: httpx.AsyncClient
    tokens: Tokens
    tap: EventTap
    ns: BrokerNamespace
    config: ConfigWriter
    clock: list[datetime] = field(default_factory=list)

    def h(self, who: str) -> dict[str, str]:
        return self.tokens.header(who)

    async def request(self, who: str, **body: Any) -> str:
        response = await self.client.post("/v1/releases", json=body, headers=self.h(who))
        assert response.status_code == 202, response.text
        return str(response.json()["releaseId"])

    async def release(self, release_id: str, who: str = "vic") -> dict[str, Any]:
        response = await self.client.get(f"/v1/releases/{release_id}", headers=self.h(who))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_status(
        self, release_id: str, *statuses: str, timeout: float = 15.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                response = await self.client.get(
                    f"/v1/releases/{release_id}", headers=self.h("vic")
                )
                if response.status_code == 200 and response.json()["status"] in statuses:
                    result: dict[str, Any] = response.json()
                    return result
                assert response.status_code in (200, 404), response.text
                await asyncio.sleep(0.05)

    async def decided(self, release_id: str) -> dict[str, Any]:
        return await self.wait_status(
            release_id, "approved", "rejected", "awaiting-approval", "committed"
        )

    async def commit_approved(self, release_id: str) -> CloudEvent:
        """Do what git-writer does for the approved event of ``release_id``."""
        approved = await self.tap.wait_one(
            "ferry.release.approved.v1", lambda e: e.data["releaseId"] == release_id
        )
        data = ReleaseApproved.model_validate(approved.data)
        sha = self.config.release(
            data.environment,
            data.service,
            data.artifact_id,
            namespace=data.namespace,
            release_id=data.release_id,
            intent=data.intent.value,
            actor=data.actor.display(),
            event_id=approved.id,
            promoted_from=data.promoted_from,
        )
        committed = ReleaseCommitted(
            release_id=data.release_id,
            service=data.service,
            environment=data.environment,
            namespace=data.namespace,
            artifact_id=data.artifact_id,
            intent=data.intent,
            actor=data.actor,
            commit_sha=sha,
            promoted_from=data.promoted_from,
            author_email=data.author_email,
        )
        event = CloudEvent.new(
            committed,
            source="ferry/git-writer",
            cause=approved,
            event_id=derived_id(approved.id, committed.event_type),
        )
        await self.ns.publish(event)
        return event


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'promotion.db'}"


def settings_for(
    ns: BrokerNamespace, remote: Path, data_dir: Path, tokens: Path, database_url: str, **extra: Any
) -> PromotionSettings:
    return PromotionSettings(
        **ns.settings(),
        data_dir=data_dir,
        database_url=database_url,
        config_repo_url=str(remote),
        api_tokens_file=tokens,
        config_max_age=0.0,
        expiry_check_interval=0.2,
        **extra,
    )


@contextlib.asynccontextmanager
async def harness(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    config: ConfigWriter,
    tokens: Tokens,
    database_url: str,
    data_dir: Path,
    **extra: Any,
) -> AsyncIterator[Harness]:
    clock: list[datetime] = []

    def now() -> datetime:
        return clock[-1] if clock else datetime.now(UTC)

    settings = settings_for(broker_ns, config.remote, data_dir, tokens.path, database_url, **extra)
    service = await build(settings, clock=now)
    async with (
        running(service.runtime),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{service.runtime.http_port}", timeout=10
        ) as client,
    ):
        yield Harness(service, client, tokens, event_tap, broker_ns, config, clock)


@pytest.fixture
async def h(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    config: ConfigWriter,
    tokens: Tokens,
    database_url: str,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    async with harness(
        broker_ns, event_tap, config, tokens, database_url, tmp_path / "data"
    ) as found:
        yield found
