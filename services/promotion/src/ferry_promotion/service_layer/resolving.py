"""What a request means: the artifact it releases, from the config repo and the catalog.

A release names an artifact or a branch (its newest artifact); a promote takes
what runs (or ran) in the environment before; a rollback goes back to an
earlier release of its environment. Raises :class:`ResolutionError` (a policy
violation the request is rejected with) when there is nothing to release.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry_events import ArtifactSpec, Intent
from ferry_promotion.domain.decision import ResolutionError, rollback_target
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.service_layer.ports import ConfigReader, ReadModel
from ferry_runtime.errors import TemporaryError
from ferry_runtime.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """What a request resolved to."""

    artifact: ArtifactSpec
    promoted_from: str | None


def built_at(spec: ArtifactSpec) -> tuple[float, str]:
    """When an artifact was built (its CI end, else start), for newest-first orders."""
    moment = spec.ci.end or spec.ci.start
    return (moment.timestamp() if moment else 0.0, spec.id)


class Resolver:
    def __init__(self, config: ConfigReader, read: ReadModel) -> None:
        self.config = config
        self.read = read

    async def find_artifact(self, service: str, artifact_id: str) -> ArtifactSpec | None:
        """The artifact under ``builds/``; on a miss, fetch once (it may have just been stored)."""
        found = await self.config.artifact(service, artifact_id)
        if found is None:
            try:
                await self.config.refresh()
            except TemporaryError as exc:
                log.warning("config repo fetch failed", error=str(exc))
                return None
            found = await self.config.artifact(service, artifact_id)
        return found

    async def latest_of_branch(self, service: str, branch: str) -> ArtifactSpec | None:
        newest = await self.read.latest_of_branch(service, branch)
        if newest is not None:
            found = await self.config.artifact(service, newest)
            if found is not None:
                return found
        # the catalog may have missed events: fall back to builds/ in git
        builds = [
            a for a in await self.config.list_builds(service) if a.application.branch == branch
        ]
        if not builds:
            return None
        return max(builds, key=built_at)

    async def resolve(self, release: Release, snapshot: Snapshot) -> Target:
        """The artifact ``release`` means. Raises :class:`ResolutionError` when there is none."""
        intent = Intent(release.intent)
        if intent in (Intent.RELEASE, Intent.AUTO_RELEASE):
            return await self._release(release)
        if intent is Intent.PROMOTE:
            return await self._promote(release, snapshot)
        return await self._rollback(release, snapshot)

    async def _release(self, release: Release) -> Target:
        service, named, branch = release.service, release.artifact_id, release.branch
        if named:
            spec = await self.find_artifact(service, named)
            if spec is None:
                raise ResolutionError(
                    "artifact",
                    f"no artifact {named} of {service} in the config repo "
                    "(see `ferry artifacts` for the stored ones)",
                )
        elif branch:
            spec = await self.latest_of_branch(service, branch)
            if spec is None:
                raise ResolutionError(
                    "artifact", f"no artifact of {service} was built from branch {branch!r}"
                )
        else:
            raise ResolutionError("artifact", "a release names an artifactId or a branch")
        await self._has_manifests(spec, release.environment)
        return Target(spec, None)

    async def _promote(self, release: Release, snapshot: Snapshot) -> Target:
        service, environment, named = release.service, release.environment, release.artifact_id
        source_name = release.from_environment
        if not source_name:
            previous = snapshot.environments.previous(environment)
            if previous is None:
                raise ResolutionError(
                    "promote",
                    f"{environment} is the first environment; there is nothing to promote "
                    "from (use release)",
                )
            source_name = previous.name
        running = snapshot.running(source_name, service)
        artifact_id = named or (running.artifact.id if running else None)
        if artifact_id is None:
            raise ResolutionError(
                "promote", f"nothing of {service} runs in {source_name}; nothing to promote"
            )
        if named and (running is None or running.artifact.id != named):
            ever = [e.artifact_id for e in await self.config.history(service, source_name)]
            if named not in ever:
                raise ResolutionError(
                    "promote",
                    f"{named} was never released to {source_name}; promote what ran there",
                )
        spec = await self.find_artifact(service, artifact_id)
        if spec is None:
            raise ResolutionError(
                "artifact", f"no artifact {artifact_id} of {service} under builds/ in git"
            )
        await self._has_manifests(spec, environment)
        return Target(spec, source_name)

    async def _rollback(self, release: Release, snapshot: Snapshot) -> Target:
        service, environment = release.service, release.environment
        running = snapshot.running(environment, service)
        history = await self.config.history(service, environment)
        entry = rollback_target(
            history, running.artifact.id if running else None, release.artifact_id, environment
        )
        spec = await self.find_artifact(service, entry.artifact_id)
        if spec is None:
            raise ResolutionError(
                "artifact", f"artifact {entry.artifact_id} is no longer under builds/ in git"
            )
        return Target(spec, None)

    async def _has_manifests(self, spec: ArtifactSpec, environment: str) -> None:
        environments = await self.config.build_environments(spec.service, spec.id)
        if environments and environment not in environments:
            raise ResolutionError(
                "artifact",
                f"{spec.id} has no manifests for {environment} (it has {', '.join(environments)})",
            )
