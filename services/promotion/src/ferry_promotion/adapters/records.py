"""Stored rows turned into domain records: the only place that reads a release row by name."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping

from ferry_promotion.adapters.db import at, utc, violations_of
from ferry_promotion.domain.release import Release


def release_of(row: RowMapping) -> Release:
    """The :class:`Release` a ``releases`` row holds."""
    return Release(
        release_id=row["release_id"],
        service=row["service"],
        environment=row["environment"],
        intent=row["intent"],
        status=row["status"],
        actor_subject=row["actor_subject"],
        requested_at=at(row["requested_at"]),
        updated_at=at(row["updated_at"]),
        correlation_id=row["correlation_id"],
        artifact_id=row["artifact_id"],
        branch=row["branch"],
        from_environment=row["from_environment"],
        actor_email=row["actor_email"] or "",
        actor_name=row["actor_name"] or "",
        reason=row["reason"] or "",
        override_freeze=bool(row["override_freeze"]),
        commit_sha=row["commit_sha"],
        namespace=row["namespace"],
        promoted_from=row["promoted_from"],
        author_email=row["author_email"] or "",
        author_name=row["author_name"] or "",
        artifact_branch=row["artifact_branch"] or "",
        violations=list(violations_of(row)),
        approvals_required=int(row["approvals_required"] or 0),
        exclude_author=bool(row["exclude_author"]),
        expires_at=utc(row["expires_at"]),
        waiting_since=utc(row["waiting_since"]),
        request_event_id=row["request_event_id"],
        superseded_by=row["superseded_by"],
    )
