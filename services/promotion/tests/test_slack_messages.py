"""What chat-ops says: outcomes per status, the decided approval message, tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferry_promotion.entrypoints.slack.messages import (
    already_decided,
    decided_message,
    history_table,
    outcome,
    status_table,
)

RELEASE = {
    "releaseId": "r-1",
    "service": "payments",
    "environment": "prod",
    "artifactId": "master-1",
    "commitSha": "0123456789abcdef",
    "approvals": {"required": 2, "granted": [], "expiresAt": "2026-11-29T10:00:00Z"},
    "violations": [{"policy": "freeze-window", "message": "prod is frozen until Monday"}],
    "timeline": [{"status": "failed", "detail": "push rejected: branch protected"}],
}


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("awaiting-approval", "waits for 2 approval(s) until 2026-11-29 10:00 UTC"),
        ("approved", "approved: payments `master-1` to prod is being committed"),
        ("rejected", "was rejected:\n• *freeze-window*: prod is frozen until Monday"),
        ("committed", "committed: payments `master-1` to prod (commit `0123456789`)"),
        ("failed", "failed: push rejected: branch protected"),
        ("rolled-out", "rolled out"),
    ],
)
def test_each_outcome_names_the_release_and_what_happened(status, says):
    message = outcome({**RELEASE, "status": status})
    assert message["response_type"] == "ephemeral"
    assert message["replace_original"] is False
    assert "Release `r-1`" in message["text"]
    assert says in message["text"]


ORIGINAL = {
    "text": "payments to prod needs approval",
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "needs approval"}},
        {"type": "actions", "block_id": "ferry_approval:r-1", "elements": []},
    ],
}
AT = datetime(2026, 11, 29, 8, 40, tzinfo=UTC)


def test_the_decision_replaces_the_buttons_with_who_and_when():
    message = decided_message(
        ORIGINAL, approved=True, by="<@UDAVE>", at=AT, release={"status": "approved"}
    )
    assert message["replace_original"] is True
    assert [b["type"] for b in message["blocks"]] == ["section", "context"]
    assert message["blocks"][-1]["elements"][0]["text"] == (
        ":white_check_mark: Approved by <@UDAVE> at 2026-11-29 08:40 UTC"
    )
    rejected = decided_message(ORIGINAL, approved=False, by="bob", at=AT, release={})
    assert "Rejected by bob" in rejected["text"]


def test_the_buttons_stay_while_more_approvals_are_needed():
    release = {
        "status": "awaiting-approval",
        "approvals": {"required": 2, "granted": [{"subject": "dave"}]},
    }
    message = decided_message(ORIGINAL, approved=True, by="dave", at=AT, release=release)
    assert [b["type"] for b in message["blocks"]] == ["section", "actions", "context"]
    assert "1 more approval(s) needed" in message["text"]


def test_a_late_click_is_told_nothing_was_done():
    late = already_decided({"releaseId": "r-1", "status": "committed"}, "it is committed")
    assert late["text"] == "Release `r-1` is already committed (it is committed); nothing was done."
    twice = already_decided(
        {"releaseId": "r-1", "status": "awaiting-approval"}, "dave already voted"
    )
    assert twice["text"] == "Release `r-1`: dave already voted; nothing was done."


def test_tables_keep_the_environment_order_and_say_when_empty():
    view = {
        "service": "payments",
        "environments": {
            "dev": {"artifactId": "master-2", "rollout": "succeeded"},
            "prod": {"artifactId": "master-1", "rollout": "failed", "rolloutReason": "CrashLoop"},
        },
    }
    rows = status_table(view)["text"].split("\n")[3:5]
    assert rows[0].split()[:2] == ["dev", "master-2"]
    assert rows[1].split()[:4] == ["prod", "master-1", "-", "failed"]
    assert "(CrashLoop)" in rows[1]
    assert status_table({"service": "x", "environments": {}})["text"] == "*x* runs nowhere yet."
    empty = history_table({"service": "x", "history": []}, "prod")
    assert empty["text"] == "*x* has no releases in prod yet."
