"""Who is calling, and what they may do: identities and the access rules over them.

Roles:

- ``viewer``: read;
- ``developer``: read; release, promote, roll back to unprotected environments; approve there;
  mark an artifact bad (and lift the mark);
- ``releaser:<env>``: release to (and approve for) that protected environment;
- ``admin``: everything, including freeze overrides, policy changes, halts and resumes.

Identities come from the tokens file (``adapters/tokens.py``); the rules here are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry_events import Actor
from ferry_promotion.domain.decision import Person
from ferry_promotion.domain.environments import Environment
from ferry_promotion.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Identity:
    """A person (or a robot) with roles."""

    subject: str
    email: str = ""
    name: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    slack_user_id: str = ""

    @property
    def actor(self) -> Actor:
        return Actor(subject=self.subject, email=self.email, name=self.name)

    @property
    def person(self) -> Person:
        return Person(self.subject, self.email)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def can_read(self) -> bool:
        return bool(self.roles & {"viewer", "developer", "admin"}) or any(
            r.startswith("releaser:") for r in self.roles
        )

    def can_release_to(self, environment: Environment) -> bool:
        """Release, promote, roll back to (and approve for) ``environment``."""
        if self.is_admin or f"releaser:{environment.name}" in self.roles:
            return True
        return not environment.protected and "developer" in self.roles

    def is_developer(self) -> bool:
        """Developer or above: developer, any releaser, or admin."""
        return bool(self.roles & {"developer", "admin"}) or any(
            r.startswith("releaser:") for r in self.roles
        )

    def describe_roles(self) -> str:
        return ", ".join(sorted(self.roles)) or "no roles"


def require_read(identity: Identity) -> None:
    if not identity.can_read():
        raise Forbidden(f"{identity.subject} has {identity.describe_roles()}; reading needs viewer")


def require_release(identity: Identity, environment: Environment, what: str = "releasing") -> None:
    if identity.can_release_to(environment):
        return
    if environment.protected:
        need = f"the role releaser:{environment.name} or admin"
    else:
        need = f"the role developer, releaser:{environment.name} or admin"
    raise Forbidden(
        f"{what} to {environment.name} needs {need}; {identity.subject} has "
        f"{identity.describe_roles()}"
    )


def require_admin(identity: Identity, what: str) -> None:
    if not identity.is_admin:
        raise Forbidden(
            f"{what} needs the role admin; {identity.subject} has {identity.describe_roles()}"
        )


def require_developer(identity: Identity, what: str) -> None:
    if not identity.is_developer():
        raise Forbidden(
            f"{what} needs the role developer, a releaser role or admin; {identity.subject} "
            f"has {identity.describe_roles()}"
        )
