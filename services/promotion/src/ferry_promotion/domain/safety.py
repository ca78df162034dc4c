"""Halts and marks on bad artifacts, as the config repo records them: plain data and rules.

git-writer writes ``halts.yaml`` (the halted environments, ``"*"`` for all) and
``rejected/<service>.yaml`` (the service's artifacts marked bad); a pull request may
edit them too. Each entry says who, since when and why. Promotion reads them with
every snapshot and refuses, while an environment is halted, every request to it
but a rollback (violation ``halted``), and everywhere, a release or promotion of a
marked artifact (violation ``rejected-artifact``).

A file promotion cannot read fails closed: an unreadable ``halts.yaml`` halts every
environment, an unreadable ``rejected/<service>.yaml`` refuses every release of that
service but rollbacks, each with the reason, until the file is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import yaml

from ferry_events import ALL_ENVIRONMENTS, Intent, PolicyViolation, load_yaml_document

HALTED: Final = "halted"
REJECTED_ARTIFACT: Final = "rejected-artifact"
HALTS_FILE: Final = "halts.yaml"

#: A mark that stands for every artifact of a service whose ``rejected/`` file is unreadable.
ANY_ARTIFACT: Final = "*"


@dataclass(frozen=True, slots=True)
class Halt:
    """One entry of ``halts.yaml``."""

    environment: str
    reason: str = ""
    by: str = ""
    since: str = ""

    def describe(self) -> str:
        where = (
            "every environment is"
            if self.environment == ALL_ENVIRONMENTS
            else (f"{self.environment} is")
        )
        who = f" by {self.by}" if self.by else ""
        when = f" since {self.since}" if self.since else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{where} halted{who}{when}{why}"


@dataclass(frozen=True, slots=True)
class Mark:
    """One entry of ``rejected/<service>.yaml``: an artifact marked bad."""

    service: str
    artifact_id: str
    reason: str = ""
    by: str = ""
    since: str = ""

    def describe(self) -> str:
        who = f" by {self.by}" if self.by else ""
        when = f" since {self.since}" if self.since else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.artifact_id} of {self.service} is marked bad{who}{when}{why}"


class SafetyFileError(ValueError):
    """A halts or rejected file that is not the documented list of entries."""


def _entries(text: str, path: str, key: str, id_key: str) -> list[dict[str, str]]:
    try:
        document: Any = load_yaml_document(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise SafetyFileError(f"{path} is not valid YAML: {exc}") from exc
    if document is None:
        return []
    items = document.get(key) if isinstance(document, dict) else None
    if items is None and isinstance(document, dict):
        return []
    if not isinstance(items, list):
        raise SafetyFileError(f"{path} must be a mapping with a list under {key!r}")
    found: list[dict[str, str]] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not isinstance(item.get(id_key), str):
            raise SafetyFileError(
                f"{path}: entry {number} under {key!r} must be a mapping with a text {id_key!r}"
            )
        found.append({str(k): "" if v is None else str(v) for k, v in item.items()})
    return found


def parse_halts(text: str) -> dict[str, Halt]:
    """The halts of ``halts.yaml`` by environment; an unreadable file halts everything."""
    try:
        entries = _entries(text, HALTS_FILE, "halts", "environment")
    except SafetyFileError as exc:
        return {ALL_ENVIRONMENTS: Halt(ALL_ENVIRONMENTS, f"{exc}; fix it in the config repo")}
    return {
        e["environment"]: Halt(
            e["environment"], e.get("reason", ""), e.get("by", ""), e.get("since", "")
        )
        for e in entries
    }


def parse_marks(service: str, text: str) -> dict[str, Mark]:
    """The marks of ``rejected/<service>.yaml`` by artifact id; an unreadable file marks all."""
    path = f"rejected/{service}.yaml"
    try:
        entries = _entries(text, path, "rejected", "artifactId")
    except SafetyFileError as exc:
        return {ANY_ARTIFACT: Mark(service, ANY_ARTIFACT, f"{exc}; fix it in the config repo")}
    return {
        e["artifactId"]: Mark(
            service, e["artifactId"], e.get("reason", ""), e.get("by", ""), e.get("since", "")
        )
        for e in entries
    }


def halt_of(halts: dict[str, Halt], environment: str) -> Halt | None:
    """The halt that stops ``environment``: its own, else the one of every environment."""
    return halts.get(environment) or halts.get(ALL_ENVIRONMENTS)


def mark_of(marks: dict[str, Mark], artifact_id: str) -> Mark | None:
    """The mark on ``artifact_id`` (or on every artifact, when the file is unreadable)."""
    return marks.get(artifact_id) or marks.get(ANY_ARTIFACT)


def safety_violations(
    intent: Intent, environment: str, halt: Halt | None, mark: Mark | None
) -> list[PolicyViolation]:
    """``halted`` (any intent but a rollback) and ``rejected-artifact`` (release, promote,
    auto-release) for a request of ``intent`` to ``environment``."""
    found: list[PolicyViolation] = []
    if halt is not None and intent is not Intent.ROLLBACK:
        found.append(
            PolicyViolation(
                policy=HALTED,
                message=(
                    f"{environment} is halted: {halt.describe()}; only rollbacks go through "
                    f"until an admin resumes it (ferry resume {halt.environment})"
                ),
            )
        )
    if mark is not None and intent is not Intent.ROLLBACK:
        found.append(
            PolicyViolation(
                policy=REJECTED_ARTIFACT,
                message=(
                    f"{mark.describe()}; it is released nowhere until the mark is lifted "
                    f"(ferry artifact unreject {mark.service} {mark.artifact_id})"
                ),
            )
        )
    return found
