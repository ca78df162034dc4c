"""The tokens file, lookups and the role matrix (no broker)."""

from __future__ import annotations

import os

import pytest
import yaml

from ferry_promotion.adapters.tokens import TokenStore, hash_token
from ferry_promotion.domain.access import require_admin, require_read, require_release
from ferry_promotion.domain.environments import Environment
from ferry_promotion.errors import Forbidden

DEV = Environment("dev")
PROD = Environment("prod", protected=True)


def _write(path, entries) -> None:
    path.write_text(yaml.safe_dump({"tokens": entries}))


def test_tokens_are_matched_by_hash_and_looked_up(tmp_path) -> None:
    path = tmp_path / "tokens.yaml"
    _write(
        path,
        [
            {
                "subject": "jane",
                "email": "Jane@Example.com",
                "slackUserId": "U1",
                "roles": ["developer", "releaser:prod"],
                "sha256": hash_token("secret-1"),
            },
            {"subject": "ops", "roles": ["admin"], "sha256": hash_token("secret-2").upper()},
        ],
    )
    store = TokenStore(path)
    jane = store.authenticate("secret-1")
    assert jane is not None
    assert jane.subject == "jane"
    assert jane.actor.email == "Jane@Example.com"
    assert store.authenticate("secret-2").is_admin
    assert store.authenticate("nope") is None
    assert store.authenticate("") is None
    assert store.by_email("jane@example.com") == jane
    assert store.by_slack_user_id("U1") == jane
    assert store.by_slack_user_id("") is None
    assert store.by_subject("ops").subject == "ops"
    assert "secret-1" not in path.read_text()


def test_file_changes_are_picked_up_and_a_broken_file_keeps_the_last_good(tmp_path) -> None:
    path = tmp_path / "tokens.yaml"
    _write(path, [{"subject": "a", "roles": ["viewer"], "sha256": hash_token("t1")}])
    store = TokenStore(path)
    assert store.authenticate("t1") is not None
    _write(path, [{"subject": "b", "roles": ["viewer"], "sha256": hash_token("t2")}])
    os.utime(path, ns=(1, 10**18))
    assert store.authenticate("t1") is None
    assert store.authenticate("t2").subject == "b"
    path.write_text("tokens: [{subject: c, roles: [wizard], sha256: zz}]")
    os.utime(path, ns=(1, 2 * 10**18))
    assert store.authenticate("t2").subject == "b"
    path.unlink()
    assert store.authenticate("t2") is None


def test_role_matrix(tmp_path) -> None:
    path = tmp_path / "tokens.yaml"
    roles = {"v": ["viewer"], "d": ["developer"], "r": ["releaser:prod"], "a": ["admin"]}
    _write(path, [{"subject": s, "roles": r, "sha256": hash_token(s)} for s, r in roles.items()])
    store = TokenStore(path)
    who = {s: store.by_subject(s) for s in roles}
    allowed = {(s, env.name) for s in roles for env in (DEV, PROD) if who[s].can_release_to(env)}
    assert allowed == {("d", "dev"), ("r", "prod"), ("a", "dev"), ("a", "prod")}
    for s in roles:
        require_read(who[s])
    with pytest.raises(Forbidden, match="releaser:prod or admin; d has developer"):
        require_release(who["d"], PROD)
    with pytest.raises(Forbidden, match="developer, releaser:dev or admin"):
        require_release(who["v"], DEV)
    with pytest.raises(Forbidden, match="needs the role admin"):
        require_admin(who["r"], "changing a policy")
