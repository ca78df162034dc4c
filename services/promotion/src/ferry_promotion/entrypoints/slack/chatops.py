"""Slash commands and button clicks, from a verified request to a use case and an answer.

The order of every request is fixed: verify the signature over the raw body
(nothing is parsed before), parse, find out who is asking, run the use case
through the application layer (the HTTP API's authorization applies), answer
within Slack's three seconds, and follow up later through ``response_url``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import Counter

from ferry_promotion.adapters.slack.responder import ResponseUrl, ResponseUrlPoster
from ferry_promotion.adapters.slack.state import FollowUps, MemoryFollowUps
from ferry_promotion.adapters.slack.users import SlackUnavailable, SlackUserDirectory
from ferry_promotion.adapters.slack.verification import (
    MAX_AGE_SECONDS,
    ReplayCache,
    Replays,
    RequestRefused,
    SlackRequestVerifier,
)
from ferry_promotion.domain.schedule import next_wall_clock, parse_at, wall_clock, zone_named
from ferry_promotion.entrypoints.slack import messages
from ferry_promotion.entrypoints.slack.commands import (
    ApproveCommand,
    CancelCommand,
    Command,
    CommandError,
    HaltCommand,
    HelpCommand,
    HistoryCommand,
    PromoteCommand,
    RejectCommand,
    ReleaseCommand,
    RollbackCommand,
    StatusCommand,
    command_name,
    form_fields,
    help_text,
    parse,
)
from ferry_promotion.entrypoints.slack.following import Following
from ferry_promotion.entrypoints.slack.ports import People, Refusal, Releases
from ferry_runtime import get_logger

__all__ = ["APPROVE_ACTION", "PROMOTE_ACTION", "REJECT_ACTION", "ChatOps", "Refused"]

log = get_logger(__name__)

APPROVE_ACTION: Final = "ferry_approve"
REJECT_ACTION: Final = "ferry_reject"
#: The Promote button of a promotion to a protected environment, after its preview.
PROMOTE_ACTION: Final = "ferry_promote"
#: How long a promotion's confirmation can be clicked (its claim lasts as long).
CONFIRM_SECONDS: Final = MAX_AGE_SECONDS
HISTORY_LIMIT: Final = 15

SLACK_REQUESTS = Counter(
    "ferry_slack_requests_total",
    "Slack requests by endpoint and outcome",
    ["endpoint", "outcome"],
)


class _ClickSlot:
    """A lock per release, and how many clicks hold or wait for it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Refused(Exception):
    """The request is refused before anything is parsed: it is not provably from Slack."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ChatOps:
    """The chat-ops use cases behind ``/v1/slack/commands`` and ``/v1/slack/interactions``."""

    def __init__(
        self,
        *,
        verifier: SlackRequestVerifier | None,
        people: People,
        releases: Releases,
        users: SlackUserDirectory | None,
        poster: ResponseUrlPoster,
        follow_interval: float = 1.0,
        follow_max_interval: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        followups: FollowUps | None = None,
        follow_lease: float = 30.0,
        claims: Replays | None = None,
    ) -> None:
        self._verifier = verifier
        # a confirmed promotion is requested once, whichever replica gets the click(s)
        self._claims: Replays = claims or ReplayCache(window=CONFIRM_SECONDS)
        self._people = people
        self._releases = releases
        self._users = users
        self._poster = poster
        self._clock = clock
        self._click_locks: dict[str, _ClickSlot] = {}
        self._following = Following(
            poster=poster,
            releases=releases,
            followups=followups or MemoryFollowUps(),
            identify=self._identify,
            interval=follow_interval,
            max_interval=follow_max_interval,
            lease=follow_lease,
        )

    # ------------------------------------------------------------------ follow-ups

    @property
    def follow_interval(self) -> float:
        return self._following.interval

    @follow_interval.setter
    def follow_interval(self, seconds: float) -> None:
        self._following.interval = seconds

    @property
    def follow_lease(self) -> float:
        return self._following.lease

    @follow_lease.setter
    def follow_lease(self, seconds: float) -> None:
        self._following.lease = seconds

    @property
    def pending(self) -> int:
        """Follow-ups and message updates still running."""
        return self._following.pending

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for the follow-ups that are running (tests, graceful shutdown)."""
        await self._following.drain(timeout)

    def start(self) -> None:
        """Take over, from now on, the follow-ups of replicas that stopped holding them."""
        self._following.start()

    async def adopt(self) -> int:
        """Follow, here, the releases whose replica's lease expired; how many were taken over."""
        return await self._following.adopt()

    async def aclose(self) -> None:
        """Cancel every follow-up (on shutdown); another replica takes them over."""
        await self._following.aclose()

    # ------------------------------------------------------------------ verification

    async def verify(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Refused` unless Slack signed this raw body (not stale, not a replay)."""
        if self._verifier is None:
            SLACK_REQUESTS.labels(endpoint, "not-configured").inc()
            raise Refused(
                "not-configured",
                "chat-ops is not configured (FERRY_SLACK_SIGNING_SECRET is not set), "
                "so no request can be verified",
            )
        try:
            await self._verifier.verify(body, headers)
        except RequestRefused as exc:
            SLACK_REQUESTS.labels(endpoint, exc.code).inc()
            log.warning("slack request refused", endpoint=endpoint, code=exc.code)
            raise Refused(exc.code, exc.reason) from exc

    # ------------------------------------------------------------------ who is asking

    async def _identify(self, user_id: str) -> tuple[Any | None, str]:  # noqa: PLR0911 - one return per reason told
        """The Ferry identity of a Slack user, or None and the reason for the person."""
        if not user_id:
            return None, "The request names no Slack user."
        identity = self._people.by_slack_user(user_id)
        if identity is not None:
            return identity, ""
        if self._users is None:
            return None, (
                f"Your Slack user `{user_id}` is not in Ferry's tokens file, and Ferry has no "
                "Slack bot token to look up your email. Ask an admin to add "
                f"`slackUserId: {user_id}` to your entry."
            )
        try:
            email = await self._users.email_of(user_id)
        except SlackUnavailable as exc:
            log.warning("slack user lookup failed", user=user_id, error=str(exc))
            return None, "I could not ask Slack who you are just now; please try again."
        if not email:
            return None, (
                f"Slack shows no email for your user `{user_id}`, so Ferry cannot tell who you "
                f"are. Ask an admin to add `slackUserId: {user_id}` to your tokens-file entry."
            )
        identity = self._people.by_email(email)
        if identity is None:
            return None, (
                f"You ({email}) are not a Ferry user: no entry in the tokens file has this email "
                f"or `slackUserId: {user_id}`. Ask a Ferry admin to add you."
            )
        return identity, ""

    # ------------------------------------------------------------------ slash commands

    async def command(self, body: bytes) -> dict[str, Any]:
        """Handle a verified slash command; the answer is the immediate (ephemeral) message."""
        form = form_fields(body)
        text = form.get("text", "")
        try:
            command = parse(text)
        except CommandError as exc:
            SLACK_REQUESTS.labels("commands", "usage").inc()
            return messages.ephemeral(exc.text())
        if isinstance(command, HelpCommand):
            SLACK_REQUESTS.labels("commands", "help").inc()
            return messages.ephemeral(
                help_text() if command.topic is None else CommandError("", command.topic).usage
            )
        actor, why = await self._identify(form.get("user_id", ""))
        if actor is None:
            SLACK_REQUESTS.labels("commands", "unknown-user").inc()
            return messages.ephemeral(f":lock: {why}")
        name = command_name(command)
        log.info(
            "slack command",
            command=name,
            actor=self._people.describe(actor),
            slack_user=form.get("user_id"),
        )
        try:
            answer = await self._run(command, actor, form)
        except Refusal as exc:
            SLACK_REQUESTS.labels("commands", exc.kind).inc()
            icon = ":lock:" if exc.kind == "forbidden" else ":warning:"
            return messages.ephemeral(f"{icon} {exc.message}")
        except Exception:
            # Slack shows a bare "failed with the error http_service_error" for a 500;
            # say something useful instead and keep the trace in the log.
            log.exception("slack command failed", command=name)
            SLACK_REQUESTS.labels("commands", "error").inc()
            return messages.ephemeral(
                f":boom: Ferry could not run `{name}` just now; the error is logged. "
                "Please try again, or use the ferry CLI."
            )
        SLACK_REQUESTS.labels("commands", "ok").inc()
        return answer

    async def _run(  # noqa: PLR0911 - one return per command
        self, command: Command, actor: Any, form: Mapping[str, str]
    ) -> dict[str, Any]:
        via = f"via Slack: /ferry {form.get('text', '').strip()}"
        match command:
            case ReleaseCommand(service=service, target=target, environment=env, at=at):
                when = await self._when(at, form)
                is_artifact = await self._releases.is_artifact(actor, service, target)
                release = await self._releases.request(
                    actor,
                    service=service,
                    environment=env,
                    intent="release",
                    artifact_id=target if is_artifact else None,
                    branch=None if is_artifact else target,
                    reason=via,
                    at=when[0] if when else None,
                )
                return await self._requested(actor, release, "release", form, when)
            case PromoteCommand(service=service, environment=env, at=at):
                when = await self._when(at, form)
                if when is None:
                    preview = await self._releases.promotion_preview(
                        actor, service=service, environment=env
                    )
                    if preview is not None:  # a protected environment: confirm first
                        return messages.promotion_confirmation(
                            preview, self._confirmation(preview), PROMOTE_ACTION
                        )
                release = await self._releases.request(
                    actor,
                    service=service,
                    environment=env,
                    intent="promote",
                    reason=via,
                    at=when[0] if when else None,
                )
                return await self._requested(actor, release, "promotion", form, when)
            case RollbackCommand(service=service, environment=env, artifact_id=artifact, at=at):
                when = await self._when(at, form)
                release = await self._releases.request(
                    actor,
                    service=service,
                    environment=env,
                    intent="rollback",
                    artifact_id=artifact,
                    reason=via,
                    at=when[0] if when else None,
                )
                return await self._requested(actor, release, "rollback", form, when)
            case CancelCommand(release_id=rid, reason=reason):
                release = await self._releases.cancel(actor, rid, reason)
                return messages.ephemeral(messages.cancelled_text(release))
            case StatusCommand(service=service):
                view = await self._releases.service(actor, service)
                return messages.status_table(view)
            case HistoryCommand(service=service, environment=env):
                history = await self._releases.history(actor, service, env, HISTORY_LIMIT)
                return messages.history_table(history, env)
            case ApproveCommand(release_id=rid):
                release = await self._decide(actor, rid, approve=True, note="")
                return messages.ephemeral(messages.decided_text(release, approve=True))
            case RejectCommand(release_id=rid, reason=reason):
                release = await self._decide(actor, rid, approve=False, note=reason)
                return messages.ephemeral(messages.decided_text(release, approve=False))
            case HaltCommand(environment=env, halted=halted, reason=reason):
                answer = await self._releases.halt(actor, env, halted=halted, reason=reason)
                return messages.ephemeral(messages.halt_text(answer, env, halted=halted))
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    def _confirmation(self, preview: Mapping[str, Any]) -> str:
        """The Promote button's value: what was previewed, a nonce and when."""
        return json.dumps(
            {
                "service": preview.get("service"),
                "environment": preview.get("environment"),
                "artifactId": preview.get("artifactId"),
                "nonce": uuid.uuid4().hex,
                "at": int(self._clock().timestamp()),
            }
        )

    async def _confirmed(self, actor: Any, value: str, user_id: str, url: str) -> dict[str, Any]:
        """A click on Promote: request the promotion previewed, once, and follow it."""
        try:
            found = json.loads(value)
            service, env = str(found["service"]), str(found["environment"])
            artifact, nonce, at = str(found["artifactId"]), str(found["nonce"]), int(found["at"])
        except (ValueError, KeyError, TypeError):
            return messages.ephemeral(
                ":warning: This button is not one Ferry made; nothing was done.",
                replace_original=False,
            )
        now = self._clock().timestamp()
        if not 0 <= now - at <= CONFIRM_SECONDS:
            return messages.ephemeral(
                f":hourglass: This confirmation is more than {CONFIRM_SECONDS // 60} minutes old; "
                f"nothing was done. Run `/ferry promote {service} to {env}` again to see what it "
                "would change now.",
                replace_original=False,
            )
        if not await self._claims.first_time(f"confirm:{nonce}", now):
            return messages.ephemeral(
                f"This promotion of {service} to {env} was already confirmed; nothing was done.",
                replace_original=False,
            )
        try:
            release = await self._releases.request(
                actor,
                service=service,
                environment=env,
                intent="promote",
                artifact_id=artifact,
                reason=f"via Slack: /ferry promote {service} to {env}, confirmed after its preview",
            )
        except Refusal as exc:
            icon = ":lock:" if exc.kind == "forbidden" else ":warning:"
            return messages.ephemeral(f"{icon} {exc.message}", replace_original=False)
        rid = str(release.get("releaseId", ""))
        if rid and url:
            # the answer to this click goes to the same response_url: one of Slack's five
            await self._following.follow(
                actor, rid, url, slack_user=user_id, status=str(release.get("status", "")), posts=1
            )
        return {**messages.release_acknowledged(release, "promotion"), "replace_original": True}

    async def _when(self, at: str | None, form: Mapping[str, str]) -> tuple[datetime, str] | None:
        """The moment ``at`` names and how to say it: ``HH:MM`` is the next such time in the
        requester's Slack time zone when Slack tells it, else in UTC; None for now."""
        if at is None:
            return None
        hour_minute = wall_clock(at)
        if hour_minute is None:
            moment = parse_at(at)
            return moment, f"{moment:%Y-%m-%d %H:%M} UTC"
        tz_name, why = await self._zone_of(form.get("user_id", ""))
        zone, label = zone_named(tz_name)
        if tz_name and label != tz_name:
            why = f"your Slack time zone {tz_name} is not known here"
        hour, minute = hour_minute
        moment = next_wall_clock(hour, minute, zone, self._clock())
        if label == "UTC":
            said = f"{moment:%Y-%m-%d %H:%M} UTC " + (
                f"(UTC, as {why})" if why else "(your Slack time zone)"
            )
        else:
            local = moment.astimezone(zone)
            said = (
                f"{local:%Y-%m-%d %H:%M} {label} (your Slack time zone; "
                f"{moment:%Y-%m-%d %H:%M} UTC)"
            )
        return moment, said

    async def _zone_of(self, user_id: str) -> tuple[str | None, str]:
        """The requester's Slack time zone, or None and why UTC is used instead."""
        if self._users is None:
            return None, "Ferry has no Slack bot token to read your time zone"
        try:
            tz_name = await self._users.tz_of(user_id)
        except SlackUnavailable as exc:
            log.warning("slack time zone lookup failed", user=user_id, error=str(exc))
            return None, "Slack did not tell your time zone just now"
        return (tz_name, "") if tz_name else (None, "Slack shows no time zone for you")

    async def _requested(
        self,
        actor: Any,
        release: Mapping[str, Any],
        intent: str,
        form: Mapping[str, str],
        when: tuple[datetime, str] | None = None,
    ) -> dict[str, Any]:
        rid = str(release.get("releaseId", ""))
        if when is not None:
            # nothing happens before its time (perhaps hours away, past what a response_url
            # allows): the release thread tells when it is decided
            return messages.scheduled_acknowledged(release, intent, when[1])
        url = form.get("response_url", "")
        if rid and url:
            await self._following.follow(
                actor,
                rid,
                url,
                slack_user=form.get("user_id", ""),
                status=str(release.get("status", "requested")),
            )
        return messages.release_acknowledged(release, intent)

    async def _decide(
        self, actor: Any, release_id: str, *, approve: bool, note: str
    ) -> Mapping[str, Any]:
        # One decision at a time per release in this process: of a double click the
        # first is decided, and the application layer refuses the second (its state
        # check in the database is what holds across replicas).
        slot = self._click_locks.setdefault(release_id, _ClickSlot())
        slot.users += 1
        try:
            async with slot.lock:
                if approve:
                    return await self._releases.approve(actor, release_id, note)
                return await self._releases.reject(actor, release_id, note or "rejected in Slack")
        finally:
            slot.users -= 1
            if slot.users == 0:
                self._click_locks.pop(release_id, None)

    # ------------------------------------------------------------------ interactions

    async def interaction(self, body: bytes) -> None:
        """Handle a verified interaction (a button click). Answers go to ``response_url``."""
        raw = form_fields(body).get("payload", "")
        try:
            payload = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            payload = {}
        if not isinstance(payload, dict) or payload.get("type") != "block_actions":
            SLACK_REQUESTS.labels("interactions", "ignored").inc()
            return
        actions = [
            a
            for a in payload.get("actions") or []
            if isinstance(a, dict)
            and a.get("action_id") in (APPROVE_ACTION, REJECT_ACTION, PROMOTE_ACTION)
        ]
        if not actions:
            SLACK_REQUESTS.labels("interactions", "ignored").inc()
            return
        action = actions[0]
        release_id = str(action.get("value") or "")
        approve = action.get("action_id") == APPROVE_ACTION
        user = payload.get("user") or {}
        url = str(payload.get("response_url") or "")
        response = self._poster.open(url) if url and self._poster.allows(url) else None
        original = payload.get("message") if isinstance(payload.get("message"), dict) else None

        actor, why = await self._identify(str(user.get("id") or ""))
        if actor is None:
            SLACK_REQUESTS.labels("interactions", "unknown-user").inc()
            await self._answer(
                response, messages.ephemeral(f":lock: {why}", replace_original=False)
            )
            return
        if action.get("action_id") == PROMOTE_ACTION:
            answer = await self._confirmed(actor, release_id, str(user.get("id") or ""), url)
            SLACK_REQUESTS.labels("interactions", "promote").inc()
            await self._answer(response, answer)
            return
        try:
            release = await self._decide(actor, release_id, approve=approve, note="")
        except Refusal as exc:
            SLACK_REQUESTS.labels("interactions", exc.kind).inc()
            if exc.kind == "conflict":
                try:
                    current: Mapping[str, Any] = await self._releases.get(actor, release_id)
                except Refusal:
                    current = {"releaseId": release_id, "status": "decided"}
                answer = messages.already_decided(current, exc.message)
            else:
                icon = ":lock:" if exc.kind == "forbidden" else ":warning:"
                answer = messages.ephemeral(f"{icon} {exc.message}", replace_original=False)
            await self._answer(response, answer)
            return
        SLACK_REQUESTS.labels("interactions", "ok").inc()
        log.info(
            "slack decision",
            release_id=release_id,
            approved=approve,
            actor=self._people.describe(actor),
        )
        update = messages.decided_message(
            original,
            approved=approve,
            by=f"<@{user.get('id')}> ({self._people.describe(actor)})",
            at=self._clock(),
            release=release,
        )
        await self._answer(response, update)

    async def _answer(self, response: ResponseUrl | None, message: dict[str, Any]) -> None:
        if response is None:
            log.warning("interaction has no usable response_url; answer not shown")
            return
        self._following.post_later(response, message)
