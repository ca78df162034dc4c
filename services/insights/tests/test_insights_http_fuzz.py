"""Insights' HTTP surface against hostile requests (Hypothesis): the API (``/v1/dora``) and
the dashboard's pages and forms, with arbitrary paths, query strings, bodies, content types
and cookies, signed in and not. No request gets a 5xx; the API refuses with problem+json.
``FERRY_FUZZ_EXAMPLES=20`` runs twenty times the examples.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from insights_support import TOKENS, InsightsFactory

from ferry_testing.fuzz import fuzz_settings, huge_text, json_values

pytestmark = pytest.mark.amqp

PATHS = [
    ("GET", "/v1/dora"),
    ("GET", "/"),
    ("GET", "/dora"),
    ("GET", "/approvals"),
    ("GET", "/services/{}"),
    ("GET", "/releases/{}"),
    ("POST", "/approvals/{}/approve"),
    ("POST", "/approvals/r-1/{}"),
    ("POST", "/login"),
    ("GET", "/login"),
]
params = st.dictionaries(
    st.sampled_from(["environment", "service", "squad", "days", "next", "since", "until", "x"]),
    st.text(max_size=30) | st.sampled_from(["0", "-1", "366", "1e9", "//evil.example", "prod"]),
    max_size=4,
)
segments = st.text(min_size=1, max_size=40) | huge_text(1_000, 5_000)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: str(v).encode()),
    st.dictionaries(st.sampled_from(["csrf", "token", "text"]), st.text(max_size=40)).map(
        lambda form: "&".join(f"{k}={quote(v)}" for k, v in form.items()).encode()
    ),
    huge_text(100_000, 400_000).map(lambda s: ("text=" + s).encode()),
)
content_types = st.sampled_from(
    [b"application/x-www-form-urlencoded", b"application/json", b"text/plain", b"", b"\xc3\xa9/x"]
)


@pytest.fixture
async def clients(insights: InsightsFactory) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with insights() as service:
        base = f"http://127.0.0.1:{service.runtime.http_port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as anonymous,
            httpx.AsyncClient(base_url=base, timeout=10) as signed_in,
        ):
            form = await signed_in.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf, form.text[:300]
            login = await signed_in.post(
                "/login", data={"csrf": csrf.group(1), "token": TOKENS["admin"]}
            )
            assert login.status_code in (200, 303), login.text[:300]
            yield {"anonymous": anonymous, "admin": signed_in}


async def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_server_error(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    response = await clients["admin"].post(
        "/approvals/r-1/approve",
        content=b"csrf=%C3%A9&text=ok",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 403, response.text[:300]
    assert "CSRF" in response.text


@fuzz_settings(examples=60, reuses_fixture=True)
@given(
    route=st.sampled_from(PATHS),
    segment=segments,
    query=params,
    body=bodies,
    content_type=content_types,
    who=st.sampled_from(["anonymous", "admin"]),
    token=st.sampled_from([None, TOKENS["viewer"], "wrong", "\u00e9"]),
)
async def test_no_request_gets_a_server_error(
    clients: dict[str, httpx.AsyncClient],
    route: tuple[str, str],
    segment: str,
    query: dict[str, str],
    body: bytes,
    content_type: bytes,
    who: str,
    token: str | None,
) -> None:
    method, template = route
    path = template.format(quote(segment, safe=""))
    headers: dict[str, str | bytes] = {"Content-Type": content_type} if content_type else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}".encode()
    response = await clients[who].request(
        method, path, params=query, content=body if method == "POST" else None, headers=headers
    )
    assert response.status_code < 500, (method, path, response.text[:500])
    if path.startswith("/v1/") and response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
