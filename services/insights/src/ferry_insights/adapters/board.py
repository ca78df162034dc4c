"""The dashboard's reads of the projections, and its sessions (same database as the store)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ferry_insights.adapters.places import cell_records
from ferry_insights.adapters.tables import (
    at,
    cells,
    change_of_row,
    changes,
    inbox,
    record_of_row,
    sessions,
)
from ferry_insights.domain.board import APPROVAL_GRANTED, APPROVAL_REQUESTED, SETTLING
from ferry_insights.domain.facts import Change, EventRecord


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionRow:
    subject: str
    email: str
    name: str
    roles: frozenset[str]
    token: str
    csrf: str
    expires_at: datetime


class BoardReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _changes(
        self, conn: AsyncConnection, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], Change]:
        if not keys:
            return {}
        c = changes
        query = sa.select(*(col.label(f"c_{col.name}") for col in c.columns)).where(
            sa.tuple_(c.c.service, c.c.artifact_id).in_(sorted(keys))
        )
        rows = (await conn.execute(query)).mappings().all()
        return {(row["c_service"], row["c_artifact_id"]): change_of_row(row) for row in rows}

    async def matrix_inputs(
        self,
    ) -> tuple[list[EventRecord], list[EventRecord], dict[tuple[str, str], Change]]:
        """Per service and environment the commit that runs there and its artifact's newest
        rollout fact there (the ``cells`` the store keeps), and the changes of those
        artifacts: one row per place, whatever the length of the history."""
        c = changes
        query = (
            sa.select(cells, *(col.label(f"c_{col.name}") for col in c.columns))
            .select_from(
                cells.outerjoin(
                    c, (c.c.service == cells.c.service) & (c.c.artifact_id == cells.c.artifact_id)
                )
            )
            .where(cells.c.commit_event_id.is_not(None))
        )
        committed: list[EventRecord] = []
        rollouts: list[EventRecord] = []
        known: dict[tuple[str, str], Change] = {}
        async with self._engine.connect() as conn:
            for row in (await conn.execute(query)).mappings():
                commit, fact = cell_records(row)
                assert commit is not None
                committed.append(commit)
                if fact is not None:
                    rollouts.append(fact)
                if row["c_service"] is not None:
                    known[(row["c_service"], row["c_artifact_id"])] = change_of_row(row)
        return committed, rollouts, known

    async def service_records(
        self, service: str, limit: int = 2000
    ) -> tuple[list[EventRecord], dict[tuple[str, str], Change]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(inbox)
                .where(inbox.c.service == service, inbox.c.release_id != "")
                .order_by(inbox.c.time.desc())
                .limit(limit)
            )
            records = [record_of_row(row) for row in rows.mappings()]
            known = await self._changes(conn, {(service, r.artifact_id) for r in records})
        return records, known

    async def release_records(
        self, release_id: str
    ) -> tuple[list[EventRecord], dict[tuple[str, str], Change]]:
        """Every event of one release (the page a notification links to)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(inbox).where(inbox.c.release_id == release_id).limit(500)
            )
            records = [record_of_row(row) for row in rows.mappings()]
            known = await self._changes(conn, {(r.service, r.artifact_id) for r in records})
        return records, known

    async def approval_inputs(self) -> tuple[list[EventRecord], list[EventRecord]]:
        """Approval requests no settling event followed, and the grants they have."""
        settled = inbox.alias("settled")
        done = (
            sa.select(sa.literal(1))
            .where(settled.c.release_id == inbox.c.release_id, settled.c.event_type.in_(SETTLING))
            .exists()
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(inbox).where(inbox.c.event_type == APPROVAL_REQUESTED, ~done)
            )
            requested = [record_of_row(row) for row in rows.mappings()]
            granted: list[EventRecord] = []
            if requested:
                rows = await conn.execute(
                    sa.select(inbox).where(
                        inbox.c.event_type == APPROVAL_GRANTED,
                        inbox.c.release_id.in_(sorted({r.release_id for r in requested})),
                    )
                )
                granted = [record_of_row(row) for row in rows.mappings()]
        return requested, granted

    async def marker(self) -> tuple[int, str]:
        """Changes whenever any replica records an event (for live updates)."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(sa.func.count(), sa.func.max(inbox.c.received_at)))
            ).one()
        return int(row[0]), str(row[1])

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self, value: str, *, who: dict[str, Any], token: str, csrf: str, expires_at: datetime
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    session_hash=session_hash(value),
                    subject=who["subject"],
                    email=who.get("email", ""),
                    name=who.get("name", ""),
                    roles=sorted(who.get("roles", ())),
                    token=token,
                    csrf=csrf,
                    expires_at=expires_at,
                )
            )

    async def session(self, value: str, now: datetime) -> SessionRow | None:
        async with self._engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(sessions).where(sessions.c.session_hash == session_hash(value))
                    )
                )
                .mappings()
                .first()
            )
        if row is None or at(row["expires_at"]) <= now:
            return None
        return SessionRow(
            subject=row["subject"],
            email=row["email"],
            name=row["name"],
            roles=frozenset(row["roles"] or ()),
            token=row["token"],
            csrf=row["csrf"],
            expires_at=at(row["expires_at"]),
        )

    async def delete_session(self, value: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sessions.delete().where(sessions.c.session_hash == session_hash(value))
            )

    async def purge_sessions(self, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sessions.delete().where(sessions.c.expires_at < now))


__all__: Sequence[str] = ("BoardReads", "SessionRow", "session_hash")
