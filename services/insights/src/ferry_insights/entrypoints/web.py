"""The dashboard's plumbing: sessions from API tokens, CSRF tokens, HTML rendering.

- **Login** turns a Ferry API token (checked against the tokens file) into a session: a random
  value in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over HTTPS or with
  ``FERRY_COOKIE_SECURE``); the database keeps only its SHA-256, with the person, their token
  (promotion is called as them) and the session's CSRF token. Sessions live in the shared
  database, so any replica serves any person.
- **CSRF**: every form that changes something (login, logout, approve, reject) carries a token
  that must match: the session's, or for the login form a value in its own ``HttpOnly`` cookie
  (double submit). A post without it is refused with 403.
- Every page is sent with a strict Content-Security-Policy (scripts and styles from this
  origin only) and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ferry_insights.adapters.board import BoardReads, SessionRow
from ferry_insights.adapters.promotion import PromotionApi
from ferry_insights.adapters.tokens import TokenStore
from ferry_insights.service_layer.use_cases import Projections

SESSION_COOKIE = "ferry_session"
LOGIN_COOKIE = "ferry_login_csrf"
MAX_FORM_BYTES = 16 * 1024
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
STATIC = Path(__file__).parent / "static"


class Refused(Exception):
    """A request the dashboard answers with an error page (status, heading, message)."""

    def __init__(self, status: int, heading: str, message: str) -> None:
        super().__init__(message)
        self.status, self.heading, self.message = status, heading, message


_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9._~:@!$&'()*+,;=%/?-]{0,500}$")


def local_path(value: str) -> str:
    """Where to go after logging in: a path on this dashboard, else nowhere (never another
    site: ``//host`` and ``/\\host`` are refused, as is anything that is not a plain path)."""
    return value if _LOCAL_PATH.fullmatch(value) and value != "/login" else ""


def duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "no data"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def percent(value: object) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, int | float) else "no data"


def number(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "no data"


@dataclass
class Web:
    """What the dashboard's routes use, built by the composition root."""

    reads: BoardReads
    tokens: TokenStore
    promotion: PromotionApi
    store: Projections
    clock: Callable[[], datetime]
    session_ttl: timedelta = timedelta(hours=8)
    commit_url: str = ""
    cookie_secure: bool = False
    live_interval: float = 1.0
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------------ rendering

    def ago(self, moment: datetime) -> str:
        seconds = max(0, int((self.clock() - moment).total_seconds()))
        for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
            if seconds >= size:
                return f"{seconds // size} {unit} ago"
        return f"{seconds} s ago"

    def render(
        self,
        request: Request,
        template: str,
        *,
        me: SessionRow | None = None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        values = {
            "me": me,
            "csrf": me.csrf if me else context.pop("csrf", ""),
            "fragment": request.headers.get("x-ferry-fragment") == "1",
            "notice": request.query_params.get("notice", "")[:500],
            "notice_ok": request.query_params.get("ok") == "1",
            "page": "",
            "title": "Ferry",
            "ago": self.ago,
            "duration": duration,
            "percent": percent,
            "number": number,
            **context,
        }
        html = TEMPLATES.get_template(template).render(**values)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def refused(self, request: Request, error: Refused, me: SessionRow | None) -> Response:
        return self.render(
            request,
            "error.html",
            me=me,
            status=error.status,
            title=error.heading,
            heading=error.heading,
            message=error.message,
            back=None,
        )

    # ------------------------------------------------------------------ sessions

    def _secure(self, request: Request) -> bool:
        return self.cookie_secure or request.url.scheme == "https"

    def set_cookie(self, request: Request, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(self.session_ttl.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )

    async def me(self, request: Request) -> SessionRow | None:
        value = request.cookies.get(SESSION_COOKIE, "")
        if not value or len(value) > 200:
            return None
        return await self.reads.session(value, self.clock())

    async def form(self, request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "Form too large", f"a form is at most {MAX_FORM_BYTES} bytes")
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    @staticmethod
    def check_csrf(expected: str, form: dict[str, str]) -> None:
        given = form.get("csrf", "")
        # as bytes: compare_digest refuses str that is not ASCII, and a form may hold any
        if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
            raise Refused(
                403,
                "Refused: the form's CSRF token is missing or wrong",
                "This form was not sent by this dashboard page (or the page is too old). "
                "Reload the page and send it again.",
            )

    async def login_page(
        self, request: Request, *, status: int = 200, error: str = "", after: str = ""
    ) -> Response:
        csrf = secrets.token_urlsafe(24)
        after = local_path(after or request.query_params.get("next", ""))
        response = self.render(
            request,
            "login.html",
            status=status,
            csrf=csrf,
            title="Log in",
            notice=error,
            after=after,
        )
        self.set_cookie(request, response, LOGIN_COOKIE, csrf)
        return response

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        self.check_csrf(request.cookies.get(LOGIN_COOKIE, ""), form)
        after = local_path(form.get("next", ""))
        identity = self.tokens.authenticate(form.get("token", "").strip())
        if identity is None:
            return await self.login_page(
                request, status=401, error="That token is not known (or was revoked).", after=after
            )
        if not identity.can_read():
            return await self.login_page(
                request,
                status=403,
                error=f"{identity.subject} has no role: reading needs one.",
                after=after,
            )
        value = secrets.token_urlsafe(32)
        await self.reads.purge_sessions(self.clock())
        await self.reads.create_session(
            value,
            who={
                "subject": identity.subject,
                "email": identity.email,
                "name": identity.name,
                "roles": identity.roles,
            },
            token=form["token"].strip(),
            csrf=secrets.token_urlsafe(24),
            expires_at=self.clock() + self.session_ttl,
        )
        response = RedirectResponse(after or "/", status_code=303, headers=HEADERS)
        self.set_cookie(request, response, SESSION_COOKIE, value)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request, me: SessionRow) -> Response:
        self.check_csrf(me.csrf, await self.form(request))
        await self.reads.delete_session(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
