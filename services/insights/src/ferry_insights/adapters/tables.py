"""Insights' tables (see :mod:`ferry_insights.adapters.db`), and rows to domain values.

Columns ending in ``_us`` hold a moment as whole microseconds since the Unix epoch (UTC):
SQL compares, subtracts and buckets them as plain integers on SQLite and PostgreSQL alike,
which ``DateTime`` columns do not allow portably.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ferry_insights.domain.facts import Change, Deployment, EventRecord

metadata = sa.MetaData()
#: The ``inbox.projected`` of an event whose projections this release kept as it wrote them
PROJECTED = 1
_TS = sa.DateTime(timezone=True)
_US = sa.BigInteger

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("time", _TS, nullable=False),
    sa.Column("service", sa.String(63), nullable=False, default=""),
    sa.Column("environment", sa.String(63), nullable=False, default=""),
    sa.Column("release_id", sa.String(128), nullable=False, default=""),
    sa.Column("artifact_id", sa.String(128), nullable=False, default=""),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("received_at", _TS, nullable=False),
    #: Set (to :data:`PROJECTED`) by a writer of this release, which keeps the DORA columns
    #: and the cells as it writes; left NULL by a replica of the release before 0003 (a
    #: rolling upgrade), whose facts a repair projects later (``Store.repair``).
    sa.Column("projected", sa.SmallInteger),
    sa.Index("ix_inbox_service_time", "service", "time"),
    sa.Index("ix_inbox_projected", "projected"),
    sa.Index("ix_inbox_release", "release_id"),
    sa.Index("ix_inbox_type_place_time", "event_type", "service", "environment", "time"),
    sa.Index("ix_inbox_received", "received_at"),
    # the dashboard's matrix: the rollout facts of the artifact each place runs
    sa.Index("ix_inbox_artifact", "artifact_id", "service", "environment"),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("service", sa.String(63), primary_key=True),
    sa.Column("artifact_id", sa.String(128), primary_key=True),
    sa.Column("squad", sa.String(128), nullable=False, default=""),
    sa.Column("branch", sa.String(255), nullable=False, default=""),
    sa.Column("sha", sa.String(64), nullable=False, default=""),
    sa.Column("author_name", sa.String(200), nullable=False, default=""),
    sa.Column("author_email", sa.String(320), nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("committed_at", _TS),
    sa.Column("ci_start", _TS),
    sa.Column("ci_job_url", sa.Text, nullable=False, default=""),
    #: the change's time (``committed_at``, else ``ci_start``), for the lead time in SQL
    sa.Column("changed_us", _US),
    sa.Index("ix_changes_squad", "squad"),
)

rollout_results = sa.Table(
    "rollout_results",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("environment", sa.String(63), nullable=False),
    sa.Column("service", sa.String(63), nullable=False),
    sa.Column("artifact_id", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("observed_at", _TS, nullable=False),
    sa.Column("release_id", sa.String(128), nullable=False, default=""),
    sa.Column("observed_us", _US),
    sa.Index("ix_results_env_outcome_at", "environment", "outcome", "observed_at"),
    # the first success after a failure (time to restore)
    sa.Index("ix_results_place_outcome_us", "environment", "service", "outcome", "observed_us"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("environment", sa.String(63), primary_key=True),
    sa.Column("service", sa.String(63), primary_key=True),
    sa.Column("artifact_id", sa.String(128), primary_key=True),
    sa.Column("at", _TS, nullable=False),
    sa.Column("failed_rollout", sa.Boolean, nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("succeeded_at", _TS),
    # The DORA columns, kept at write time (``adapters/dora_projection.py``): ``at`` and
    # ``succeeded_at`` in microseconds, the next deployment of the service there, the first
    # rollback between this one and that next one, the failure's moment, the first success
    # after it. A read only filters, buckets and aggregates them.
    sa.Column("at_us", _US),
    sa.Column("succeeded_us", _US),
    sa.Column("next_us", _US),
    sa.Column("rolled_back_us", _US),
    sa.Column("failed_us", _US),
    sa.Column("restored_us", _US),
    sa.Index("ix_deployments_env_at", "environment", "at"),
    sa.Index("ix_deployments_env_at_us", "environment", "at_us"),
    sa.Index("ix_deployments_place_at_us", "environment", "service", "at_us"),
)

rollbacks = sa.Table(
    "rollbacks",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("environment", sa.String(63), nullable=False),
    sa.Column("service", sa.String(63), nullable=False),
    sa.Column("release_id", sa.String(128), nullable=False, default=""),
    sa.Column("requested_at", _TS, nullable=False),
    sa.Column("requested_us", _US),
    sa.Index("ix_rollbacks_env_at", "environment", "requested_at"),
    sa.Index("ix_rollbacks_place_us", "environment", "service", "requested_us"),
)

#: What runs where, one row per service and environment, kept at write time: the newest
#: ``release.committed`` there (by its ``time``, then event id) and the newest rollout fact of
#: that artifact there (by ``observedAt``, then event id). The matrix reads these rows and
#: nothing else; writers lock a place's row (``FOR UPDATE``) before anything of that place
#: changes, so replicas take turns per place.
cells = sa.Table(
    "cells",
    metadata,
    sa.Column("service", sa.String(63), primary_key=True),
    sa.Column("environment", sa.String(63), primary_key=True),
    sa.Column("commit_event_id", sa.String(128)),
    sa.Column("commit_time", _TS),
    sa.Column("release_id", sa.String(128)),
    sa.Column("artifact_id", sa.String(128)),
    sa.Column("commit_data", sa.JSON),
    sa.Column("fact_event_id", sa.String(128)),
    sa.Column("fact_event_type", sa.String(128)),
    sa.Column("fact_time", _TS),
    sa.Column("fact_data", sa.JSON),
)


#: Dashboard sessions: the SHA-256 of the cookie's value (never the value itself), who, the
#: person's API token (promotion's API is called as that person) and the form token.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False, default=""),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Index("ix_sessions_expires", "expires_at"),
)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """``value`` (aware, or naive UTC) in whole microseconds since the epoch, exactly."""
    found = utc(value)
    assert found is not None
    return (found - EPOCH) // _MICROSECOND


def micros_or_none(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def at(value: datetime) -> datetime:
    found = utc(value)
    assert found is not None
    return found


def deployment_values(deployment: Deployment) -> dict[str, Any]:
    return {
        "environment": deployment.environment,
        "service": deployment.service,
        "artifact_id": deployment.artifact_id,
        "at": deployment.at,
        "failed_rollout": deployment.failed_rollout,
        "event_id": deployment.event_id,
        "succeeded_at": deployment.succeeded_at,
        "at_us": micros(deployment.at),
        "succeeded_us": micros_or_none(deployment.succeeded_at),
    }


def deployment_of(row: sa.RowMapping) -> Deployment:
    return Deployment(
        environment=row["environment"],
        service=row["service"],
        artifact_id=row["artifact_id"],
        at=at(row["at"]),
        failed_rollout=bool(row["failed_rollout"]),
        event_id=row["event_id"],
        succeeded_at=utc(row["succeeded_at"]),
    )


def record_of_row(row: sa.RowMapping) -> EventRecord:
    """An ``inbox`` row as the domain's record of that event."""
    return EventRecord(
        event_id=row["event_id"],
        event_type=row["event_type"],
        time=at(row["time"]),
        service=row["service"],
        environment=row["environment"],
        release_id=row["release_id"],
        artifact_id=row["artifact_id"],
        data=dict(row["data"] or {}),
    )


def change_of_row(row: sa.RowMapping) -> Change:
    return Change(
        service=row["c_service"],
        artifact_id=row["c_artifact_id"],
        squad=row["c_squad"],
        branch=row["c_branch"],
        sha=row["c_sha"],
        author_name=row["c_author_name"],
        author_email=row["c_author_email"],
        message=row["c_message"],
        committed_at=utc(row["c_committed_at"]),
        ci_start=utc(row["c_ci_start"]),
        ci_job_url=row["c_ci_job_url"],
    )
