"""Checks the people-facing use cases share: names, environments, the config repo, release ids."""

from __future__ import annotations

import contextlib

from ferry_events import DNS_LABEL
from ferry_promotion.domain.environments import Environment
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.errors import Invalid, NotFound, Unavailable
from ferry_promotion.service_layer.ports import ConfigReader, usable_snapshot
from ferry_runtime.errors import TemporaryError


def check_service(service: str, field: str = "service") -> None:
    if not DNS_LABEL.fullmatch(service):
        raise Invalid.field(
            field, f"{service[:80]!r} is not a service name (a lowercase DNS label: a-z, 0-9, '-')"
        )


async def snapshot_for_people(
    config: ConfigReader, *, fresh: bool = False, latest: bool = False
) -> Snapshot:
    """The config repo for an API or Slack call (503 when it cannot be read at all).

    ``latest``: at least the commit the remote is at now (one ``git ls-remote``), so a person
    who changed a policy or a halt through one replica reads it back through any other
    (the change event reached only one of them).
    """
    holding = None
    if latest:
        with contextlib.suppress(TemporaryError):
            holding = await config.remote_head()
    try:
        return await usable_snapshot(config, fresh=fresh, holding=holding)
    except TemporaryError as exc:
        raise Unavailable(f"the config repo cannot be read: {exc}") from exc


async def environment_named(
    config: ConfigReader, name: str, field: str = "environment"
) -> Environment:
    snapshot = await snapshot_for_people(config)
    env = snapshot.environments.get(name)
    if env is None:
        raise Invalid.field(
            field,
            f"unknown environment {name[:80]!r}; the environments are "
            f"{', '.join(snapshot.environments.names())}",
        )
    return env


def no_release(release_id: str) -> NotFound:
    """404 for a release id nobody handed out (a long one is shown cut)."""
    shown = release_id if len(release_id) <= 128 else f"{release_id[:40]}…"
    return NotFound(f"no release {shown}; release ids come from POST /v1/releases")
