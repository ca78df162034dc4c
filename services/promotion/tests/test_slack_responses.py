"""response_url limits and Slack user look-ups, against the loopback Slack server."""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from ferry_promotion.adapters.slack.responder import MAX_POSTS, MAX_SECONDS, ResponseUrlPoster
from ferry_promotion.adapters.slack.users import SlackUnavailable, SlackUserDirectory
from ferry_testing.slack_api import SlackApi


async def test_a_response_url_takes_five_posts_within_thirty_minutes_and_no_more():
    async with SlackApi() as slack:
        poster = ResponseUrlPoster([slack.base_url])
        now = [0.0]
        five = poster.open(slack.response_url("a"), clock=lambda: now[0])
        sent = [await five.post({"text": f"post {i}"}) for i in range(MAX_POSTS + 2)]
        assert sent == [True] * MAX_POSTS + [False, False]
        assert [p["text"] for p in slack.responses["a"]] == [f"post {i}" for i in range(5)]

        late = poster.open(slack.response_url("b"), clock=lambda: now[0])
        now[0] += MAX_SECONDS
        assert not await late.post({"text": "too late"})
        assert not slack.responses["b"]


async def test_response_urls_outside_the_allowed_origins_are_not_posted_to():
    async with SlackApi() as slack, SlackApi() as elsewhere:
        poster = ResponseUrlPoster(["https://hooks.slack.com", slack.base_url])
        assert poster.allows("https://hooks.slack.com/commands/T1/2/3")
        assert poster.allows(slack.response_url("x"))
        assert not poster.allows(elsewhere.response_url("x"))
        assert not await poster.send(elsewhere.response_url("x"), {"text": "leak"})
        assert not elsewhere.responses["x"]


async def test_user_lookups_are_cached_and_a_slack_outage_is_reported():
    async with SlackApi() as slack:
        slack.add_user("Jane@Example.com", "UJANE")
        now = [0.0]
        users = SlackUserDirectory(
            AsyncWebClient(token="xoxb-t", base_url=slack.base_url),
            ttl=60,
            miss_ttl=5,
            clock=lambda: now[0],
        )
        assert await users.email_of("UJANE") == "jane@example.com"
        assert await users.email_of("UJANE") == "jane@example.com"
        assert await users.email_of("UGHOST") is None
        assert await users.email_of("UGHOST") is None
        assert users.lookups == 2
        now[0] += 61
        slack.fail("users.info", 503)
        with pytest.raises(SlackUnavailable):
            await users.email_of("UJANE")
        assert await users.email_of("UJANE") == "jane@example.com"
        assert users.lookups == 4


async def test_without_a_signing_secret_every_slack_request_is_refused():
    import httpx
    from fastapi import FastAPI

    from ferry_promotion.entrypoints.slack import ChatOps, SlackRouter
    from ferry_testing.slack_signing import signed_headers, slash_command_body

    chatops = ChatOps(
        verifier=None,
        people=None,  # type: ignore[arg-type]  # never reached: refused before
        releases=None,  # type: ignore[arg-type]
        users=None,
        poster=ResponseUrlPoster([]),
    )
    app = FastAPI()
    app.include_router(SlackRouter(chatops))
    body = slash_command_body("help", user_id="U1", response_url="https://hooks.slack.com/x")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        response = await client.post(
            "/v1/slack/commands", content=body, headers=signed_headers("any", body)
        )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "FERRY_SLACK_SIGNING_SECRET is not set" in response.json()["detail"]


class _Steps:
    """A release that changes status each time it is read, until its last status."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses

    async def get(self, actor: object, release_id: str) -> dict[str, object]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"releaseId": release_id, "status": status, "service": "payments"}


async def test_a_follow_up_counts_the_answer_already_posted_to_its_response_url():
    from ferry_promotion.adapters.slack.state import MemoryFollowUps
    from ferry_promotion.entrypoints.slack.following import Following

    async def nobody(user: str) -> tuple[None, str]:
        return None, "unknown"

    # more changes than a response_url takes: the last post must still be the outcome
    statuses = ["awaiting-approval", "approved", "awaiting-approval", "approved", "committed"]
    async with SlackApi() as slack:
        poster = ResponseUrlPoster([slack.base_url])
        following = Following(
            poster=poster,
            releases=_Steps(list(statuses)),  # type: ignore[arg-type]
            followups=MemoryFollowUps(),
            identify=nobody,
            interval=0.01,
            max_interval=0.01,
        )
        url = slack.response_url("clicked")
        answer = poster.open(url)
        await answer.post({"text": "Promotion requested"})  # the click's own answer
        await following.follow(object(), "r-1", url, slack_user="U1", status="requested", posts=1)
        await following.drain(timeout=10)
        posts = slack.responses["clicked"]
        assert len(posts) == MAX_POSTS  # the answer and four follow-ups, not five
        assert posts[0]["text"] == "Promotion requested"
        assert "committed" in posts[-1]["text"]  # the one kept for the outcome
