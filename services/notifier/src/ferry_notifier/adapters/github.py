"""GitHub's REST API, the three calls deployments need, through aiohttp.

- ``GET /repos/{owner}/{repo}/deployments?sha=&environment=`` finds a deployment Ferry
  created before (its ``payload`` names the release), so that a create whose answer was
  lost is not repeated;
- ``POST /repos/{owner}/{repo}/deployments`` creates one (``201``);
- ``POST /repos/{owner}/{repo}/deployments/{id}/statuses`` sets its status (``201``).

Every request sends ``Accept: application/vnd.github+json``, ``X-GitHub-Api-Version``
and the token as ``Authorization: Bearer``. How answers map to errors
(:mod:`ferry_notifier.errors`): a 5xx, a timeout or a refused connection is
:class:`Retryable`; so is a rate limit (``429``, or ``403`` with ``Retry-After`` or
``x-ratelimit-remaining: 0``), after ``Retry-After`` or until ``x-ratelimit-reset``;
any other 4xx (a bad token, no access, an unknown commit: ``422``) is
:class:`Undeliverable`, with GitHub's message. The token is never part of a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from ferry_events import mask_secrets
from ferry_events.redact import MASK
from ferry_notifier.domain.github import Repository
from ferry_notifier.errors import Retryable, Undeliverable

API_VERSION: Final = "2022-11-28"


def _retry_after(status: int, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait when this answer is a rate limit; None: it is not one (``headers``
    with lower-case names)."""
    raw = headers.get("retry-after")
    if raw is not None:
        try:
            return max(float(raw), 0.0)
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(float(headers.get("x-ratelimit-reset", "")) - time.time(), 0.0) + 1.0
        except ValueError:
            return 60.0
    if status == 429:
        return 60.0
    return None


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    if not isinstance(data, dict):
        return ""
    message = str(data.get("message", ""))
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        message += " (" + "; ".join(str(e) for e in errors[:3]) + ")"
    return message[:500]


class GitHubApi:
    """What the notifier asks of GitHub (``api_url``: ``https://api.github.com`` or a
    GitHub Enterprise Server's ``https://host/api/v3``)."""

    def __init__(self, api_url: str, token: str, timeout: float) -> None:
        self._base = api_url.rstrip("/")
        self._token = token
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {token}",
            "User-Agent": "ferry-notifier",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _masked(self, text: str) -> str:
        """``text`` without the token, whatever its form (GitHub may echo what it was sent)."""
        text = text.replace(self._token, MASK) if self._token else text
        return mask_secrets(text)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    def _path(self, repo: Repository, *rest: str) -> str:
        parts = ["repos", repo.owner, repo.name, *rest]
        return self._base + "/" + "/".join(quote(p, safe="") for p in parts)

    async def _call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            async with self._client().request(method, url, json=body, params=params) as response:
                status = response.status
                headers = {k.lower(): v for k, v in response.headers.items()}
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(f"GitHub {what}: {self._masked(repr(exc))}") from exc
        if 200 <= status < 300:
            try:
                return json.loads(raw) if raw else None
            except ValueError as exc:
                raise Retryable(
                    f"GitHub {what}: HTTP {status} with a body that is not JSON"
                ) from exc
        message = self._masked(_message(raw))
        if status in (403, 429):
            wait = _retry_after(status, headers)
            if wait is not None:
                raise Retryable(f"GitHub {what}: rate limited (HTTP {status})", retry_after=wait)
        if status >= 500 or status == 408:
            raise Retryable(f"GitHub {what}: HTTP {status} {message}".rstrip())
        hint = {
            401: "; FERRY_GITHUB_TOKEN is not valid",
            403: "; FERRY_GITHUB_TOKEN may not write deployments there",
            404: "; the repository does not exist or the token cannot see it",
        }.get(status, "")
        raise Undeliverable(f"GitHub {what} refused: HTTP {status} {message}{hint}".rstrip())

    async def find_deployment(
        self,
        repo: Repository,
        sha: str,
        environment: str,
        ours: Callable[[dict[str, Any]], bool],
    ) -> int | None:
        """The id of the deployment of this commit to this environment that ``ours(d)``
        accepts, among the newest GitHub lists; None: there is none."""
        found = await self._call(
            "GET",
            self._path(repo, "deployments"),
            f"list deployments of {repo.full_name}",
            params={"sha": sha, "environment": environment, "per_page": "100"},
        )
        for deployment in found if isinstance(found, list) else []:
            if isinstance(deployment, dict) and ours(deployment):
                return int(deployment["id"])
        return None

    async def create_deployment(self, repo: Repository, body: dict[str, Any]) -> int:
        created = await self._call(
            "POST",
            self._path(repo, "deployments"),
            f"create deployment on {repo.full_name}",
            body=body,
        )
        if not isinstance(created, dict) or not isinstance(created.get("id"), int):
            # 202: "auto-merge" or checks in progress; Ferry asks for neither
            raise Undeliverable(
                f"GitHub create deployment on {repo.full_name} answered without a deployment: "
                f"{str(created)[:200]}"
            )
        return int(created["id"])

    async def create_status(
        self, repo: Repository, deployment_id: int, body: dict[str, Any]
    ) -> None:
        await self._call(
            "POST",
            self._path(repo, "deployments", str(deployment_id), "statuses"),
            f"set deployment {deployment_id} of {repo.full_name} to {body.get('state')}",
            body=body,
        )
