"""The HTTP API and the Slack routes against hostile requests (Hypothesis): arbitrary JSON
bodies, wrong content types, huge bodies, bytes that are not UTF-8, bad and missing Slack
signatures. Every answer is a 4xx problem+json (or a 2xx), never a 5xx; the service stays up.

Requests go to promotion running in-process against the real broker, git and database.
``test_api_fuzz.py`` (schemathesis, from the OpenAPI document) stays beside this.
``FERRY_FUZZ_EXAMPLES=20`` runs twenty times the examples.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry_testing import BrokerNamespace, EventTap
from ferry_testing.fuzz import fuzz_settings, huge_text, json_values
from ferry_testing.slack_signing import interaction_body, sign, slash_command_body

from .conftest import ConfigWriter, Harness, Tokens, harness

pytestmark = pytest.mark.amqp

SECRET = "fuzz-signing-secret"

ROUTES = [
    ("POST", "/v1/releases"),
    ("POST", "/v1/releases/r-1/approve"),
    ("POST", "/v1/releases/r-1/reject"),
    ("PUT", "/v1/policies/payments"),
    ("DELETE", "/v1/policies/payments"),
    ("POST", "/v1/halts"),
    ("DELETE", "/v1/halts/dev"),
    ("POST", "/v1/services/payments/artifacts/master-1/reject"),
    ("GET", "/v1/releases"),
    ("GET", "/v1/releases/%ff%fe"),
]
SLACK = ["/v1/slack/commands", "/v1/slack/interactions"]

content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/cloudevents+json",
        "",
        "\u00e9/\u00e9",
    ]
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.binary(max_size=50).map(lambda b: b"\xff\xfe" + b),
    st.integers(100, 5_000).map(lambda n: b"[" * n + b"]" * n),
    huge_text(300_000, 1_200_000).map(lambda s: json.dumps({"reason": s}).encode()),
    st.fixed_dictionaries(
        {"service": st.text(max_size=20), "environment": st.text(max_size=20)},
        optional={"artifactId": json_values, "intent": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)
slack_bodies = st.one_of(
    bodies,
    st.builds(
        lambda text, user: slash_command_body(
            text, user_id=user, response_url="http://127.0.0.1:9/hook"
        ),
        st.text(max_size=80) | st.sampled_from(["release payments dev", "help", "halt prod"]),
        st.text(max_size=12),
    ),
    json_values.map(lambda v: interaction_body({"type": "block_actions", "x": v})),
    st.text(max_size=60).map(lambda s: ("payload=" + s).encode("utf-8", "surrogatepass")),
)
#: How a Slack request is signed: right, wrong, stale, or not at all.
signings = st.sampled_from(["valid", "wrong", "stale", "missing", "garbage"])


@pytest.fixture
async def running_promotion(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    config: ConfigWriter,
    tokens: Tokens,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    config.store("payments", "master-1")
    async with harness(
        broker_ns,
        event_tap,
        config,
        tokens,
        f"sqlite+aiosqlite:///{tmp_path / 'promotion.db'}",
        tmp_path / "data",
        slack_signing_secret=SECRET,
        slack_api_url="http://127.0.0.1:9/api/",
    ) as found:
        yield found


def _assert_refused_clearly(status: int, content_type: str, text: str) -> None:
    assert status < 500, text[:500]
    if status >= 400:
        assert content_type.startswith("application/problem+json"), (status, text[:300])


@fuzz_settings(examples=40, reuses_fixture=True)
@given(
    route=st.sampled_from(ROUTES),
    body=bodies,
    content_type=content_types,
    who=st.sampled_from(["carol", "alice", None]),
)
async def test_api_answers_every_request_with_a_4xx_problem_or_success(
    running_promotion: Harness,
    route: tuple[str, str],
    body: bytes,
    content_type: str,
    who: str | None,
) -> None:
    method, path = route
    # bytes: a header value that is not ASCII goes out as its UTF-8 bytes, as a client may send
    headers: dict[str, str | bytes] = (
        {"Content-Type": content_type.encode()} if content_type else {}
    )
    if who:
        headers |= running_promotion.h(who)
    response = await running_promotion.client.request(method, path, content=body, headers=headers)
    _assert_refused_clearly(
        response.status_code, response.headers.get("content-type", ""), response.text
    )


@fuzz_settings(examples=40, reuses_fixture=True)
@given(path=st.sampled_from(SLACK), body=slack_bodies, signing=signings, content_type=content_types)
async def test_slack_routes_answer_every_request_without_a_server_error(
    running_promotion: Harness, path: str, body: bytes, signing: str, content_type: str
) -> None:
    now = int(time.time())
    headers: dict[str, str | bytes] = {
        "Content-Type": (content_type or "application/x-www-form-urlencoded").encode()
    }
    if signing == "valid":
        headers |= {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": sign(SECRET, body, now),
        }
    elif signing == "wrong":
        headers |= {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": sign("no", body, now),
        }
    elif signing == "stale":
        old = now - 3600
        headers |= {
            "X-Slack-Request-Timestamp": str(old),
            "X-Slack-Signature": sign(SECRET, body, old),
        }
    elif signing == "garbage":
        headers |= {
            "X-Slack-Request-Timestamp": "\u00e9".encode() * 3,
            "X-Slack-Signature": "v0=zz",
        }
    response = await running_promotion.client.post(path, content=body, headers=headers)
    _assert_refused_clearly(
        response.status_code, response.headers.get("content-type", ""), response.text
    )
    if signing != "valid":
        assert response.status_code in (401, 413), response.text[:300]
    # Slack shows a 200's JSON to the person: it must be JSON when there is a body
    if response.status_code == 200 and response.content:
        assert isinstance(response.json(), dict)
