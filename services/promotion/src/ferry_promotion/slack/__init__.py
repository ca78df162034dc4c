"""Chat-ops: the ``/ferry`` slash command and the approval buttons, over Slack.

The promotion service's app factory includes the router that
:func:`build_slack_router` returns; :func:`chatops_of` finds the running
:class:`ChatOps` in an app (to drain or cancel its follow-ups at shutdown).
See docs/chatops.md for the Slack app's set-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ferry_promotion.slack.chatops import APPROVE_ACTION, REJECT_ACTION, ChatOps
from ferry_promotion.slack.ports import People, Refusal, Releases
from ferry_promotion.slack.responder import SLACK_HOOKS_ORIGIN, ResponseUrlPoster
from ferry_promotion.slack.routes import SlackRouter
from ferry_promotion.slack.users import SlackUserDirectory
from ferry_promotion.slack.verification import SlackRequestVerifier

if TYPE_CHECKING:
    from ferry_promotion.application import Promotion
    from ferry_promotion.identity import TokenStore

__all__ = [
    "APPROVE_ACTION",
    "REJECT_ACTION",
    "ChatOps",
    "People",
    "Refusal",
    "Releases",
    "SlackDeps",
    "SlackRouter",
    "build_slack_router",
    "chatops_of",
]


class SlackDeps(Protocol):
    """What the promotion app factory hands over (its ``ApiDeps``)."""

    promotion: Promotion
    tokens: TokenStore
    slack_signing_secret: str
    slack_bot_token: str
    slack_api_url: str


def build_slack_router(deps: SlackDeps, *, follow_interval: float = 1.0) -> SlackRouter:
    """The Slack routes over the promotion service's use cases and tokens file.

    Without a signing secret every request is refused (401: it cannot be verified);
    without a bot token a Slack user is known only by the ``slackUserId`` of
    their tokens-file entry.
    """
    from slack_sdk.web.async_client import AsyncWebClient

    from ferry_promotion.slack.backend import PromotionReleases, TokenPeople

    api_url = deps.slack_api_url or "https://slack.com/api/"
    base_url = api_url if api_url.endswith("/") else api_url + "/"
    users = (
        SlackUserDirectory(AsyncWebClient(token=deps.slack_bot_token, base_url=base_url))
        if deps.slack_bot_token
        else None
    )
    chatops = ChatOps(
        verifier=SlackRequestVerifier(deps.slack_signing_secret)
        if deps.slack_signing_secret
        else None,
        people=TokenPeople(deps.tokens),
        releases=PromotionReleases(deps.promotion),
        users=users,
        poster=ResponseUrlPoster([SLACK_HOOKS_ORIGIN, base_url]),
        follow_interval=follow_interval,
    )
    return SlackRouter(chatops)


def chatops_of(app: Any) -> ChatOps | None:
    """The :class:`ChatOps` behind an app's Slack routes, if it has them."""
    for route in getattr(app, "routes", []):
        # FastAPI keeps an included router (newer versions) or copies its routes (older ones)
        owner = getattr(route, "original_router", None) or getattr(
            getattr(route, "endpoint", None), "__self__", None
        )
        if isinstance(owner, SlackRouter):
            return owner.chatops
    return None
