"""The notifier against the real broker, a loopback Slack API, a real SMTP server and a
webhook receiver that checks signatures."""

from __future__ import annotations

import asyncio
import contextlib
import json

import notifier_events as ev
import pytest
from conftest import NotifierFactory

from ferry_events import CloudEvent, EventData
from ferry_runtime import CODE_HEADER, REASON_HEADER
from ferry_testing import BrokerNamespace
from ferry_testing.database import postgres_database
from ferry_testing.mail import MailServer
from ferry_testing.slack_api import Message, SlackApi, SlackCall
from ferry_testing.webhook import WebhookReceiver

pytestmark = pytest.mark.amqp


def _posts(slack: SlackApi, channel: str) -> list[SlackCall]:
    return [c for c in slack.calls_to("chat.postMessage") if c.params["channel"] == channel]


def _dms(slack: SlackApi, channel: str) -> list[Message]:
    return [m for m in slack.messages.values() if m.channel == channel]


async def _until(check: object, timeout: float = 15.0) -> None:
    assert callable(check)
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_each_event_type_reaches_its_routes(
    notifier: NotifierFactory,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    smtp: MailServer,
    webhooks: WebhookReceiver,
    tmp_path,
) -> None:
    users = tmp_path / "slack-users.yaml"
    # Slack does not know lead@corp.example; the mapping file says who that is in Slack.
    users.write_text("lead@corp.example: lead@example.com\n")
    routes = f"""
approvers:
  - {{services: [payments], environments: [prod], people: [lead@corp.example]}}
routes:
  - match: {{events: ["release.*", "rollout.*", "approval.*"], environments: [prod]}}
    to: ["slack:#deploys"]
  - match: {{events: ["release.*", "rollout.*", "artifact.rejected"]}}
    to: [slack-dm:author, email:releaser]
  - match: {{events: [approval.requested]}}
    to: [slack-dm:approvers]
  - match: {{events: [policy.changed, artifact.rejected]}}
    to: ["webhook:{webhooks.url("/hook")}"]
"""
    lifecycle: list[EventData] = [
        ev.approval_requested(),
        ev.approval_granted(),
        ev.approved(),
        ev.committed(),
        ev.rollout_started(),
        ev.rollout_succeeded(),
    ]
    async with notifier(routes, slack_users_file=users, concurrency=1):
        await broker_ns.publish(ev.stored(), source="ferry/git-writer")
        for data in lifecycle:
            await broker_ns.publish(data)
        rejected = await broker_ns.publish(ev.artifact_rejected())
        policy = await broker_ns.publish(ev.policy_changed())
        await webhooks.wait_for(2)
        await smtp.wait_for(4)
        await _until(lambda: len(_posts(slack_api, "#deploys")) == len(lifecycle))
        await _until(lambda: len(_dms(slack_api, "D0DEV")) == 5)

    # One release, one thread in #deploys: the first message, then replies under it,
    # and the first message updated to the latest state.
    posts = _posts(slack_api, "#deploys")
    first = posts[0]
    assert "thread_ts" not in first.params
    [parent] = [
        m for m in slack_api.messages.values() if m.thread_ts is None and m.channel == "#deploys"
    ]
    assert all(p.params["thread_ts"] == parent.ts for p in posts[1:])
    assert "is rolled out in *prod*" in parent.text
    assert len(slack_api.thread("#deploys", parent.ts)) == len(lifecycle) - 1
    # The approval request carried the buttons chat-ops answers.
    actions = [b for b in first.params["blocks"] if b["type"] == "actions"]
    assert actions[0]["block_id"] == "ferry_approval:r-1"
    assert [(e["action_id"], e["value"]) for e in actions[0]["elements"]] == [
        ("ferry_approve", "r-1"),
        ("ferry_reject", "r-1"),
    ]
    # Links and the author's change come from the artifact.stored event.
    assert "<https://ci.example.com/job/42|CI>" in first.params["text"]
    assert "master@0017d995e3 Fix rounding" in first.params["text"]
    assert "|dashboard>" not in first.params["text"]  # FERRY_DASHBOARD_URL is not set

    # The author is found by email; the approver through the mapping file.
    lookups = [c.params["email"] for c in slack_api.calls_to("users.lookupByEmail", ok_only=False)]
    assert "dev@example.com" in lookups
    assert "lead@example.com" in lookups
    assert len(_posts(slack_api, "U0LEAD")) == 1
    # The author hears of the release in one DM thread (4 events) and of the rejected artifact.
    dms = _dms(slack_api, "D0DEV")
    assert len(dms) == 5
    assert len([m for m in dms if m.thread_ts is None]) == 2

    # The releaser gets an email per release event, with a text and an HTML part.
    mails = smtp.to("rel@example.com")
    assert len(mails) == 4
    committed_mail = next(m for m in mails if "committed" in m.subject)
    assert "payments" in committed_mail.subject
    assert "Config commit: 1234567890ab" in committed_mail.part("plain")
    assert '<th align="left">Environment</th><td>prod</td>' in committed_mail.part("html")

    # Webhooks get the CloudEvent, signed.
    received = webhooks.at("/hook")
    assert all(r.verified for r in received)
    assert {r.event["id"] for r in received} == {rejected.id, policy.id}
    assert {r.headers["X-Ferry-Event-Type"] for r in received} == {
        "ferry.artifact.rejected.v1",
        "ferry.policy.changed.v1",
    }


