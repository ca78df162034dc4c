"""A loopback server that answers as GitHub's REST API does for deployments, for tests.

It serves ``GET``/``POST /repos/{owner}/{repo}/deployments`` (the list filtered by
``sha``, ``ref``, ``environment`` and ``task``, newest first) and
``GET``/``POST /repos/{owner}/{repo}/deployments/{id}/statuses``, as the REST API
documents them: ``201`` with the created object, ``401`` ``Bad credentials`` without the
token, ``404`` for a repository it was not told about, ``422`` for an unknown commit or
state. It records every call, and can be told to fail: ``fail(status, times)`` answers
the next calls with that status (``403``/``429`` carry ``Retry-After``, or
``x-ratelimit-remaining: 0`` with ``rate_reset``).

    async with GitHubApi(token="ghp_test") as github:
        github.add_repository("org/payments", commits=["0017d995e3aaaa"])
        ... FERRY_GITHUB_API_URL=github.base_url ...
        [deployment] = github.deployments("org/payments")
        assert [s["state"] for s in deployment.statuses] == ["in_progress", "success"]
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ferry_testing.net import serve_app

__all__ = ["Deployment", "GitHubApi", "GitHubCall"]

_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}


@dataclass
class GitHubCall:
    """One request the server answered."""

    method: str
    path: str
    body: Any
    at: float
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    id: int
    repository: str
    body: dict[str, Any]
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base}/repos/{self.repository}/deployments/{self.id}",
            "sha": self.body["ref"],
            "ref": self.body["ref"],
            "task": self.body.get("task", "deploy"),
            "payload": self.body.get("payload", {}),
            "environment": self.body.get("environment", "production"),
            "description": self.body.get("description", ""),
            "transient_environment": self.body.get("transient_environment", False),
            "production_environment": self.body.get("production_environment", False),
        }


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    reset_in: float | None


class GitHubApi:
    """The fake GitHub REST API (aiohttp, on 127.0.0.1 and a free port)."""

    def __init__(self, token: str = "ghp_test") -> None:
        self.token = token
        self.calls: list[GitHubCall] = []
        self._repos: dict[str, set[str]] = {}
        self._deployments: dict[int, Deployment] = {}
        self._ids = itertools.count(1001)
        self._faults: deque[_Fault] = deque()
        self._refusal: str | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ programming

    def add_repository(self, full_name: str, commits: list[str]) -> None:
        """A repository (``owner/name``) holding these commits (a prefix names one too)."""
        self._repos[full_name.lower()] = set(commits)

    def fail(
        self,
        status: int = 503,
        times: int = 1,
        *,
        retry_after: float | None = None,
        rate_reset_in: float | None = None,
    ) -> None:
        """The next ``times`` calls get this status; a rate limit with ``Retry-After`` or,
        with ``rate_reset_in``, ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``."""
        for _ in range(times):
            self._faults.append(_Fault(status, retry_after, rate_reset_in))

    def refuse(self, message: str | None) -> None:
        """Answer every call ``400`` with this message (None: stop), as a hostile or broken
        proxy in front of GitHub might, echoing what it was sent."""
        self._refusal = message

    # ------------------------------------------------------------------ reading

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def web_url(self) -> str:
        """Where this GitHub's repositories are (as ``application.url`` names them)."""
        return f"http://127.0.0.1:{self.port}"

    def deployments(self, full_name: str) -> list[Deployment]:
        """The deployments of a repository, oldest first."""
        return [d for d in self._deployments.values() if d.repository == full_name.lower()]

    # ------------------------------------------------------------------ serving

    async def __aenter__(self) -> GitHubApi:
        app = web.Application()
        app.router.add_route("*", "/repos/{owner}/{repo}/deployments", self._deployments_route)
        app.router.add_route(
            "*", "/repos/{owner}/{repo}/deployments/{id}/statuses", self._statuses_route
        )
        self._runner, self.port = await serve_app(app)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _answer(self, call: GitHubCall, body: Any, status: int, **headers: str) -> web.Response:
        call.status = status
        self.calls.append(call)
        return web.json_response(body, status=status, headers=headers)

    async def _checked(self, request: web.Request) -> tuple[GitHubCall, web.Response | None]:
        """The call, recorded; with the answer when it is refused before it is served."""
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        call = GitHubCall(
            request.method, request.path_qs, body, time.monotonic(), headers=dict(request.headers)
        )
        if self._refusal is not None:
            echoed = self._refusal.replace(
                "{authorization}", request.headers.get("Authorization", "")
            )
            return call, self._answer(call, {"message": echoed}, 400)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return call, self._answer(call, {"message": "Bad credentials"}, 401)
        if request.headers.get("Accept") != "application/vnd.github+json":
            return call, self._answer(call, {"message": "Unsupported Accept header"}, 415)
        if not request.headers.get("X-GitHub-Api-Version"):
            return call, self._answer(call, {"message": "X-GitHub-Api-Version is missing"}, 400)
        if self._faults:
            fault = self._faults.popleft()
            headers: dict[str, str] = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(int(fault.retry_after))
            if fault.reset_in is not None:
                headers["x-ratelimit-remaining"] = "0"
                headers["x-ratelimit-reset"] = str(int(time.time() + fault.reset_in))
            message = "API rate limit exceeded" if fault.status in (403, 429) else "Server Error"
            return call, self._answer(call, {"message": message}, fault.status, **headers)
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        if repo not in self._repos:
            return call, self._answer(call, {"message": "Not Found"}, 404)
        return call, None

    async def _deployments_route(self, request: web.Request) -> web.Response:
        call, refused = await self._checked(request)
        if refused is not None:
            return refused
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        if request.method == "GET":
            q = request.query
            found = [
                d.as_json(self.base_url)
                for d in reversed(self.deployments(repo))
                if all(
                    q.get(k) in (None, d.as_json(self.base_url)[k])
                    for k in ("sha", "ref", "environment", "task")
                )
            ]
            return self._answer(call, found, 200)
        if request.method != "POST":
            return self._answer(call, {"message": "Not Found"}, 404)
        body = call.body if isinstance(call.body, dict) else {}
        ref = body.get("ref")
        commits = self._repos[repo]
        if not isinstance(ref, str) or not any(c.startswith(ref) for c in commits):
            return self._answer(call, {"message": f"No ref found for: {ref}"}, 422)
        deployment = Deployment(next(self._ids), repo, body)
        self._deployments[deployment.id] = deployment
        return self._answer(call, deployment.as_json(self.base_url), 201)

    async def _statuses_route(self, request: web.Request) -> web.Response:
        call, refused = await self._checked(request)
        if refused is not None:
            return refused
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        deployment = self._deployments.get(int(request.match_info["id"]))
        if deployment is None or deployment.repository != repo:
            return self._answer(call, {"message": "Not Found"}, 404)
        if request.method == "GET":
            return self._answer(call, list(reversed(deployment.statuses)), 200)
        if request.method != "POST":
            return self._answer(call, {"message": "Not Found"}, 404)
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("state") not in _STATES:
            return self._answer(call, {"message": "Validation Failed"}, 422)
        status = {"id": len(deployment.statuses) + 1, **body}
        deployment.statuses.append(status)
        return self._answer(call, status, 201)
