"""Taking in results: what git-writer committed or failed, and what the cluster reports.

Each is idempotent: the inbox mark of the event is written in the unit of work
of its effect, and events published get ids derived from their cause. A later
status never loses to an earlier one arriving late (``domain/release.py``).
"""

from __future__ import annotations

import dataclasses

from ferry_events import (
    Actor,
    ArtifactMarkChangeRequested,
    CloudEvent,
    Intent,
    PolicyViolation,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    ReleaseRequested,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    derived_id,
    is_safe_segment,
)
from ferry_promotion.domain.decision import HistoryEntry, Status
from ferry_promotion.domain.records import Rollout
from ferry_promotion.domain.release import Release, may_follow
from ferry_promotion.domain.rollback import (
    AUTO_ROLLBACK_ACTOR,
    Failure,
    HaltEnvironment,
    NoRollback,
    Plan,
    RollBack,
    candidates,
    is_auto_rollback,
    plan,
)
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.outcomes import SOURCE, Decided, log_decision
from ferry_promotion.service_layer.ports import usable_snapshot
from ferry_promotion.service_layer.safety import halt_request
from ferry_promotion.service_layer.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

_ROLLOUT_STATUS = {
    RolloutStarted.event_type: "started",
    RolloutSucceeded.event_type: "succeeded",
    RolloutFailed.event_type: "failed",
}
#: The release statuses a rollout fact without a release id is matched against.
_RELEASED = frozenset({Status.APPROVED.value, Status.COMMITTED.value, Status.ROLLED_OUT.value})
#: Who marks an artifact bad when its rollout failed (policy ``rejectOnFailedRollout``).
MARKER = Actor(subject="ferry-reject-on-failed-rollout")


