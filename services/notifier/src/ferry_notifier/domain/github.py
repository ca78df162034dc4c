"""GitHub deployments, decided from plain data: which repository an artifact's
``application.url`` names, which deployment status an event means, and the bodies of
the REST calls (``POST /repos/{owner}/{repo}/deployments`` and ``.../statuses``).

A release is one GitHub Deployment per (release, repository): its ``ref`` the
artifact's commit, its ``environment`` the Ferry environment. Its statuses only move
forwards (:data:`STATE_RANK`): ``in_progress`` when committed, then ``success`` when
rolled out, and ``failure`` when the release or its rollout failed, which also
follows a ``success`` (one workload rolled out, another did not). A status that is not
further along than the one set already is not sent: a late ``in_progress`` never
follows a ``success``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ferry_notifier.domain.notice import Link, Notice

#: How far along each status is; a status is sent only when further along than the last.
STATE_RANK: Final[dict[str, int]] = {"in_progress": 1, "success": 2, "failure": 3}

#: The notice kind -> the deployment status it sets.
STATE_OF_KIND: Final[dict[str, str]] = {
    "release.committed": "in_progress",
    "rollout.started": "in_progress",
    "rollout.succeeded": "success",
    "rollout.failed": "failure",
    "release.failed": "failure",
}

#: The events a ``github`` destination acts on (a routing rule's ``match.events``).
GITHUB_EVENTS: Final = tuple(STATE_OF_KIND)

_OWNER: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_NAME: Final = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_SCP: Final = re.compile(r"^[\w.-]+@(?P<host>[^:/\s]+):(?P<path>\S+)$")


class NotGitHub(ValueError):
    """The URL names no repository on the configured GitHub; the message says why."""


@dataclass(frozen=True, slots=True)
class Repository:
    """``owner/name`` on one GitHub (``host``: the web host, lower case)."""

    host: str
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def key(self) -> str:
        """Identity for records and claims: GitHub names are case-insensitive."""
        return f"{self.host}/{self.owner}/{self.name}".lower()


def web_host(api_url: str) -> str:
    """The host that repository URLs name for this API: ``api.github.com`` -> ``github.com``;
    GitHub Enterprise Server (``https://ghe.example.com/api/v3``) -> ``ghe.example.com``."""
    parts = urlsplit(api_url)
    host = (parts.hostname or "").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return host.removeprefix("api.")


def parse_repository(url: str, host: str) -> Repository:
    """The repository ``url`` names on GitHub at ``host`` (see :func:`web_host`).

    Takes ``https://github.com/org/repo`` and what follows it (``.git``, ``/commit/<sha>``,
    ``/tree/<branch>``), and ``git@github.com:org/repo.git``; raises :class:`NotGitHub`
    for anything else.
    """
    url = url.strip()
    if not url:
        raise NotGitHub("the artifact has no application.url")
    wanted = host.lower()
    scp = _SCP.fullmatch(url)
    if scp is not None:  # git@host:org/repo.git names no port
        found_host, path, expected = scp["host"].lower(), scp["path"], wanted.partition(":")[0]
    else:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise NotGitHub(f"application.url {url!r} is not a URL") from None
        if parts.scheme not in ("https", "http", "ssh") or not parts.hostname:
            raise NotGitHub(f"application.url {url!r} is not an http(s) or ssh URL")
        found_host, path, expected = parts.hostname.lower(), parts.path, wanted.partition(":")[0]
        if parts.scheme != "ssh":  # a web URL names the web host's port
            found_host += f":{port}" if port is not None else ""
            expected = wanted
    if found_host.removeprefix("www.") != expected:
        raise NotGitHub(
            f"application.url {url!r} is not on {wanted} (the GitHub of FERRY_GITHUB_API_URL)"
        )
    segments = [s for s in path.split("/") if s]
    if len(segments) < 2:
        raise NotGitHub(f"application.url {url!r} names no repository (expected {wanted}/org/repo)")
    owner, name = segments[0], segments[1].removesuffix(".git")
    if not _OWNER.fullmatch(owner) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise NotGitHub(f"application.url {url!r}: {owner}/{name} is not a GitHub repository name")
    return Repository(wanted, owner, name)


@dataclass(frozen=True, slots=True)
class Step:
    """The deployment status one notice sets, and how far along it is."""

    state: str
    description: str

    @property
    def rank(self) -> int:
        return STATE_RANK[self.state]


def step_for(notice: Notice) -> Step | None:
    """The status this notice sets; None: it sets none (another kind, or a release that
    changed nothing in the config repo, so nothing rolls out)."""
    state = STATE_OF_KIND.get(notice.kind)
    if state is None or (notice.kind == "release.committed" and notice.extra.get("no_change")):
        return None
    where = f"{notice.service} {notice.artifact_id} to {notice.environment}"
    description = {
        "in_progress": f"Ferry is rolling out {where}",
        "success": f"Ferry rolled out {where}",
        "failure": f"Ferry failed to roll out {where}"
        + (f": {notice.reason}" if notice.reason else ""),
    }[state]
    return Step(state, description[:140])


def link_for(notice: Notice) -> str:
    """Where a status links: the release's dashboard page, else the config repo commit."""
    by_label: dict[str, Link] = {link.label: link for link in notice.links}
    for label in ("dashboard", "config commit"):
        if label in by_label:
            return by_label[label].url
    return ""


def deployment_request(
    notice: Notice, sha: str, *, protected_environments: tuple[str, ...]
) -> dict[str, Any]:
    """The body of ``POST /repos/{owner}/{repo}/deployments`` for this release."""
    return {
        "ref": sha,
        "task": "deploy",
        "auto_merge": False,
        "required_contexts": [],
        "environment": notice.environment,
        "description": f"Ferry release {notice.release_id} of {notice.service}"[:140],
        "transient_environment": False,
        "production_environment": notice.environment in protected_environments,
        "payload": {
            "ferry": {
                "releaseId": notice.release_id,
                "service": notice.service,
                "environment": notice.environment,
                "artifactId": notice.artifact_id,
            }
        },
    }


def is_ours(deployment: dict[str, Any], release_id: str) -> bool:
    """Whether a deployment GitHub lists is the one Ferry created for this release."""
    payload = deployment.get("payload")
    if not isinstance(payload, dict):
        return False
    ferry = payload.get("ferry")
    return isinstance(ferry, dict) and ferry.get("releaseId") == release_id


def status_request(step: Step, link: str) -> dict[str, Any]:
    """The body of ``POST /repos/{owner}/{repo}/deployments/{id}/statuses``."""
    body: dict[str, Any] = {"state": step.state, "description": step.description}
    if link:
        body["log_url"] = link
        body["environment_url"] = link
    return body
