"""GitHub deployments without a broker: which repository a URL names, which status an event
sets, the request bodies, the routing file's ``github``, and how GitHub's answers (from a
loopback server that speaks its REST API) become errors."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from ferry_notifier.adapters.github import GitHubApi as Client
from ferry_notifier.bootstrap import ConfigurationError, load_routing
from ferry_notifier.domain.github import (
    NotGitHub,
    Repository,
    Step,
    deployment_request,
    is_ours,
    link_for,
    parse_repository,
    status_request,
    step_for,
    web_host,
)
from ferry_notifier.domain.notice import Link, Notice, Outcome
from ferry_notifier.domain.routing import (
    Destination,
    RoutingFileError,
    default_routing,
    parse_routing,
    route,
)
from ferry_notifier.errors import Retryable, Undeliverable
from ferry_notifier.settings import NotifierSettings
from ferry_testing.github_api import GitHubApi

# --------------------------------------------------------------------------- the repository


@pytest.mark.parametrize(
    ("api_url", "host"),
    [
        ("https://api.github.com", "github.com"),
        ("https://api.github.com/", "github.com"),
        ("https://ghe.example.com/api/v3", "ghe.example.com"),
        ("https://api.acme.ghe.com", "acme.ghe.com"),
        ("http://127.0.0.1:8123", "127.0.0.1:8123"),
    ],
)
def test_the_web_host_of_each_kind_of_github(api_url: str, host: str) -> None:
    assert web_host(api_url) == host


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/repo",
        "https://github.com/org/repo/",
        "https://github.com/org/repo.git",
        "https://www.github.com/org/repo",
        "https://GitHub.com/org/repo/commit/0017d995e3",
        "https://github.com/org/repo/tree/main/src",
        "git@github.com:org/repo.git",
        "ssh://git@github.com/org/repo.git",
    ],
)
def test_a_github_url_names_its_repository(url: str) -> None:
    repo = parse_repository(url, "github.com")
    assert repo == Repository("github.com", "org", "repo")
    assert repo.full_name == "org/repo"
    assert repo.key == "github.com/org/repo"


def test_an_enterprise_url_is_on_its_own_host_with_its_port() -> None:
    repo = parse_repository(
        "https://ghe.example.com:8443/Team/Payments.git", "ghe.example.com:8443"
    )
    assert repo.full_name == "Team/Payments"
    assert repo.key == "ghe.example.com:8443/team/payments"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "has no application.url"),
        ("https://gitlab.com/org/repo", "is not on github.com"),
        ("https://github.com.evil.example/org/repo", "is not on github.com"),
        ("https://evil.example/github.com/org/repo", "is not on github.com"),
        ("https://github.com/org", "names no repository"),
        ("https://github.com/", "names no repository"),
        ("https://github.com/-org/repo", "is not a GitHub repository name"),
        ("https://github.com/org/..", "is not a GitHub repository name"),
        ("https://github.com/org/re%20po", "is not a GitHub repository name"),
        ("ftp://github.com/org/repo", "is not an http(s) or ssh URL"),
        ("https://github.com:99999/org/repo", "is not a URL"),
        ("not a url at all", "is not an http(s) or ssh URL"),
    ],
)
def test_what_names_no_repository_on_this_github_is_refused_with_why(url: str, why: str) -> None:
    with pytest.raises(NotGitHub, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_repository(url, "github.com")


# --------------------------------------------------------------------------- the statuses


def _notice(kind: str, **more: object) -> Notice:
    outcome = Outcome.FAILURE if "failed" in kind else Outcome.SUCCESS
    values: dict[str, object] = {
        "service": "payments",
        "environment": "prod",
        "artifact_id": "master-abc-def",
        "release_id": "r-1",
        **more,
    }
    return Notice("e-1", f"ferry.{kind}.v1", kind, outcome, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "state"),
    [
        ("release.committed", "in_progress"),
        ("rollout.started", "in_progress"),
        ("rollout.succeeded", "success"),
        ("rollout.failed", "failure"),
        ("release.failed", "failure"),
        ("release.approved", None),
        ("approval.requested", None),
        ("workload.degraded", None),
    ],
)
def test_each_event_sets_its_status(kind: str, state: str | None) -> None:
    step = step_for(_notice(kind))
    assert (step.state if step else None) == state


def test_statuses_only_move_forwards_and_a_failure_follows_a_success() -> None:
    in_progress, success, failure = (Step(s, "") for s in ("in_progress", "success", "failure"))
    assert in_progress.rank < success.rank < failure.rank


def test_a_commit_that_changed_nothing_sets_no_status() -> None:
    assert step_for(_notice("release.committed", extra={"no_change": True})) is None


def test_a_failure_says_why_in_at_most_140_characters() -> None:
    step = step_for(_notice("rollout.failed", reason="CrashLoopBackOff " * 20))
    assert step is not None
    assert step.description.startswith("Ferry failed to roll out payments master-abc-def to prod")
    assert len(step.description) == 140


def test_the_deployment_names_the_commit_the_environment_and_the_release() -> None:
    body = deployment_request(
        _notice("release.committed"), "0017d995e3aaaa", protected_environments=("prod",)
    )
    assert body["ref"] == "0017d995e3aaaa"
    assert body["environment"] == "prod"
    assert body["required_contexts"] == []
    assert body["auto_merge"] is False
    assert body["transient_environment"] is False
    assert body["production_environment"] is True
    assert body["payload"]["ferry"]["releaseId"] == "r-1"
    assert is_ours({"payload": body["payload"]}, "r-1")
    assert not is_ours({"payload": body["payload"]}, "r-2")
    assert not is_ours({"payload": "r-1"}, "r-1")
    staging = deployment_request(
        _notice("release.committed", environment="staging"),
        "0017d995e3aaaa",
        protected_environments=("prod",),
    )
    assert staging["production_environment"] is False


def test_a_status_links_to_the_dashboard_else_the_config_commit() -> None:
    commit = Link("config commit", "https://git.example.com/config/commit/c0ffee")
    dashboard = Link("dashboard", "https://ferry.example.com/releases/r-1")
    notice = _notice("rollout.succeeded", links=(Link("CI", "https://ci.example.com/1"), commit))
    assert link_for(notice) == commit.url
    assert link_for(replace(notice, links=(*notice.links, dashboard))) == dashboard.url
    assert link_for(replace(notice, links=())) == ""
    step = Step("success", "rolled out")
    assert status_request(step, dashboard.url) == {
        "state": "success",
        "description": "rolled out",
        "log_url": dashboard.url,
        "environment_url": dashboard.url,
    }
    assert "log_url" not in status_request(step, "")


# --------------------------------------------------------------------------- routing


def test_the_routing_file_takes_github_and_sends_there_once() -> None:
    config = parse_routing(
        "routes:\n"
        "  - match: {events: [release.committed]}\n"
        "    to: [github, console]\n"
        "  - to: [github]\n"
    )
    assert route(_notice("release.committed"), config) == [
        Destination("github"),
        Destination("console"),
    ]
    assert config.destination_kinds() == {"github", "console"}


def test_github_takes_no_target() -> None:
    with pytest.raises(RoutingFileError, match=r"line 2: .*unknown destination 'github:org/x'"):
        parse_routing("routes:\n  - to: ['github:org/x']\n")


def test_the_built_in_routing_sends_releases_to_github_when_it_is_configured() -> None:
    without = default_routing(slack=False, email=False)
    assert Destination("github") not in route(_notice("release.committed"), without)
    config = default_routing(slack=False, email=False, github=True)
    for kind in ("release.committed", "rollout.succeeded", "rollout.failed", "release.failed"):
        assert Destination("github") in route(_notice(kind), config), kind
    assert Destination("github") not in route(_notice("release.approved"), config)


# --------------------------------------------------------------------------- GitHub's answers

REPO = Repository("127.0.0.1", "org", "payments")
SHA = "0017d995e3aaaa"


@pytest.fixture
async def github() -> GitHubApi:
    async with GitHubApi(token="ghp_unit") as server:
        server.add_repository("org/payments", commits=[SHA])
        yield server  # type: ignore[misc]


def _body() -> dict[str, object]:
    return deployment_request(_notice("release.committed"), SHA, protected_environments=("prod",))


async def test_a_deployment_is_created_found_again_and_given_a_status(github: GitHubApi) -> None:
    client = Client(github.base_url, "ghp_unit", timeout=5)
    try:
        created = await client.create_deployment(REPO, _body())
        ours = lambda d: is_ours(d, "r-1")  # noqa: E731
        assert await client.find_deployment(REPO, SHA, "prod", ours) == created
        assert await client.find_deployment(REPO, SHA, "staging", ours) is None
        await client.create_status(REPO, created, {"state": "in_progress"})
    finally:
        await client.close()
    [deployment] = github.deployments("org/payments")
    assert deployment.id == created
    assert [s["state"] for s in deployment.statuses] == ["in_progress"]
    post = next(c for c in github.calls if c.method == "POST")
    assert post.headers["Accept"] == "application/vnd.github+json"
    assert post.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert post.status == 201


@pytest.mark.parametrize(
    ("token", "repo", "sha", "status", "says"),
    [
        ("ghp_wrong", REPO, SHA, 401, "FERRY_GITHUB_TOKEN is not valid"),
        ("ghp_unit", Repository("127.0.0.1", "org", "other"), SHA, 404, "does not exist"),
        ("ghp_unit", REPO, "feedbeef", 422, "No ref found for: feedbeef"),
    ],
)
async def test_a_refusal_is_for_good_and_says_why(
    github: GitHubApi, token: str, repo: Repository, sha: str, status: int, says: str
) -> None:
    client = Client(github.base_url, token, timeout=5)
    body = {**_body(), "ref": sha}
    try:
        with pytest.raises(Undeliverable, match=f"HTTP {status}") as refused:
            await client.create_deployment(repo, body)
    finally:
        await client.close()
    assert says in str(refused.value)
    assert token not in str(refused.value)


async def test_server_errors_and_rate_limits_are_retried_after_what_github_says(
    github: GitHubApi,
) -> None:
    client = Client(github.base_url, "ghp_unit", timeout=5)
    github.fail(502)
    github.fail(429, retry_after=7)
    github.fail(403, retry_after=3)
    github.fail(403, rate_reset_in=30)
    try:
        waits = []
        for _ in range(4):
            with pytest.raises(Retryable) as again:
                await client.create_deployment(REPO, _body())
            waits.append(again.value.retry_after)
        await client.create_deployment(REPO, _body())  # GitHub is back
    finally:
        await client.close()
    assert waits[:3] == [None, 7.0, 3.0]
    assert waits[3] is not None
    assert 25 <= waits[3] <= 32  # until x-ratelimit-reset
    assert len(github.deployments("org/payments")) == 1


async def test_a_403_that_is_no_rate_limit_is_for_good(github: GitHubApi) -> None:
    github.fail(403)
    client = Client(github.base_url, "ghp_unit", timeout=5)
    try:
        with pytest.raises(Undeliverable, match="may not write deployments"):
            await client.create_deployment(REPO, _body())
    finally:
        await client.close()


async def test_an_unreachable_github_is_retried_and_a_token_it_echoes_is_masked(
    github: GitHubApi,
) -> None:
    token = f"tok{time.time_ns()}"  # no GitHub token shape: masked because it is the token
    github.add_repository("org/payments", commits=[SHA])
    github.refuse("proxy refused {authorization}")
    client = Client(github.base_url, token, timeout=5)
    try:
        with pytest.raises(Undeliverable) as refused:
            await client.create_deployment(REPO, _body())
        assert token not in str(refused.value)
        assert "proxy refused Bearer ***" in str(refused.value)
    finally:
        await client.close()
    gone = Client("http://127.0.0.1:9", token, timeout=2)
    try:
        with pytest.raises(Retryable, match="GitHub create deployment on org/payments"):
            await gone.create_deployment(REPO, _body())
    finally:
        await gone.close()


def test_a_routing_file_naming_github_needs_the_token(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - to: [github]\n")
    with pytest.raises(ConfigurationError, match="FERRY_GITHUB_TOKEN is not set"):
        load_routing(NotifierSettings(routes_file=routes))
    routing = load_routing(NotifierSettings(routes_file=routes, github_token="ghp_x"))
    assert [rule.to for rule in routing.routes] == [("github",)]
