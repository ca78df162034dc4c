"""The promotion HTTP API (docs/api.md): thin routes over the service layer's use cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.routing import BaseRoute

from ferry_events import Intent
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.preview import PREVIEW_RELEASE_ID
from ferry_promotion.domain.schedule import parse_at
from ferry_promotion.entrypoints.http import problems, views
from ferry_promotion.entrypoints.http.previews import PreviewView, preview_view
from ferry_promotion.entrypoints.http.views import (
    Accepted,
    ArtifactsView,
    ChangeAccepted,
    HaltsView,
    HistoryView,
    PolicyAccepted,
    ReleaseView,
    ServicesView,
    ServiceView,
)
from ferry_promotion.entrypoints.slack import ChatOps, SlackRouter
from ferry_promotion.errors import Unauthorized
from ferry_promotion.service_layer.policies import Policies
from ferry_promotion.service_layer.previewing import Previews
from ferry_promotion.service_layer.requesting import Requests
from ferry_promotion.service_layer.safety import Safety
from ferry_promotion.service_layer.scheduling import Schedule
from ferry_promotion.service_layer.views import Views

NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
ARTIFACT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: an environment a halt names, or ``*`` for every environment
HALT_TARGET = r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$"


class Tokens(Protocol):
    def authenticate(self, token: str) -> Identity | None:
        """The identity of a bearer token (``None`` when it is unknown)."""
        ...


@dataclass
class ApiDeps:
    """What the API routes need; built by bootstrap.py."""

    requests: Requests
    views: Views
    policies: Policies
    safety: Safety
    schedule: Schedule
    tokens: Tokens
    previews: Previews


class _Body(BaseModel):
    """A request body: camelCase names; an unknown field (a typo) is refused with 422."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ReleaseRequestBody(_Body):
    service: str = Field(min_length=1, max_length=63, pattern=NAME)
    environment: str = Field(min_length=1, max_length=63, pattern=NAME)
    intent: Literal["release", "promote", "rollback"]
    artifact_id: str | None = Field(default=None, max_length=128, pattern=ARTIFACT)
    branch: str | None = Field(default=None, min_length=1, max_length=255)
    from_environment: str | None = Field(default=None, max_length=63, pattern=NAME)
    reason: str = Field(default="", max_length=2000)
    override_freeze: bool = False
    #: RFC 3339 with an offset: the release is ``scheduled`` until then, and decided then.
    at: str | None = Field(default=None, min_length=1, max_length=64)


class ApproveBody(_Body):
    comment: str = Field(default="", max_length=2000)


class RejectBody(_Body):
    reason: str = Field(default="", max_length=2000)


class CancelBody(_Body):
    reason: str = Field(default="", max_length=2000)


class HaltBody(_Body):
    environment: str = Field(min_length=1, max_length=63, pattern=HALT_TARGET)
    reason: str = Field(max_length=2000)


class MarkBody(_Body):
    reason: str = Field(max_length=2000)


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str = ""
    errors: list[dict[str, str]] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}, "description": title}
    for code, title in (
        (401, "no or unknown bearer token"),
        (403, "the token's roles do not allow it"),
        (404, "not found"),
        (409, "conflict with the release's state"),
        (422, "invalid request; errors names each field"),
    )
}

ServiceName = Annotated[str, Path(min_length=1, max_length=63, pattern=NAME)]
ReleaseId = Annotated[str, Path(min_length=1, max_length=128)]
HaltTarget = Annotated[str, Path(min_length=1, max_length=63, pattern=HALT_TARGET)]
ArtifactId = Annotated[str, Path(min_length=1, max_length=128, pattern=ARTIFACT)]

_bearer = HTTPBearer(auto_error=False, description="a Ferry API token (see the tokens file)")


async def current_identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The identity of the bearer token (401 without one, or with an unknown one)."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("send Authorization: Bearer <token> (a token from the tokens file)")
    deps: ApiDeps = request.app.state.deps
    found = deps.tokens.authenticate(credentials.credentials)
    if found is None:
        raise Unauthorized("the bearer token is not known (or was revoked)")
    return found


Who = Annotated[Identity, Depends(current_identity)]


