"""What chat-ops needs from the rest of the promotion service, as two small protocols.

:class:`People` answers "who is this?" from the tokens file; :class:`Releases`
runs the same use cases as the HTTP API (and so the same authorization) and
returns the API's JSON shapes. ``backend.py`` implements both over the
promotion service's application layer; every refusal comes back as a
:class:`Refusal` whose ``message`` is written for the person in Slack.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

__all__ = ["People", "Person", "Refusal", "RefusalKind", "Releases"]

RefusalKind = Literal["forbidden", "not-found", "conflict", "invalid", "unavailable"]


class Refusal(Exception):
    """A use case said no. ``kind`` is the HTTP API's class of error, ``message`` its detail."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Person(Protocol):
    """A Ferry identity as the tokens file describes it."""

    @property
    def subject(self) -> str: ...

    @property
    def email(self) -> str: ...


class People(Protocol):
    def by_slack_user(self, slack_user_id: str) -> Any | None:
        """The identity whose tokens-file entry lists this ``slackUserId``."""

    def by_email(self, email: str) -> Any | None:
        """The identity with this email (case-insensitive)."""

    def describe(self, identity: Any) -> str:
        """How to name this identity in a message (its email, else its subject)."""


class Releases(Protocol):
    async def request(
        self,
        actor: Any,
        *,
        service: str,
        environment: str,
        intent: str,
        artifact_id: str | None = None,
        branch: str | None = None,
        reason: str = "",
        at: datetime | None = None,
    ) -> Mapping[str, Any]:
        """Ask for a release (``POST /v1/releases``, scheduled ``at`` a time when given)."""

    async def cancel(self, actor: Any, release_id: str, reason: str = "") -> Mapping[str, Any]:
        """Cancel a scheduled release; :class:`Refusal` ``conflict`` when it is not scheduled."""

    async def approve(self, actor: Any, release_id: str, comment: str = "") -> Mapping[str, Any]:
        """Approve; :class:`Refusal` ``conflict`` when not awaiting approval any more."""

    async def reject(self, actor: Any, release_id: str, reason: str) -> Mapping[str, Any]:
        """Reject; :class:`Refusal` ``conflict`` when not awaiting approval any more."""

    async def get(self, actor: Any, release_id: str) -> Mapping[str, Any]:
        """``GET /v1/releases/{id}``; :class:`Refusal` ``not-found``."""

    async def service(self, actor: Any, service: str) -> Mapping[str, Any]:
        """``GET /v1/services/{service}``; environments in promotion order."""

    async def history(
        self, actor: Any, service: str, environment: str | None, limit: int
    ) -> Mapping[str, Any]:
        """``GET /v1/services/{service}/history``."""

    async def is_artifact(self, actor: Any, service: str, artifact_id: str) -> bool:
        """True when ``artifact_id`` names a stored artifact of ``service``."""

    async def halt(
        self, actor: Any, environment: str, *, halted: bool, reason: str = ""
    ) -> Mapping[str, Any]:
        """``POST /v1/halts`` (``halted``) or ``DELETE /v1/halts/{environment}``."""

    async def promotion_preview(
        self, actor: Any, *, service: str, environment: str
    ) -> Mapping[str, Any] | None:
        """``GET /v1/releases/preview?intent=promote`` when ``environment`` is protected (its
        promotion is confirmed first); None when it is not."""
