"""Stored rows turned into domain records: the only place that reads a row by column name."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping

from ferry_promotion.adapters.db import at, utc, violations_of
from ferry_promotion.domain.records import Note, Rollout, StoredArtifact, Vote
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
        due_at=utc(row["due_at"]),
        request_event_id=row["request_event_id"],
        superseded_by=row["superseded_by"],
        config_commit=row["config_commit"],
        sequence=row["sequence"],
        scheduled_at=utc(row["scheduled_at"]),
    )


def vote_of(row: RowMapping) -> Vote:
    """The :class:`Vote` an ``approvals`` row holds."""
    return Vote(
        subject=row["subject"],
        email=row["email"],
        decision=row["decision"],
        at=at(row["at"]),
        name=row["name"],
        comment=row["comment"],
    )


def rollout_of(row: RowMapping) -> Rollout:
    """The :class:`Rollout` a ``rollouts`` row holds."""
    return Rollout(
        environment=row["environment"],
        service=row["service"],
        artifact_id=row["artifact_id"],
        status=row["status"],
        observed_at=at(row["observed_at"]),
        reason=row["reason"],
        release_id=row["release_id"],
        succeeded_at=utc(row["succeeded_at"]),
        failed_at=utc(row["failed_at"]),
    )


def note_of(row: RowMapping, prefix: str = "") -> Note:
    """The :class:`Note` a ``timeline`` row holds (its columns named ``prefix`` + name)."""
    return Note(
        at=at(row[f"{prefix}at"]),
        status=row[f"{prefix}status"],
        event_type=row[f"{prefix}event_type"],
        detail=row[f"{prefix}detail"],
    )


def artifact_of(row: RowMapping) -> StoredArtifact:
    """The :class:`StoredArtifact` an ``artifacts`` row holds."""
    return StoredArtifact(
        service=row["service"],
        artifact_id=row["artifact_id"],
        branch=row["branch"],
        sha=row["sha"],
        author_name=row["author_name"],
        author_email=row["author_email"],
        message=row["message"],
        stored_at=utc(row["stored_at"]),
        environments=list(row["environments"] or []),
        namespace=row["namespace"],
        commit_sha=row["commit_sha"],
    )
