"""What a planned change is: a :class:`CommitPlan` (files, title, trailers, author), an
:class:`Unchanged`, a :class:`ReleaseFailure`, or a :class:`Refused` input; the
:class:`TreeReader` it is planned against; and the trailer keys it is recorded by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

# Trailer keys, in the order they are written (docs/config-repo.md).
EVENT_ID: Final = "Ferry-Event-Id"
RELEASE_ID: Final = "Ferry-Release-Id"
ARTIFACT_ID: Final = "Ferry-Artifact-Id"
SERVICE: Final = "Ferry-Service"
ENVIRONMENT: Final = "Ferry-Environment"
INTENT: Final = "Ferry-Intent"
ACTOR: Final = "Ferry-Actor"
PROMOTED_FROM: Final = "Ferry-Promoted-From"
SEQUENCE: Final = "Ferry-Sequence"


@dataclass(frozen=True, slots=True)
class Held:
    """The release an environment folder holds, as its last commit's trailers say."""

    sequence: int
    release_id: str


def held_from(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> Held | None:
    """The :class:`Held` of a commit's trailers, or None when it has no ``Ferry-Sequence``."""
    found = dict(pairs)
    raw = found.get(SEQUENCE, "").strip()
    if not raw.isdigit():
        return None
    return Held(int(raw), found.get(RELEASE_ID, "").strip())


class TreeReader(Protocol):
    """Read access to the config repo as a change will see it."""

    def read(self, path: str) -> bytes | None:
        """The content of the file at ``path``, or None when there is none."""
        ...

    def files_under(self, directory: str) -> dict[str, bytes]:
        """Every file below ``directory`` (recursively), keyed by path relative to it."""
        ...

    def subfolders(self, directory: str) -> set[str]:
        """The names of the folders directly below ``directory`` (each holds some file)."""
        ...

    def held(self, folder: str) -> Held | None:
        """The release the last commit that changed ``folder`` recorded (None: none)."""
        ...


class Refused(Exception):
    """Input git-writer will never write, whatever the repo holds: dead-letter it."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Identity:
    """A git author or committer."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class CommitPlan:
    """One commit: replace whole folders and/or set or delete single files."""

    title: str
    trailers: tuple[tuple[str, str], ...]
    author: Identity | None
    #: folder -> its complete new content (paths relative to the folder); an empty
    #: mapping removes the folder.
    folders: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    #: file -> new content, or None to delete it.
    files: Mapping[str, bytes | None] = field(default_factory=dict)
    #: the path the result event reports and that an "unchanged" answer looks at.
    path: str = ""
    #: artifact, release or policy (for logs and metrics)
    kind: str = ""
    #: a paragraph between the title and the trailers (empty: none)
    body: str = ""

    def message(self) -> str:
        """The full commit message: title, blank line, [body, blank line,] trailers."""
        trailer_lines = "\n".join(f"{key}: {value}" for key, value in self.trailers)
        body = f"{self.body}\n\n" if self.body else ""
        return f"{self.title}\n\n{body}{trailer_lines}\n"


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The repo already holds exactly this at ``path``: no commit."""

    path: str


@dataclass(frozen=True, slots=True)
class ReleaseFailure:
    """The release cannot be committed; git-writer reports it as ``ferry.release.failed.v1``."""

    code: str
    message: str


def one_line(value: str) -> str:
    """``value`` safe for a commit title or trailer: one line, no control characters."""
    return " ".join("".join(c if c.isprintable() else " " for c in value).split())


def identity(name: str, email: str) -> Identity | None:
    """A git identity from what an event knows, or None when it has no e-mail address."""
    email = one_line(email).replace("<", "").replace(">", "")
    if not email:
        return None
    name = one_line(name).replace("<", "").replace(">", "") or email
    return Identity(name=name, email=email)


def trailers(*pairs: tuple[str, str | None]) -> tuple[tuple[str, str], ...]:
    """The pairs with a value, each value on one line."""
    return tuple((key, one_line(value)) for key, value in pairs if value)
