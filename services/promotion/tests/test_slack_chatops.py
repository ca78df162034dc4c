"""Chat-ops end to end: requests signed exactly as Slack signs them, the real broker, a real git
remote (git-writer running in-process where a commit is the effect), promotion's own database,
and a loopback Slack Web API for user look-ups and ``response_url`` posts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from ferry_gitwriter.bootstrap import build as build_gitwriter
from ferry_gitwriter.settings import GitWriterSettings
from ferry_promotion.bootstrap import PromotionService, build
from ferry_promotion.entrypoints.slack import ChatOps
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, EventTap, running, trailer_values
from ferry_testing.slack_api import SlackApi
from ferry_testing.slack_signing import (
    block_actions_payload,
    interaction_body,
    sign,
    signed_headers,
    slash_command_body,
)

pytestmark = pytest.mark.amqp

SECRET = "test-signing-secret-0123456789abcdef"
RELEASE_ID = re.compile(r"id `([0-9a-f-]{36})`")
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments
spec:
  replicas: 1
  selector:
    matchLabels: {app: payments}
  template:
    metadata:
      labels: {app: payments}
    spec:
      containers:
        - name: payments
          image: payments:master-1
"""
APPROVALS_POLICY = "approvals:\n  - {environment: prod, required: 1}\n"


