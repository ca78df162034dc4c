"""The dashboard's pages at ``/``: what runs where, a service's timeline, approvals, DORA, and
live updates over server-sent events. Plumbing (sessions, CSRF, rendering): :mod:`.web`."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ferry_insights.adapters.board import SessionRow
from ferry_insights.domain.board import matrix, may_approve, stories, waiting
from ferry_insights.domain.dora import Window
from ferry_insights.entrypoints.api import keys_json
from ferry_insights.entrypoints.web import HEADERS, STATIC, Refused, Web, local_path
from ferry_insights.service_layer.use_cases import dora

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
Page = Callable[[Request, SessionRow], Awaitable[Response]]

#: (key, title, where the key is in an answer's JSON)
CHARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("deploymentsPerDay", "Deployments per day", ("deploymentsPerDay",)),
    ("leadTime", "Lead time (median)", ("leadTimeSeconds", "median")),
    ("changeFailureRate", "Change failure rate", ("changeFailureRate",)),
    ("timeToRestore", "Time to restore (median)", ("timeToRestoreSeconds", "median")),
)


def _pick(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    found: Any = document
    for part in path:
        found = found[part]
    return found


def _charts(weekly: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One bar chart per key, one bar per week, drawn as SVG by the template."""
    out = []
    width = max(1, len(weekly)) * 20
    for key, title, path in CHARTS:
        values = [_pick(week, path) for week in weekly]
        top = max((v for v in values if isinstance(v, int | float)), default=0) or 1
        bars = []
        for index, (week, value) in enumerate(zip(weekly, values, strict=True)):
            shown = (
                "no data"
                if value is None
                else (f"{value * 100:.1f}%" if key == "changeFailureRate" else f"{value:g}")
            )
            height = 0
            if isinstance(value, int | float) and value > 0:
                height = max(1, round(56 * value / top))  # a small value stays visible
            bars.append(
                {
                    "x": index * 20 + 2,
                    "width": 16,
                    "height": height,
                    "label": f"week of {week['from'][:10]}",
                    "text": shown,
                }
            )
        summary = ", ".join(f"{b['label']} {b['text']}" for b in bars)
        out.append({"key": key, "title": title, "width": width, "bars": bars, "summary": summary})
    return out