async def test_messages_link_to_the_dashboard_when_it_is_set(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi, smtp: MailServer
) -> None:
    routes = """
routes:
  - match: {events: ["release.*", "artifact.rejected", "halt.changed"]}
    to: ["slack:#deploys", "email:ops@example.com"]
"""
    async with notifier(routes, dashboard_url="https://ferry.example.com/", concurrency=1):
        await broker_ns.publish(ev.committed("rel:7.a"))
        await broker_ns.publish(ev.artifact_rejected())
        await broker_ns.publish(ev.halt_changed())
        await _until(lambda: len(_posts(slack_api, "#deploys")) == 3)
        await smtp.wait_for(3)
    release_page = "https://ferry.example.com/releases/rel%3A7.a"
    service_page = "https://ferry.example.com/services/payments"
    committed, rejected, halted = (p.params["text"] for p in _posts(slack_api, "#deploys"))
    assert f"<{release_page}|dashboard>" in committed
    # an event of no release links to its service's timeline; one of neither links nowhere
    assert f"<{service_page}|dashboard>" in rejected
    assert "ferry.example.com" not in halted
    mails = {m.part("plain").splitlines()[0]: m for m in smtp.to("ops@example.com")}
    assert len(mails) == 3
    [mail] = [m for line, m in mails.items() if "committed" in line]
    assert f"dashboard: {release_page}" in mail.part("plain")
    assert f'<a href="{release_page}">dashboard</a>' in mail.part("html")
    [mail] = [m for line, m in mails.items() if "rejected" in line]
    assert f"dashboard: {service_page}" in mail.part("plain")
    [mail] = [m for line, m in mails.items() if "halt" in line.lower()]
    assert "ferry.example.com" not in mail.part("plain")


async def test_a_redelivered_event_is_posted_once(
    notifier: NotifierFactory,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    webhooks: WebhookReceiver,
) -> None:
    routes = f"""
routes:
  - to: ["slack:#deploys", "webhook:{webhooks.url()}"]
"""
    event = CloudEvent.new(ev.approved(), source="ferry/promotion")
    async with notifier(routes, concurrency=1):
        await broker_ns.publish(event)
        await broker_ns.publish(event)  # the same event id again, as after a lost ack
        sentinel = await broker_ns.publish(ev.approved(release_id="r-2"))
        await _until(lambda: any(r.event["id"] == sentinel.id for r in webhooks.received))
    assert len(_posts(slack_api, "#deploys")) == 2
    assert [r.event["id"] for r in webhooks.received].count(event.id) == 1


async def test_slack_rate_limit_waits_its_retry_after(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi
) -> None:
    slack_api.ratelimit("chat.postMessage", retry_after=1)
    async with notifier('routes:\n  - to: ["slack:#deploys"]\n'):
        await broker_ns.publish(ev.approved())
        await slack_api.wait_for("chat.postMessage")
    limited, posted = slack_api.calls_to("chat.postMessage", ok_only=False)
    assert limited.status == 429
    assert posted.status == 200
    assert posted.at - limited.at >= 0.95  # waited at least what Slack asked


