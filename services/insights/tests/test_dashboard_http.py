"""The dashboard over plain HTTP (no browser): login, the cookie's attributes, CSRF refusals,
logout, and each page rendered from events on the real broker. The browser tests
(tests/test_dashboard_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from insights_history import history
from insights_support import TOKENS, InsightsFactory

from ferry_insights.bootstrap import InsightsService
from ferry_testing import BrokerNamespace

pytestmark = pytest.mark.amqp


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def log_in(http: httpx.AsyncClient, who: str) -> httpx.Response:
    form = await http.get("/login")
    return await http.post(
        "/login",
        data={"csrf": csrf_of(form.text), "token": TOKENS[who]},
        follow_redirects=False,
    )


async def projected(service: InsightsService, count: int) -> None:
    async with asyncio.timeout(20):
        while (await service.store.counts())["inbox"] < count:
            await asyncio.sleep(0.1)


async def test_login_cookie_csrf_pages_and_logout(
    insights: InsightsFactory, broker_ns: BrokerNamespace
) -> None:
    events = history()
    async with insights() as service:
        for event in events:
            await broker_ns.publish(event)
        await projected(service, len(events))
        base = f"http://127.0.0.1:{service.runtime.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first = await http.get("/", follow_redirects=False)
            assert (first.status_code, first.headers["location"]) == (303, "/login")

            # a login post without the login form's token is refused, and logs nobody in
            forged = await http.post("/login", data={"token": TOKENS["admin"]})
            assert forged.status_code == 403
            assert "CSRF" in forged.text
            wrong = await http.post(
                "/login",
                data={"csrf": csrf_of((await http.get("/login")).text), "token": "nope"},
            )
            assert wrong.status_code == 401
            assert "not known" in wrong.text

            done = await log_in(http, "viewer")
            assert done.status_code == 303
            cookie = next(
                c for c in done.headers.get_list("set-cookie") if c.startswith("ferry_session=")
            )
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
            assert "Path=/" in cookie

            matrix = await http.get("/")
            assert matrix.status_code == 200
            assert "default-src 'self'" in matrix.headers["content-security-policy"]
            assert 'data-service="payments" data-environment="prod"' not in matrix.text  # no commit
            assert "Nothing released yet" in matrix.text

            dora = await http.get("/dora", params={"days": "30"})
            assert dora.status_code == 200
            assert 'data-environment="prod"' in dora.text
            assert 'data-environment="staging"' in dora.text

            timeline = await http.get("/services/payments")
            assert "rollback-payments-251100" in timeline.text
            assert (await http.get("/services/NOT_A_NAME")).status_code == 404

            fragment = await http.get("/approvals", headers={"X-Ferry-Fragment": "1"})
            assert fragment.text.lstrip().startswith("<main")

            token = csrf_of(matrix.text)  # the session's token, from the logout form
            refused = await http.post("/logout", data={})
            assert refused.status_code == 403
            assert (await http.get("/", follow_redirects=False)).status_code == 200  # still in
            out = await http.post("/logout", data={"csrf": token}, follow_redirects=False)
            assert (out.status_code, out.headers["location"]) == (303, "/login")
            assert (await http.get("/", follow_redirects=False)).status_code == 303
            # the old cookie value is dead on the server too, not only in this client
            assert (await service.store.counts())["sessions"] == 0


async def test_a_release_page_that_links_lead_to_through_the_login(
    insights: InsightsFactory, broker_ns: BrokerNamespace
) -> None:
    events = history()
    async with insights() as service:
        for event in events:
            await broker_ns.publish(event)
        await projected(service, len(events))
        base = f"http://127.0.0.1:{service.runtime.http_port}"
        page = "/releases/rel-prod-a2-191300"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first = await http.get(page, follow_redirects=False)
            assert first.status_code == 303
            assert first.headers["location"] == "/login?next=%2Freleases%2Frel-prod-a2-191300"
            form = await http.get(first.headers["location"])
            assert f'name="next" value="{page}"' in form.text
            done = await http.post(
                "/login",
                data={"csrf": csrf_of(form.text), "token": TOKENS["viewer"], "next": page},
                follow_redirects=False,
            )
            assert (done.status_code, done.headers["location"]) == (303, page)

            shown = await http.get(page)
            assert shown.status_code == 200
            assert "<h1>Release rel-prod-a2-191300</h1>" in shown.text
            assert "rollout failed" in shown.text
            assert "CrashLoopBackOff" in shown.text
            assert 'href="https://ci.example.com/a2"' in shown.text  # the change's CI job
            assert 'href="/services/payments"' in shown.text
            # the service's timeline links each release to its page
            timeline = await http.get("/services/payments")
            assert f'href="{page}"' in timeline.text

            missing = await http.get("/releases/rel-never-heard-of")
            assert missing.status_code == 404
            assert "heard nothing of release rel-never-heard-of" in missing.text
            assert (await http.get("/releases/..%2Fetc")).status_code == 404

        # after the login, only a path on this dashboard: never another site
        for hostile in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                form = await http.get("/login", params={"next": hostile})
                assert 'name="next"' not in form.text
                done = await http.post(
                    "/login",
                    data={"csrf": csrf_of(form.text), "token": TOKENS["viewer"], "next": hostile},
                    follow_redirects=False,
                )
                assert (done.status_code, done.headers["location"]) == (303, "/"), hostile
