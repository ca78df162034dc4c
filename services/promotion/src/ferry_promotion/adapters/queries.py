"""The read side: what the API and Slack show, read straight from the tables as domain records.

Implements :class:`ferry_promotion.service_layer.ports.ReadModel`. Nothing here
writes; a read needs no unit of work and takes no lock.
"""

from __future__ import annotations

import sqlalchemy as sa

from ferry_promotion.adapters.db import Store, approvals, artifacts, releases, rollouts, timeline
from ferry_promotion.adapters.records import artifact_of, note_of, release_of, vote_of
from ferry_promotion.domain.records import ReleaseDetail, StoredArtifact
from ferry_promotion.domain.release import Release


class SqlReadModel:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def release(self, release_id: str) -> ReleaseDetail | None:
        """A release with its timeline and votes."""
        # The release row and its timeline in ONE statement: a statement sees one
        # snapshot (SQLite and PostgreSQL alike), so the status shown is always the
        # last entry of the timeline shown, even while a decision is being committed.
        entry = (
            timeline.c.at.label("timeline_at"),
            timeline.c.status.label("timeline_status"),
            timeline.c.event_type.label("timeline_event_type"),
            timeline.c.detail.label("timeline_detail"),
        )
        async with self.store.read() as conn:
            joined = list(
                (
                    await conn.execute(
                        sa.select(releases, *entry)
                        .select_from(
                            releases.outerjoin(
                                timeline, timeline.c.release_id == releases.c.release_id
                            )
                        )
                        .where(releases.c.release_id == release_id)
                        .order_by(timeline.c.id)
                    )
                ).mappings()
            )
            votes = list(
                (
                    await conn.execute(
                        sa.select(approvals)
                        .where(approvals.c.release_id == release_id)
                        .order_by(approvals.c.at)
                    )
                ).mappings()
            )
        if not joined:
            return None
        return ReleaseDetail(
            release=release_of(joined[0]),
            timeline=[note_of(r, "timeline_") for r in joined if r["timeline_status"] is not None],
            votes=[vote_of(v) for v in votes],
        )

    async def get(self, release_id: str) -> Release | None:
        """The release alone (no lock, no timeline)."""
        async with self.store.read() as conn:
            query = sa.select(releases).where(releases.c.release_id == release_id)
            row = (await conn.execute(query)).mappings().first()
        return release_of(row) if row is not None else None

    async def latest_of_branch(self, service: str, branch: str) -> str | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(artifacts.c.artifact_id)
                    .where(artifacts.c.service == service, artifacts.c.branch == branch)
                    .order_by(artifacts.c.stored_at.desc())
                    .limit(1)
                )
            ).first()
        return str(row[0]) if row is not None else None

    async def rollout_states(self) -> dict[tuple[str, str, str], tuple[str, str]]:
        """(environment, service, artifact) → (rollout status, reason), for every artifact."""
        async with self.store.read() as conn:
            rows = await conn.execute(
                sa.select(
                    rollouts.c.environment,
                    rollouts.c.service,
                    rollouts.c.artifact_id,
                    rollouts.c.status,
                    rollouts.c.reason,
                )
            )
            return {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}

    async def cataloged_services(self) -> set[str]:
        """Every service with an artifact in the catalog."""
        async with self.store.read() as conn:
            return {r[0] for r in await conn.execute(sa.select(artifacts.c.service).distinct())}

    async def is_cataloged(self, service: str) -> bool:
        async with self.store.read() as conn:
            known = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(artifacts)
                .where(artifacts.c.service == service)
            )
        return bool(known)

    async def artifacts(self, service: str, branch: str | None, limit: int) -> list[StoredArtifact]:
        """The service's stored artifacts (of ``branch``), newest first."""
        query = sa.select(artifacts).where(artifacts.c.service == service)
        if branch:
            query = query.where(artifacts.c.branch == branch)
        async with self.store.read() as conn:
            rows = await conn.execute(query.order_by(artifacts.c.stored_at.desc()).limit(limit))
            return [artifact_of(r) for r in rows.mappings()]
