"""Slack through slack_sdk's ``AsyncWebClient``: channel messages, DMs, threads, updates.

The client's own retry handlers are turned off: retries are per destination in
:mod:`ferry_notifier.delivery`, which honours ``Retry-After``.

Every message is tagged with message metadata (:func:`delivery_tag`: the Ferry event id
and a digest of the delivery), so that a post whose answer never came can be looked up
(:meth:`Slack.find`, ``conversations.history`` or ``conversations.replies`` with
``include_all_metadata``) before it is sent again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from ferry_events import mask_secrets
from ferry_notifier.errors import NoRecipient, Retryable, Undeliverable

#: Slack errors that a retry may cure; anything else is for good.
_TEMPORARY = {
    "ratelimited",
    "service_unavailable",
    "internal_error",
    "fatal_error",
    "request_timeout",
}


#: The ``event_type`` of the metadata on every message the notifier posts.
METADATA_EVENT_TYPE = "ferry_notification"

#: Pages of history (of up to 200 messages each) looked through for an unanswered post.
_LOOKUP_PAGES = 5

#: Methods that read: sent as GET with query parameters, as slack_sdk sends them.
_READS = ("users.", "conversations.history", "conversations.replies")


@dataclass(frozen=True, slots=True)
class Posted:
    channel: str
    ts: str


def delivery_tag(event_id: str, destination: str) -> dict[str, Any]:
    """The message metadata naming one delivery: the event id, and a digest of (event id,
    destination) rather than the destination itself, which may be someone's email."""
    digest = hashlib.sha256(f"{event_id}\n{destination}".encode()).hexdigest()[:32]
    return {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {"ferry_event_id": event_id, "ferry_delivery": digest},
    }


def _tagged(message: Mapping[str, Any], tag: Mapping[str, Any]) -> bool:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != tag["event_type"]:
        return False
    payload = metadata.get("event_payload")
    wanted = tag["event_payload"]["ferry_delivery"]
    return isinstance(payload, dict) and payload.get("ferry_delivery") == wanted


def load_user_map(path: Path | None) -> dict[str, str]:
    """The mapping file: ``email: <Slack user id or another email Slack knows>``."""
    if path is None:
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ValueError(
            f"{path}: expected a mapping of email address to Slack user id or email, "
            "e.g. 'jane@corp.example: U012AB3CD'"
        )
    return {k.lower(): v for k, v in raw.items()}


def _is_user_id(value: str) -> bool:
    return value[:1] in ("U", "W") and value.isalnum() and value.upper() == value


def _error(exc: SlackApiError, method: str) -> Exception:
    response = exc.response
    code = ""
    if isinstance(response.data, dict):
        code = str(response.data.get("error", ""))
    status = response.status_code
    if status == 429 or code == "ratelimited":
        raw = (response.headers or {}).get("Retry-After") or (response.headers or {}).get(
            "retry-after"
        )
        try:
            retry_after = float(raw) if raw is not None else 1.0
        except ValueError:
            retry_after = 1.0
        return Retryable(f"Slack {method}: rate limited", retry_after=retry_after)
    if status >= 500 or code in _TEMPORARY:
        # Slack may have done it before failing to answer.
        return Retryable(f"Slack {method}: HTTP {status} {code}".rstrip(), maybe_sent=True)
    if code == "users_not_found":
        return NoRecipient(f"Slack {method}: users_not_found")
    return Undeliverable(f"Slack {method} refused: {code or f'HTTP {status}'}")


