"""Rendering notices with Jinja2: built-in templates, overridable from a directory.

Lookup, first found wins, in the override directory then the built-ins:
``headline/<kind>.j2`` then ``headline/default.j2`` for the one-line summary
(Slack mrkdwn), and ``<kind>.<format>.j2`` then ``<format>.j2`` for each
format: ``slack``, ``text`` (console and the email's plain part), ``html`` (the
email's HTML part, autoescaped) and ``subject`` (the email subject).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
)

from ferry_notifier.domain.notice import Notice
from ferry_notifier.errors import Undeliverable

_EMOJI = re.compile(r":[a-z0-9_+-]+:\s*")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


def plain(text: str) -> str:
    """Slack mrkdwn to plain text: no emoji codes, no ``*bold*`` or backticks."""
    text = _EMOJI.sub("", text)
    return re.sub(r"[*`]", "", text).strip()


def mrkdwn(text: object) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters there."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class Rendered:
    headline: str
    slack: str
    text: str
    html: str
    subject: str


def _fields(notice: Notice, count: int) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    pairs = (
        ("Service", notice.service),
        ("Environment", notice.environment),
        ("Artifact", notice.artifact_id),
        ("Author", notice.author),
        ("By", notice.actor),
        ("Config commit", notice.commit_sha[:12]),
    )
    fields += [(label, value) for label, value in pairs if value]
    if notice.artifact is not None:
        art = notice.artifact
        if art.branch and art.sha:
            fields.append(("Change", f"{art.branch}@{art.sha[:10]} {art.message}".rstrip()))
    extra = notice.extra
    if notice.kind in ("rollout.failed", "workload.degraded"):
        fields.append(("Reason", notice.reason))
        if extra.get("restarts"):
            fields.append(("Restarts", str(extra["restarts"])))
        if count > 1:
            fields.append(("Occurrences", str(count)))
    if notice.kind == "approval.requested" and extra.get("expires_at"):
        fields.append(("Expires", str(extra["expires_at"])))
    return fields


class Renderer:
    """Renders a notice in every format."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[BaseLoader] = []
        if override_dir is not None:
            loaders.append(FileSystemLoader(override_dir))
        loaders.append(PackageLoader("ferry_notifier", "templates"))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            # HTML templates are escaped; Slack mrkdwn and plain text must not be.
            autoescape=lambda name: bool(name and name.endswith("html.j2")),  # noqa: S701
            undefined=StrictUndefined,
            trim_blocks=False,
            keep_trailing_newline=False,
        )
        self._env.filters["plain"] = plain
        self._env.filters["mrkdwn"] = mrkdwn

    def check(self) -> None:
        """Compile every template once, so a broken override fails at start-up."""
        for name in self._env.list_templates(extensions=["j2"]):
            self._env.get_template(name)

    def _render(self, names: list[str], **context: object) -> str:
        text = self._env.select_template(names).render(**context).strip()
        return _BLANK_LINES.sub("\n\n", text)

    def render(self, notice: Notice, *, count: int = 1) -> Rendered:
        context: dict[str, object] = {"n": notice, "count": count}
        try:
            headline = self._render(
                [f"headline/{notice.kind}.j2", "headline/default.j2"], **context
            )
            context |= {"headline": headline, "fields": _fields(notice, count)}
            out = {
                fmt: self._render([f"{notice.kind}.{fmt}.j2", f"{fmt}.j2"], **context)
                for fmt in ("slack", "text", "html", "subject")
            }
        except TemplateError as exc:
            # A template that cannot render this event will not render it on a retry either.
            raise Undeliverable(f"rendering the {notice.kind} message failed: {exc}") from exc
        return Rendered(headline=headline, **out)
