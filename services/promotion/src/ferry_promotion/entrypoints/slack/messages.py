"""What Ferry says in Slack: plain functions from the API's JSON shapes to Slack messages.

Pure: the inputs are the documented HTTP API bodies (``docs/api.md``): a
release, a service's environments, a history. The outputs are Slack message
payloads (``text`` plus, where it helps, ``blocks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

__all__ = [
    "TERMINAL_STATUSES",
    "already_decided",
    "cancelled_text",
    "decided_message",
    "decided_text",
    "ephemeral",
    "history_table",
    "outcome",
    "preview_summary",
    "promotion_confirmation",
    "release_acknowledged",
    "scheduled_acknowledged",
    "status_table",
]

#: After these a release's outcome does not change any more (for chat purposes).
TERMINAL_STATUSES: Final = frozenset({"rejected", "committed", "rolled-out", "failed"})

_ICONS: Final = {
    "requested": ":hourglass_flowing_sand:",
    "awaiting-approval": ":raised_hand:",
    "approved": ":white_check_mark:",
    "rejected": ":no_entry:",
    "committed": ":package:",
    "rolled-out": ":rocket:",
    "failed": ":x:",
}


def ephemeral(text: str, **extra: Any) -> dict[str, Any]:
    """A message only the person who asked sees."""
    return {"response_type": "ephemeral", "text": text, **extra}


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime(
                "%Y-%m-%d %H:%M UTC"
            )
        except ValueError:
            return value
    return ""


def _who(actor: Any) -> str:
    if isinstance(actor, Mapping):
        return str(actor.get("email") or actor.get("name") or actor.get("subject") or "someone")
    return str(actor or "someone")


def _what(release: Mapping[str, Any]) -> str:
    artifact = release.get("artifactId")
    target = f" `{artifact}`" if artifact else ""
    return f"{release.get('service', '?')}{target} to {release.get('environment', '?')}"


def release_acknowledged(release: Mapping[str, Any], intent: str) -> dict[str, Any]:
    """The immediate, ephemeral answer to release, promote and rollback."""
    rid = release.get("releaseId", "?")
    status = release.get("status", "requested")
    return ephemeral(
        f"{_ICONS.get(status, '')} {intent.capitalize()} requested, id `{rid}` "
        f"({release.get('service', '?')} to {release.get('environment', '?')}). "
        "I will post the outcome here; the release thread follows it too."
    )


def scheduled_acknowledged(release: Mapping[str, Any], intent: str, when: str) -> dict[str, Any]:
    """The immediate, ephemeral answer to a release, promote or rollback ``at`` a time."""
    rid = release.get("releaseId", "?")
    return ephemeral(
        f":alarm_clock: {intent.capitalize()} of {release.get('service', '?')} to "
        f"{release.get('environment', '?')} scheduled for {when}, id `{rid}`. Its policies "
        f"are checked then. Cancel it before then with `/ferry cancel {rid}`."
    )


def cancelled_text(release: Mapping[str, Any]) -> str:
    """The answer to ``/ferry cancel``."""
    return (
        f":no_entry_sign: Release `{release.get('releaseId', '?')}` of {_what(release)} is "
        "cancelled; it will not be released."
    )


def outcome(release: Mapping[str, Any]) -> dict[str, Any]:
    """A follow-up on a release's progress, posted to the command's response_url."""
    rid = release.get("releaseId", "?")
    status = str(release.get("status", ""))
    icon = _ICONS.get(status, "")
    head = f"{icon} Release `{rid}`"
    if status == "awaiting-approval":
        approvals = release.get("approvals") or {}
        required = approvals.get("required", 1)
        expires = _when(approvals.get("expiresAt"))
        until = f" until {expires}" if expires else ""
        text = (
            f"{head} of {_what(release)} waits for {required} approval(s){until}. "
            f"Someone other than the requester can approve it with `/ferry approve {rid}` "
            "or the button in the release thread."
        )
    elif status == "approved":
        text = f"{head} approved: {_what(release)} is being committed."
    elif status == "rejected":
        violations = release.get("violations") or []
        reasons = (
            "\n".join(f"• *{v.get('policy', '?')}*: {v.get('message', '')}" for v in violations)
            or "• no reason given"
        )
        text = f"{head} of {_what(release)} was rejected:\n{reasons}"
    elif status == "committed":
        sha = str(release.get("commitSha") or "")[:10]
        commit = f" (commit `{sha}`)" if sha else ""
        text = f"{head} committed: {_what(release)}{commit}. The cluster picks it up next."
    elif status == "rolled-out":
        text = f"{head} rolled out: {_what(release)} runs."
    elif status == "failed":
        timeline = release.get("timeline") or []
        detail = next(
            (str(t.get("detail")) for t in reversed(timeline) if t.get("detail")), "no detail"
        )
        text = f"{head} of {_what(release)} failed: {detail}"
    else:
        text = f"{head} of {_what(release)} is {status or 'unknown'}."
    return ephemeral(text, replace_original=False)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "```\n" + "\n".join(lines) + "\n```"


def status_table(view: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/services/{service}`` as a table: one row per environment, in its order."""
    service = view.get("service", "?")
    envs: Mapping[str, Any] = view.get("environments") or {}
    names = list(envs)
    if not names:
        return ephemeral(f"*{service}* runs nowhere yet.")
    rows = []
    for env in names:
        state = envs[env] or {}
        rollout = str(state.get("rollout") or "unknown")
        if state.get("rolloutReason"):
            rollout += f" ({state['rolloutReason']})"
        rows.append(
            [
                env,
                str(state.get("artifactId") or "-"),
                str(state.get("commitSha") or "-")[:10],
                rollout,
                str(state.get("releasedBy") or "-"),
                _when(state.get("releasedAt")) or "-",
            ]
        )
    header = ["environment", "artifact", "commit", "rollout", "released by", "at"]
    return ephemeral(f"*{service}*\n{_table(header, rows)}")