@dataclass
class Chat:
    """Promotion with chat-ops, and a person's way of typing into Slack."""

    service: PromotionService
    chatops: ChatOps
    client: httpx.AsyncClient
    slack: SlackApi
    tap: EventTap
    ns: BrokerNamespace
    config: Any  # the ConfigWriter of conftest.py
    remote: Path
    data_dir: Path

    async def command(self, user: str, text: str, key: str = "cmd") -> httpx.Response:
        body = slash_command_body(
            text, user_id=user, response_url=self.slack.response_url(key), user_name=user
        )
        return await self.client.post(
            "/v1/slack/commands", content=body, headers=signed_headers(SECRET, body)
        )

    async def say(self, user: str, text: str, key: str = "cmd") -> str:
        """The ephemeral answer's text (the request must be accepted)."""
        response = await self.command(user, text, key)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["response_type"] == "ephemeral"
        return str(answer["text"])

    async def click(
        self, user: str, action: str, release_id: str, key: str, message: dict[str, Any]
    ) -> httpx.Response:
        payload = block_actions_payload(
            user_id=user,
            action_id=action,
            value=release_id,
            block_id=f"ferry_approval:{release_id}",
            response_url=self.slack.response_url(key),
            message=message,
        )
        body = interaction_body(payload)
        return await self.client.post(
            "/v1/slack/interactions", content=body, headers=signed_headers(SECRET, body)
        )

    async def status_of(self, release_id: str, *statuses: str, timeout: float = 20.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                found = await self.service.views.status(
                    self.service.tokens.by_subject("carol"),  # type: ignore[arg-type]
                    release_id,
                )
                row = found.release
                if not statuses or row.status in statuses:
                    return row.status
                await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def git_writer(self) -> AsyncIterator[None]:
        settings = GitWriterSettings(
            **self.ns.settings(),
            data_dir=self.data_dir / "git-writer",
            config_repo_url=str(self.remote),
        )
        async with running(build_gitwriter(settings)):
            yield


def store(config: Any, artifact_id: str) -> None:
    """An artifact in builds/, with manifests git-writer accepts."""
    config.store("payments", artifact_id)
    for env in ("dev", "staging"):
        path = config.work / f"builds/payments/{artifact_id}/{env}/deployment.yaml"
        path.write_text(DEPLOYMENT)
    config.write(f"builds/payments/{artifact_id}/prod/deployment.yaml", DEPLOYMENT, "manifests")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Chat-ops does not depend on the database engine: SQLite only, to keep the suite lean."""
    return f"sqlite+aiosqlite:///{tmp_path / 'promotion.db'}"


@pytest.fixture
async def chat(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    config: Any,
    tokens: Any,
    database_url: str,
    tmp_path: Path,
) -> AsyncIterator[Chat]:
    # frank has no slackUserId: Ferry finds him through Slack's users.info and his email
    document = yaml.safe_load(tokens.path.read_text())
    document["tokens"].append(
        {
            "subject": "frank",
            "email": "Frank@Example.com",
            "roles": ["developer"],
            "sha256": "0" * 64,
        }
    )
    tokens.path.write_text(yaml.safe_dump(document))
    store(config, "master-1")
    async with SlackApi() as slack:
        slack.add_user("frank@example.com", "UFRANK")
        slack.add_user("stranger@example.com", "USTRANGER")
        settings = PromotionSettings(
            **broker_ns.settings(),
            data_dir=tmp_path / "data",
            database_url=database_url,
            config_repo_url=str(config.remote),
            api_tokens_file=tokens.path,
            config_max_age=0.0,
            expiry_check_interval=0.2,
            slack_signing_secret=SECRET,
            slack_bot_token="xoxb-test-token",
            slack_api_url=slack.base_url,
        )
        service = await build(settings)
        chatops = service.chatops
        served = service.runtime._app.openapi()["paths"]  # the app promotion serves
        assert "/v1/slack/commands" in served, "the promotion app does not include the Slack routes"
        chatops.follow_interval = 0.1
        async with running(service.runtime):
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{service.runtime.http_port}", timeout=10
            ) as client:
                yield Chat(
                    service,
                    chatops,
                    client,
                    slack,
                    event_tap,
                    broker_ns,
                    config,
                    config.remote,
                    tmp_path,
                )
            await chatops.aclose()


def release_id_in(text: str) -> str:
    found = RELEASE_ID.search(text)
    assert found, text
    return found.group(1)


def texts(posts: list[dict[str, Any]]) -> str:
    return "\n".join(p["text"] for p in posts)


async def posted(slack: SlackApi, key: str, needle: str) -> list[dict[str, Any]]:
    """The posts to ``response_url(key)`` once one of them contains ``needle``."""
    async with asyncio.timeout(15):
        while needle not in texts(slack.responses[key]):
            await slack.wait_for_responses(key, len(slack.responses[key]) + 1)
    return slack.responses[key]


async def test_release_by_artifact_id_from_slack_is_committed_and_the_outcome_posted(chat):
    async with chat.git_writer():
        answer = await chat.say("UALICE", "release payments master-1 to dev", key="rel")
        assert answer.startswith(":hourglass_flowing_sand: Release requested, id `")
        release_id = release_id_in(answer)
        committed = await chat.tap.wait_one(
            "ferry.release.committed.v1",
            lambda e: e.data["releaseId"] == release_id,
            timeout=30,
        )
    requested = chat.tap.of_type("ferry.release.requested.v1")[0]
    assert requested.data["artifactId"] == "master-1"
    assert requested.data["actor"]["subject"] == "alice"  # from the Slack user, not the body
    assert release_id in trailer_values(chat.remote, "Ferry-Release-Id")
    posts = await posted(chat.slack, "rel", f"Release `{release_id}` committed")
    assert committed.data["commitSha"][:10] in texts(posts)
    assert all(p["response_type"] == "ephemeral" for p in posts)
    assert len(posts) <= 5


async def test_the_acknowledgement_comes_before_the_commit_while_git_writer_is_down(chat):
    async with chat.git_writer():
        pass  # git-writer's queue exists (as in production); then git-writer is down
    answer = await chat.say("UALICE", "release payments master to dev", key="slow")
    release_id = release_id_in(answer)
    assert not chat.tap.of_type("ferry.release.committed.v1")
    approved = await chat.tap.wait_one(
        "ferry.release.approved.v1", lambda e: e.data["releaseId"] == release_id
    )
    assert approved.data["artifactId"] == "master-1"  # "master" was taken as a branch
    assert not chat.tap.of_type("ferry.release.committed.v1")
    async with chat.git_writer():
        await chat.tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.data["releaseId"] == release_id, timeout=30
        )
        posts = await posted(chat.slack, "slow", f"Release `{release_id}` committed")
    assert ":package: Release `" + release_id + "` committed" in texts(posts)


async def test_promote_and_rollback_from_slack_are_committed(chat):
    store(chat.config, "master-2")
    chat.config.release("dev", "payments", "master-1", release_id="r-1")
    chat.config.release("dev", "payments", "master-2", release_id="r-2")
    await chat.service.reader.refresh(force=True)
    async with chat.git_writer():
        promote = release_id_in(await chat.say("UALICE", "promote payments to staging"))
        promoted = await chat.tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.data["releaseId"] == promote, timeout=30
        )
        rollback = release_id_in(await chat.say("UALICE", "rollback payments in dev"))
        rolled_back = await chat.tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.data["releaseId"] == rollback, timeout=30
        )
    assert promoted.data["environment"] == "staging"
    assert promoted.data["artifactId"] == "master-2"  # what runs in dev
    assert promoted.data["promotedFrom"] == "dev"
    assert rolled_back.data["intent"] == "rollback"
    assert rolled_back.data["artifactId"] == "master-1"  # the release before
    assert trailer_values(chat.remote, "Ferry-Intent")[:2] == ["rollback", "promote"]


async def test_status_and_history_answer_with_tables(chat):
    chat.config.release("dev", "payments", "master-1", release_id="r-1", actor="ann@example.com")
    await chat.service.reader.refresh(force=True)
    status = await chat.say("UVIC", "status payments")
    assert status.startswith("*payments*\n```\n")
    header, dev = status.split("\n")[2:4]
    assert header.split() == [
        "environment",
        "artifact",
        "commit",
        "rollout",
        "released",
        "by",
        "at",
    ]
    assert dev.split()[:2] == ["dev", "master-1"]
    assert "ann@example.com" in dev
    history = await chat.say("UVIC", "history payments dev")
    assert "history in dev" in history
    assert "master-1" in history
    assert "ann@example.com" in history
    assert not chat.tap.of_type("ferry.release.requested.v1")  # reading publishes nothing


async def approval_request(chat, key: str) -> tuple[str, dict[str, Any]]:
    """bob asks for prod, which needs one approval; the message the notifier would post."""
    chat.config.write("policies/payments.yaml", APPROVALS_POLICY, "approvals for prod")
    await chat.service.reader.refresh(force=True)
    answer = await chat.say("UBOB", "release payments master-1 to prod", key=key)
    release_id = release_id_in(answer)
    await chat.status_of(release_id, "awaiting-approval")
    message = {
        "type": "message",
        "ts": "1700000001.000100",
        "text": f"payments master-1 to prod needs approval ({release_id})",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "needs approval"}},
            {
                "type": "actions",
                "block_id": f"ferry_approval:{release_id}",
                "elements": [
                    {"type": "button", "action_id": "ferry_approve", "value": release_id},
                    {"type": "button", "action_id": "ferry_reject", "value": release_id},
                ],
            },
        ],
    }
    return release_id, message


async def test_approve_button_checks_the_person_and_a_double_click_approves_once(chat):
    release_id, message = await approval_request(chat, "prod")

    # the requester may not approve their own release
    response = await chat.click("UBOB", "ferry_approve", release_id, "bob-click", message)
    assert response.status_code == 200
    (refusal,) = await chat.slack.wait_for_responses("bob-click")
    assert refusal["replace_original"] is False
    assert refusal["response_type"] == "ephemeral"

    # a developer without releaser:prod is told which role is missing
    await chat.click("UALICE", "ferry_approve", release_id, "alice-click", message)
    (refusal,) = await chat.slack.wait_for_responses("alice-click")
    assert "releaser:prod or admin" in refusal["text"]
    assert "alice has developer" in refusal["text"]

    # dave double-clicks: two signed requests in flight together
    first, second = await asyncio.gather(
        chat.click("UDAVE", "ferry_approve", release_id, "dave-1", message),
        chat.click("UDAVE", "ferry_approve", release_id, "dave-2", message),
    )
    assert first.status_code == second.status_code == 200
    await chat.slack.wait_for_responses("dave-1")
    await chat.slack.wait_for_responses("dave-2")
    answers = chat.slack.responses["dave-1"] + chat.slack.responses["dave-2"]
    updates = [a for a in answers if a.get("replace_original")]
    noted = [a for a in answers if not a.get("replace_original")]
    assert len(updates) == 1, answers
    assert len(noted) == 1, answers
    assert "Approved by <@UDAVE> (dave@example.com) at " in updates[0]["text"]
    assert not [b for b in updates[0]["blocks"] if b["type"] == "actions"]  # buttons gone
    assert "nothing was done" in noted[0]["text"]

    assert await chat.status_of(release_id, "approved", "committed") in ("approved", "committed")
    granted = await chat.tap.wait_for(
        "ferry.approval.granted.v1", lambda e: e.data["releaseId"] == release_id
    )
    await chat.tap.wait_one(
        "ferry.release.approved.v1", lambda e: e.data["releaseId"] == release_id
    )
    assert len(granted) == 1
    assert granted[0].data["approver"]["subject"] == "dave"

    # a click after the decision says so
    await chat.click("UCAROL", "ferry_reject", release_id, "late", message)
    (late,) = await chat.slack.wait_for_responses("late")
    assert "is already approved" in late["text"]
    assert "nothing was done" in late["text"]
    assert not chat.tap.of_type("ferry.release.rejected.v1")

    # bob's command follow-ups: waiting for approval, then approved
    posts = await chat.slack.wait_for_responses("prod", 2)
    assert "waits for 1 approval(s)" in posts[0]["text"]
    assert "approved" in posts[1]["text"]


async def test_approve_and_reject_commands_record_the_decision(chat):
    first, _ = await approval_request(chat, "p1")
    answer = await chat.say("UCAROL", f"approve {first}")
    assert answer == f":white_check_mark: You approved release `{first}`; it goes ahead."
    granted = await chat.tap.wait_one(
        "ferry.approval.granted.v1", lambda e: e.data["releaseId"] == first
    )
    assert granted.data["approver"]["email"] == "carol@example.com"

    second = release_id_in(await chat.say("UBOB", "release payments master-1 to prod", key="p2"))
    await chat.status_of(second, "awaiting-approval")
    answer = await chat.say("UDAVE", f"reject {second} breaks the checkout")
    assert answer == f":no_entry: You rejected release `{second}`."
    rejected = await chat.tap.wait_one(
        "ferry.release.rejected.v1", lambda e: e.data["releaseId"] == second
    )
    assert "breaks the checkout" in rejected.data["violations"][0]["message"]
    again = await chat.say("UCAROL", f"approve {second}")
    assert again.startswith(":warning: release ")
    assert "not awaiting approval" in again


async def test_who_is_asking_unknown_users_and_missing_roles(chat):
    stranger = await chat.say("USTRANGER", "release payments master-1 to dev")
    assert stranger.startswith(":lock: You (stranger@example.com) are not a Ferry user")
    nobody = await chat.say("UNOBODY", "status payments")
    assert nobody.startswith(":lock: Slack shows no email for your user `UNOBODY`")

    viewer = await chat.say("UVIC", "release payments master-1 to dev")
    assert viewer == (
        ":lock: releasing to dev needs the role developer, releaser:dev or admin; vic has viewer"
    )
    prod = await chat.say("UALICE", "promote payments to prod")
    assert "promoting to prod needs the role releaser:prod or admin; alice has developer" in prod

    usage = await chat.say("UALICE", "promote payments into prod")
    assert usage.endswith("Usage: `/ferry promote <service> [to] <env> [at HH:MM]`")
    assert "/ferry release <service>" in await chat.say("UNOBODY", "help")

    # frank has no slackUserId: found by users.info and his email, once (then cached)
    assert (await chat.say("UFRANK", "history payments")).startswith("*payments* has no releases")
    answer = await chat.say("UFRANK", "release payments master-1 to dev")
    frank = release_id_in(answer)
    lookups = [c for c in chat.slack.calls_to("users.info") if c.params["user"] == "UFRANK"]
    assert len(lookups) == 1
    assert lookups[0].token == "xoxb-test-token"

    await chat.tap.wait_one("ferry.release.approved.v1", lambda e: e.data["releaseId"] == frank)
    (requested,) = chat.tap.of_type("ferry.release.requested.v1")  # none of the refused ones
    assert requested.data["releaseId"] == frank
    assert requested.data["actor"]["subject"] == "frank"


async def test_forged_stale_and_replayed_requests_are_refused_and_leave_nothing(chat):
    body = slash_command_body(
        "release payments master-1 to dev",
        user_id="UALICE",
        response_url=chat.slack.response_url("sig"),
    )
    good = signed_headers(SECRET, body)
    forged = {
        **good,
        "X-Slack-Signature": sign("not-the-secret", body, int(good["X-Slack-Request-Timestamp"])),
    }
    stale_ts = int(good["X-Slack-Request-Timestamp"]) - 301
    stale = {
        **good,
        "X-Slack-Request-Timestamp": str(stale_ts),
        "X-Slack-Signature": sign(SECRET, body, stale_ts),
    }
    tampered = body.replace(b"dev", b"prod")
    unsigned = {"Content-Type": good["Content-Type"]}

    refused = []
    for content, headers in (
        (body, forged),
        (body, stale),
        (tampered, good),
        (body, unsigned),
    ):
        refused.append(
            await chat.client.post("/v1/slack/commands", content=content, headers=headers)
        )
    click = interaction_body(
        block_actions_payload(
            user_id="UDAVE",
            action_id="ferry_approve",
            value="r-1",
            block_id="ferry_approval:r-1",
            response_url=chat.slack.response_url("sig"),
        )
    )
    refused.append(
        await chat.client.post(
            "/v1/slack/interactions",
            content=click,
            headers={**signed_headers(SECRET, click), "X-Slack-Signature": "v0=" + "0" * 64},
        )
    )
    for response in refused:
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401
    details = [r.json()["detail"] for r in refused]
    assert "signature does not match" in details[0]
    assert "more than 300 seconds" in details[1]
    assert "signature does not match" in details[2]
    assert "no X-Slack-Signature" in details[3]

    accepted = await chat.client.post("/v1/slack/commands", content=body, headers=good)
    assert accepted.status_code == 200
    release_id = release_id_in(accepted.json()["text"])
    replay = await chat.client.post("/v1/slack/commands", content=body, headers=good)
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]

    await chat.tap.wait_one(
        "ferry.release.approved.v1", lambda e: e.data["releaseId"] == release_id
    )
    requested = chat.tap.of_type("ferry.release.requested.v1")
    assert [e.data["releaseId"] for e in requested] == [release_id]
    assert not chat.slack.calls  # nobody was even looked up for the refused ones
    assert set(chat.slack.responses) <= {"sig"}


async def test_a_click_after_the_approval_expired_says_so_and_does_nothing(chat):
    chat.config.write(
        "policies/payments.yaml",
        "approvals:\n  - {environment: prod, required: 1, expiresAfter: 1s}\n",
        "short approvals",
    )
    await chat.service.reader.refresh(force=True)
    release_id = release_id_in(await chat.say("UBOB", "release payments master-1 to prod"))
    await chat.status_of(release_id, "rejected")  # expired
    await chat.click("UDAVE", "ferry_approve", release_id, "expired", {"text": "approve?"})
    (answer,) = await chat.slack.wait_for_responses("expired")
    assert answer["text"].startswith(f"Release `{release_id}` is already rejected")
    assert "expired" in answer["text"]
    assert answer["text"].endswith("nothing was done.")
    assert not chat.tap.of_type("ferry.approval.granted.v1")


async def test_halt_and_resume_from_slack_are_committed_and_refuse_then_allow(chat):
    refused = await chat.say("UALICE", "halt prod incident 4711")
    assert refused.startswith(":lock: halting an environment needs the role admin")
    usage = await chat.say("UCAROL", "halt prod")
    assert usage.endswith("Usage: `/ferry halt <env|*> <reason>`")
    unknown = await chat.say("UCAROL", "halt qa incident")
    assert "unknown environment 'qa'" in unknown
    async with chat.git_writer():
        answer = await chat.say("UCAROL", "halt dev incident 4711")
        assert answer.startswith(":octagonal_sign: Halt of `dev` requested")
        changed = await chat.tap.wait_one("ferry.halt.changed.v1", timeout=30)
        assert (changed.data["environment"], changed.data["reason"]) == ("dev", "incident 4711")
        assert changed.data["actor"]["subject"] == "carol"
        await chat.service.reader.refresh(force=True)
        release_id = release_id_in(await chat.say("UALICE", "release payments master-1 to dev"))
        assert await chat.status_of(release_id, "rejected", "approved") == "rejected"
        rejected = await chat.tap.wait_one(
            "ferry.release.rejected.v1", lambda e: e.data["releaseId"] == release_id
        )
        assert rejected.data["violations"][0]["policy"] == "halted"

        answer = await chat.say("UCAROL", "resume dev")
        assert answer.startswith(":arrow_forward: Resume of `dev` requested")
        await chat.tap.wait_one(
            "ferry.halt.changed.v1", lambda e: e.data["halted"] is False, timeout=30
        )
        await chat.service.reader.refresh(force=True)
        again = release_id_in(await chat.say("UALICE", "release payments master-1 to dev"))
        assert await chat.status_of(again, "rejected", "approved", "committed") != "rejected"
    assert "/ferry halt <env|*> <reason>" in await chat.say("UNOBODY", "help")


async def _press(chat: Chat, user: str, value: str, key: str) -> None:
    payload = block_actions_payload(
        user_id=user,
        action_id="ferry_promote",
        value=value,
        block_id="ferry_promotion",
        response_url=chat.slack.response_url(key),
    )
    body = interaction_body(payload)
    response = await chat.client.post(
        "/v1/slack/interactions", content=body, headers=signed_headers(SECRET, body)
    )
    assert response.status_code == 200, response.text


async def test_a_promotion_to_prod_shows_its_preview_and_is_requested_once_confirmed(chat):
    refused = await chat.say("UBOB", "promote payments to prod")
    assert refused == (
        ":no_entry: Promoting payments to prod would be refused now:\n"
        "• *promote*: nothing of payments runs in staging; nothing to promote"
    )
    store(chat.config, "master-2")
    chat.config.release("staging", "payments", "master-2")
    chat.config.write("policies/payments.yaml", APPROVALS_POLICY)

    response = await chat.command("UBOB", "promote payments to prod", key="confirm")
    answer = response.json()
    summary = (
        "2 file(s) change (2 added, 0 removed, 0 changed). Decision now: await-approval. "
        "Verdicts: environment passed, halted passed, rejected-artifact passed, policy-invalid "
        "passed, authorization passed, already-running passed, approvals needs-approval."
    )
    assert answer["text"] == f":mag: Promote payments `master-2` from staging to prod? {summary}"
    assert (
        ":raised_hand: *approvals*: prod needs 1 approval(s)" in answer["blocks"][0]["text"]["text"]
    )
    [button] = answer["blocks"][1]["elements"]
    assert button["action_id"] == "ferry_promote"
    assert button["confirm"]["title"]["text"] == "Promote to prod?"
    assert button["confirm"]["text"]["text"] == summary[:300]
    assert chat.tap.of_type("ferry.release.requested.v1") == []  # a preview requests nothing

    await _press(chat, "UBOB", button["value"], "clicked")
    requested = await chat.tap.wait_one("ferry.release.requested.v1")
    assert requested.data["intent"] == "promote"
    assert requested.data["artifactId"] == "master-2"  # exactly what was previewed
    assert requested.data["actor"]["subject"] == "bob"
    posts = await posted(chat.slack, "clicked", "Promotion requested, id `")
    assert release_id_in(texts(posts)) == requested.data["releaseId"]
    assert posts[0]["replace_original"] is True  # the button is gone

    await _press(chat, "UBOB", button["value"], "again")  # a double click
    again = await posted(chat.slack, "again", "already confirmed; nothing was done")
    assert again[0]["replace_original"] is False
    old = json.loads(button["value"]) | {"at": int(time.time()) - 3600}
    await _press(chat, "UBOB", json.dumps(old), "late")
    assert "more than 5 minutes old; nothing was done" in texts(
        await posted(chat.slack, "late", "minutes old")
    )
    await asyncio.sleep(0.3)
    assert len(chat.tap.of_type("ferry.release.requested.v1")) == 1


async def _row(chat: Chat, release_id: str) -> Any:
    carol = chat.service.tokens.by_subject("carol")
    assert carol is not None
    return (await chat.service.views.status(carol, release_id)).release


async def test_at_hh_mm_schedules_in_the_slack_time_zone_else_utc_and_cancel(chat: Chat) -> None:
    copenhagen = ZoneInfo("Europe/Copenhagen")
    chat.slack.add_user("alice@example.com", "UALICE", tz="Europe/Copenhagen")
    before = datetime.now(UTC)
    answer = await chat.say("UALICE", "promote payments staging at 02:00")
    assert answer.startswith(":alarm_clock: Promotion of payments to staging scheduled for ")
    assert "Europe/Copenhagen (your Slack time zone;" in answer
    promoted = release_id_in(answer)
    assert f"`/ferry cancel {promoted}`" in answer
    row = await _row(chat, promoted)
    assert row.status == "scheduled"
    assert row.scheduled_at is not None
    local = row.scheduled_at.astimezone(copenhagen)
    assert (local.hour, local.minute) == (2, 0)
    assert timedelta(0) < row.scheduled_at - before <= timedelta(days=1)
    assert chat.slack.calls_to("users.info")  # the time zone came from Slack

    # frank's Slack profile has no time zone: UTC, and the answer says why
    answer = await chat.say("UFRANK", "release payments master-1 to dev at 2:30")
    assert "UTC (UTC, as Slack shows no time zone for you)" in answer
    released = release_id_in(answer)
    row = await _row(chat, released)
    assert row.scheduled_at is not None
    assert (row.scheduled_at.hour, row.scheduled_at.minute) == (2, 30)

    # a scheduled promotion to a protected environment is not previewed now: it is decided then
    answer = await chat.say("UBOB", "promote payments prod at 02:00")
    assert answer.startswith(":alarm_clock: Promotion of payments to prod scheduled for ")
    assert (await _row(chat, release_id_in(answer))).status == "scheduled"

    # an RFC 3339 time is taken as it is
    tomorrow = (before + timedelta(days=1)).replace(microsecond=0)
    stamp = tomorrow.isoformat().replace("+00:00", "Z")
    answer = await chat.say("UALICE", f"rollback payments in dev at {stamp}")
    assert f"scheduled for {tomorrow:%Y-%m-%d %H:%M} UTC" in answer

    assert "cannot be cancelled" not in (cancel := await chat.say("UALICE", f"cancel {promoted}"))
    assert cancel.startswith(f":no_entry_sign: Release `{promoted}` of payments to staging")
    again = await chat.say("UALICE", f"cancel {promoted} changed my mind")
    assert again == (
        f":warning: release {promoted} is not scheduled, so it cannot be cancelled: "
        "it was cancelled already"
    )
    refused = await chat.say("UALICE", "release payments master-1 to dev at 24:00")
    assert "`24:00` is not a time" in refused
    # nothing of this was published: a scheduled release waits for its time
    assert chat.tap.of_type("ferry.release.requested.v1") == []
