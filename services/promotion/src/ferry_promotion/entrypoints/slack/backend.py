"""Chat-ops' ports over the promotion service's use cases and tokens file.

The same service-layer use cases as the HTTP API, with the same identities and
so the same authorization; their records become the API's JSON shapes, their
errors :class:`Refusal` s with the same detail the API would put in a problem
document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from ferry_events import Intent
from ferry_promotion.adapters.tokens import TokenStore
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.preview import PREVIEW_RELEASE_ID
from ferry_promotion.entrypoints.http import views
from ferry_promotion.entrypoints.http.previews import preview_view
from ferry_promotion.entrypoints.slack.ports import Refusal, RefusalKind
from ferry_promotion.errors import (
    ApplicationError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unavailable,
)
from ferry_promotion.service_layer.lookups import environment_named
from ferry_promotion.service_layer.previewing import Previews
from ferry_promotion.service_layer.requesting import Requests
from ferry_promotion.service_layer.safety import Safety
from ferry_promotion.service_layer.scheduling import Schedule
from ferry_promotion.service_layer.views import Views

__all__ = ["PromotionReleases", "TokenPeople"]

T = TypeVar("T")

_KINDS: tuple[tuple[type[ApplicationError], RefusalKind], ...] = (
    (Forbidden, "forbidden"),
    (NotFound, "not-found"),
    (Conflict, "conflict"),
    (Invalid, "invalid"),
    (Unavailable, "unavailable"),
)


async def _refusing(call: Awaitable[T]) -> T:
    try:
        return await call
    except ApplicationError as exc:
        kind: RefusalKind = next((k for cls, k in _KINDS if isinstance(exc, cls)), "invalid")
        raise Refusal(kind, exc.detail) from exc


def _json(view: BaseModel) -> dict[str, Any]:
    return view.model_dump(by_alias=True, mode="json")


class TokenPeople:
    """Identities from the tokens file the HTTP API uses."""

    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens

    def by_slack_user(self, slack_user_id: str) -> Identity | None:
        return self._tokens.by_slack_user_id(slack_user_id)

    def by_email(self, email: str) -> Identity | None:
        return self._tokens.by_email(email)

    def describe(self, identity: Any) -> str:
        return str(getattr(identity, "email", "") or getattr(identity, "subject", "someone"))


class PromotionReleases:
    """The promotion use cases, as chat-ops calls them."""

    def __init__(
        self,
        requests: Requests,
        reads: Views,
        safety: Safety,
        previews: Previews,
        schedule: Schedule,
    ) -> None:
        self._requests = requests
        self._reads = reads
        self._safety = safety
        self._previews = previews
        self._schedule = schedule

    async def request(
        self,
        actor: Identity,
        *,
        service: str,
        environment: str,
        intent: str,
        artifact_id: str | None = None,
        branch: str | None = None,
        reason: str = "",
        at: datetime | None = None,
    ) -> Mapping[str, Any]:
        release = await _refusing(
            self._requests.request_release(
                actor,
                service=service,
                environment=environment,
                intent=Intent(intent),
                artifact_id=artifact_id,
                branch=branch,
                reason=reason,
                at=at,
            )
        )
        return {**_json(views.accepted(release)), "service": service, "environment": environment}

    async def cancel(self, actor: Identity, release_id: str, reason: str = "") -> Mapping[str, Any]:
        detail = await _refusing(self._schedule.cancel(actor, release_id, reason))
        return _json(views.release_view(detail))

    async def approve(
        self, actor: Identity, release_id: str, comment: str = ""
    ) -> Mapping[str, Any]:
        detail = await _refusing(self._requests.approve(actor, release_id, comment))
        return _json(views.release_view(detail))

    async def reject(self, actor: Identity, release_id: str, reason: str) -> Mapping[str, Any]:
        detail = await _refusing(self._requests.reject(actor, release_id, reason))
        return _json(views.release_view(detail))

    async def get(self, actor: Identity, release_id: str) -> Mapping[str, Any]:
        return _json(views.release_view(await _refusing(self._reads.status(actor, release_id))))

    async def service(self, actor: Identity, service: str) -> Mapping[str, Any]:
        return _json(views.service_view(await _refusing(self._reads.service(actor, service))))

    async def history(
        self, actor: Identity, service: str, environment: str | None, limit: int
    ) -> Mapping[str, Any]:
        history = await _refusing(self._reads.history(actor, service, environment, limit))
        return _json(views.history_view(history))

    async def is_artifact(self, actor: Identity, service: str, artifact_id: str) -> bool:
        try:
            found = await self._reads.artifacts(actor, service, limit=1000)
        except ApplicationError:
            return False  # the request itself will say what is wrong
        return any(a.artifact_id == artifact_id for a in found.artifacts)

    async def halt(
        self, actor: Identity, environment: str, *, halted: bool, reason: str = ""
    ) -> Mapping[str, Any]:
        if halted:
            request_id = await _refusing(self._safety.halt(actor, environment, reason))
        else:
            request_id = await _refusing(self._safety.resume(actor, environment))
        return _json(views.ChangeAccepted(request_id=request_id))

    async def promotion_preview(
        self, actor: Identity, *, service: str, environment: str
    ) -> Mapping[str, Any] | None:
        env = await _refusing(environment_named(self._previews.config, environment))
        if not env.protected:
            return None
        preview = await _refusing(
            self._previews.preview(
                actor, service=service, environment=env.name, intent=Intent.PROMOTE
            )
        )
        return _json(preview_view(preview, PREVIEW_RELEASE_ID))
