"""Rich renderings of the API's documents (docs/api.md). Imported only in table mode."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

Json = dict[str, Any]

STATUS_STYLE = {
    "scheduled": "magenta",
    "cancelled": "dim",
    "requested": "cyan",
    "awaiting-approval": "yellow",
    "approved": "blue",
    "committed": "blue",
    "rolled-out": "green",
    "rejected": "red",
    "failed": "red",
}
ROLLOUT_STYLE = {"succeeded": "green", "started": "yellow", "failed": "red", "unknown": "dim"}


def _s(value: object) -> str:
    return "" if value is None else str(value)


def short(value: object, length: int = 10) -> str:
    text = _s(value)
    return text[:length] if len(text) > length else text


def styled_status(status: object) -> Text:
    text = _s(status)
    return Text(text, style=STATUS_STYLE.get(text, ""))


def _actor(actor: object) -> str:
    if isinstance(actor, dict):
        return _s(actor.get("email") or actor.get("subject"))
    return _s(actor)


def release_view(release: Json) -> RenderableType:
    """A release: what, where, who, status, violations, approvals and its timeline."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("release", escape(_s(release.get("releaseId"))))
    head.add_row(
        "what",
        escape(
            f"{_s(release.get('intent'))} {_s(release.get('service'))} "
            f"{_s(release.get('artifactId')) or '(artifact not decided yet)'} "
            f"→ {_s(release.get('environment'))}"
        ),
    )
    if release.get("promotedFrom"):
        head.add_row("from", escape(_s(release.get("promotedFrom"))))
    if release.get("scheduledAt"):
        head.add_row("scheduled", escape(_s(release.get("scheduledAt"))))
    head.add_row("status", styled_status(release.get("status")))
    head.add_row("by", escape(_actor(release.get("actor"))))
    if release.get("reason"):
        head.add_row("reason", escape(_s(release.get("reason"))))
    if release.get("commitSha"):
        head.add_row("commit", escape(_s(release.get("commitSha"))))
    head.add_row("requested", escape(_s(release.get("requestedAt"))))
    parts: list[RenderableType] = [head]
    violations = release.get("violations") or []
    if violations:
        parts.append(Text("policy violations:", style="bold red"))
        for v in violations:
            parts.append(Text(f"  - {_s(v.get('policy'))}: {_s(v.get('message'))}"))
    approvals = release.get("approvals")
    if isinstance(approvals, dict) and approvals.get("required"):
        granted = approvals.get("granted") or []
        who = ", ".join(_actor(g) for g in granted) or "none yet"
        parts.append(
            Text(
                f"approvals: {len(granted)}/{approvals.get('required')} ({who})"
                + (f", expires {approvals['expiresAt']}" if approvals.get("expiresAt") else "")
            )
        )
    if isinstance(approvals, dict) and approvals.get("rejectedBy"):
        parts.append(Text(f"rejected by {_actor(approvals['rejectedBy'])}", style="red"))
    parts.append(timeline_table(release.get("timeline") or []))
    return Group(*parts)


def timeline_table(timeline: list[Json]) -> Table:
    table = Table(title="timeline", title_justify="left", expand=False)
    table.add_column("at")
    table.add_column("status")
    table.add_column("event")
    table.add_column("detail", overflow="fold")
    for entry in timeline:
        table.add_row(
            escape(_s(entry.get("at"))),
            styled_status(entry.get("status")),
            escape(_s(entry.get("eventType"))),
            escape(_s(entry.get("detail"))),
        )
    return table


def _cell(state: Json | None) -> Text:
    if not state or not state.get("artifactId"):
        return Text("-", style="dim")
    rollout = _s(state.get("rollout") or "unknown")
    text = Text(_s(state.get("artifactId")))
    text.append("\n")
    text.append(rollout, style=ROLLOUT_STYLE.get(rollout, ""))
    if state.get("rolloutReason"):
        text.append(f": {state['rolloutReason']}", style="dim")
    if state.get("rejected"):
        text.append("\n")
        text.append(_marked(state["rejected"]), style="bold red")
    return text


def _marked(mark: Json) -> str:
    """``marked bad by jane@example.com: corrupts the ledger``."""
    who = f" by {_s(mark.get('by'))}" if mark.get("by") else ""
    why = f": {_s(mark.get('reason'))}" if mark.get("reason") else ""
    return f"marked bad{who}{why}"


