"""Promotion and insights read the API tokens file through the runtime kit's one reader:
the same identities, and the same refusals (insights used to skip role and hash checks)."""

from __future__ import annotations

from pathlib import Path

from ferry_insights.adapters.tokens import TokenStore as InsightsTokens
from ferry_promotion.adapters.tokens import TokenStore as PromotionTokens
from ferry_runtime.tokens import hash_token, write_tokens_file


def _entry(subject: str, token: str, *roles: str, **extra: str) -> dict[str, object]:
    return {"subject": subject, "roles": list(roles), "sha256": hash_token(token), **extra}


def test_promotion_and_insights_read_the_same_file_alike(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    write_tokens_file(path, [_entry("jane", "t1", "releaser:prod", email="jane@example.com")])
    promoted = PromotionTokens(path).authenticate("t1")
    seen = InsightsTokens(path).authenticate("t1")
    assert promoted is not None
    assert seen is not None
    assert (promoted.subject, promoted.email, promoted.roles) == (
        seen.subject,
        seen.email,
        seen.roles,
    )
    assert promoted.can_read()
    assert seen.can_read()
    # insights refuses what promotion refuses: it validates roles and hashes too
    write_tokens_file(path, [_entry("eve", "t9", "root")])
    assert InsightsTokens(path).authenticate("t9") is None
    assert PromotionTokens(path).authenticate("t9") is None
