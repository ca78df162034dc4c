"""Read views: a release, what runs where, a service's history and its artifacts.

Each checks that the caller may read, and returns domain records (the
entrypoints turn them into the API's JSON). Reads that show the config repo
fetch first (``fresh``), so a reader that saw a commit's status also sees the
commit.
"""

from __future__ import annotations

from ferry_promotion.domain.access import Identity, require_read
from ferry_promotion.domain.records import (
    Catalog,
    EnvironmentState,
    Landscape,
    ReleaseDetail,
    ServiceHistory,
    ServiceState,
    StoredArtifact,
)
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.errors import NotFound
from ferry_promotion.service_layer.lookups import (
    check_service,
    environment_named,
    no_release,
    snapshot_for_people,
)
from ferry_promotion.service_layer.ports import ConfigReader, ReadModel
from ferry_promotion.service_layer.resolving import built_at

RolloutStates = dict[tuple[str, str, str], tuple[str, str]]


class Views:
    def __init__(self, read: ReadModel, config: ConfigReader) -> None:
        self.read = read
        self.config = config

    async def status(self, actor: Identity, release_id: str) -> ReleaseDetail:
        """A release with its timeline and approvals."""
        require_read(actor)
        if len(release_id) > 128:
            raise no_release(release_id)
        found = await self.read.release(release_id)
        if found is None:
            raise no_release(release_id)
        return found

    async def _service_state(
        self, snapshot: Snapshot, service: str, states: RolloutStates
    ) -> ServiceState:
        history = await self.config.history(service)
        environments: dict[str, EnvironmentState] = {}
        for env in snapshot.environments.names():
            deployment = snapshot.running(env, service)
            if deployment is None:
                continue
            newest = next(
                (
                    h
                    for h in history
                    if h.environment == env and h.artifact_id == deployment.artifact.id
                ),
                None,
            )
            state, reason = states.get((env, service, deployment.artifact.id), ("unknown", ""))
            environments[env] = EnvironmentState(
                artifact_id=deployment.artifact.id,
                namespace=deployment.namespace,
                commit_sha=newest.commit_sha if newest else None,
                released_at=newest.at if newest else None,
                released_by=newest.actor if newest else None,
                rollout=state,
                rollout_reason=reason or None,
                rejected=snapshot.mark_of(service, deployment.artifact.id),
            )
        return ServiceState(service=service, environments=environments)

    async def services(self, actor: Identity) -> Landscape:
        """Every service and what runs where."""
        require_read(actor)
        snapshot = await snapshot_for_people(self.config, fresh=True)
        states = await self.read.rollout_states()
        names = sorted(set(snapshot.services()) | await self.read.cataloged_services())
        return Landscape(
            environments=snapshot.environments.names(),
            services=[await self._service_state(snapshot, name, states) for name in names],
            halts=[snapshot.halts[name] for name in sorted(snapshot.halts)],
        )

    async def service(self, actor: Identity, service: str) -> ServiceState:
        require_read(actor)
        check_service(service)
        snapshot = await snapshot_for_people(self.config, fresh=True)
        state = await self._service_state(snapshot, service, await self.read.rollout_states())
        if not state.environments:
            await self._require_known(snapshot, service)
        return state

    async def _require_known(self, snapshot: Snapshot, service: str) -> None:
        """404 for a service Ferry has never seen (not released, stored or given a policy)."""
        if service in snapshot.services():
            return
        if not await self.read.is_cataloged(service) and not await self.config.list_builds(service):
            raise NotFound(f"no service {service}: nothing of it is stored or released")

    async def history(
        self, actor: Identity, service: str, environment: str | None = None, limit: int = 50
    ) -> ServiceHistory:
        """Release commits of the service, newest first, from the git trailers."""
        require_read(actor)
        check_service(service)
        if environment is not None:
            await environment_named(self.config, environment)
        snapshot = await snapshot_for_people(self.config, fresh=True)
        entries = await self.config.history(service, environment)
        if not entries:
            await self._require_known(snapshot, service)
        return ServiceHistory(service=service, history=entries[: max(1, min(limit, 1000))])

    async def artifacts(
        self, actor: Identity, service: str, branch: str | None = None, limit: int = 50
    ) -> Catalog:
        """Stored artifacts of the service, newest first."""
        require_read(actor)
        check_service(service)
        limit = max(1, min(limit, 1000))
        items = await self.read.artifacts(service, branch, limit)
        snapshot = await snapshot_for_people(self.config, fresh=True)
        if not items:
            await self._require_known(snapshot, service)
            builds = [
                b
                for b in await self.config.list_builds(service)
                if not branch or b.application.branch == branch
            ]
            builds.sort(key=lambda b: built_at(b)[0], reverse=True)
            items = [
                StoredArtifact(
                    service=service,
                    artifact_id=b.id,
                    branch=b.application.branch,
                    sha=b.application.sha,
                    author_name=b.application.author_name,
                    author_email=b.application.author_email,
                    message=b.application.message,
                    stored_at=b.ci.end,
                    environments=await self.config.build_environments(service, b.id),
                )
                for b in builds[:limit]
            ]
        marks = {
            a.artifact_id: mark
            for a in items
            if (mark := snapshot.mark_of(service, a.artifact_id)) is not None
        }
        return Catalog(service=service, artifacts=items, marks=marks)
