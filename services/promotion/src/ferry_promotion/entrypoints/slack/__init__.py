"""Chat-ops: the ``/ferry`` slash command and the approval buttons, over Slack.

``bootstrap.py`` builds the :class:`ChatOps` (with its Slack adapters) and hands
it to the app factory, which includes a :class:`SlackRouter` over it.
See docs/chatops.md for the Slack app's set-up.
"""

from __future__ import annotations

from ferry_promotion.entrypoints.slack.chatops import APPROVE_ACTION, REJECT_ACTION, ChatOps
from ferry_promotion.entrypoints.slack.ports import People, Refusal, Releases
from ferry_promotion.entrypoints.slack.routes import SlackRouter

__all__ = [
    "APPROVE_ACTION",
    "REJECT_ACTION",
    "ChatOps",
    "People",
    "Refusal",
    "Releases",
    "SlackRouter",
]