def _halted(halt: Json) -> str:
    where = "every environment" if halt.get("environment") == "*" else _s(halt.get("environment"))
    who = f" by {_s(halt.get('by'))}" if halt.get("by") else ""
    since = f" since {_s(halt.get('since'))}" if halt.get("since") else ""
    why = f": {_s(halt.get('reason'))}" if halt.get("reason") else ""
    return f"{where} halted{who}{since}{why}"


def halts_table(document: Json) -> Table:
    """The halted environments (halts.yaml)."""
    table = Table(title="halts", title_justify="left")
    for column in ("environment", "reason", "by", "since"):
        table.add_column(column, overflow="fold")
    for h in document.get("halts") or []:
        table.add_row(
            Text(_s(h.get("environment")), style="bold red"),
            escape(_s(h.get("reason"))),
            escape(_s(h.get("by"))),
            escape(_s(h.get("since"))),
        )
    return table


def status_table(document: Json) -> Table:
    """Services by environments: the artifact and its rollout state in each."""
    services = document.get("services") or []
    environments: list[str] = list(document.get("environments") or [])
    for entry in services:
        for env in entry.get("environments") or {}:
            if env not in environments:
                environments.append(env)
    table = Table(show_lines=True)
    table.add_column("service", style="bold")
    for env in environments:
        table.add_column(env)
    for entry in services:
        envs = entry.get("environments") or {}
        table.add_row(
            escape(_s(entry.get("service"))), *[_cell(envs.get(env)) for env in environments]
        )
    halts = document.get("halts") or []
    if halts:
        table.caption = "\n".join(_halted(h) for h in halts) + " (only rollbacks go through)"
        table.caption_style = "bold red"
    return table


def service_view(document: Json) -> Table:
    """One service, one row per environment with all it knows."""
    table = Table(title=escape(_s(document.get("service"))), title_justify="left")
    for column in ("environment", "artifact", "commit", "released", "by", "rollout", "marked bad"):
        table.add_column(column)
    for env, found in (document.get("environments") or {}).items():
        state: Json = found or {}
        rollout = _s(state.get("rollout") or "unknown")
        rollout_text = Text(rollout, style=ROLLOUT_STYLE.get(rollout, ""))
        if state.get("rolloutReason"):
            rollout_text.append(f": {state['rolloutReason']}")
        table.add_row(
            escape(env),
            escape(_s(state.get("artifactId")) or "-"),
            escape(short(state.get("commitSha"))),
            escape(_s(state.get("releasedAt"))),
            escape(_s(state.get("releasedBy"))),
            rollout_text,
            Text(_marked(state["rejected"]), style="bold red") if state.get("rejected") else "",
        )
    return table


def history_table(document: Json) -> Table:
    table = Table(title=f"history of {escape(_s(document.get('service')))}", title_justify="left")
    for column in ("at", "environment", "intent", "artifact", "from", "by", "commit", "release"):
        table.add_column(column)
    for h in document.get("history") or []:
        table.add_row(
            escape(_s(h.get("at"))),
            escape(_s(h.get("environment"))),
            escape(_s(h.get("intent"))),
            escape(_s(h.get("artifactId"))),
            escape(_s(h.get("promotedFrom"))),
            escape(_s(h.get("actor"))),
            escape(short(h.get("commitSha"))),
            escape(_s(h.get("releaseId"))),
        )
    return table


def artifacts_table(document: Json) -> Table:
    table = Table(title=f"artifacts of {escape(_s(document.get('service')))}", title_justify="left")
    columns = ("artifact", "branch", "sha", "author", "message", "stored", "manifests for", "mark")
    for column in columns:
        table.add_column(column, overflow="fold")
    for a in document.get("artifacts") or []:
        message = _s(a.get("message")).splitlines()
        table.add_row(
            escape(_s(a.get("artifactId"))),
            escape(_s(a.get("branch"))),
            escape(short(a.get("sha"))),
            escape(_s(a.get("author"))),
            escape(message[0] if message else ""),
            escape(_s(a.get("storedAt"))),
            escape(", ".join(a.get("environments") or [])),
            Text(_marked(a["rejected"]), style="bold red") if a.get("rejected") else "",
        )
    return table


def duration(seconds: object) -> str:
    """``5400`` -> ``1h 30m``; ``None`` (no data) -> ``-``."""
    if not isinstance(seconds, int | float):
        return "-"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _rate(value: object) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, int | float) else "-"


