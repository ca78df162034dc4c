"""The git change set of a halt, a resume, and a mark on a bad artifact.

``halts.yaml`` lists the halted environments, ``rejected/<service>.yaml`` the
service's artifacts marked bad; each entry says who, since when and why::

    halts:
      - environment: prod
        reason: incident 4711
        by: jane@example.com
        since: "2026-12-24T02:00:00Z"

    rejected:
      - artifactId: master-0017d995e3-67e9d69164
        reason: corrupts the ledger
        by: jane@example.com
        since: "2026-12-24T02:00:00Z"

A pull request may edit either file too: entries git-writer cannot read are
refused (dead-lettered) rather than overwritten. ``since`` is the request's time,
so replanning a batch after a rejected push writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from ferry_events import (
    ALL_ENVIRONMENTS,
    ArtifactMarkChanged,
    ArtifactMarkChangeRequested,
    HaltChanged,
    HaltChangeRequested,
)
from ferry_gitwriter.domain import paths
from ferry_gitwriter.domain.changes import (
    ACTOR,
    ARTIFACT_ID,
    ENVIRONMENT,
    EVENT_ID,
    SERVICE,
    CommitPlan,
    Refused,
    TreeReader,
    Unchanged,
    identity,
    one_line,
    trailers,
)

HALTS_KEY: Final = "halts"
REJECTED_KEY: Final = "rejected"

Entry = dict[str, str]


def iso(when: datetime) -> str:
    """``when`` in UTC as ``2026-12-24T02:00:00Z`` (seconds precision)."""
    moment = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_entries(raw: bytes | None, path: str, key: str, id_key: str) -> list[Entry]:
    """The entries of ``path`` (a mapping with a list under ``key``); [] when absent.

    Raises :class:`Refused` (``invalid-<file kind>``) when the file is not such a list
    of mappings, each with a text ``id_key``.
    """
    code = f"invalid-{key}-file"
    if raw is None:
        return []
    try:
        document = yaml.safe_load(raw.decode())
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise Refused(
            f"{path} is not valid YAML ({exc}); fix it in the config repo", code=code
        ) from exc
    if document is None:
        return []
    items = (document.get(key) or []) if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise Refused(f"{path} must be a mapping with a list under {key!r}", code=code)
    entries: list[Entry] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not isinstance(item.get(id_key), str):
            raise Refused(
                f"{path}: entry {number} under {key!r} must be a mapping with a text {id_key!r}",
                code=code,
            )
        entries.append({str(k): "" if v is None else str(v) for k, v in item.items()})
    return entries


def entries_yaml(key: str, entries: list[Entry]) -> bytes:
    """The file's content: ``key`` with the entries, in a stable order."""
    return yaml.safe_dump(
        {key: entries}, sort_keys=False, default_flow_style=False, allow_unicode=True
    ).encode()


def _upsert(
    entries: list[Entry],
    id_key: str,
    wanted: Entry | None,
    ident: str,
    order: Callable[[Entry], Any],
) -> list[Entry] | None:
    """The entries with ``ident`` set to ``wanted`` (None: removed); None when nothing changes.

    An entry that is already there with the same reason is left as it was (who and since too).
    """
    current = next((e for e in entries if e[id_key] == ident), None)
    if wanted is None:
        if current is None:
            return None
        return [e for e in entries if e[id_key] != ident]
    if current is not None and current.get("reason", "") == wanted["reason"]:
        return None
    rest = [e for e in entries if e[id_key] != ident]
    return sorted([*rest, wanted], key=order)


# --------------------------------------------------------------------------- halts


