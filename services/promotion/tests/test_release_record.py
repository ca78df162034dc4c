"""The release record's status rules: no step back, which are open, why a vote is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.release import Release, is_open, may_follow

_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _release(status: Status, violations: list[dict[str, str]] | None = None) -> Release:
    return Release(
        release_id="r-1",
        service="checkout",
        environment="prod",
        intent="release",
        status=status.value,
        actor_subject="alice",
        requested_at=_AT,
        updated_at=_AT,
        correlation_id="c-1",
        violations=violations or [],
    )


@pytest.mark.parametrize(
    ("new", "current", "allowed"),
    [
        (Status.COMMITTED, Status.APPROVED, True),
        (Status.ROLLED_OUT, Status.COMMITTED, True),
        (Status.APPROVED, Status.COMMITTED, False),
        (Status.COMMITTED, Status.ROLLED_OUT, False),
        (Status.REQUESTED, Status.AWAITING_APPROVAL, False),
        (Status.FAILED, Status.ROLLED_OUT, True),
    ],
)
def test_a_later_status_is_never_replaced_by_an_earlier_one(
    new: Status, current: Status, allowed: bool
) -> None:
    assert may_follow(new.value, current.value) is allowed


def test_only_undecided_releases_are_open() -> None:
    assert {s for s in Status if is_open(s.value)} == {Status.REQUESTED, Status.AWAITING_APPROVAL}
    assert _release(Status.AWAITING_APPROVAL).open
    assert not _release(Status.APPROVED).open


def test_a_refused_vote_says_why() -> None:
    expired = _release(
        Status.REJECTED, [{"policy": "approvals", "message": "approval expired after 24h"}]
    )
    assert expired.why_not_awaiting_approval() == (
        "release r-1 is not awaiting approval: its approval expired"
    )
    assert _release(Status.REQUESTED).why_not_awaiting_approval() == (
        "release r-1 is not awaiting approval: "
        "it has not been decided yet (no approval was asked for)"
    )
    assert _release(Status.COMMITTED).why_not_awaiting_approval() == (
        "release r-1 is not awaiting approval: it is committed"
    )
