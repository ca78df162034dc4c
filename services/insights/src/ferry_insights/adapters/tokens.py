"""The tokens file promotion reads (``FERRY_API_TOKENS_FILE``), read the same way here.

Each entry has a subject, an email, a name, roles and the SHA-256 of its token (never the
token itself); the file is re-read when it changes on disk. Insights only reads, so any role
(``viewer``, ``developer``, ``releaser:<env>``, ``admin``) may call it. What a person may *do*
(approve, reject) is decided by promotion, which the dashboard calls as that person.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferry_runtime import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str = ""
    name: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    def can_read(self) -> bool:
        return bool(self.roles & {"viewer", "developer", "admin"}) or any(
            role.startswith("releaser:") for role in self.roles
        )


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str = Field(min_length=1, max_length=200)
    email: str = ""
    name: str = ""
    roles: list[str] = Field(default_factory=list)
    sha256: str = Field(pattern=r"^\s*[0-9a-fA-F]{64}\s*$")


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tokens: list[_Entry] = Field(default_factory=list)


class TokenStore:
    """Identities by token, from the tokens file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: int | None = None
        self._entries: list[tuple[bytes, Identity]] = []

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            if self._mtime is not None or not self._entries:
                log.warning(
                    "tokens file not found; every call will be refused", path=str(self.path)
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
                bytes.fromhex(entry.sha256.strip()),
                Identity(entry.subject, entry.email, entry.name, frozenset(entry.roles)),
            )
            for entry in parsed.tokens
        ]
        self._mtime = mtime
        log.info("tokens file loaded", path=str(self.path), identities=len(self._entries))

    def authenticate(self, token: str) -> Identity | None:
        """The identity whose token hash matches, compared in constant time against each entry."""
        self._load()
        digest = hashlib.sha256(token.encode()).digest()
        found: Identity | None = None
        for stored, identity in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = identity
        return found