def _scheduling_routes(api: APIRouter, deps: ApiDeps) -> None:
    """The routes of scheduled releases (asked for with ``at`` in ``POST /v1/releases``)."""

    @api.post(
        "/releases/{release_id}/cancel", response_model=ReleaseView, response_model_by_alias=True
    )
    async def cancel(
        release_id: ReleaseId, who: Who, body: Annotated[CancelBody | None, Body()] = None
    ) -> ReleaseView:
        """Cancel a scheduled release before its time (its requester, or a releaser there)."""
        reason = (body or CancelBody()).reason
        return views.release_view(await deps.schedule.cancel(who, release_id, reason))


def create_app(
    deps: ApiDeps, chatops: ChatOps, operational_routes: Sequence[BaseRoute] = ()
) -> FastAPI:
    """The FastAPI app: API routes, Slack routes, problem+json errors and operational routes."""
    app = FastAPI(
        title="Ferry promotion API",
        version="1.0.0",
        description=(
            "Releases, promotions, rollbacks, approvals, policies, halts and marks on bad "
            "artifacts. See docs/api.md."
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    app.state.deps = deps
    requests, reads, policies, safety = deps.requests, deps.views, deps.policies, deps.safety

    api = APIRouter(prefix="/v1", responses=_ERRORS)

    @api.post("/releases", status_code=202, response_model=Accepted, response_model_by_alias=True)
    async def request_release(body: ReleaseRequestBody, who: Who, response: Response) -> Accepted:
        """Ask to release (artifactId or branch), promote or roll back; now, or ``at`` a time."""
        release = await requests.request_release(
            who,
            service=body.service,
            environment=body.environment,
            intent=Intent(body.intent),
            artifact_id=body.artifact_id,
            branch=body.branch,
            from_environment=body.from_environment,
            reason=body.reason,
            override_freeze=body.override_freeze,
            at=parse_at(body.at) if body.at is not None else None,
        )
        response.headers["Location"] = f"/v1/releases/{release.release_id}"
        return views.accepted(release)

    @api.get("/releases/preview", response_model=PreviewView, response_model_by_alias=True)
    async def preview_release(
        *,
        who: Who,
        service: Annotated[str, Query(min_length=1, max_length=63, pattern=NAME)],
        environment: Annotated[str, Query(min_length=1, max_length=63, pattern=NAME)],
        artifact_id: Annotated[
            str | None, Query(alias="artifactId", max_length=128, pattern=ARTIFACT)
        ] = None,
        branch: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        intent: Annotated[Literal["promote", "rollback"] | None, Query()] = None,
        from_environment: Annotated[
            str | None, Query(alias="fromEnvironment", max_length=63, pattern=NAME)
        ] = None,
    ) -> PreviewView:
        """What a release (artifactId or branch) or a promote or rollback (intent) would
        change, and the verdict of every policy now; nothing is recorded or published."""
        found = await deps.previews.preview(
            who,
            service=service,
            environment=environment,
            artifact_id=artifact_id,
            branch=branch,
            intent=Intent(intent) if intent else None,
            from_environment=from_environment,
        )
        return preview_view(found, PREVIEW_RELEASE_ID)

    @api.get("/releases/{release_id}", response_model=ReleaseView, response_model_by_alias=True)
    async def get_release(release_id: ReleaseId, who: Who) -> ReleaseView:
        """A release: status, approvals, violations and timeline."""
        return views.release_view(await reads.status(who, release_id))

    @api.post(
        "/releases/{release_id}/approve", response_model=ReleaseView, response_model_by_alias=True
    )
    async def approve(
        release_id: ReleaseId, who: Who, body: Annotated[ApproveBody | None, Body()] = None
    ) -> ReleaseView:
        """Approve a release awaiting approval (not your own)."""
        comment = (body or ApproveBody()).comment
        return views.release_view(await requests.approve(who, release_id, comment))

    @api.post(
        "/releases/{release_id}/reject", response_model=ReleaseView, response_model_by_alias=True
    )
    async def reject(
        release_id: ReleaseId, who: Who, body: Annotated[RejectBody | None, Body()] = None
    ) -> ReleaseView:
        """Reject a release awaiting approval."""
        reason = (body or RejectBody()).reason
        return views.release_view(await requests.reject(who, release_id, reason))

    _scheduling_routes(api, deps)

    @api.get("/services", response_model=ServicesView, response_model_by_alias=True)
    async def services(who: Who) -> ServicesView:
        """Every service and what runs in each environment."""
        return views.services_view(await reads.services(who))

    @api.get("/services/{service}", response_model=ServiceView, response_model_by_alias=True)
    async def service(service: ServiceName, who: Who) -> ServiceView:
        """What runs where for one service: artifact, commit, rollout state."""
        return views.service_view(await reads.service(who, service))

    @api.get(
        "/services/{service}/history", response_model=HistoryView, response_model_by_alias=True
    )
    async def history(
        service: ServiceName,
        who: Who,
        environment: Annotated[str | None, Query(max_length=63, pattern=NAME)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> HistoryView:
        """Release commits of the service, newest first."""
        return views.history_view(await reads.history(who, service, environment, limit))

    @api.get(
        "/services/{service}/artifacts", response_model=ArtifactsView, response_model_by_alias=True
    )
    async def service_artifacts(
        service: ServiceName,
        who: Who,
        branch: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> ArtifactsView:
        """Stored artifacts of the service, newest first."""
        return views.artifacts_view(await reads.artifacts(who, service, branch, limit))

    @api.get("/policies/{service}")
    async def get_policy(service: ServiceName, who: Who) -> dict[str, Any]:
        """The service's policy document (see docs/policies.md)."""
        return await policies.get_policy(who, service)

    @api.put(
        "/policies/{service}",
        status_code=202,
        response_model=PolicyAccepted,
        response_model_by_alias=True,
    )
    async def put_policy(
        service: ServiceName, who: Who, document: Annotated[dict[str, Any], Body()]
    ) -> PolicyAccepted:
        """Replace the service's policy (committed by git-writer)."""
        return PolicyAccepted(request_id=await policies.put_policy(who, service, document))

    @api.delete(
        "/policies/{service}",
        status_code=202,
        response_model=PolicyAccepted,
        response_model_by_alias=True,
    )
    async def delete_policy(service: ServiceName, who: Who) -> PolicyAccepted:
        """Delete the service's policy (committed by git-writer)."""
        return PolicyAccepted(request_id=await policies.delete_policy(who, service))

    @api.get("/halts", response_model=HaltsView, response_model_by_alias=True)
    async def list_halts(who: Who) -> HaltsView:
        """The halted environments (``halts.yaml`` in the config repo)."""
        return views.halts_view(await safety.halts(who))

    @api.post(
        "/halts", status_code=202, response_model=ChangeAccepted, response_model_by_alias=True
    )
    async def halt(body: HaltBody, who: Who) -> ChangeAccepted:
        """Halt an environment (``*``: every one): only rollbacks go through (admin)."""
        return ChangeAccepted(request_id=await safety.halt(who, body.environment, body.reason))

    @api.delete(
        "/halts/{environment}",
        status_code=202,
        response_model=ChangeAccepted,
        response_model_by_alias=True,
    )
    async def resume(environment: HaltTarget, who: Who) -> ChangeAccepted:
        """Lift the halt of an environment (admin)."""
        return ChangeAccepted(request_id=await safety.resume(who, environment))

    @api.post(
        "/services/{service}/artifacts/{artifact_id}/reject",
        status_code=202,
        response_model=ChangeAccepted,
        response_model_by_alias=True,
    )
    async def reject_artifact(
        service: ServiceName, artifact_id: ArtifactId, body: MarkBody, who: Who
    ) -> ChangeAccepted:
        """Mark an artifact bad: it is released and promoted nowhere (developer or above)."""
        return ChangeAccepted(
            request_id=await safety.reject(who, service, artifact_id, body.reason)
        )

    @api.delete(
        "/services/{service}/artifacts/{artifact_id}/reject",
        status_code=202,
        response_model=ChangeAccepted,
        response_model_by_alias=True,
    )
    async def unreject_artifact(
        service: ServiceName, artifact_id: ArtifactId, who: Who
    ) -> ChangeAccepted:
        """Lift the mark on an artifact (developer or above)."""
        return ChangeAccepted(request_id=await safety.unreject(who, service, artifact_id))

    app.include_router(api)

    app.include_router(SlackRouter(chatops))  # /v1/slack/commands and /interactions

    app.router.routes.extend(operational_routes)
    return app
