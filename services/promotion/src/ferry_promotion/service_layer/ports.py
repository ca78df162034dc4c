"""What the use cases need from the outside besides storage, as small protocols.

- :class:`ConfigReader`: the config repo as promotion reads it (``adapters/configrepo.py``);
- :class:`Identities`: who a subject is, from what the tokens file said when last read
  (``adapters/tokens.py``); a decision never reads the file itself;
- :class:`ReadModel`: the read side (``adapters/queries.py``);
- :class:`Metrics`: the samples of a ``verification`` check (``adapters/prometheus.py``).

It also holds the one rule for a config repo that cannot be fetched:
:func:`usable_snapshot`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from ferry_events import ArtifactSpec
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.decision import HistoryEntry
from ferry_promotion.domain.policies import PrometheusCheck
from ferry_promotion.domain.records import ReleaseDetail, StoredArtifact
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.domain.verification import Samples
from ferry_runtime.errors import TemporaryError
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

Clock = Callable[[], datetime]


class ConfigReader(Protocol):
    @property
    def snapshot(self) -> Snapshot:
        """The last snapshot loaded (never fetches)."""
        ...

    async def current(
        self, *, fresh: bool = False, service: str | None = None, holding: str | None = None
    ) -> Snapshot:
        """A snapshot recent enough (see the adapter), at ``holding`` or after it when given;
        raises a ``TemporaryError`` on a failed fetch."""
        ...

    async def remote_head(self) -> str | None:
        """The commit the remote is at now; raises a ``TemporaryError`` when unreachable."""
        ...

    async def holds(self, commit: str) -> bool:
        """Whether the last snapshot is at ``commit`` or after it."""
        ...

    async def refresh(self, *, force: bool = False, at_least: int | None = None) -> Snapshot: ...

    def mark_stale(self, service: str | None = None) -> None: ...

    async def artifact(self, service: str, artifact_id: str) -> ArtifactSpec | None: ...

    async def build_environments(self, service: str, artifact_id: str) -> list[str]: ...

    async def list_builds(self, service: str) -> list[ArtifactSpec]: ...

    async def files(
        self, commit: str, directory: str, keep: Callable[[str], bool] | None = None
    ) -> dict[str, bytes]:
        """Every file below ``directory`` at ``commit`` whose path relative to it ``keep``
        accepts (every one without it), keyed by that path."""
        ...

    async def history(
        self, service: str, environment: str | None = None, *, limit: int = 5000
    ) -> list[HistoryEntry]: ...


class Identities(Protocol):
    def known(self, subject: str) -> Identity | None:
        """The identity of ``subject`` as last loaded."""
        ...


class Metrics(Protocol):
    async def samples(self, check: PrometheusCheck, now: datetime) -> Samples:
        """Every sample of ``check.query`` over [now - ``for``, now]; never raises: a failure
        (unreachable, timeout, a bad query) is ``Samples.error``."""
        ...


class ReadModel(Protocol):
    async def release(self, release_id: str) -> ReleaseDetail | None:
        """A release with its timeline and votes."""
        ...

    async def get(self, release_id: str) -> Release | None:
        """The release alone."""
        ...

    async def latest_of_branch(self, service: str, branch: str) -> str | None:
        """The id of the newest cataloged artifact built from ``branch``."""
        ...

    async def rollout_states(self) -> dict[tuple[str, str, str], tuple[str, str]]: ...

    async def cataloged_services(self) -> set[str]: ...

    async def is_cataloged(self, service: str) -> bool: ...

    async def artifacts(
        self, service: str, branch: str | None, limit: int
    ) -> list[StoredArtifact]: ...


async def usable_snapshot(
    config: ConfigReader,
    *,
    fresh: bool = False,
    service: str | None = None,
    holding: str | None = None,
) -> Snapshot:
    """The config repo to act on: a current snapshot, or the last copy when a fetch fails.

    The one fallback rule, for decisions and reads alike: a copy that holds a
    commit is used (with a warning) while the remote cannot be fetched; without
    one the fetch's error is raised (a ``TemporaryError``: the consumer retries,
    the API answers 503).

    A decision about a request accepted at commit ``holding`` uses the last copy only when
    that copy holds the commit: never older config than the request was accepted with.
    """
    try:
        return await config.current(fresh=fresh, service=service, holding=holding)
    except TemporaryError as exc:
        last = config.snapshot
        if last.commit is None or (holding is not None and not await config.holds(holding)):
            raise
        log.warning("config repo fetch failed; using the last copy", error=str(exc))
        return last
