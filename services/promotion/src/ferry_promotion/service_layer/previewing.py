"""Seeing before shipping: what a release, promote or rollback would change, and its verdict now.

A preview resolves the artifact the way the request would, asks the decision code
for its verdict in a dry run (:meth:`~ferry_promotion.service_layer.deciding.Decider.dry_run`:
nothing recorded, no event published, no sequence number taken) and diffs what runs
in the environment against what git-writer would write there, stamped by the same
function git-writer stamps with (``ferry_events.environment_files``).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from ferry_events import (
    ARTIFACT_FILE,
    DNS_LABEL,
    ArtifactSpec,
    CloudEvent,
    Intent,
    InvalidManifest,
    PolicyViolation,
    ReleaseRequested,
    Stamp,
    environment_files,
    is_safe_segment,
)
from ferry_promotion.domain.access import Identity, require_release
from ferry_promotion.domain.decision import Outcome
from ferry_promotion.domain.preview import (
    PREVIEW_RELEASE_ID,
    CommitFailure,
    FileChange,
    Preview,
    checks,
    folder_diff,
)
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.errors import FieldError, Invalid, NotFound
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.lookups import (
    check_service,
    environment_named,
    snapshot_for_people,
)
from ferry_promotion.service_layer.outcomes import SOURCE
from ferry_promotion.service_layer.ports import ConfigReader, ReadModel

_VERBS = {"release": "releasing", "promote": "promoting", "rollback": "rolling back"}


class Previews:
    """``GET /v1/releases/preview`` and the Slack confirmation's summary."""

    def __init__(self, config: ConfigReader, read: ReadModel, decider: Decider) -> None:
        self.config = config
        self.read = read
        self.decider = decider

    async def preview(
        self,
        actor: Identity,
        *,
        service: str,
        environment: str,
        artifact_id: str | None = None,
        branch: str | None = None,
        intent: Intent | None = None,
        from_environment: str | None = None,
    ) -> Preview:
        """The preview of releasing ``artifact_id`` (or the latest of ``branch``), or of a
        promote or rollback (``intent``).

        Refused as a request would be: 422 for a bad or unknown name or a wrong combination,
        403 without the right to release there, 404 for an unknown service or artifact.
        """
        check_service(service)
        if artifact_id is not None and not is_safe_segment(artifact_id):
            raise Invalid.field("artifactId", "is not an artifact id (letters, digits, . - _)")
        intent = _intent(artifact_id or branch, intent, from_environment)
        if artifact_id is not None and branch is not None:
            raise Invalid.field("branch", "give artifactId or branch, not both")
        env = await environment_named(self.config, environment)
        if from_environment is not None:
            source = await environment_named(self.config, from_environment, "fromEnvironment")
            if source.name == env.name:
                raise Invalid.field("fromEnvironment", "must differ from environment")
        require_release(actor, env, _VERBS[intent.value])
        snapshot = await snapshot_for_people(self.config, latest=True)
        await self._known_service(snapshot, service)
        release = _transient(
            ReleaseRequested(
                release_id=str(uuid.uuid4()),
                service=service,
                environment=env.name,
                intent=intent,
                artifact_id=artifact_id,
                branch=branch,
                from_environment=from_environment,
                actor=actor.actor,
                requested_at=datetime.now(UTC),
            ),
        )
        run = await self.decider.dry_run(release, snapshot)
        running = snapshot.running(env.name, service)
        base = Preview(
            service=service,
            environment=env.name,
            intent=intent,
            outcome=Outcome.REJECT,
            config_commit=snapshot.commit,
            running_artifact_id=running.artifact.id if running else None,
        )
        if isinstance(run, PolicyViolation):
            if intent is Intent.RELEASE and run.policy == "artifact":
                raise NotFound(run.message)
            return dataclasses.replace(base, violations=(run,))
        spec = run.target.artifact
        namespace = snapshot.environments.namespace_for(env.name, spec.namespace, service)
        files, failure = await self._files(snapshot, spec, env.name, namespace)
        verdict = run.verdict
        return dataclasses.replace(
            base,
            outcome=verdict.outcome,
            artifact_id=spec.id,
            promoted_from=run.target.promoted_from,
            namespace=namespace,
            files=tuple(files),
            commit_failure=failure,
            violations=verdict.violations,
            detail=verdict.detail,
            checks=tuple(checks(run.candidate, run.policy, run.facts, verdict)),
        )

    async def _known_service(self, snapshot: Snapshot, service: str) -> None:
        if service in snapshot.services() or await self.read.is_cataloged(service):
            return
        if await self.config.list_builds(service):
            return
        raise NotFound(
            f"no service {service}: nothing of it is stored, released or has a policy "
            "(see `ferry status`)"
        )

    async def _files(
        self, snapshot: Snapshot, spec: ArtifactSpec, environment: str, namespace: str
    ) -> tuple[list[FileChange], CommitFailure | None]:
        """The diff of the environment's folders of the service, and git-writer's failure."""
        service = spec.service
        before: dict[str, bytes] = {}
        root = f"environments/{environment}"
        if snapshot.commit is not None:

            def of_service(path: str) -> bool:
                # git-writer replaces the service's folder in every namespace (a DNS label)
                ns, _, rest = path.partition("/")
                owner, _, name = rest.partition("/")
                return bool(DNS_LABEL.fullmatch(ns)) and owner == service and bool(name)

            found = await self.config.files(snapshot.commit, root, of_service)
            before = {f"{root}/{path}": content for path, content in found.items()}
        build_commit = self.config.snapshot.commit or snapshot.commit
        build = f"builds/{service}/{spec.id}"
        stored = await self.config.files(build_commit, build) if build_commit else {}
        artifact = stored.get(ARTIFACT_FILE)
        prefix = f"{environment}/"
        manifests = {p[len(prefix) :]: c for p, c in stored.items() if p.startswith(prefix)}
        if artifact is None:
            return [], CommitFailure("unknown-artifact", f"{build}/ is not in the config repo")
        if not manifests:
            return [], CommitFailure(
                "no-manifests-for-environment",
                f"artifact {spec.id} of {service} has no manifests for {environment} "
                f"({build}/{environment}/ is empty or missing)",
            )
        stamp = Stamp(
            service=service,
            environment=environment,
            artifact_id=spec.id,
            release_id=PREVIEW_RELEASE_ID,
            author=spec.application.author_email,
        )
        try:
            written = environment_files(artifact, manifests, stamp, where=build)
        except InvalidManifest as exc:
            return [], CommitFailure(exc.code, str(exc))
        folder = f"{root}/{namespace}/{service}"
        after = {f"{folder}/{name}": content for name, content in written.items()}
        return folder_diff(before, after), None


def _intent(named: str | None, intent: Intent | None, from_environment: str | None) -> Intent:
    """The intent of a preview: a release names an artifact (or a branch); else ``intent``."""
    errors: list[FieldError] = []
    if named is not None and intent is not None:
        errors.append(
            FieldError(
                "intent",
                "give artifactId or branch (a release) or intent=promote|rollback (resolved "
                "as the request would be), not both",
            )
        )
    elif named is None and intent is None:
        errors.append(
            FieldError(
                "artifactId", "give artifactId=<id>, branch=<branch> or intent=promote|rollback"
            )
        )
    elif intent is not None and intent not in (Intent.PROMOTE, Intent.ROLLBACK):
        errors.append(FieldError("intent", "must be promote or rollback"))
    if from_environment is not None and intent is not Intent.PROMOTE:
        errors.append(FieldError("fromEnvironment", "only intent=promote takes fromEnvironment"))
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    return intent or Intent.RELEASE


def _transient(request: ReleaseRequested) -> Release:
    """The request as it would be recorded, in memory only: never stored, never published."""
    event = CloudEvent.new(request, source=SOURCE, correlation_id=request.release_id)
    return Release.requested(event, request, updated_at=request.requested_at)
