"""Slack through slack_sdk's ``AsyncWebClient``: channel messages, DMs, threads, updates.

The client's own retry handlers are turned off: retries are per destination in
:mod:`ferry_notifier.delivery`, which honours ``Retry-After``.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Posted:
    channel: str
    ts: str


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
        return Retryable(f"Slack {method}: HTTP {status} {code}".rstrip())
    if code == "users_not_found":
        return NoRecipient(f"Slack {method}: users_not_found")
    return Undeliverable(f"Slack {method} refused: {code or f'HTTP {status}'}")


class Slack:
    """What the notifier asks of Slack."""

    def __init__(self, client: AsyncWebClient, user_map: Mapping[str, str]) -> None:
        self._client = client
        self._user_map = dict(user_map)
        self._user_ids: dict[str, str] = {}

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
        try:
            response = await self._client.api_call(
                method,
                http_verb="GET" if method.startswith("users.") else "POST",
                params=kwargs if method.startswith("users.") else None,
                json=None if method.startswith("users.") else kwargs,
            )
        except SlackApiError as exc:
            raise _error(exc, method) from exc
        except (TimeoutError, aiohttp.ClientError, SlackClientError) as exc:
            raise Retryable(f"Slack {method}: {mask_secrets(repr(exc))}") from exc
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
    ) -> Posted:
        kwargs: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
            if broadcast:
                kwargs["reply_broadcast"] = True
        data = await self._call("chat.postMessage", **kwargs)
        return Posted(channel=str(data.get("channel", channel)), ts=str(data.get("ts", "")))

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)


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
