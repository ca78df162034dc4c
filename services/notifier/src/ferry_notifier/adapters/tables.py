"""The notifier's tables (one SQLAlchemy ``MetaData``); created at start-up.

- ``deliveries``: one row per (event id, destination): ``sent``, ``failed`` (given
  up, dead-lettered), ``skipped`` (nobody to send to) or ``collapsed`` (part of a
  flood). A redelivered event skips every destination that has a row.
- ``claims``: who is sending a delivery, or creating a release's thread, right now,
  and until when (a lease). See :mod:`ferry_notifier.adapters.claims`.
- ``threads``: per (thread key, Slack destination) the channel id and ``ts`` of the
  first message of a release, and how far along the release it shows.
- ``releases`` and ``artifacts``: what earlier events said (people, squad, links).
- ``floods`` and ``flood_events``: runs of identical failures.
- ``github_deployments``: per (release, repository) the GitHub Deployment created for it
  and the furthest status set on it (see :mod:`ferry_notifier.adapters.deployments`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("destination", String(512), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("slack_channel", String(64), nullable=False, default=""),
    Column("slack_ts", String(64), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("at", DateTime(timezone=True), nullable=False),
)

claims = Table(
    "claims",
    metadata,
    #: ``delivery`` (subject: the event id) or ``thread`` (subject: the thread key).
    Column("kind", String(16), primary_key=True),
    Column("subject", String(256), primary_key=True),
    Column("destination", String(512), primary_key=True),
    #: The replica holding the claim (see ``Deliverer``'s ``owner``).
    Column("owner", String(128), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=False),
)

threads = Table(
    "threads",
    metadata,
    Column("thread_key", String(256), primary_key=True),
    Column("destination", String(512), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("ts", String(64), nullable=False),
    Column("rank", Integer, nullable=False, default=0),
)


def _documents(name: str, key: str) -> Table:
    """A table of JSON documents by id: what earlier events said of something."""
    return Table(
        name,
        metadata,
        Column(key, String(128), primary_key=True),
        Column("data", Text, nullable=False),
    )


releases = _documents("releases", "release_id")
artifacts = _documents("artifacts", "artifact_id")

floods = Table(
    "floods",
    metadata,
    Column("flood_key", String(512), primary_key=True),
    Column("anchor_event_id", String(128), nullable=False),
    Column("count", Integer, nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
)

flood_events = Table(
    "flood_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("anchor_event_id", String(128), nullable=False),
    Column("number", Integer, nullable=False),
)

github_deployments = Table(
    "github_deployments",
    metadata,
    Column("release_id", String(128), primary_key=True),
    #: ``host/owner/name``, lower case.
    Column("repository", String(256), primary_key=True),
    Column("deployment_id", BigInteger, nullable=False),
    #: The furthest status set (``in_progress``, ``success``, ``failure``); empty: none yet.
    Column("state", String(16), nullable=False, default=""),
    Column("rank", Integer, nullable=False, default=0),
    #: Where its statuses link (the dashboard's release page, or the config commit).
    Column("link", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)
