"""The records of GitHub deployments: one per (release, repository), claimed before it is
created, so two replicas (or a redelivered event) never create two.

The claim is a row of ``claims`` (kind ``github``, subject the release id, destination the
repository), held under the owner of the delivery that acts on it (see
:mod:`ferry_notifier.adapters.claims`). While it is held, one delivery at a time, across
replicas, looks the deployment up, creates it when it is not there and sets its status;
the status and the end of the claim are one transaction, so statuses are set in the
order of :data:`ferry_notifier.domain.github.STATE_RANK`, never backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from ferry_notifier.adapters import claims
from ferry_notifier.adapters.claims import ClaimKey, Held
from ferry_notifier.adapters.database import Database
from ferry_notifier.adapters.tables import github_deployments

GITHUB = "github"

#: See ``store._SIBLING_GRACE``: a sibling's claim is taken over this many leases late.
_SIBLING_GRACE = 10


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """The deployment of one release on one repository, and the furthest status set."""

    deployment_id: int
    state: str = ""
    rank: int = 0
    link: str = ""


@dataclass(frozen=True, slots=True)
class DeploymentClaim:
    """The claim is ours; ``record`` is None until the deployment was created."""

    record: DeploymentRecord | None
    taken_over_from: str = ""


def deployment_key(release_id: str, repository: str) -> ClaimKey:
    return ClaimKey(GITHUB, release_id, repository)


def _read(conn: Connection, release_id: str, repository: str) -> DeploymentRecord | None:
    t = github_deployments.c
    row = conn.execute(
        select(t.deployment_id, t.state, t.rank, t.link).where(
            t.release_id == release_id, t.repository == repository
        )
    ).first()
    return DeploymentRecord(int(row[0]), str(row[1]), int(row[2]), str(row[3])) if row else None


class DeploymentRecords(Database):
    """Claims and records of GitHub deployments."""

    async def claim_deployment(
        self, release_id: str, repository: str, owner: str, lease: float, *, siblings: str = ""
    ) -> DeploymentClaim | Held:
        """Take the claim on this release's deployment (with its record), or say who holds it."""
        key = deployment_key(release_id, repository)

        def work(conn: Connection) -> DeploymentClaim | Held:
            now = datetime.now(UTC)
            taken = claims.take(
                conn,
                self.dialect,
                key,
                owner,
                now=now,
                until=now + timedelta(seconds=lease),
                siblings=siblings,
                sibling_grace=timedelta(seconds=_SIBLING_GRACE * lease),
            )
            if isinstance(taken, Held):
                return taken
            # Read after taking: what the claim's last holder committed is seen.
            return DeploymentClaim(_read(conn, release_id, repository), taken.taken_over_from)

        return await self._run(work)

    async def save_deployment(
        self, release_id: str, repository: str, deployment_id: int, link: str
    ) -> None:
        """Record the deployment just created (the claim stays held)."""
        values: dict[str, object] = {
            "release_id": release_id,
            "repository": repository,
            "deployment_id": deployment_id,
            "state": "",
            "rank": 0,
            "link": link,
            "at": datetime.now(UTC),
        }
        await self._execute(self._upsert(github_deployments, values, ["release_id", "repository"]))

    async def settle_deployment(
        self, release_id: str, repository: str, owner: str, *, state: str = "", rank: int = 0
    ) -> None:
        """Record ``state`` as set (unless a further one is) and let go of the claim, in
        one transaction; without ``state``, only let go."""
        t = github_deployments.c

        def work(conn: Connection) -> None:
            if state:
                conn.execute(
                    update(github_deployments)
                    .where(t.release_id == release_id, t.repository == repository, t.rank < rank)
                    .values(state=state, rank=rank, at=datetime.now(UTC))
                )
            claims.release(conn, deployment_key(release_id, repository), owner)

        await self._run(work)

    async def deployment(self, release_id: str, repository: str) -> DeploymentRecord | None:
        return await self._run(lambda conn: _read(conn, release_id, repository))
