"""The API tokens file (``FERRY_API_TOKENS_FILE``), read one way by every service that takes
a bearer token (promotion's API and Slack, insights' API and dashboard).

Each entry has a subject, an email, a name, roles (``viewer``, ``developer``,
``releaser:<env>``, ``admin``), an optional ``slackUserId`` and the SHA-256 of its token
(never the token itself). An entry with an unknown role or a hash that is not 64 hex digits
makes the whole file invalid: the identities last loaded are kept, and the error is logged.
The file is re-read when it changes on disk (:meth:`TokensFile.reload`, which
:meth:`TokensFile.authenticate` calls, and :meth:`TokensFile.keep_fresh`);
:meth:`TokensFile.loaded` answers from what was last read, without touching the file.

Each service turns an entry into its own identity (what a person may do is that service's
rule), so the reader is generic over it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferry_runtime.logging import get_logger

__all__ = ["TokenEntry", "TokensFile", "hash_token", "write_tokens_file"]

log = get_logger(__name__)

_ROLE = re.compile(r"^(viewer|developer|admin|releaser:[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

I = TypeVar("I")  # noqa: E741 - the identity type of the service reading the file


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in the tokens file for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One person (or robot) of the tokens file, without the token's hash."""

    subject: str
    email: str = ""
    name: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    slack_user_id: str = ""

    def can_read(self) -> bool:
        """Whether any of its roles lets it read (each one does; an entry with none may not)."""
        return bool(self.roles & {"viewer", "developer", "admin"}) or any(
            role.startswith("releaser:") for role in self.roles
        )


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


class _File(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tokens: list[_Entry] = Field(default_factory=list)


def write_tokens_file(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write a tokens file of ``entries`` (as the file spells them: ``sha256``, ``roles``...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"tokens": entries}, sort_keys=False))


class TokensFile(Generic[I]):
    """The tokens file, validated, re-read when it changes on disk, each entry made into an
    identity of the reading service by ``identity``."""

    def __init__(self, path: Path, identity: Callable[[TokenEntry], I]) -> None:
        self.path = path
        self._identity = identity
        self._mtime: int | None = None
        self._entries: list[tuple[bytes, I]] = []

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
            parsed = _File.model_validate(yaml.safe_load(self.path.read_text()) or {})
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
                self._identity(
                    TokenEntry(e.subject, e.email, e.name, frozenset(e.roles), e.slack_user_id)
                ),
            )
            for e in parsed.tokens
        ]
        self._mtime = mtime
        log.info("tokens file loaded", path=str(self.path), identities=len(self._entries))

    def reload(self) -> None:
        """Read the file again if it changed on disk since it was last read."""
        self._load()

    async def keep_fresh(self, interval: float = 1.0) -> None:
        """Reload every ``interval`` seconds (for :meth:`loaded`), until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                mtime: int | None = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._load()

    def identities(self) -> list[I]:
        """Every identity, the file re-read first if it changed."""
        self._load()
        return [identity for _, identity in self._entries]

    def loaded(self) -> list[I]:
        """Every identity as last loaded (never reads the file)."""
        return [identity for _, identity in self._entries]

    def authenticate(self, token: str) -> I | None:
        """The identity whose token hash matches, compared in constant time against each entry."""
        self._load()
        digest = hashlib.sha256(token.encode()).digest()
        found: I | None = None
        for stored, identity in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = identity
        return found
