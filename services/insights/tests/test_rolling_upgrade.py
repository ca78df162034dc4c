"""A rolling upgrade (expand, then contract): a replica of the release before 0003 keeps
writing after the schema is at head. Its rows lack the DORA columns and the marker, its
commits and rollout facts never reach the cells, and it moves a deployment's ``at`` without
``at_us``; the repair of this release projects those places again, so the DORA answers and
the matrix are the definitions' over every fact, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from test_projections_kept import check, facts_in_order, opened, random_history, url

from ferry_events import utcnow
from ferry_insights.adapters.db import Store
from ferry_insights.adapters.tables import (
    changes,
    deployment_of,
    deployments,
    inbox,
    rollbacks,
    rollout_results,
)
from ferry_insights.bootstrap import keep_repaired
from ferry_insights.domain.facts import Deployment, Facts, first_result

__all__ = ["url"]  # the SQLite and PostgreSQL fixture of the kept projections


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _old_deployment(d: Deployment) -> dict[str, Any]:
    """The release before's ``deployment_values``: no moment in microseconds."""
    return {
        "environment": d.environment,
        "service": d.service,
        "artifact_id": d.artifact_id,
        "at": d.at,
        "failed_rollout": d.failed_rollout,
        "event_id": d.event_id,
        "succeeded_at": d.succeeded_at,
    }


async def old_record(store: Store, facts: Facts, received_at: datetime) -> None:
    """What the release before's ``Store._record`` wrote (34fbd4a^), statement by statement:
    no ``projected``, no ``*_us``, no place lock, no cell."""
    r = facts.record
    async with store.engine.begin() as conn:
        inserted = await conn.execute(
            _insert(conn, inbox)
            .values(
                event_id=r.event_id,
                event_type=r.event_type,
                time=r.time,
                service=r.service,
                environment=r.environment,
                release_id=r.release_id,
                artifact_id=r.artifact_id,
                data=r.data,
                received_at=received_at,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        if not inserted.rowcount:
            return
        if (change := facts.change) is not None:
            values = {
                "squad": change.squad,
                "branch": change.branch,
                "sha": change.sha,
                "author_name": change.author_name,
                "author_email": change.author_email,
                "message": change.message,
                "committed_at": change.committed_at,
                "ci_start": change.ci_start,
                "ci_job_url": change.ci_job_url,
            }
            statement = _insert(conn, changes).values(
                service=change.service, artifact_id=change.artifact_id, **values
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["service", "artifact_id"], set_=values
                )
            )
        if (result := facts.rollout) is not None:
            await conn.execute(
                rollout_results.insert().values(
                    event_id=result.event_id,
                    environment=result.environment,
                    service=result.service,
                    artifact_id=result.artifact_id,
                    outcome=result.outcome.value,
                    observed_at=result.observed_at,
                    release_id=result.release_id,
                )
            )
            created = await conn.execute(
                _insert(conn, deployments)
                .values(**_old_deployment(first_result(None, result)))
                .on_conflict_do_nothing(index_elements=["environment", "service", "artifact_id"])
            )
            if not created.rowcount:
                key = (
                    (deployments.c.environment == result.environment)
                    & (deployments.c.service == result.service)
                    & (deployments.c.artifact_id == result.artifact_id)
                )
                row = (await conn.execute(sa.select(deployments).where(key))).mappings().one()
                merged = first_result(deployment_of(row), result)
                await conn.execute(
                    deployments.update().where(key).values(**_old_deployment(merged))
                )
        if (b := facts.rollback) is not None:
            await conn.execute(
                rollbacks.insert().values(
                    event_id=b.event_id,
                    environment=b.environment,
                    service=b.service,
                    release_id=b.release_id,
                    requested_at=b.requested_at,
                )
            )


async def _unmarked(store: Store) -> int:
    async with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(inbox.c.projected.is_(None))
        return int((await conn.execute(query)).scalar_one())


@pytest.mark.parametrize("seed", [8, 9])
async def test_what_a_replica_of_the_release_before_wrote_is_repaired(url: str, seed: int) -> None:
    facts = facts_in_order(random_history(seed))
    async with opened(url) as store:
        third = len(facts) // 3
        await store.record_many(facts[:third], received_at=utcnow())
        for n, f in enumerate(facts[third:]):  # the two releases side by side
            if n % 2:
                await old_record(store, f, utcnow())
            else:
                assert await store.record(f, received_at=utcnow())
        assert await _unmarked(store) > 20
        while await store.repair(places_at_once=1):
            pass
        assert await _unmarked(store) == 0
        assert await store.repair() == 0  # nothing left: nothing done
        await check(store, facts)


async def test_the_replicas_timer_repairs_and_a_repeat_changes_nothing(url: str) -> None:
    facts = facts_in_order(random_history(10))
    async with opened(url) as store:
        for f in facts[:-40]:
            assert await store.record(f, received_at=utcnow())
        for f in facts[-40:]:  # the last facts only from the release before
            await old_record(store, f, utcnow())
        timer = asyncio.create_task(keep_repaired(store, 0.05))
        try:
            for _ in range(200):
                if not await _unmarked(store):
                    break
                await asyncio.sleep(0.05)
        finally:
            timer.cancel()
        assert await _unmarked(store) == 0
        await check(store, facts)
        async with store.engine.begin() as conn:  # marked again by a repeat: the same values
            await conn.execute(inbox.update().values(projected=None))
        while await store.repair():
            pass
        await check(store, facts)