class Pages:
    """The dashboard's endpoints."""

    def __init__(self, web: Web) -> None:
        self.web = web

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """Logged-in pages: a person without a session goes to the login page."""

        async def endpoint(request: Request) -> Response:
            me = await self.web.me(request)
            if me is None:
                if request.method == "GET" and request.headers.get("x-ferry-fragment") != "1":
                    # back to this page once logged in (a link from Slack or an email)
                    here = request.url.path
                    if request.url.query:
                        here += f"?{request.url.query}"
                    target = "/login" if here == "/" else f"/login?{urlencode({'next': here})}"
                    return RedirectResponse(target, status_code=303, headers=HEADERS)
                return self.web.refused(
                    request, Refused(401, "Not logged in", "Log in again: /login"), None
                )
            try:
                return await handler(request, me)
            except Refused as error:
                return self.web.refused(request, error, me)

        return endpoint

    async def what_runs_where(self, request: Request, me: SessionRow) -> Response:
        committed, rollouts, known = await self.web.reads.matrix_inputs()
        board = matrix(committed, rollouts, known)
        return self.web.render(
            request, "matrix.html", me=me, page="matrix", title="What runs where", board=board
        )

    async def service_page(self, request: Request, me: SessionRow) -> Response:
        service = request.path_params["service"]
        if not _NAME.fullmatch(service):
            raise Refused(404, "No such service", f"{service[:80]!r} is not a service name")
        records, known = await self.web.reads.service_records(service)
        return self.web.render(
            request,
            "service.html",
            me=me,
            page="service",
            title=service,
            service=service,
            releases=stories(records, known),
            commit_url=self.web.commit_url,
        )

    async def release_page(self, request: Request, me: SessionRow) -> Response:
        """One release: the page ``ferry watch`` and the notifier link to."""
        release_id = request.path_params["release_id"]
        if not _RELEASE.fullmatch(release_id):
            raise Refused(404, "No such release", f"{release_id[:80]!r} is not a release id")
        records, known = await self.web.reads.release_records(release_id)
        found = stories(records, known)
        if not found:
            raise Refused(
                404,
                "No such release (yet)",
                f"Insights has heard nothing of release {release_id}. A release that was just "
                "requested appears within seconds: reload this page.",
            )
        return self.web.render(
            request,
            "release.html",
            me=me,
            page="release",
            title=f"Release {release_id}",
            story=found[0],
            commit_url=self.web.commit_url,
        )

    async def approvals(self, request: Request, me: SessionRow) -> Response:
        requested, granted = await self.web.reads.approval_inputs()
        items = [
            (item, may_approve(me.subject, me.email, me.roles, item))
            for item in waiting(requested, granted, self.web.clock())
        ]
        return self.web.render(
            request, "approvals.html", me=me, page="approvals", title="Approvals", items=items
        )

    async def decide(self, request: Request, me: SessionRow) -> Response:
        release_id = request.path_params["release_id"]
        decision = request.path_params["decision"]
        form = await self.web.form(request)
        self.web.check_csrf(me.csrf, form)
        if decision not in ("approve", "reject") or not _RELEASE.fullmatch(release_id):
            raise Refused(404, "No such action", "approve or reject a release id")
        outcome = await self.web.promotion.decide(
            me.token, release_id, decision, form.get("text", "")[:2000]
        )
        query = urlencode({"notice": outcome.message, "ok": "1" if outcome.ok else "0"})
        return RedirectResponse(f"/approvals?{query}", status_code=303, headers=HEADERS)

    async def dora_page(self, request: Request, me: SessionRow) -> Response:
        params = request.query_params
        service = params.get("service", "").strip() or None
        squad = params.get("squad", "").strip()[:128] or None
        if service is not None and not _NAME.fullmatch(service):
            raise Refused(400, "Bad filter", f"{service[:80]!r} is not a service name")
        try:
            days = min(365, max(1, int(params.get("days", "30"))))
        except ValueError:
            raise Refused(400, "Bad filter", "days is a whole number from 1 to 365") from None
        window = Window.days_before(self.web.clock(), days)
        panels = []
        environments = await self.web.store.environments()
        # one database read per environment, side by side (each on its own connection)
        answers = await asyncio.gather(
            *(dora(self.web.store, e, window, service=service, squad=squad) for e in environments)
        )
        for environment, found in zip(environments, answers, strict=True):
            weekly = [
                {"from": week.start.isoformat(), **keys_json(keys)} for week, keys in found.weeks
            ]
            panels.append((environment, keys_json(found.keys), _charts(weekly)))
        return self.web.render(
            request,
            "dora.html",
            me=me,
            page="dora",
            title="DORA",
            service=service,
            squad=squad,
            days=days,
            panels=panels,
        )

    async def events(self, request: Request, me: SessionRow) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            last = await self.web.reads.marker()
            beats = 0
            while not self.web.closing.is_set() and not await request.is_disconnected():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.web.closing.wait(), self.web.live_interval)
                mark = await self.web.reads.marker()
                if mark != last:
                    last = mark
                    yield f"event: changed\ndata: {mark[0]}\n\n"
                beats += 1
                if beats * self.web.live_interval >= 15:
                    beats = 0
                    yield ": still here\n\n"

        headers = {**HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def login_form(self, request: Request) -> Response:
        if await self.web.me(request) is not None:
            after = local_path(request.query_params.get("next", "")) or "/"
            return RedirectResponse(after, status_code=303, headers=HEADERS)
        return await self.web.login_page(request)

    async def login(self, request: Request) -> Response:
        try:
            return await self.web.login(request)
        except Refused as error:
            return self.web.refused(request, error, None)

    async def logout(self, request: Request, me: SessionRow) -> Response:
        return await self.web.logout(request, me)


def routes(web: Web) -> list[BaseRoute]:
    p = Pages(web)
    return [
        Route("/", p.page(p.what_runs_where), methods=["GET"]),
        Route("/services/{service}", p.page(p.service_page), methods=["GET"]),
        Route("/releases/{release_id}", p.page(p.release_page), methods=["GET"]),
        Route("/approvals", p.page(p.approvals), methods=["GET"]),
        Route("/approvals/{release_id}/{decision}", p.page(p.decide), methods=["POST"]),
        Route("/dora", p.page(p.dora_page), methods=["GET"]),
        Route("/events", p.page(p.events), methods=["GET"]),
        Route("/login", p.login_form, methods=["GET"]),
        Route("/login", p.login, methods=["POST"]),
        Route("/logout", p.page(p.logout), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