async def test_a_dead_destination_does_not_hold_up_the_others(
    notifier: NotifierFactory,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    webhooks: WebhookReceiver,
) -> None:
    webhooks.status_for["/dead"] = 503
    dead, ok = webhooks.url("/dead"), webhooks.url("/ok")
    routes = f'routes:\n  - to: ["webhook:{dead}", "webhook:{ok}", "slack:#deploys"]\n'
    async with notifier(routes, delivery_attempts=4, delivery_backoff=0.3):
        sent = await broker_ns.publish(ev.committed())
        await webhooks.wait_for(1, path="/ok")
        await slack_api.wait_for("chat.postMessage")
        # The others are delivered while the dead one is still being retried.
        assert webhooks.attempts["/dead"] < 4
        [dlq] = await broker_ns.dead_letters("notifier", timeout=15)
    assert webhooks.attempts["/dead"] == 4
    headers = dlq.headers or {}
    assert headers["x-ferry-destination"] == f"webhook:{dead}"
    assert headers[CODE_HEADER] == "delivery-failed"
    assert "HTTP 503" in str(headers[REASON_HEADER])
    assert json.loads(dlq.body)["id"] == sent.id

    # Replaying the dead letter once the endpoint is back sends to that destination only.
    del webhooks.status_for["/dead"]
    async with notifier(routes):
        await broker_ns.publish_raw(
            dlq.body, routing_key=sent.type, headers={"x-ferry-destination": f"webhook:{dead}"}
        )
        await webhooks.wait_for(1, path="/dead")
    assert len(webhooks.at("/ok")) == 1
    assert len(slack_api.calls_to("chat.postMessage")) == 1


async def test_a_crash_loop_is_one_message_with_a_count(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi, smtp: MailServer
) -> None:
    routes = """
routes:
  - match: {events: [rollout.failed]}
    to: ["slack:#alerts", "email:author"]
"""
    async with notifier(routes, concurrency=1):
        for restarts in (3, 4, 5):
            await broker_ns.publish(ev.rollout_failed(restarts=restarts))
        await slack_api.wait_for("chat.update", 2)
        await smtp.wait_for(1)
    [post] = slack_api.calls_to("chat.postMessage")
    updates = slack_api.calls_to("chat.update")
    assert {u.params["ts"] for u in updates} == {slack_api.messages[("#alerts", _ts(slack_api))].ts}
    assert "(\u00d73)" in updates[-1].params["text"]
    assert "Occurrences: 3" in updates[-1].params["text"]
    assert "panic: no DATABASE_URL" in post.params["text"]
    assert len(smtp.messages) == 1