class Slack:
    """What the notifier asks of Slack."""

    def __init__(self, client: AsyncWebClient, user_map: Mapping[str, str]) -> None:
        self._client = client
        self._user_map = dict(user_map)
        self._user_ids: dict[str, str] = {}
        #: The channel id Slack answered for each channel (a name, a user) posted to.
        self._channel_ids: dict[str, str] = {}

    @classmethod
    def connect(
        cls, token: str, base_url: str, user_map: Mapping[str, str], timeout: float
    ) -> Slack:
        client = AsyncWebClient(
            token=token, base_url=base_url, timeout=int(max(1, timeout)), retry_handlers=[]
        )
        return cls(client, user_map)

    async def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None and not session.closed:
            await session.close()

    async def _call(self, method: str, **kwargs: Any) -> Mapping[str, Any]:
        read = method.startswith(_READS)
        try:
            response = await self._client.api_call(
                method,
                http_verb="GET" if read else "POST",
                params=kwargs if read else None,
                json=None if read else kwargs,
            )
        except SlackApiError as exc:
            raise _error(exc, method) from exc
        except (TimeoutError, aiohttp.ClientError, SlackClientError) as exc:
            raise Retryable(f"Slack {method}: {mask_secrets(repr(exc))}", maybe_sent=True) from exc
        data = response.data
        return data if isinstance(data, dict) else {}

    async def user_id(self, email: str) -> str:
        """The Slack user for ``email``: the mapping file first, then ``users.lookupByEmail``."""
        email = email.lower()
        if email in self._user_ids:
            return self._user_ids[email]
        mapped = self._user_map.get(email, email)
        if _is_user_id(mapped):
            user_id = mapped
        else:
            try:
                data = await self._call("users.lookupByEmail", email=mapped)
            except NoRecipient:
                via = f" (mapped to {mapped})" if mapped != email else ""
                raise NoRecipient(
                    f"Slack knows no user with email {email}{via}; add it to the Slack users "
                    "mapping file (FERRY_SLACK_USERS_FILE)"
                ) from None
            user_id = str(data.get("user", {}).get("id", ""))
            if not user_id:
                raise Retryable("Slack users.lookupByEmail answered without a user id")
        self._user_ids[email] = user_id
        return user_id

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> Posted:
        """Post a message (a reply with ``thread_ts``), tagged with ``metadata``."""
        kwargs: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
            if broadcast:
                kwargs["reply_broadcast"] = True
        if metadata is not None:
            kwargs["metadata"] = dict(metadata)
        data = await self._call("chat.postMessage", **kwargs)
        posted = Posted(channel=str(data.get("channel", channel)), ts=str(data.get("ts", "")))
        self._channel_ids[channel] = posted.channel
        return posted

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)

    async def delete(self, channel: str, ts: str) -> None:
        """Delete a message this bot posted; one that is gone already counts as deleted."""
        try:
            await self._call("chat.delete", channel=channel, ts=ts)
        except Undeliverable as exc:
            if "message_not_found" not in str(exc):
                raise

    async def conversation(self, channel: str) -> str:
        """The conversation id to read ``channel`` (a name, an id or a user for a DM) by:
        the one Slack answered a post there with, else ``conversations.open`` for a user."""
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        if not _is_user_id(channel):
            return channel
        data = await self._call("conversations.open", users=channel)
        opened = data.get("channel")
        conversation = str(opened.get("id", "")) if isinstance(opened, dict) else ""
        if not conversation:
            raise Retryable("Slack conversations.open answered without a channel id")
        self._channel_ids[channel] = conversation
        return conversation

    async def find(
        self, channel: str, tag: Mapping[str, Any], *, oldest: str, thread_ts: str = ""
    ) -> Posted | None:
        """The message tagged ``tag`` posted since ``oldest`` (a Slack ts): among the
        channel's messages, or the replies of ``thread_ts``; None: Slack has none."""
        conversation = await self.conversation(channel)
        method = "conversations.replies" if thread_ts else "conversations.history"
        params: dict[str, Any] = {
            "channel": conversation,
            "oldest": oldest,
            "inclusive": "true",
            "include_all_metadata": "true",
            "limit": 200,
        }
        if thread_ts:
            params["ts"] = thread_ts
        for _ in range(_LOOKUP_PAGES):
            data = await self._call(method, **params)
            messages = data.get("messages")
            for message in messages if isinstance(messages, list) else []:
                if isinstance(message, dict) and _tagged(message, tag):
                    return Posted(conversation, str(message.get("ts", "")))
            meta = data.get("response_metadata")
            cursor = str(meta.get("next_cursor", "")) if isinstance(meta, dict) else ""
            if not data.get("has_more") or not cursor:
                return None
            params["cursor"] = cursor
        return None


def _confirm(title: str, text: str, button: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text},
        "confirm": {"type": "plain_text", "text": button},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def message_blocks(
    text: str, *, approval_release_id: str = "", what: str = ""
) -> list[dict[str, Any]]:
    """The message as Block Kit, with Approve/Reject buttons for an approval request.

    The buttons are the contract with promotion's ``/v1/slack/interactions``:
    ``action_id`` ``ferry_approve``/``ferry_reject``, ``value`` the release id,
    ``block_id`` ``ferry_approval:<releaseId>``. Each button asks Slack to confirm
    first, so a stray click does nothing; ``what`` is "<service> <artifact> to <env>".
    """
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}
    ]
    if approval_release_id:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"ferry_approval:{approval_release_id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "ferry_approve",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": approval_release_id,
                        "confirm": _confirm(
                            "Approve this release?", f"{what} goes ahead.", "Approve"
                        ),
                    },
                    {
                        "type": "button",
                        "action_id": "ferry_reject",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": approval_release_id,
                        "confirm": _confirm(
                            "Reject this release?", f"{what} will not go ahead.", "Reject"
                        ),
                    },
                ],
            }
        )
    return blocks