def plan_halt(
    event_id: str, request: HaltChangeRequested, tree: TreeReader
) -> CommitPlan | Unchanged:
    """Add (halt) or remove (resume) the environment's entry in ``halts.yaml``."""
    try:
        environment = paths.halt_environment(request.environment)
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    path = paths.HALTS_FILE
    entries = read_entries(tree.read(path), path, HALTS_KEY, "environment")
    actor = request.actor.display()
    wanted: Entry | None = None
    if request.halted:
        wanted = {
            "environment": environment,
            "reason": one_line(request.reason),
            "by": one_line(actor),
            "since": iso(request.requested_at),
        }
    changed = _upsert(
        entries,
        "environment",
        wanted,
        environment,
        lambda e: (e["environment"] != ALL_ENVIRONMENTS, e["environment"]),
    )
    if changed is None:
        return Unchanged(path)
    verb = "halt" if request.halted else "resume"
    where = "every environment" if environment == ALL_ENVIRONMENTS else environment
    return CommitPlan(
        title=one_line(f"[halts] {verb} {where} by {actor}"),
        trailers=trailers((EVENT_ID, event_id), (ENVIRONMENT, environment), (ACTOR, actor)),
        author=identity(request.actor.name or request.actor.subject, request.actor.email),
        files={path: entries_yaml(HALTS_KEY, changed)},
        path=path,
        kind="halt",
        body=one_line(f"Reason: {request.reason}") if request.reason.strip() else "",
    )


# --------------------------------------------------------------------------- artifact marks


def plan_mark(
    event_id: str, request: ArtifactMarkChangeRequested, tree: TreeReader
) -> CommitPlan | Unchanged:
    """Add (reject) or remove (unreject) the artifact's entry in ``rejected/<service>.yaml``.

    Only a stored artifact can be marked; lifting a mark needs no build.
    """
    try:
        path = paths.rejected_file(request.service)
        build = paths.build_dir(request.service, request.artifact_id)
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    if request.rejected and tree.read(f"{build}/{paths.ARTIFACT_FILE}") is None:
        raise Refused(
            f"artifact {request.artifact_id} of {request.service} is not stored in the config "
            f"repo ({build}/ does not exist); only a stored artifact can be marked bad",
            code="unknown-artifact",
        )
    entries = read_entries(tree.read(path), path, REJECTED_KEY, "artifactId")
    actor = request.actor.display()
    wanted: Entry | None = None
    if request.rejected:
        wanted = {
            "artifactId": request.artifact_id,
            "reason": one_line(request.reason),
            "by": one_line(actor),
            "since": iso(request.requested_at),
        }
    changed = _upsert(
        entries, "artifactId", wanted, request.artifact_id, lambda e: (e["since"], e["artifactId"])
    )
    if changed is None:
        return Unchanged(path)
    verb = "reject" if request.rejected else "unreject"
    return CommitPlan(
        title=one_line(f"[rejected/{request.service}] {verb} {request.artifact_id} by {actor}"),
        trailers=trailers(
            (EVENT_ID, event_id),
            (ARTIFACT_ID, request.artifact_id),
            (SERVICE, request.service),
            (ACTOR, actor),
        ),
        author=identity(request.actor.name or request.actor.subject, request.actor.email),
        files={path: entries_yaml(REJECTED_KEY, changed)},
        path=path,
        kind="mark",
        body=one_line(f"Reason: {request.reason}") if request.reason.strip() else "",
    )


# --------------------------------------------------------------------------- results


def halt_result(request: HaltChangeRequested, sha: str, *, no_change: bool) -> HaltChanged:
    """What git-writer publishes once the halt or resume is on the branch."""
    return HaltChanged(
        request_id=request.request_id,
        environment=request.environment,
        halted=request.halted,
        reason=request.reason,
        actor=request.actor,
        since=request.requested_at,
        commit_sha=sha,
        no_change=no_change,
    )


def mark_result(
    request: ArtifactMarkChangeRequested, sha: str, *, no_change: bool
) -> ArtifactMarkChanged:
    """What git-writer publishes once the mark (or its removal) is on the branch."""
    return ArtifactMarkChanged(
        request_id=request.request_id,
        service=request.service,
        artifact_id=request.artifact_id,
        rejected=request.rejected,
        reason=request.reason,
        actor=request.actor,
        since=request.requested_at,
        commit_sha=sha,
        no_change=no_change,
    )
