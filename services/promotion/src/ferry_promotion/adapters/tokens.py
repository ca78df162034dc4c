"""The tokens file (``FERRY_API_TOKENS_FILE``) as promotion's identities: by token, subject,
email and Slack user id.

The file is read and validated by the runtime kit (:mod:`ferry_runtime.tokens`), the same
reader insights uses; :meth:`TokenStore.known` answers from what was last loaded, without
touching the file, for decisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferry_promotion.domain.access import Identity
from ferry_runtime.tokens import TokenEntry, TokensFile, hash_token, write_tokens_file

__all__ = ["TokenStore", "hash_token"]


def _identity(entry: TokenEntry) -> Identity:
    return Identity(entry.subject, entry.email, entry.name, entry.roles, entry.slack_user_id)


class TokenStore(TokensFile[Identity]):
    """The tokens file, re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _identity)

    @classmethod
    def from_entries(cls, path: Path, entries: list[dict[str, Any]]) -> TokenStore:
        write_tokens_file(path, entries)
        return cls(path)

    def known(self, subject: str) -> Identity | None:
        """The identity of ``subject`` as last loaded (never reads the file)."""
        return next((i for i in self.loaded() if i.subject == subject), None)

    def by_subject(self, subject: str) -> Identity | None:
        return next((i for i in self.identities() if i.subject == subject), None)

    def by_email(self, email: str) -> Identity | None:
        wanted = email.strip().lower()
        if not wanted:
            return None
        return next((i for i in self.identities() if i.email.lower() == wanted), None)

    def by_slack_user_id(self, slack_user_id: str) -> Identity | None:
        if not slack_user_id:
            return None
        return next((i for i in self.identities() if i.slack_user_id == slack_user_id), None)
