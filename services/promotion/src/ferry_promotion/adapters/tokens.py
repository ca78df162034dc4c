"""The tokens file (``FERRY_API_TOKENS_FILE``): identities by token hash, subject, email, Slack id.

Each entry has a subject, an email, a name, roles, an optional ``slackUserId``
and the SHA-256 of its token (never the token itself). The file is re-read
when it changes on disk: by :meth:`TokenStore.reload` (which authentication
calls, and a background refresher every second); :meth:`TokenStore.known`
answers from what was last loaded, without touching the file, for decisions.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferry_promotion.domain.access import Identity
from ferry_runtime import get_logger

log = get_logger(__name__)

_ROLE = re.compile(r"^(viewer|developer|admin|releaser:[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in the tokens file for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    subject: str = Field(min_length=1, max_length=200)
    email: str = ""
    name: str = ""
    slack_user_id: str = Field(default="", alias="slackUserId")
    roles: list[str] = Field(default_factory=list)
    sha256: str

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        for role in value:
            if not _ROLE.fullmatch(role):
                raise ValueError(
                    f"unknown role {role!r}: use viewer, developer, releaser:<env> or admin"
                )
        return value

    @field_validator("sha256")
    @classmethod
    def _hash(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.fullmatch(value):
            raise ValueError("must be the 64 hex digits of the token's SHA-256")
        return value


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tokens: list[_Entry] = Field(default_factory=list)


class TokenStore:
    """The tokens file, re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: int | None = None
        self._entries: list[tuple[bytes, Identity]] = []

    @classmethod
    def from_entries(cls, path: Path, entries: list[dict[str, Any]]) -> TokenStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"tokens": entries}, sort_keys=False))
        return cls(path)

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            if self._mtime is not None or not self._entries:
                log.warning(
                    "tokens file not found; every API call will be refused", path=str(self.path)
                )
            self._mtime, self._entries = None, []
            return
        if mtime == self._mtime:
            return
        try:
            parsed = _TokensFile.model_validate(yaml.safe_load(self.path.read_text()) or {})
        except (yaml.YAMLError, ValidationError, OSError) as exc:
            log.error(  # noqa: TRY400 - a config problem, not a crash
                "tokens file is invalid; keeping the previous identities",
                path=str(self.path),
                error=str(exc),
            )
            self._mtime = mtime
            return
        self._entries = [
            (
                bytes.fromhex(e.sha256),
                Identity(e.subject, e.email, e.name, frozenset(e.roles), e.slack_user_id),
            )
            for e in parsed.tokens
        ]
        self._mtime = mtime
        log.info("tokens file loaded", path=str(self.path), identities=len(self._entries))

    def reload(self) -> None:
        """Read the file again if it changed on disk since it was last read."""
        self._load()

    async def keep_fresh(self, interval: float = 1.0) -> None:
        """Reload every ``interval`` seconds (for :meth:`known`), until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                mtime: int | None = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._load()

    def identities(self) -> list[Identity]:
        self._load()
        return [identity for _, identity in self._entries]

    def known(self, subject: str) -> Identity | None:
        """The identity of ``subject`` as last loaded (never reads the file)."""
        return next((i for _, i in self._entries if i.subject == subject), None)

    def authenticate(self, token: str) -> Identity | None:
        """The identity whose token hash matches, compared in constant time against each entry."""
        self._load()
        digest = hashlib.sha256(token.encode()).digest()
        found: Identity | None = None
        for stored, identity in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = identity
        return found

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
