"""Masking secrets before text reaches a log line, a dead letter or an error message.

One implementation for every process, the CLI included: the services' settings
and log lines, git-writer's and promotion's git errors, the notifier's Slack and
SMTP errors and the CLI's broker errors all use it.

What is masked:

- the user part of a URL: ``https://TOKEN@host/x`` -> ``https://***@host/x``, and
  ``scheme://user:pass@host`` -> ``scheme://user:***@host`` (``urlsplit(url).password``
  is ``None`` for the first form, so masking only the password is not enough);
- query values whose name says they are secret (``?token=...``, ``&sig=...``);
- the path of a Slack webhook (``https://hooks.slack.com/services/T/B/***``), which
  is its secret;
- Slack tokens (``xoxb-...``, ``xapp-...``) and GitHub tokens (``ghp_...``, ``ghs_...``,
  ``github_pat_...``) anywhere in a text.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "mask_secrets", "mask_url"]

MASK: Final = "***"

_SECRET_NAME: Final = re.compile(
    r"token|secret|passw|pwd|key|sig|auth|credential|session", re.IGNORECASE
)
#: a URL inside free text: stops at whitespace, quotes and angle brackets
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{1,30}://[^\s'\"<>`]+")
_SLACK_TOKEN: Final = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9-]+")
_GITHUB_TOKEN: Final = re.compile(r"\b(gh[pousr]|github_pat)_[A-Za-z0-9_]+")
_SLACK_HOOKS: Final = "hooks.slack.com"


def mask_url(url: str) -> str:
    """``url`` with its credentials masked; ``***`` when it cannot be parsed at all."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    path = parts.path
    if (parts.hostname or "").endswith(_SLACK_HOOKS):
        kind, _, rest = path.lstrip("/").partition("/")
        path = f"/{kind}/{MASK}" if rest else path
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, path=path, query=query))


def _mask_pair(pair: str) -> str:
    name, equals, value = pair.partition("=")
    if equals and value and _SECRET_NAME.search(name):
        return f"{name}={MASK}"
    return pair


def mask_secrets(text: str) -> str:
    """``text`` with every URL in it masked (see :func:`mask_url`) and Slack and GitHub
    tokens hidden."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda found: mask_url(found.group(0)), text)
    if "x" in text:
        text = _SLACK_TOKEN.sub(lambda found: f"{found.group(1)}-{MASK}", text)
    if "_" in text:
        text = _GITHUB_TOKEN.sub(lambda found: f"{found.group(1)}_{MASK}", text)
    return text
