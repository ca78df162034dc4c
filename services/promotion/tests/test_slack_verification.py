"""Slack request signing: Slack's own example, the age limit, forgeries and replays."""

from __future__ import annotations

import pytest

from ferry_promotion.adapters.slack.verification import (
    ReplayCache,
    RequestRefused,
    SlackRequestVerifier,
)
from ferry_testing.slack_signing import SLACK_EXAMPLE, sign, signed_headers


def example_headers(signature: str = SLACK_EXAMPLE.signature) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(SLACK_EXAMPLE.timestamp),
        "X-Slack-Signature": signature,
    }


def at(seconds: float):
    return lambda: float(seconds)


async def test_slacks_documented_example_verifies():
    verifier = SlackRequestVerifier(SLACK_EXAMPLE.secret, clock=at(SLACK_EXAMPLE.timestamp + 10))
    await verifier.verify(SLACK_EXAMPLE.body, example_headers())


def test_the_test_helper_signs_as_slack_does():
    assert (
        sign(SLACK_EXAMPLE.secret, SLACK_EXAMPLE.body, SLACK_EXAMPLE.timestamp)
        == SLACK_EXAMPLE.signature
    )


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (SLACK_EXAMPLE.body + b"&x=1", example_headers(), "bad-signature"),
        (SLACK_EXAMPLE.body, example_headers("v0=" + "0" * 64), "bad-signature"),
        (SLACK_EXAMPLE.body, {"X-Slack-Signature": SLACK_EXAMPLE.signature}, "unsigned"),
        (
            SLACK_EXAMPLE.body,
            {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=1"},
            "bad-timestamp",
        ),
        (b"\xff\xfe", example_headers(), "bad-signature"),
    ],
)
async def test_forgeries_are_refused(body, headers, code):
    verifier = SlackRequestVerifier(SLACK_EXAMPLE.secret, clock=at(SLACK_EXAMPLE.timestamp))
    with pytest.raises(RequestRefused) as err:
        await verifier.verify(body, headers)
    assert err.value.code == code


@pytest.mark.parametrize("offset", [301, -301, 10_000])
async def test_a_request_more_than_five_minutes_away_is_stale(offset):
    verifier = SlackRequestVerifier(
        SLACK_EXAMPLE.secret, clock=at(SLACK_EXAMPLE.timestamp + offset)
    )
    with pytest.raises(RequestRefused) as err:
        await verifier.verify(SLACK_EXAMPLE.body, example_headers())
    assert err.value.code == "stale"


async def test_a_replay_within_the_window_is_refused_but_a_forgery_does_not_poison_the_cache():
    now = [1_700_000_000.0]
    verifier = SlackRequestVerifier("s3cret", clock=lambda: now[0])
    body = b"text=status+payments"
    headers = signed_headers("s3cret", body, timestamp=int(now[0]))
    forged = {**headers, "X-Slack-Signature": sign("wrong", body, int(now[0]))}
    with pytest.raises(RequestRefused):
        await verifier.verify(body, forged)
    await verifier.verify(body, headers)
    now[0] += 200
    with pytest.raises(RequestRefused) as err:
        await verifier.verify(body, headers)
    assert err.value.code == "replay"
    now[0] += 200  # past the window the timestamp check refuses it instead
    with pytest.raises(RequestRefused) as err:
        await verifier.verify(body, headers)
    assert err.value.code == "stale"


def test_the_replay_cache_is_bounded_and_forgets_expired_signatures():
    cache = ReplayCache(window=10, capacity=3)
    assert all(cache.seen_first(f"s{i}", 0.0) for i in range(5))
    assert len(cache) == 3
    assert cache.seen_first("s0", 1.0)  # evicted as the oldest
    assert not cache.seen_first("s4", 1.0)
    assert cache.seen_first("s4", 11.0)  # expired
    assert len(cache) <= 3