def _per_day(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def _dora_cells(keys: Json) -> list[str]:
    lead = keys.get("leadTimeSeconds") or {}
    restore = keys.get("timeToRestoreSeconds") or {}
    return [
        _s(keys.get("deployments")),
        _per_day(keys.get("deploymentsPerDay")),
        duration(lead.get("median")),
        duration(lead.get("p90")),
        _rate(keys.get("changeFailureRate")),
        duration(restore.get("median")),
    ]


def dora_view(document: Json) -> Table:
    """The four DORA keys over the window, then week by week."""
    scope = [f"environment {_s(document.get('environment'))}"]
    for key in ("service", "squad"):
        if document.get(key):
            scope.append(f"{key} {_s(document.get(key))}")
    window = f"{short(document.get('from'), 10)} to {short(document.get('to'), 10)}"
    table = Table(title=escape(f"DORA, {', '.join(scope)}, {window}"), title_justify="left")
    for column in (
        "from",
        "deployments",
        "per day",
        "lead time (median)",
        "lead time (p90)",
        "change failure rate",
        "time to restore (median)",
    ):
        table.add_column(column, justify="left" if column == "from" else "right")
    for week in document.get("weekly") or []:
        table.add_row(escape(short(week.get("from"), 10)), *_dora_cells(week))
    table.add_section()
    table.add_row(Text("all", style="bold"), *_dora_cells(document), style="bold")
    return table


VERDICT_STYLE = {
    "passed": "green",
    "failed": "red",
    "waiting": "yellow",
    "needs-approval": "yellow",
}
OUTCOME_STYLE = {
    "approve": "green",
    "await-approval": "yellow",
    "wait-for-rollout": "yellow",
    "reject": "red",
}


def diff_line(line: str) -> Text:
    """A unified diff's line: added green, removed red, hunk headers cyan, file headers bold."""
    if line.startswith(("+++ ", "--- ")):
        style = "bold"
    elif line.startswith("+"):
        style = "green"
    elif line.startswith("-"):
        style = "red"
    elif line.startswith("@@"):
        style = "cyan"
    else:
        style = ""
    return Text(line, style=style)


def preview_view(preview: Json) -> list[Text]:
    """``GET /v1/releases/preview``: what, the verdict of each policy, then the diff, line by line
    (a list of lines, printed each whole, so a long manifest line is never folded)."""
    what = (
        f"{_s(preview.get('intent'))} {_s(preview.get('service'))} "
        f"{_s(preview.get('artifactId')) or '(nothing to release)'} "
        f"→ {_s(preview.get('environment'))}"
    )
    if preview.get("namespace"):
        what += f" (namespace {_s(preview.get('namespace'))})"
    if preview.get("promotedFrom"):
        what += f", from {_s(preview.get('promotedFrom'))}"
    outcome = _s(preview.get("outcome"))
    lines = [
        Text.assemble(("dry run: ", "bold"), what),
        Text.assemble(
            "runs now: ",
            _s(preview.get("runningArtifactId")) or "nothing",
            "  config commit: ",
            short(preview.get("configCommit")) or "none",
        ),
        Text.assemble(
            ("decision now: ", "bold"), (outcome, f"bold {OUTCOME_STYLE.get(outcome, '')}")
        ),
    ]
    if preview.get("detail"):
        lines.append(Text(f"  {_s(preview.get('detail'))}"))
    for check in preview.get("checks") or []:
        verdict = _s(check.get("verdict"))
        lines.append(
            Text.assemble(
                "  ",
                (f"{verdict:<14}", VERDICT_STYLE.get(verdict, "")),
                f" {_s(check.get('policy'))}: {_s(check.get('message'))}",
            )
        )
    if not preview.get("checks"):
        for violation in preview.get("violations") or []:
            lines.append(
                Text.assemble(
                    "  ",
                    (f"{'failed':<14}", "red"),
                    f" {_s(violation.get('policy'))}: {_s(violation.get('message'))}",
                )
            )
    failure = preview.get("commitFailure")
    if isinstance(failure, dict):
        lines.append(
            Text(
                f"git-writer would fail it: {_s(failure.get('reason'))}: "
                f"{_s(failure.get('message'))}",
                style="bold red",
            )
        )
    summary = preview.get("summary") or {}
    lines.append(
        Text.assemble(
            ("files: ", "bold"),
            (f"{summary.get('added', 0)} added", "green"),
            ", ",
            (f"{summary.get('removed', 0)} removed", "red"),
            f", {summary.get('changed', 0)} changed",
        )
    )
    placeholder = _s(preview.get("releaseIdPlaceholder"))
    if placeholder and placeholder in _s(preview.get("diff")):
        lines.append(
            Text(f"({placeholder} is the id the release gets when requested)", style="dim")
        )
    lines += [diff_line(line) for line in _s(preview.get("diff")).splitlines()]
    return lines
