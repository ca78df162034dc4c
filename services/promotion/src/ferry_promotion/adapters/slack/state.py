"""Chat-ops state that every promotion replica shares, in promotion's database.

- :class:`SqlReplays`: the signatures of accepted Slack requests until they
  expire (``slack_seen``). The insert either adds the row or finds it there,
  so of two replicas receiving one request (a replay) exactly one accepts it.
- :class:`SqlFollowUps`: the ``response_url`` s that a release is followed on
  (``slack_followups``), with the posts made and the status last posted. The
  replica following one holds a lease on its row and renews it before each
  post; when it dies, another replica takes the row over once the lease has
  expired and carries on from the status last posted.

:class:`MemoryFollowUps` is the same for one process (a :class:`ChatOps`
built without a database).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ferry_promotion.adapters.db import Store, at, now, slack_followups, slack_seen
from ferry_promotion.adapters.slack.responder import MAX_SECONDS

__all__ = ["FollowUp", "FollowUps", "MemoryFollowUps", "SqlFollowUps", "SqlReplays"]


class SqlReplays:
    """The replay cache as a table: a signature is accepted once, by one replica."""

    def __init__(self, store: Store, *, window: float) -> None:
        self._store = store
        self._window = timedelta(seconds=window)

    async def first_time(self, signature: str, now: float) -> bool:
        moment = datetime.fromtimestamp(now, tz=UTC)
        dialect = postgresql if not self._store.is_sqlite else sqlite
        insert = (
            dialect.insert(slack_seen)
            .values(signature=signature, expires_at=moment + self._window)
            .on_conflict_do_nothing(index_elements=["signature"])
        )
        async with self._store.transaction() as conn:
            await conn.execute(slack_seen.delete().where(slack_seen.c.expires_at < moment))
            result = await conn.execute(insert)
        return bool(result.rowcount == 1)


@dataclass(frozen=True)
class FollowUp:
    """A release followed on one ``response_url``."""

    id: int
    response_url: str
    release_id: str
    slack_user: str
    last_status: str
    posts: int
    opened_at: datetime


class FollowUps(Protocol):
    async def open(
        self,
        url: str,
        release_id: str,
        *,
        slack_user: str,
        status: str,
        owner: str,
        lease: float,
        posts: int = 0,
    ) -> FollowUp:
        """Record a follow-up held by ``owner`` for ``lease`` seconds; ``posts`` already made
        to its ``response_url`` (they count against Slack's five)."""
        ...

    async def renew(
        self, follow_up: FollowUp, owner: str, lease: float, *, status: str, posts: int
    ) -> bool:
        """Record the status about to be posted and extend the lease; False when not held."""
        ...

    async def close(self, follow_up: FollowUp) -> None:
        """The release is final, or the ``response_url`` used up: forget it."""
        ...

    async def take_over(self, owner: str, lease: float, limit: int = 50) -> list[FollowUp]:
        """Claim follow-ups whose holder's lease expired (forgetting those past 30 minutes)."""
        ...


def _follow_up(row: sa.RowMapping) -> FollowUp:
    return FollowUp(
        id=int(row["id"]),
        response_url=str(row["response_url"]),
        release_id=str(row["release_id"]),
        slack_user=str(row["slack_user"]),
        last_status=str(row["last_status"]),
        posts=int(row["posts"]),
        opened_at=at(row["opened_at"]),
    )


class SqlFollowUps:
    """Follow-ups in ``slack_followups``, claimed by lease (``SKIP LOCKED`` on PostgreSQL)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def open(
        self,
        url: str,
        release_id: str,
        *,
        slack_user: str,
        status: str,
        owner: str,
        lease: float,
        posts: int = 0,
    ) -> FollowUp:
        moment = now()
        async with self._store.transaction() as conn:
            row_id = (
                await conn.execute(
                    slack_followups.insert()
                    .values(
                        response_url=url,
                        release_id=release_id,
                        slack_user=slack_user,
                        last_status=status,
                        posts=posts,
                        opened_at=moment,
                        owner=owner,
                        lease_until=moment + timedelta(seconds=lease),
                    )
                    .returning(slack_followups.c.id)
                )
            ).scalar_one()
        return FollowUp(int(row_id), url, release_id, slack_user, status, posts, moment)

    async def renew(
        self, follow_up: FollowUp, owner: str, lease: float, *, status: str, posts: int
    ) -> bool:
        async with self._store.transaction() as conn:
            result = await conn.execute(
                slack_followups.update()
                .where(slack_followups.c.id == follow_up.id, slack_followups.c.owner == owner)
                .values(
                    last_status=status,
                    posts=posts,
                    lease_until=now() + timedelta(seconds=lease),
                )
            )
        return bool(result.rowcount == 1)

    async def close(self, follow_up: FollowUp) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(slack_followups.delete().where(slack_followups.c.id == follow_up.id))

    async def take_over(self, owner: str, lease: float, limit: int = 50) -> list[FollowUp]:
        moment = now()
        query = (
            sa.select(slack_followups)
            .where(slack_followups.c.lease_until < moment)
            .order_by(slack_followups.c.id)
            .limit(limit)
        )
        if not self._store.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        async with self._store.transaction() as conn:
            await conn.execute(
                slack_followups.delete().where(
                    slack_followups.c.opened_at < moment - timedelta(seconds=MAX_SECONDS)
                )
            )
            rows = [_follow_up(r) for r in (await conn.execute(query)).mappings()]
            if rows:
                await conn.execute(
                    slack_followups.update()
                    .where(slack_followups.c.id.in_([r.id for r in rows]))
                    .values(owner=owner, lease_until=moment + timedelta(seconds=lease))
                )
        return rows


class MemoryFollowUps:
    """Follow-ups of one process (its leases never expire while it runs)."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[FollowUp, str]] = {}
        self._ids = itertools.count(1)

    async def open(
        self,
        url: str,
        release_id: str,
        *,
        slack_user: str,
        status: str,
        owner: str,
        lease: float,
        posts: int = 0,
    ) -> FollowUp:
        found = FollowUp(next(self._ids), url, release_id, slack_user, status, posts, now())
        self._rows[found.id] = (found, owner)
        return found

    async def renew(
        self, follow_up: FollowUp, owner: str, lease: float, *, status: str, posts: int
    ) -> bool:
        held = self._rows.get(follow_up.id)
        if held is None or held[1] != owner:
            return False
        self._rows[follow_up.id] = (replace(held[0], last_status=status, posts=posts), owner)
        return True

    async def close(self, follow_up: FollowUp) -> None:
        self._rows.pop(follow_up.id, None)

    async def take_over(self, owner: str, lease: float, limit: int = 50) -> list[FollowUp]:
        return []
