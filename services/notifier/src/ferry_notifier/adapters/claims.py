"""Claims: one replica at a time sends a delivery, or creates a release's thread.

A claim is a row of ``claims`` keyed by (kind, subject, destination) that names its
owner (one notifier replica) and a lease. It is taken in the database before the
side effect, so that two replicas handling the same event, or two events of one
release, at the same moment never both send:

- the insert that takes a claim fails on conflict when another replica holds it;
- a claim whose lease has run out (its owner died, or hangs) is taken over by a
  conditional update that only one replica can win;
- the owner renews its lease before every try and before every wait between tries,
  and lets go of the claim in the same transaction that records the outcome
  (``deliveries``, ``threads``), or at once when the send fails and the event is
  to be retried.

Every function here is one step of a transaction on a SQLAlchemy ``Connection``;
the :class:`~ferry_notifier.adapters.store.Store` runs them. Lease times are the
replicas' clocks (UTC): keep them in step (NTP) to well within the lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from ferry_notifier.adapters.tables import claims

DELIVERY = "delivery"
THREAD = "thread"


@dataclass(frozen=True, slots=True)
class ClaimKey:
    """What is claimed: a ``delivery`` of an event, or the ``thread`` of a release."""

    kind: str
    subject: str
    destination: str


@dataclass(frozen=True, slots=True)
class Taken:
    """The claim is ours until ``until``; ``taken_over_from`` names the replica whose
    lease had run out, when there was one."""

    until: datetime
    taken_over_from: str = ""


@dataclass(frozen=True, slots=True)
class Held:
    """Another replica holds the claim until ``until``."""

    owner: str
    until: datetime


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _where(key: ClaimKey) -> ColumnElement[bool]:
    return and_(
        claims.c.kind == key.kind,
        claims.c.subject == key.subject,
        claims.c.destination == key.destination,
    )


def take(
    conn: Connection,
    dialect: str,
    key: ClaimKey,
    owner: str,
    *,
    now: datetime,
    until: datetime,
    siblings: str = "",
    sibling_grace: timedelta = timedelta(0),
) -> Taken | Held:
    """Take the claim, take it over when its lease ran out, or say who holds it.

    ``siblings`` is the owner-name prefix of this process's other claims: their holders
    are alive (a lease that ran out means a slow database, not a dead replica), so their
    claims are taken over only ``sibling_grace`` after the lease ran out."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for _ in range(3):
        inserted = conn.execute(
            insert(claims)
            .values(
                kind=key.kind,
                subject=key.subject,
                destination=key.destination,
                owner=owner,
                lease_until=until,
            )
            .on_conflict_do_nothing()
        )
        if inserted.rowcount == 1:
            return Taken(until)
        row = conn.execute(select(claims.c.owner, claims.c.lease_until).where(_where(key))).first()
        if row is None:  # let go of between the insert and the read: insert again
            continue
        holder, lease_until = str(row[0]), _aware(row[1])
        if siblings and holder != owner and holder.startswith(siblings):
            lease_until += sibling_grace
        if holder != owner and lease_until > now:
            return Held(holder, lease_until)
        # Ours already (a redelivery to the same replica), or the lease ran out: the
        # update names the row as it was read, so only one replica wins it.
        won = conn.execute(
            update(claims)
            .where(_where(key), claims.c.owner == holder, claims.c.lease_until == row[1])
            .values(owner=owner, lease_until=until)
        )
        if won.rowcount == 1:
            return Taken(until, "" if holder == owner else holder)
    row = conn.execute(select(claims.c.owner, claims.c.lease_until).where(_where(key))).first()
    return Held(str(row[0]), _aware(row[1])) if row else Held("", now)


def renew(conn: Connection, key: ClaimKey, owner: str, until: datetime) -> bool:
    """Extend our lease; False when the claim is no longer ours (it was taken over)."""
    result = conn.execute(
        update(claims).where(_where(key), claims.c.owner == owner).values(lease_until=until)
    )
    return result.rowcount == 1


def release(conn: Connection, key: ClaimKey, owner: str) -> None:
    """Let go of our claim (nothing happens when it is not ours)."""
    conn.execute(delete(claims).where(_where(key), claims.c.owner == owner))


def holder(conn: Connection, key: ClaimKey, now: datetime) -> Held | None:
    """Who holds the claim with a lease that has not run out; None: nobody does."""
    row = conn.execute(select(claims.c.owner, claims.c.lease_until).where(_where(key))).first()
    if row is None or _aware(row[1]) <= now:
        return None
    return Held(str(row[0]), _aware(row[1]))
