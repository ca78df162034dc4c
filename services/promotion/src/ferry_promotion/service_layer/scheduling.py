"""Scheduled releases: publishing the due ones, and cancelling one before its time.

A release asked for ``at`` a time is recorded ``scheduled``, without a number and without
an event (:meth:`~ferry_promotion.service_layer.requesting.Requests.request_release`). The
timer entrypoint calls :meth:`Schedule.release_due` every second or so, on every replica:
each due release is claimed in the database (on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so
replicas take different ones and none takes one twice), and in the same unit of work it
becomes ``requested``, takes the next number of its service and environment and the config
repo's commit of that moment, and its ``ferry.release.requested.v1`` goes to the outbox,
under an id derived from the release (a second claim could not publish it twice). From
there it is decided as every request is, against the policies and the clock of its time.
A restart loses nothing: the schedule is the database's, not a timer's.

Numbered when it falls due, a scheduled release is the newest request of its service and
environment when it is decided: no release committed before its time supersedes it, and it
supersedes the open requests before it when it commits.
"""

from __future__ import annotations

from ferry_events import CloudEvent, Intent, ReleaseRequested, derived_id
from ferry_promotion.domain.access import Identity, require_release
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.records import ReleaseDetail
from ferry_promotion.domain.release import Release
from ferry_promotion.errors import Conflict
from ferry_promotion.service_layer.lookups import environment_named, no_release
from ferry_promotion.service_layer.outcomes import SOURCE
from ferry_promotion.service_layer.ports import Clock, ConfigReader, ReadModel
from ferry_promotion.service_layer.requesting import accepted_at
from ferry_promotion.service_layer.unit_of_work import UnitOfWorkFactory
from ferry_runtime.logging import get_logger

log = get_logger(__name__)


class Schedule:
    """Scheduled releases: due ones published, waiting ones cancelled."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        config: ConfigReader,
        read: ReadModel,
        *,
        clock: Clock,
    ) -> None:
        self.uow = uow
        self.config = config
        self.read = read
        self.clock = clock

    async def release_due(self) -> int:
        """Publish every scheduled release due now, one unit of work each; how many."""
        now = self.clock()
        async with self.uow() as uow:
            if await uow.releases.claim_scheduled(now) is None:
                return 0  # nothing due: no need to ask the remote for its head
        commit = await accepted_at(self.config)
        published = 0
        while True:
            async with self.uow() as uow:
                due = await uow.releases.claim_scheduled(now)
                if due is None:
                    return published
                sequence = await uow.releases.next_sequence(due.service, due.environment)
                event = _requested(due, commit)
                await uow.releases.update(
                    due.release_id,
                    status=Status.REQUESTED.value,
                    sequence=sequence,
                    config_commit=commit,
                    request_event_id=event.id,
                )
                await uow.releases.note(
                    due.release_id,
                    Status.REQUESTED,
                    event.type,
                    f"due: {due.intent} requested by {due.actor.display()} (#{sequence})",
                )
                await uow.outbox.put(event)
                await uow.commit()
            published += 1
            log.info(
                "scheduled release due",
                release_id=due.release_id,
                subject=due.service,
                environment=due.environment,
                scheduled_at=due.scheduled_at.isoformat() if due.scheduled_at else None,
                sequence=sequence,
            )

    async def cancel(self, actor: Identity, release_id: str, reason: str = "") -> ReleaseDetail:
        """Cancel a release still scheduled: its requester may, and whoever may release to its
        environment; 409 once it fell due (a decided one is stopped by a halt, or undone by a
        rollback)."""
        if len(release_id) > 128:
            raise no_release(release_id)
        release = await self.read.get(release_id)
        if release is None:
            raise no_release(release_id)
        if not release.requester.same_as(actor.person):
            env = await environment_named(self.config, release.environment)
            require_release(actor, env, "cancelling a release")
        message = f"cancelled by {actor.actor.display()}" + (f": {reason}" if reason else "")
        async with self.uow() as uow:
            current = await uow.releases.get(release_id, lock=True)
            assert current is not None
            if current.status != Status.SCHEDULED:
                raise Conflict(_not_scheduled(current))
            await uow.releases.update(release_id, status=Status.CANCELLED.value)
            await uow.releases.note(release_id, Status.CANCELLED, "", message)
            await uow.commit()
        log.info(
            "scheduled release cancelled",
            release_id=release_id,
            subject=release.service,
            environment=release.environment,
            actor=actor.actor.display(),
        )
        detail = await self.read.release(release_id)
        if detail is None:
            raise no_release(release_id)
        return detail


def _requested(release: Release, commit: str | None) -> CloudEvent:
    """The request event of a scheduled release that fell due (its id depends on it alone)."""
    data = ReleaseRequested(
        release_id=release.release_id,
        service=release.service,
        environment=release.environment,
        intent=Intent(release.intent),
        artifact_id=release.artifact_id,
        branch=release.branch,
        from_environment=release.from_environment,
        reason=release.reason,
        actor=release.actor,
        override_freeze=release.override_freeze,
        requested_at=release.requested_at,
        config_commit=commit,
    )
    return CloudEvent.new(
        data,
        source=SOURCE,
        correlation_id=release.correlation_id,
        event_id=derived_id(release.release_id, "due", ReleaseRequested.event_type),
    )


def _not_scheduled(release: Release) -> str:
    if release.scheduled_at is None:
        why = f"it was asked for without a time and is {release.status}"
    elif release.status == Status.CANCELLED:
        why = "it was cancelled already"
    else:
        why = f"it fell due at {release.scheduled_at:%Y-%m-%d %H:%M:%S} UTC and is {release.status}"
    return f"release {release.release_id} is not scheduled, so it cannot be cancelled: {why}"


__all__ = ["Schedule"]
