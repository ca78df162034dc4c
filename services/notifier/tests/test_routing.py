"""Routing is pure: which notice goes where, mutes, defaults, and refusing bad files."""

from __future__ import annotations

from datetime import timedelta

import notifier_events as ev
import pytest

from ferry_events import CloudEvent, EventData
from ferry_notifier.domain.flood import next_in_flood
from ferry_notifier.domain.notice import Notice, Outcome
from ferry_notifier.domain.routing import (
    RoutingConfig,
    RoutingFileError,
    default_routing,
    parse_routing,
    route,
)
from ferry_notifier.domain.translation import notice_for

ROUTES = """\
protected_environments: [prod]
alerts_channel: "#{squad}-alerts"
squads: {payments: pay}
approvers:
  - {services: ["pay*"], environments: [prod], people: [Lead@example.com]}
routes:
  - name: deploys
    match: {events: ["release.committed", "rollout.*"], environments: [prod]}
    to: ["slack:#deploys"]
  - name: people
    match: {events: ["ferry.release.*", "rollout.*", "artifact.rejected"]}
    to: [slack-dm:author, "email:releaser"]
  - name: approvers
    match: {events: approval.requested}
    to: [slack-dm:approvers, "slack:#approvals"]
  - name: protected failures
    match: {outcomes: [failure], protected: true}
    to: ["slack:{alerts}"]
  - name: audit
    to: ["webhook:https://audit.example.com/ferry", console]
mutes:
  - {person: dev@example.com, events: ["rollout.started"]}
"""


def _notice(data: EventData) -> Notice:
    return notice_for(CloudEvent.new(data, source="ferry/test"), data).with_squad(
        {"payments": "pay"}
    )


def _keys(notice: Notice, text: str = ROUTES) -> set[str]:
    return {
        d.key for d in route(notice, parse_routing(text.replace("{alerts}", "#{squad}-alerts")))
    }


def test_a_prod_rollout_failure_reaches_channel_people_alerts_and_audit() -> None:
    assert _keys(_notice(ev.rollout_failed())) == {
        "slack:#deploys",
        "slack-dm:dev@example.com",
        "slack:#pay-alerts",
        "webhook:https://audit.example.com/ferry",
        "console",
    }


def test_the_releaser_gets_email_when_the_event_names_them() -> None:
    keys = _keys(_notice(ev.committed()))
    assert {"slack:#deploys", "slack-dm:dev@example.com", "email:rel@example.com"} <= keys
    assert "slack:#pay-alerts" not in keys  # a success is no alert


def test_failures_outside_protected_environments_do_not_alert() -> None:
    assert "slack:#pay-alerts" not in _keys(_notice(ev.rollout_failed(env="dev")))


def test_approvers_hear_about_approval_requests() -> None:
    keys = _keys(_notice(ev.approval_requested()))
    assert {"slack-dm:lead@example.com", "slack:#approvals"} <= keys


def test_a_muted_person_is_dropped_only_for_what_they_muted() -> None:
    assert "slack-dm:dev@example.com" not in _keys(_notice(ev.rollout_started()))
    assert "slack-dm:dev@example.com" in _keys(_notice(ev.rollout_succeeded()))


def test_each_event_type_has_an_outcome() -> None:
    cases = [
        (ev.artifact_rejected(), Outcome.FAILURE),
        (ev.approved(), Outcome.SUCCESS),
        (ev.rejected(), Outcome.FAILURE),
        (ev.committed(), Outcome.SUCCESS),
        (ev.failed(), Outcome.FAILURE),
        (ev.approval_requested(), Outcome.PENDING),
        (ev.approval_granted(), Outcome.SUCCESS),
        (ev.approval_denied(), Outcome.FAILURE),
        (ev.rollout_started(), Outcome.PENDING),
        (ev.rollout_succeeded(), Outcome.SUCCESS),
        (ev.rollout_failed(), Outcome.FAILURE),
        (ev.workload_degraded(), Outcome.FAILURE),
        (ev.policy_changed(), Outcome.INFO),
    ]
    for data, outcome in cases:
        assert _notice(data).outcome is outcome, data.event_type


def test_events_of_one_release_share_a_thread_key() -> None:
    keys = {_notice(d).thread_key for d in (ev.approved(), ev.committed(), ev.rollout_failed())}
    assert keys == {"release:r-1"}


def test_default_routing_tells_author_releaser_and_alerts_the_squad() -> None:
    routing = default_routing(slack=True, email=False)
    keys = {d.key for d in route(_notice(ev.rollout_failed()), routing)}
    assert keys == {"slack-dm:dev@example.com", "slack:#pay-alerts", "console"}
    keys = {d.key for d in route(_notice(ev.committed()), default_routing(slack=False, email=True))}
    assert keys == {"email:dev@example.com", "email:rel@example.com", "console"}
    bare = default_routing(slack=False, email=False)
    assert {d.key for d in route(_notice(ev.committed()), bare)} == {"console"}


