"""Insights' HTTP API: ``GET /v1/insights/dora``, ``/metrics`` with the DORA gauges, and
problem+json for every error."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute

from ferry_events import utcnow
from ferry_insights.adapters.tokens import Identity, TokenStore
from ferry_insights.domain.dora import Keys, Report, Window
from ferry_insights.entrypoints.gauges import DoraGauges
from ferry_insights.service_layer.use_cases import Projections, dora
from ferry_runtime import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME)


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass
class ApiDeps:
    store: Projections
    tokens: TokenStore
    clock: Callable[[], datetime] = utcnow


def problem(request: Request, status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {
        "type": "https://ferry.dev/problems/" + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_bearer = HTTPBearer(auto_error=False, description="a Ferry API token (see the tokens file)")


async def current_identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The identity of the bearer token: 401 without a known one, 403 with no role."""
    if credentials is None or not credentials.credentials:
        raise ProblemError(
            401, "Unauthorized", "send Authorization: Bearer <token> (a token from the tokens file)"
        )
    deps: ApiDeps = request.app.state.deps
    found = deps.tokens.authenticate(credentials.credentials)
    if found is None:
        raise ProblemError(401, "Unauthorized", "the bearer token is not known (or was revoked)")
    if not found.can_read():
        raise ProblemError(
            403, "Forbidden", f"{found.subject} has no role; reading needs viewer or any other role"
        )
    return found


Who = Annotated[Identity, Depends(current_identity)]


def _seconds(value: float | None) -> float | int | None:
    if value is None:
        return None
    rounded = round(value, 3)
    return int(rounded) if rounded.is_integer() else rounded


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def keys_json(keys: Keys) -> dict[str, Any]:
    return {
        "deployments": keys.deployments,
        "deploymentsPerDay": _ratio(keys.deployments_per_day),
        "leadTimeSeconds": {
            "median": _seconds(keys.lead_time_median),
            "p90": _seconds(keys.lead_time_p90),
        },
        "changeFailureRate": _ratio(keys.change_failure_rate),
        "timeToRestoreSeconds": {"median": _seconds(keys.time_to_restore_median)},
        "failedDeployments": keys.failed,
        "unrestoredFailures": keys.unrestored,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def report_json(
    report: Report, *, environment: str, service: str | None, squad: str | None
) -> dict[str, Any]:
    return {
        "environment": environment,
        "service": service,
        "squad": squad,
        "from": _iso(report.window.start),
        "to": _iso(report.window.end),
        "days": report.window.days,
        **keys_json(report.keys),
        "weekly": [
            {"from": _iso(week.start), "to": _iso(week.end), **keys_json(keys)}
            for week, keys in report.weeks
        ],
    }


def _check_name(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not _NAME.fullmatch(value):
        raise ProblemError(
            400,
            "Bad request",
            f"{what} {value[:80]!r} is not a lowercase DNS label (a-z, 0-9, '-', at most 63)",
        )
    return value


def create_app(
    deps: ApiDeps,
    gauges: DoraGauges,
    operational_routes: Sequence[BaseRoute] = (),
    dashboard_routes: Sequence[BaseRoute] = (),
) -> FastAPI:
    app = FastAPI(
        title="Ferry insights API",
        version="1.0.0",
        description="DORA metrics from Ferry's events. See docs/insights.md.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.deps = deps
    _install_problems(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await gauges.refresh()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    api = APIRouter(prefix="/v1/insights")

    @api.get("/dora")
    async def get_dora(
        _: Who,
        environment: Annotated[str, Query(max_length=63)] = "prod",
        service: Annotated[str | None, Query(max_length=63)] = None,
        squad: Annotated[str | None, Query(max_length=128)] = None,
        days: Annotated[int, Query(ge=1, le=365)] = 30,
        to: Annotated[datetime | None, Query(description="window end (default: now)")] = None,
    ) -> dict[str, Any]:
        """The four DORA keys of one environment, over the ``days`` before ``to``."""
        env = _check_name(environment, "environment") or "prod"
        name = _check_name(service, "service")
        team = squad or None
        end = deps.clock() if to is None else _aware(to)
        started = time.perf_counter()
        found = await dora(deps.store, env, Window.days_before(end, days), service=name, squad=team)
        log.info(
            "dora answered",
            environment=env,
            service=name,
            squad=team,
            days=days,
            deployments=found.keys.deployments,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return report_json(found, environment=env, service=name, squad=team)

    app.include_router(api)
    app.router.routes.extend(dashboard_routes)
    for route in operational_routes:
        if getattr(route, "path", "") != "/metrics":
            app.router.routes.append(route)
    return app


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _install_problems(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem(request, exc.status, exc.title, exc.detail)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ())[1:]) or "query",
                "message": str(err.get("msg", "invalid")),
            }
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(request, 400, "Bad request", detail, errors=errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "Error")
        return problem(request, exc.status_code, title, str(exc.detail))

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        ProblemError: on_problem,
        RequestValidationError: on_validation,
        StarletteHTTPException: on_http,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