def history_table(history: Mapping[str, Any], environment: str | None = None) -> dict[str, Any]:
    """``GET /v1/services/{service}/history`` as a table, newest first."""
    service = history.get("service", "?")
    entries: Sequence[Mapping[str, Any]] = history.get("history") or []
    where = f" in {environment}" if environment else ""
    if not entries:
        return ephemeral(f"*{service}* has no releases{where} yet.")
    rows = [
        [
            _when(e.get("at")) or "-",
            str(e.get("environment") or "-"),
            str(e.get("intent") or "-"),
            str(e.get("artifactId") or "-"),
            str(e.get("actor") or "-"),
            str(e.get("commitSha") or "-")[:10],
        ]
        for e in entries
    ]
    header = ["at", "environment", "intent", "artifact", "by", "commit"]
    return ephemeral(f"*{service}* history{where}\n{_table(header, rows)}")


def decided_message(
    original: Mapping[str, Any] | None,
    *,
    approved: bool,
    by: str,
    at: datetime,
    release: Mapping[str, Any],
    note: str = "",
) -> dict[str, Any]:
    """The approval request with its buttons replaced by who decided and when."""
    verb = "Approved" if approved else "Rejected"
    icon = ":white_check_mark:" if approved else ":no_entry:"
    remaining = ""
    status = release.get("status")
    if approved and status == "awaiting-approval":
        approvals = release.get("approvals") or {}
        left = int(approvals.get("required", 1)) - len(approvals.get("granted") or [])
        if left > 0:
            remaining = f"; {left} more approval(s) needed"
    line = f"{icon} {verb} by {by} at {_when(at)}{remaining}"
    if note:
        line += f": {note}"
    original = original or {}
    kept = [b for b in original.get("blocks") or [] if b.get("type") != "actions"]
    if remaining:
        # more approvals needed: keep the buttons for the others
        kept = list(original.get("blocks") or [])
    blocks = [*kept, {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]
    text = str(original.get("text") or f"Release `{release.get('releaseId', '?')}`")
    return {"replace_original": True, "text": f"{text}\n{line}", "blocks": blocks}


def already_decided(release: Mapping[str, Any], detail: str = "") -> dict[str, Any]:
    """Said to whoever clicks after the decision (or the expiry, or twice): nothing was done."""
    rid = release.get("releaseId", "?")
    status = release.get("status", "decided")
    if status == "awaiting-approval":
        text = f"Release `{rid}`: {detail or 'your decision is already recorded'}"
    else:
        text = f"Release `{rid}` is already {status}" + (f" ({detail})" if detail else "")
    return ephemeral(f"{text}; nothing was done.", replace_original=False)


def decided_text(release: Mapping[str, Any], *, approve: bool) -> str:
    """What the person who approved or rejected ``release`` is told."""
    rid = release.get("releaseId", "?")
    if not approve:
        return f":no_entry: You rejected release `{rid}`."
    if release.get("status") == "awaiting-approval":
        approvals = release.get("approvals") or {}
        left = int(approvals.get("required", 1)) - len(approvals.get("granted") or [])
        if left > 0:
            return f":white_check_mark: You approved release `{rid}`; {left} more needed."
        return f":white_check_mark: You approved release `{rid}`; it goes ahead."
    return f":white_check_mark: You approved release `{rid}`; it is {release.get('status')}."


def halt_text(answer: Mapping[str, Any], environment: str, *, halted: bool) -> str:
    """What the person who halted or resumed ``environment`` is told."""
    where = "every environment" if environment == "*" else f"`{environment}`"
    request = answer.get("requestId", "?")
    if halted:
        return (
            f":octagonal_sign: Halt of {where} requested (`{request}`): once git-writer commits "
            "it to halts.yaml, every request there but a rollback is refused."
        )
    return f":arrow_forward: Resume of {where} requested (`{request}`)."


_VERDICT_ICONS: Final = {
    "passed": ":white_check_mark:",
    "failed": ":no_entry:",
    "waiting": ":hourglass_flowing_sand:",
    "needs-approval": ":raised_hand:",
}


def preview_summary(preview: Mapping[str, Any]) -> str:
    """One paragraph of a preview: the files it changes and each policy's verdict now."""
    summary = preview.get("summary") or {}
    added, removed = int(summary.get("added", 0)), int(summary.get("removed", 0))
    changed = int(summary.get("changed", 0))
    verdicts = ", ".join(
        f"{c.get('policy', '?')} {c.get('verdict', '?')}" for c in preview.get("checks") or []
    )
    return (
        f"{added + removed + changed} file(s) change ({added} added, {removed} removed, "
        f"{changed} changed). Decision now: {preview.get('outcome', '?')}"
        + (f". Verdicts: {verdicts}." if verdicts else ".")
    )


def promotion_confirmation(
    preview: Mapping[str, Any], value: str, action_id: str
) -> dict[str, Any]:
    """The answer to ``/ferry promote`` to a protected environment: what the promotion would
    change and each policy's verdict, with a Promote button whose confirmation dialog shows the
    summary (``value`` is what the click sends back). A promotion that would be refused, or
    that git-writer would fail, gets no button."""
    service, env = preview.get("service", "?"), preview.get("environment", "?")
    artifact = preview.get("artifactId")
    source = preview.get("promotedFrom")
    what = f"{service} `{artifact}`" + (f" from {source}" if source else "") + f" to {env}"
    lines = [
        f"• {_VERDICT_ICONS.get(str(c.get('verdict')), '')} *{c.get('policy', '?')}*: "
        f"{c.get('message', '')}"
        for c in preview.get("checks") or []
    ]
    failure = preview.get("commitFailure")
    refused = preview.get("outcome") == "reject" or not artifact or bool(failure)
    if refused:
        reasons = [
            f"• *{v.get('policy', '?')}*: {v.get('message', '')}"
            for v in preview.get("violations") or []
        ]
        if isinstance(failure, Mapping):
            reasons.append(f"• *{failure.get('reason', '?')}*: {failure.get('message', '')}")
        shown = what if artifact else f"{service} to {env}"
        head = f":no_entry: Promoting {shown} would be refused now:"
        return ephemeral("\n".join([head, *reasons]))
    summary = preview_summary(preview)
    text = f":mag: Promote {what}? {summary}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join([text, *lines])[:2900]}},
        {
            "type": "actions",
            "block_id": "ferry_promotion",
            "elements": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "text": {"type": "plain_text", "text": "Promote"},
                    "style": "primary",
                    "value": value,
                    "confirm": {
                        "title": {"type": "plain_text", "text": f"Promote to {env}?"[:100]},
                        "text": {"type": "mrkdwn", "text": summary[:300]},
                        "confirm": {"type": "plain_text", "text": "Promote"},
                        "deny": {"type": "plain_text", "text": "Cancel"},
                    },
                }
            ],
        },
    ]
    return ephemeral(text, blocks=blocks)