def test_a_degraded_workload_is_told_to_its_people_in_its_release_thread() -> None:
    notice = _notice(ev.workload_degraded())
    assert notice.thread_key == "release:r-1"
    assert notice.flood_key != _notice(ev.rollout_failed()).flood_key  # counted on its own
    routing = default_routing(slack=True, email=False)
    keys = {d.key for d in route(notice, routing)}
    assert keys == {"slack-dm:dev@example.com", "slack:#pay-alerts", "console"}
    assert "slack:#pay-alerts" not in {
        d.key for d in route(_notice(ev.workload_degraded(env="dev")), routing)
    }
    from ferry_notifier.adapters.templates import Renderer

    rendered = Renderer().render(notice)
    assert rendered.headline == (
        ":warning: *payments* `master-abc-def` rolled out in *prod* but is degraded now: "
        "CrashLoopBackOff"
    )
    assert "Reason: CrashLoopBackOff" in rendered.slack
    assert "container app keeps crashing" in rendered.slack
    assert "panic: lost the database" in rendered.text
    assert rendered.subject.startswith("[ferry] payments master-abc-def rolled out in prod but")


def test_a_flood_counts_up_within_its_window_and_restarts_after() -> None:
    first = next_in_flood(None, "k", "e1", ev.NOW, timedelta(minutes=10))
    second = next_in_flood(first, "k", "e2", ev.NOW + timedelta(minutes=5), timedelta(minutes=10))
    later = next_in_flood(second, "k", "e3", ev.NOW + timedelta(minutes=30), timedelta(minutes=10))
    assert (second.anchor_event_id, second.count) == ("e1", 2)
    assert (later.anchor_event_id, later.count) == ("e3", 1)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("routes:\n  - to: [console]\n    match: {events: [x]\n", 4, "not valid YAML"),
        (
            "routes:\n  - name: a\n    to: [console]\n  - name: b\n    to: ['slak:#x']\n",
            5,
            "routes[1].to: unknown destination 'slak:#x'",
        ),
        (
            "routes:\n  - name: a\n    match: {outcome: [failure]}\n    to: console\n",
            3,
            "unknown field 'outcome'",
        ),
        (
            "routes:\n  - name: a\n    match:\n      outcomes: [broken]\n    to: console\n",
            4,
            "outcomes",
        ),
        ("routes:\n  - name: a\n", 2, "required field 'to' is missing"),
        ("mutes:\n  - person: not-an-email\n", 2, "is not an email address"),
        ("routes:\n  - to: ['webhook:ftp://x']\n", 2, "needs an http:// or https:// URL"),
        ("- a\n- b\n", 1, "expected a mapping at the top level"),
    ],
)
def test_a_malformed_routing_file_is_refused_with_line_and_reason(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(RoutingFileError) as caught:
        parse_routing(text, source="routes.yaml")
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"routes.yaml line {line}: ")


def test_messages_read_well_and_escape_what_slack_would_misread() -> None:
    from ferry_notifier.adapters.templates import Renderer

    data = ev.rollout_failed().model_copy(update={"logs": ["err: <nil> & more"]})
    rendered = Renderer().render(_notice(data), count=2)
    assert rendered.headline.startswith(":rotating_light: *payments* `master-abc-def` failed")
    assert "(\u00d72)" in rendered.headline
    assert "err: &lt;nil&gt; &amp; more" in rendered.slack
    assert "| err: <nil> & more" in rendered.text
    assert "err: &lt;nil&gt; &amp; more" in rendered.html  # autoescaped HTML
    assert (
        rendered.subject
        == "[ferry] payments master-abc-def failed in prod: CrashLoopBackOff (\u00d72)"
    )


def test_a_file_can_add_its_rules_to_the_built_in_ones() -> None:
    base = parse_routing(
        'include_defaults: true\nalerts_channel: "#oncall"\nprotected_environments: [prod]\n'
        'routes:\n  - match: {services: [payments]}\n    to: ["slack:#payments"]\n'
    )
    routing = default_routing(slack=True, email=False, base=base)
    keys = {d.key for d in route(_notice(ev.rollout_failed()), routing)}
    assert keys == {"slack-dm:dev@example.com", "slack:#oncall", "console", "slack:#payments"}


def test_a_halt_and_its_resume_go_where_failures_go_for_every_squad() -> None:
    base = RoutingConfig.model_validate(
        {"protected_environments": ["prod"], "squads": {"payments": "pay", "ledger": "books"}}
    )
    routing = default_routing(slack=True, email=False, base=base)
    halt = _notice(ev.halt_changed())
    assert halt.outcome is Outcome.FAILURE
    expected = {"slack:#books-alerts", "slack:#pay-alerts", "console"}
    assert {d.key for d in route(halt, routing)} == expected
    resume = _notice(ev.halt_changed(halted=False, request_id="h-2"))
    assert {d.key for d in route(resume, routing)} == expected
    everything = _notice(ev.halt_changed("*"))
    assert {d.key for d in route(everything, routing)} == expected
    # an unprotected environment's halt is not an alert, as its failures are not
    assert {d.key for d in route(_notice(ev.halt_changed("dev")), routing)} == {"console"}
