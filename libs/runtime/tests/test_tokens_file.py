"""The one tokens-file reader: validated roles and hashes, re-read on change, constant-time
comparison. (``tests/test_tokens_shared.py``: promotion and insights read it alike.)"""

from __future__ import annotations

import os
from pathlib import Path

from ferry_runtime.tokens import TokenEntry, TokensFile, hash_token, write_tokens_file


def _entry(subject: str, token: str, *roles: str, **extra: str) -> dict[str, object]:
    return {"subject": subject, "roles": list(roles), "sha256": hash_token(token), **extra}


def _touch_later(path: Path) -> None:
    """Move the file's mtime on, as a later edit does (some filesystems tick coarsely)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_an_entry_is_found_by_its_token_and_its_hash_may_be_upper_case(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    upper = _entry("ops", "t2", "admin")
    upper["sha256"] = str(upper["sha256"]).upper()
    write_tokens_file(
        path, [_entry("jane", "t1", "developer", email="jane@example.com", slackUserId="U1"), upper]
    )
    tokens = TokensFile(path, lambda entry: entry)
    jane = tokens.authenticate("t1")
    assert jane == TokenEntry("jane", "jane@example.com", "", frozenset({"developer"}), "U1")
    assert jane.can_read()
    assert tokens.authenticate("t2") is not None
    assert tokens.authenticate("wrong") is None


def test_an_unknown_role_or_a_bad_hash_keeps_the_identities_loaded_before(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    write_tokens_file(path, [_entry("jane", "t1", "viewer")])
    tokens = TokensFile(path, lambda entry: entry.subject)
    assert tokens.identities() == ["jane"]
    for broken in (
        [_entry("eve", "t9", "superuser")],
        [{"subject": "eve", "roles": ["viewer"], "sha256": "not-a-hash"}],
    ):
        write_tokens_file(path, broken)
        _touch_later(path)
        assert tokens.identities() == ["jane"]
        assert tokens.authenticate("t9") is None


def test_a_changed_file_is_read_again_and_a_missing_one_refuses_everyone(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    write_tokens_file(path, [_entry("a", "t1", "viewer")])
    tokens = TokensFile(path, lambda entry: entry.subject)
    assert tokens.authenticate("t1") == "a"
    write_tokens_file(path, [_entry("b", "t2", "viewer")])
    _touch_later(path)
    assert tokens.loaded() == ["a"]  # what was last read, without reading
    assert tokens.authenticate("t2") == "b"
    assert tokens.authenticate("t1") is None
    path.unlink()
    assert tokens.authenticate("t2") is None
