"""Places (a service in an environment): their lock, and the ``cells`` row of what runs there.

Every fact of a place (a commit, a rollout fact, a rollback request) is written while the
writer holds that place's ``cells`` row ``FOR UPDATE`` (PostgreSQL; SQLite has one writer at
a time anyway). Replicas therefore take turns per place, and what is computed from a place's
facts at write time (the cell below, the DORA columns of ``adapters/dora_projection.py``)
always sees every fact written before it. Places are locked in key order, so two writers
never wait for each other in a circle.

The cell keeps the newest ``release.committed`` of the place and the newest rollout fact of
that artifact there, by the ranks of :mod:`ferry_insights.domain.board`, in any arrival order:
a newer commit takes the newest rollout fact of its artifact from the inbox (a fact may
arrive before its commit); a rollout fact counts only for the artifact the cell runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry_insights.adapters.tables import at, cells, inbox, record_of_row
from ferry_insights.domain.board import COMMITTED, ROLLOUTS, commit_rank, fact_rank
from ferry_insights.domain.facts import EventRecord, Facts

__all__ = ["Place", "cell_records", "lock", "places_of", "update_cells"]

#: (service, environment), the order of the ``cells`` key
Place = tuple[str, str]


def places_of(facts: Facts) -> set[Place]:
    """The places whose facts this event writes (none for most events)."""
    found: set[Place] = set()
    record = facts.record
    if record.event_type == COMMITTED or record.event_type in ROLLOUTS:
        found.add((record.service, record.environment))
    if facts.rollout is not None:
        found.add((facts.rollout.service, facts.rollout.environment))
    if facts.rollback is not None:
        found.add((facts.rollback.service, facts.rollback.environment))
    return found


def _chunks(values: Sequence[Any], size: int = 400) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


async def lock(conn: AsyncConnection, places: Iterable[Place]) -> dict[Place, sa.RowMapping]:
    """Create the rows of ``places`` that are missing and lock them all, in key order."""
    keys = sorted(set(places))
    if not keys:
        return {}
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    key = sa.tuple_(cells.c.service, cells.c.environment)
    out: dict[Place, sa.RowMapping] = {}
    for chunk in _chunks(keys):
        await conn.execute(
            insert(cells)
            .values([{"service": s, "environment": e} for s, e in chunk])
            .on_conflict_do_nothing(index_elements=["service", "environment"])
        )
        query = (
            sa.select(cells)
            .where(key.in_(list(chunk)))
            .order_by(cells.c.service, cells.c.environment)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in (await conn.execute(query)).mappings():
            out[(row["service"], row["environment"])] = row
    return out


def _commit_of(row: sa.RowMapping) -> EventRecord | None:
    if row["commit_event_id"] is None:
        return None
    return EventRecord(
        event_id=row["commit_event_id"],
        event_type=COMMITTED,
        time=at(row["commit_time"]),
        service=row["service"],
        environment=row["environment"],
        release_id=row["release_id"] or "",
        artifact_id=row["artifact_id"] or "",
        data=dict(row["commit_data"] or {}),
    )


def _fact_of(row: sa.RowMapping) -> EventRecord | None:
    if row["fact_event_id"] is None:
        return None
    return EventRecord(
        event_id=row["fact_event_id"],
        event_type=row["fact_event_type"],
        time=at(row["fact_time"]),
        service=row["service"],
        environment=row["environment"],
        release_id="",
        artifact_id=row["artifact_id"] or "",
        data=dict(row["fact_data"] or {}),
    )


def cell_records(row: sa.RowMapping) -> tuple[EventRecord | None, EventRecord | None]:
    """A cell's commit and rollout fact, as the records :func:`~..domain.board.matrix` takes."""
    return _commit_of(row), _fact_of(row)


def _fact_values(fact: EventRecord | None) -> dict[str, Any]:
    return {
        "fact_event_id": fact.event_id if fact else None,
        "fact_event_type": fact.event_type if fact else None,
        "fact_time": fact.time if fact else None,
        "fact_data": fact.data if fact else None,
    }


async def update_cells(
    conn: AsyncConnection, locked: dict[Place, sa.RowMapping], records: Iterable[EventRecord]
) -> None:
    """Fold ``records`` (new in this transaction, any order) into the locked cells."""
    by_place: dict[Place, list[EventRecord]] = defaultdict(list)
    for record in records:
        if record.event_type == COMMITTED or record.event_type in ROLLOUTS:
            by_place[(record.service, record.environment)].append(record)
    moved: dict[Place, EventRecord] = {}  # places that run another commit now
    facts: dict[Place, EventRecord | None] = {}
    for place, found in by_place.items():
        commit, fact = cell_records(locked[place])
        newer = _newest(commit, found, lambda r: r.event_type == COMMITTED, commit_rank)
        if newer is not commit and newer is not None:
            moved[place] = newer
        elif commit is not None:
            best = _newest(fact, found, _fact_of_artifact(commit.artifact_id), fact_rank)
            if best is not fact:
                facts[place] = best
    if moved:
        newest = await _newest_facts(conn, moved)
        for place in moved:
            facts[place] = newest.get(place)
    for place in sorted(set(moved) | set(facts)):
        values = _fact_values(facts.get(place)) if place in facts else {}
        if place in moved:
            commit = moved[place]
            values.update(
                commit_event_id=commit.event_id,
                commit_time=commit.time,
                release_id=commit.release_id,
                artifact_id=commit.artifact_id,
                commit_data=commit.data,
            )
        service, environment = place
        await conn.execute(
            cells.update()
            .where(cells.c.service == service, cells.c.environment == environment)
            .values(**values)
        )


def _fact_of_artifact(artifact_id: str) -> Callable[[EventRecord], bool]:
    return lambda r: r.event_type in ROLLOUTS and r.artifact_id == artifact_id


def _newest(
    current: EventRecord | None,
    records: Iterable[EventRecord],
    counts: Callable[[EventRecord], bool],
    rank: Callable[[EventRecord], tuple[Any, str]],
) -> EventRecord | None:
    """The record of the greatest rank among ``current`` and the ``records`` that count."""
    best = current
    for record in records:
        if counts(record) and (best is None or rank(record) > rank(best)):
            best = record
    return best


async def _newest_facts(
    conn: AsyncConnection, commits: dict[Place, EventRecord]
) -> dict[Place, EventRecord]:
    """The newest rollout fact of each commit's artifact in its place, from the inbox."""
    wanted = sorted({(c.artifact_id, s, e) for (s, e), c in commits.items()})
    key = sa.tuple_(inbox.c.artifact_id, inbox.c.service, inbox.c.environment)
    out: dict[Place, EventRecord] = {}
    for chunk in _chunks(wanted):
        rows = await conn.execute(
            sa.select(inbox).where(key.in_(list(chunk)), inbox.c.event_type.in_(ROLLOUTS))
        )
        for row in rows.mappings():
            record = record_of_row(row)
            place = (record.service, record.environment)
            if record.artifact_id != commits[place].artifact_id:
                continue
            known = out.get(place)
            if known is None or fact_rank(record) > fact_rank(known):
                out[place] = record
    return out
