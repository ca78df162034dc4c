"""Requests signed exactly as Slack signs them, for tests of Slack endpoints.

Slack posts slash commands and interactions as
``application/x-www-form-urlencoded`` bodies and signs each with
``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<raw body>")>`` and
``X-Slack-Request-Timestamp: <ts>``. The helpers here build those bodies
byte for byte (``quote_plus`` encoding, ``/`` as ``%2F``, as Slack writes them)
and sign them independently of slack_sdk, so a test checks the server's
verifier against a second implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Final
from urllib.parse import urlencode

__all__ = [
    "FORM_CONTENT_TYPE",
    "SLACK_EXAMPLE",
    "SlackExample",
    "block_actions_payload",
    "interaction_body",
    "sign",
    "signed_headers",
    "slash_command_body",
]

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"


class SlackExample:
    """The worked example of Slack's "Verifying requests from Slack" page."""

    secret: Final = "8f742231b10e8888abcd99yyyzzz85a5"
    timestamp: Final = 1531420618
    body: Final = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
        b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
        b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
        b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature: Final = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


SLACK_EXAMPLE: Final = SlackExample()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Slack's ``v0`` signature of ``body`` at ``timestamp``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body`` (timestamp: now unless given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": FORM_CONTENT_TYPE,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(secret, body, ts),
    }


def slash_command_body(
    text: str,
    *,
    user_id: str,
    response_url: str,
    command: str = "/ferry",
    user_name: str = "someone",
    team_id: str = "T0FERRY01",
    team_domain: str = "ferry-test",
    channel_id: str = "C0FERRY01",
    channel_name: str = "releases",
    trigger_id: str | None = None,
) -> bytes:
    """The form body of a slash command, fields in the order Slack sends them."""
    fields = [
        ("token", "legacy-verification-token"),
        ("team_id", team_id),
        ("team_domain", team_domain),
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user_id),
        ("user_name", user_name),
        ("command", command),
        ("text", text),
        ("api_app_id", "A0FERRY01"),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id or f"{uuid.uuid4().int % 10**12}.1.{uuid.uuid4().hex}"),
    ]
    return urlencode(fields).encode()


def block_actions_payload(
    *,
    user_id: str,
    action_id: str,
    value: str,
    block_id: str,
    response_url: str,
    channel_id: str = "C0FERRY01",
    message_ts: str = "1700000000.000100",
    message: dict[str, Any] | None = None,
    user_name: str = "someone",
    team_id: str = "T0FERRY01",
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it when a button is clicked."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": "A0FERRY01",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.{uuid.uuid4().hex}",
        "team": {"id": team_id, "domain": "ferry-test"},
        "channel": {"id": channel_id, "name": "releases"},
        "message": message
        or {"type": "message", "ts": message_ts, "text": "approval requested", "blocks": []},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def interaction_body(payload: dict[str, Any]) -> bytes:
    """The form body of an interaction: one field, ``payload``, holding JSON."""
    return urlencode([("payload", json.dumps(payload, separators=(",", ":")))]).encode()