def _ts(slack: SlackApi) -> str:
    [message] = [m for m in slack.messages.values() if m.channel == "#alerts"]
    return message.ts


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_release_thread_survives_a_restart(
    database: str, notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        settings = {}
        if database == "postgres":
            settings["database_url"] = await stack.enter_async_context(postgres_database())
        await _restart_keeps_thread(notifier, broker_ns, slack_api, settings)


async def _restart_keeps_thread(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi, settings: dict
) -> None:
    routes = 'routes:\n  - to: ["slack:#deploys", slack-dm:author]\n'
    async with notifier(routes, **settings):
        await broker_ns.publish(ev.approved())
        await slack_api.wait_for("chat.postMessage", 2)
    first = {c.params["channel"]: c for c in slack_api.calls_to("chat.postMessage")}
    async with notifier(routes, **settings):
        await broker_ns.publish(ev.committed())
        await slack_api.wait_for("chat.postMessage", 4)
        await slack_api.wait_for("chat.update", 2)
    replies = slack_api.calls_to("chat.postMessage")[2:]
    parents = {m.channel: m for m in slack_api.messages.values() if m.thread_ts is None}
    assert {r.params["channel"] for r in replies} == {"#deploys", "D0DEV"}
    for reply in replies:
        assert reply.params["thread_ts"] == parents[reply.params["channel"]].ts
    assert "is committed to *prod*" in parents["#deploys"].text
    assert first["#deploys"].params.get("thread_ts") is None


async def test_a_person_slack_does_not_know_is_skipped_not_retried(
    notifier: NotifierFactory,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    webhooks: WebhookReceiver,
) -> None:
    routes = f'routes:\n  - to: [slack-dm:author, "webhook:{webhooks.url()}"]\n'
    data = ev.artifact_rejected().model_copy(update={"author_email": "new@example.com"})
    async with notifier(routes):
        await broker_ns.publish(data)
        await webhooks.wait_for(1)
        await slack_api.wait_for("users.lookupByEmail", ok_only=False)
    [lookup] = slack_api.calls_to("users.lookupByEmail", ok_only=False)
    assert lookup.params["email"] == "new@example.com"
    assert slack_api.calls_to("chat.postMessage") == []
    assert await broker_ns.dead_letters("notifier", timeout=0.5) == []


async def test_built_in_routing_tells_people_and_alerts_the_squad_with_reasons(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi, smtp: MailServer
) -> None:
    failures = [
        (ev.rejected("r-5"), "prod is frozen until Monday"),
        (ev.failed("r-6"), "the remote refused the push"),
        (ev.approval_denied("r-7"), "not during the sale"),
    ]
    async with notifier(None, concurrency=1):  # no routing file: the built-in routing
        await broker_ns.publish(ev.stored(), source="ferry/git-writer")
        for data, _ in failures:
            await broker_ns.publish(data)
        await _until(lambda: len(_posts(slack_api, "#pay-alerts")) == len(failures))
        # rejected and failed name the author and the releaser; the denial names nobody,
        # but the artifact it is about remembers its author
        await _until(lambda: len(slack_api.calls_to("chat.postMessage")) == 3 + 2 + 2 + 1)
    alerts = [p.params["text"] for p in _posts(slack_api, "#pay-alerts")]
    for (_, reason), text in zip(failures, alerts, strict=True):
        assert reason in text
    assert {c.params["channel"] for c in slack_api.calls_to("chat.postMessage")} == {
        "#pay-alerts",
        "U0DEV",
        "U0REL",
    }
    assert smtp.messages == []  # Slack is configured, so people hear by DM, not email


async def test_a_template_that_cannot_render_dead_letters_only_its_destination(
    notifier: NotifierFactory,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    webhooks: WebhookReceiver,
    tmp_path,
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "release.committed.slack.j2").write_text("{{ n.no_such_field }}")
    routes = f'routes:\n  - to: ["slack:#deploys", "webhook:{webhooks.url()}"]\n'
    async with notifier(routes, templates_dir=templates):
        sent = await broker_ns.publish(ev.committed())
        [dead] = await broker_ns.dead_letters("notifier")
        await webhooks.wait_for(1)
    headers = dead.headers or {}
    assert headers["x-ferry-destination"] == "slack:#deploys"
    assert "rendering the release.committed message failed" in str(headers[REASON_HEADER])
    assert webhooks.at("/hook")[0].event["id"] == sent.id
    assert slack_api.calls_to("chat.postMessage") == []


async def test_a_halt_and_a_resume_are_announced_in_the_alert_channels(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi
) -> None:
    routes = (
        "include_defaults: true\nprotected_environments: [prod]\n"
        "squads: {payments: pay, ledger: books}\n"
    )
    async with notifier(routes, concurrency=1):
        await broker_ns.publish(ev.halt_changed(), source="ferry/git-writer")
        await broker_ns.publish(
            ev.halt_changed(halted=False, request_id="h-2"), source="ferry/git-writer"
        )
        await _until(lambda: len(_posts(slack_api, "#pay-alerts")) == 2)
        await _until(lambda: len(_posts(slack_api, "#books-alerts")) == 2)
    halt, resume = (c.params["text"] for c in _posts(slack_api, "#pay-alerts"))
    assert "*prod* is halted by rel@example.com" in halt
    assert "incident 4711" in halt
    assert "*prod* is resumed" in resume