class Results:
    def __init__(self, uow: UnitOfWorkFactory, decider: Decider) -> None:
        self.uow = uow
        self.decider = decider

    async def _advance(
        self, event: CloudEvent, release_id: str, status: str, detail: str, **values: object
    ) -> Release | None:
        """Record a result of ``release_id``; the release (``None`` when unknown or seen)."""
        superseded: list[Release] = []
        async with self.uow() as uow:
            if await uow.inbox.seen(event.id):
                return None
            release = await uow.releases.get(release_id, lock=True)
            if release is not None:
                if may_follow(status, release.status):
                    await uow.releases.update(release_id, status=status, **values)
                elif values:
                    await uow.releases.update(release_id, **values)
                await uow.releases.note(release_id, status, event.type, detail)
                if status == Status.COMMITTED.value:
                    await self._supersede(uow, event, release)
                    superseded = await self._overtaken(uow, event, release)
            await uow.inbox.mark(event)
            await uow.commit()
        for older in superseded:
            detail = f"superseded by {older.superseded_by}"
            log_decision(older, Decided(Status.REJECTED.value, older.artifact_id, detail=detail))
        return release

    async def _overtaken(self, uow: UnitOfWork, event: CloudEvent, newer: Release) -> list[Release]:
        """Reject the requests for the same service and environment, numbered below ``newer``,
        that are still open (requested, awaiting approval, waiting for a chain): deciding them
        now would take the environment back behind a newer release."""
        if newer.sequence is None:
            return []
        found = await uow.releases.open_before(newer.service, newer.environment, newer.sequence)
        rejected = []
        for older in found:
            current = await uow.releases.get(older.release_id, lock=True)
            if current is None or not current.open:
                continue
            violation = PolicyViolation(
                policy="superseded",
                message=f"release {newer.release_id} (#{newer.sequence}, "
                f"{newer.artifact_id}) was requested after this one (#{current.sequence}) and "
                f"is committed to {newer.environment}",
            )
            await uow.releases.update(
                current.release_id,
                status=Status.REJECTED.value,
                violations=[violation.to_wire()],
                superseded_by=newer.release_id,
            )
            await uow.releases.note(
                current.release_id, Status.REJECTED, event.type, f"superseded: {violation.message}"
            )
            await uow.outbox.put(
                CloudEvent.new(
                    ReleaseRejected(
                        release_id=current.release_id,
                        service=current.service,
                        environment=current.environment,
                        intent=Intent(current.intent),
                        artifact_id=current.artifact_id,
                        actor=current.actor,
                        violations=[violation],
                        author_email=current.author_email,
                    ),
                    source=SOURCE,
                    event_id=derived_id(event.id, "superseded", current.release_id),
                    correlation_id=current.correlation_id,
                )
            )
            rejected.append(dataclasses.replace(current, superseded_by=newer.release_id))
        return rejected

    async def _supersede(self, uow: UnitOfWork, event: CloudEvent, newer: Release) -> None:
        """Mark the releases of the same service and environment that were committed but had
        not rolled out as superseded by ``newer`` (git now holds the newer one)."""
        for older in await uow.releases.committed_unrolled(newer.service, newer.environment):
            if older.release_id == newer.release_id:
                continue
            await uow.releases.update(older.release_id, superseded_by=newer.release_id)
            await uow.releases.note(
                older.release_id,
                Status.COMMITTED,
                event.type,
                f"superseded by {newer.release_id}: {newer.artifact_id} was committed to "
                f"{newer.environment} before this release rolled out",
            )
            log.info(
                "release superseded",
                release_id=older.release_id,
                subject=newer.service,
                environment=newer.environment,
                superseded_by=newer.release_id,
            )

    async def committed(self, event: CloudEvent, data: ReleaseCommitted) -> None:
        self.decider.config.mark_stale(data.service)  # decisions about it must see the commit
        detail = f"commit {data.commit_sha[:12]} in {data.environment}/{data.namespace}"
        if data.no_change:
            detail += " (no change: it was already there)"
        release = await self._advance(
            event,
            data.release_id,
            Status.COMMITTED.value,
            detail,
            commit_sha=data.commit_sha,
            namespace=data.namespace,
        )
        if release is not None:
            log_decision(release, Decided(Status.COMMITTED.value, data.artifact_id, detail=detail))

    async def failed(self, event: CloudEvent, data: ReleaseFailed) -> None:
        detail = f"{data.reason}: {data.message}"
        release = await self._advance(event, data.release_id, Status.FAILED.value, detail)
        if release is not None:
            log_decision(release, Decided(Status.FAILED.value, release.artifact_id, detail=detail))

    async def rollout(self, event: CloudEvent, data: RolloutFact) -> list[Release]:
        """Record a rollout fact; the requests waiting for it (to :meth:`redecide`)."""
        status = _ROLLOUT_STATUS[event.type]
        reason = ""
        if isinstance(data, RolloutFailed):
            reason = f"{data.reason}: {data.message}" if data.message else data.reason
        waiting: list[Release] = []
        changed: tuple[Release, str, str] | None = None
        mark = await self._mark_request(event, data, reason)
        history = await self._rolled_back(data)
        planned: Plan | None = None
        async with self.uow() as uow:
            if await uow.inbox.seen(event.id):
                return []
            if mark is not None:  # with the fact, in one transaction: asked once
                await uow.outbox.put(mark)
            fact = Rollout(
                environment=data.environment,
                service=data.service,
                artifact_id=data.artifact_id,
                status=status,
                observed_at=data.observed_at,
                reason=reason,
                release_id=data.release_id,
            )
            await uow.rollouts.record(fact)
            release_id = data.release_id or await uow.releases.newest(
                data.service, data.environment, data.artifact_id, _RELEASED
            )
            release = await uow.releases.get(release_id, lock=True) if release_id else None
            if release is not None:
                new_status = {
                    "succeeded": Status.ROLLED_OUT.value,
                    "failed": Status.FAILED.value,
                }.get(status)
                detail = f"{data.workload.kind}/{data.workload.name} in {data.cluster}"
                if reason:
                    detail += f": {reason}"
                if new_status is not None and (
                    release.status in (Status.APPROVED.value, Status.COMMITTED.value)
                    or (
                        release.status == Status.ROLLED_OUT.value
                        and new_status == Status.FAILED.value
                    )
                ):
                    await uow.releases.update(release.release_id, status=new_status)
                    changed = (release, new_status, detail)
                await uow.releases.note(
                    release.release_id, new_status or release.status, event.type, detail
                )
            if history is not None:  # with the fact, in one transaction: asked once
                assert isinstance(data, RolloutFailed)
                planned = await self._auto_rollback(
                    uow, event, data, reason=reason, release=release, history=history
                )
            if status != "started":
                waiting = await uow.releases.waiting_for(data.service, data.artifact_id)
            await uow.inbox.mark(event)
            await uow.commit()
        if mark is not None:
            log.info(
                "marking the artifact bad: its rollout failed (rejectOnFailedRollout)",
                subject=data.service,
                artifact_id=data.artifact_id,
                environment=data.environment,
                request_id=mark.data["requestId"],
            )
        if changed is not None:
            release, new_status, detail = changed
            log_decision(release, Decided(new_status, data.artifact_id, detail=detail))
        if planned is not None:
            log.info(
                {
                    RollBack: "auto-rollback requested",
                    HaltEnvironment: "auto-rollback failed: halting the environment",
                    NoRollback: "no auto-rollback: nothing rolled out successfully before",
                }[type(planned)],
                subject=data.service,
                environment=data.environment,
                artifact_id=data.artifact_id,
                reason=planned.reason,
            )
        return waiting

    async def _rolled_back(self, data: RolloutFact) -> list[HistoryEntry] | None:
        """The environment's release history (newest first) when the fact is a failed rollout
        of what runs there now and the service's policy rolls that environment back."""
        if not isinstance(data, RolloutFailed) or not data.artifact_id:
            return None
        snapshot = await usable_snapshot(self.decider.config, service=data.service)
        policy, _ = snapshot.policy_for(data.service)
        if not policy.rolls_back(data.environment):
            return None
        running = snapshot.running(data.environment, data.service)
        if running is None or running.artifact.id != data.artifact_id:
            log.info(
                "no auto-rollback: the failed artifact no longer runs there",
                subject=data.service,
                environment=data.environment,
                artifact_id=data.artifact_id,
                running=running.artifact.id if running else None,
            )
            return None
        return await self.decider.config.history(data.service, data.environment)

    async def _auto_rollback(
        self,
        uow: UnitOfWork,
        event: CloudEvent,
        data: RolloutFailed,
        *,
        reason: str,
        release: Release | None,
        history: list[HistoryEntry],
    ) -> Plan:
        """Put in the outbox what the failure leads to (policy ``autoRollback``): the rollback
        to the last release that rolled out successfully there, or, when the failed release
        was an auto-rollback, the halt of the environment. Ids derive from the failed commit,
        so that every report of the same failure asks once."""
        current = next((e for e in history if e.artifact_id == data.artifact_id), None)
        if release is not None:
            was_auto = is_auto_rollback(release.intent, release.actor_subject)
        else:
            was_auto = current is not None and is_auto_rollback(current.intent, current.actor)
        failure = Failure(
            service=data.service,
            environment=data.environment,
            artifact_id=data.artifact_id,
            reason=reason,
            release_id=release.release_id if release else (current.release_id if current else ""),
            was_auto_rollback=was_auto,
        )
        last_good: HistoryEntry | None = None
        if not was_auto:
            for entry in candidates(history, data.artifact_id):
                fact = await uow.rollouts.get(data.environment, data.service, entry.artifact_id)
                if fact is not None and fact.succeeded_at is not None:
                    last_good = entry
                    break
        decided = plan(failure, last_good)
        key = (current.commit_sha if current else "") or failure.release_id or event.id
        cause = ("auto-rollback", data.service, data.environment, key)
        if isinstance(decided, RollBack):
            release_id = derived_id(*cause, "release")
            request = ReleaseRequested(
                release_id=release_id,
                service=data.service,
                environment=data.environment,
                intent=Intent.ROLLBACK,
                artifact_id=decided.target.artifact_id,
                reason=decided.reason,
                actor=AUTO_ROLLBACK_ACTOR,
                requested_at=data.observed_at,
            )
            await uow.outbox.put(
                CloudEvent.new(
                    request,
                    source=SOURCE,
                    event_id=derived_id(*cause, ReleaseRequested.event_type),
                    correlation_id=release_id,
                )
            )
            line = f"auto-rollback to {decided.target.artifact_id} requested (release {release_id})"
        elif isinstance(decided, HaltEnvironment):
            request_id = derived_id(*cause, "halt")
            await uow.outbox.put(
                halt_request(
                    request_id,
                    data.environment,
                    decided.reason,
                    AUTO_ROLLBACK_ACTOR,
                    data.observed_at,
                    event_id=derived_id(*cause, "halt-request"),
                    correlation_id=event.correlationid,
                )
            )
            line = f"halt of {data.environment} requested: {decided.reason}"
        else:
            line = decided.reason
        if release is not None:
            await uow.releases.note(release.release_id, Status.FAILED, event.type, line)
        return decided

    async def _mark_request(
        self, event: CloudEvent, data: RolloutFact, reason: str
    ) -> CloudEvent | None:
        """The request to mark the artifact bad, when its rollout failed and the service's
        policy says ``rejectOnFailedRollout: true`` (None when it is marked already)."""
        if not isinstance(data, RolloutFailed) or not is_safe_segment(data.artifact_id or ""):
            return None
        snapshot = await usable_snapshot(self.decider.config, service=data.service)
        policy, _ = snapshot.policy_for(data.service)
        if not policy.reject_on_failed_rollout or snapshot.mark_of(data.service, data.artifact_id):
            return None
        request = ArtifactMarkChangeRequested(
            request_id=derived_id(event.id, "reject-on-failed-rollout"),
            service=data.service,
            artifact_id=data.artifact_id,
            rejected=True,
            reason=f"its rollout failed in {data.environment}: {reason} "
            "(policy rejectOnFailedRollout)",
            actor=MARKER,
            requested_at=data.observed_at,
        )
        return CloudEvent.new(
            request,
            source=SOURCE,
            event_id=derived_id(event.id, "mark"),
            correlation_id=event.correlationid,
        )

    async def redecide(self, event: CloudEvent, data: RolloutFact, waiting: Release) -> None:
        """Decide ``waiting`` again now that the environment before has a result."""
        cause = CloudEvent.new(
            data,
            source=SOURCE,
            event_id=derived_id(event.id, "redecide", waiting.release_id),
            correlation_id=event.correlationid,
        )
        await self.decider.decide(waiting, cause)
