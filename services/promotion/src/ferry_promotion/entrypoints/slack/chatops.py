"""Slash commands and button clicks, from a verified request to a use case and an answer.

The order of every request is fixed: verify the signature over the raw body
(nothing is parsed before), parse, find out who is asking, run the use case
through the application layer (the HTTP API's authorization applies), answer
within Slack's three seconds, and follow up later through ``response_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import Counter

from ferry_promotion.adapters.slack.responder import ResponseUrl, ResponseUrlPoster
from ferry_promotion.adapters.slack.state import FollowUp, FollowUps, MemoryFollowUps
from ferry_promotion.adapters.slack.users import SlackUnavailable, SlackUserDirectory
from ferry_promotion.adapters.slack.verification import RequestRefused, SlackRequestVerifier
from ferry_promotion.entrypoints.slack import messages
from ferry_promotion.entrypoints.slack.commands import (
    ApproveCommand,
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
from ferry_promotion.entrypoints.slack.ports import People, Refusal, Releases
from ferry_runtime import get_logger

__all__ = ["APPROVE_ACTION", "REJECT_ACTION", "ChatOps", "Refused"]

log = get_logger(__name__)

APPROVE_ACTION: Final = "ferry_approve"
REJECT_ACTION: Final = "ferry_reject"
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
    ) -> None:
        self._verifier = verifier
        self._people = people
        self._releases = releases
        self._users = users
        self._poster = poster
        self.follow_interval = follow_interval
        self._follow_max_interval = follow_max_interval
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._click_locks: dict[str, _ClickSlot] = {}
        self._followups: FollowUps = followups or MemoryFollowUps()
        self.follow_lease = follow_lease
        self.replica = uuid.uuid4().hex
        self._adopting: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Follow-ups and message updates still running."""
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for the follow-ups that are running (tests, graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def start(self) -> None:
        """Take over, from now on, the follow-ups of replicas that stopped holding them."""
        if self._adopting is None:
            self._adopting = asyncio.create_task(self._adopt_forever(), name="slack-adopt")

    async def _adopt_forever(self) -> None:
        while True:
            await asyncio.sleep(max(self.follow_lease / 3, 0.05))
            try:
                await self.adopt()
            except Exception:  # the database may be down for a moment: try again later
                log.warning("taking over Slack follow-ups failed", exc_info=True)

    async def adopt(self) -> int:
        """Follow, here, the releases whose replica's lease expired; how many were taken over."""
        taken = await self._followups.take_over(self.replica, self.follow_lease)
        for row in taken:
            actor, _ = await self._identify(row.slack_user)
            if actor is None:
                await self._followups.close(row)
                continue
            age = (datetime.now(UTC) - row.opened_at).total_seconds()
            response = self._poster.open(row.response_url, posts=row.posts, age=max(age, 0.0))
            log.info("following a release another replica followed", release_id=row.release_id)
            self._spawn(self._follow(actor, row, response), name=f"slack-follow-{row.release_id}")
        return len(taken)

    async def aclose(self) -> None:
        """Cancel every follow-up (on shutdown); another replica takes them over."""
        if self._adopting is not None:
            self._adopting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adopting
            self._adopting = None
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

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
            case ReleaseCommand(service=service, target=target, environment=env):
                is_artifact = await self._releases.is_artifact(actor, service, target)
                release = await self._releases.request(
                    actor,
                    service=service,
                    environment=env,
                    intent="release",
                    artifact_id=target if is_artifact else None,
                    branch=None if is_artifact else target,
                    reason=via,
                )
                return await self._requested(actor, release, "release", form)
            case PromoteCommand(service=service, environment=env):
                release = await self._releases.request(
                    actor, service=service, environment=env, intent="promote", reason=via
                )
                return await self._requested(actor, release, "promotion", form)
            case RollbackCommand(service=service, environment=env, artifact_id=artifact):
                release = await self._releases.request(
                    actor,
                    service=service,
                    environment=env,
                    intent="rollback",
                    artifact_id=artifact,
                    reason=via,
                )
                return await self._requested(actor, release, "rollback", form)
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

    async def _requested(
        self, actor: Any, release: Mapping[str, Any], intent: str, form: Mapping[str, str]
    ) -> dict[str, Any]:
        rid = str(release.get("releaseId", ""))
        url = form.get("response_url", "")
        if rid and url:
            if self._poster.allows(url):
                response = self._poster.open(url)
                status = str(release.get("status", "requested"))
                row = await self._followups.open(
                    url,
                    rid,
                    slack_user=form.get("user_id", ""),
                    status=status,
                    owner=self.replica,
                    lease=self.follow_lease,
                )
                self._spawn(self._follow(actor, row, response), name=f"slack-follow-{rid}")
            else:
                log.warning("response_url origin not allowed; no follow-up", release_id=rid)
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

    async def _follow(self, actor: Any, row: FollowUp, response: ResponseUrl) -> None:
        """Post each change of the release's status until it is final, within Slack's limits.

        The lease on the follow-up's row is renewed at every look, and the status
        is recorded before it is posted: a replica that lost the row (it was too
        slow, another took over) stops, and a status is posted at most once.
        """
        release_id, last = row.release_id, row.last_status
        interval = self.follow_interval
        while response.usable:
            await asyncio.sleep(interval)
            if not await self._renew(row, last, response.posts):
                return
            interval = min(interval * 1.5, self._follow_max_interval)
            try:
                release = await self._releases.get(actor, release_id)
            except Exception:  # a database hiccup must not end the follow-up (logged)
                log.warning(
                    "reading a release for Slack failed", release_id=release_id, exc_info=True
                )
                continue
            status = str(release.get("status", ""))
            if status == last:
                continue
            last = status
            final = status in messages.TERMINAL_STATUSES
            if response.remaining == 1 and not final:
                continue  # keep the last post for the outcome
            if not await self._renew(row, status, response.posts + 1):
                return
            await response.post(messages.outcome(release))
            interval = self.follow_interval
            if final:
                break
        with contextlib.suppress(Exception):  # an unclosed row expires after 30 minutes
            await self._followups.close(row)

    async def _renew(self, row: FollowUp, status: str, posts: int) -> bool:
        try:
            held = await self._followups.renew(
                row, self.replica, self.follow_lease, status=status, posts=posts
            )
        except Exception:  # noqa: BLE001 - keep following: the lease is long, the next renewal may work
            log.warning("renewing a Slack follow-up failed", release_id=row.release_id)
            return True
        if not held:
            log.info("another replica follows this release now", release_id=row.release_id)
        return held

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
            if isinstance(a, dict) and a.get("action_id") in (APPROVE_ACTION, REJECT_ACTION)
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
        self._spawn(self._post(response, message), name="slack-answer")

    async def _post(self, response: ResponseUrl, message: dict[str, Any]) -> None:
        await response.post(message)
