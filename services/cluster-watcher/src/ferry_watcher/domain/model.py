"""What the watcher knows about an object, parsed from the API's plain JSON.

Parsing is strict about types (a malformed object raises :class:`Malformed`
with what was wrong) and lenient about absence (a missing status field means
"not there yet"). Objects without Ferry's annotations parse to ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

SERVICE: Final = "ferry.dev/service"
ENVIRONMENT: Final = "ferry.dev/environment"
ARTIFACT_ID: Final = "ferry.dev/artifact-id"
RELEASE_ID: Final = "ferry.dev/release-id"
AUTHOR: Final = "ferry.dev/author"

WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "Job")
KINDS: Final = (*WORKLOAD_KINDS, "Pod")


class Malformed(ValueError):
    """An object from the API is not shaped as Kubernetes documents it."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """The ``ferry.dev/*`` annotations git-writer stamps on a workload and its pod template."""

    service: str
    environment: str
    artifact_id: str
    release_id: str
    author: str

    @property
    def rollout(self) -> tuple[str, str]:
        """What identifies one rollout of a workload: the artifact and the release that sent it."""
        return self.artifact_id, self.release_id


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int


ProgressState = Literal["progressing", "succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a workload's rollout stands, from its status alone.

    ``finished_at`` is when Kubernetes says the rollout finished (a Deployment's
    ``Progressing`` condition, a Job's completion), when it says so.
    """

    state: ProgressState
    reason: str = ""
    message: str = ""
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkloadView:
    ref: WorkloadRef
    stamp: Stamp
    selector: Mapping[str, str]
    progress: Progress


@dataclass(frozen=True, slots=True)
class ContainerFailure:
    """A container of a pod that cannot run, and why, in words for people."""

    reason: str
    message: str
    container: str
    restarts: int
    wants_logs: bool


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    uid: str
    stamp: Stamp
    labels: Mapping[str, str]
    owner_uids: frozenset[str]
    failure: ContainerFailure | None


# --------------------------------------------------------------------------- typed access


def mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``obj[key]`` as a mapping; absent or null is empty."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Malformed(f"{where}.{key} should be an object, not {type(value).__name__}")
    return value


def sequence(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{where}.{key} should be a list, not {type(value).__name__}")
    return value


def integer(obj: Mapping[str, Any], key: str, where: str, default: int = 0) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{where}.{key} should be an integer, not {value!r}")
    return value


def text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Malformed(f"{where}.{key} should be a string, not {value!r}")
    return value


def timestamp(obj: Mapping[str, Any], key: str, where: str) -> datetime | None:
    """``obj[key]`` as an RFC 3339 time (UTC when it names no zone); absent is ``None``."""
    value = text(obj, key, where)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Malformed(f"{where}.{key} should be an RFC 3339 time, not {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def string_map(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    raw = mapping(obj, key, where)
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(v, str):
            raise Malformed(f"{where}.{key}[{k!r}] should be a string, not {v!r}")
        out[str(k)] = v
    return out


def stamp_of(annotations: Mapping[str, str]) -> Stamp | None:
    """Ferry's stamp, or ``None`` if not a Ferry release (no service or artifact id)."""
    service = annotations.get(SERVICE, "")
    artifact_id = annotations.get(ARTIFACT_ID, "")
    if not service or not artifact_id:
        return None
    return Stamp(
        service=service,
        environment=annotations.get(ENVIRONMENT, ""),
        artifact_id=artifact_id,
        release_id=annotations.get(RELEASE_ID, ""),
        author=annotations.get(AUTHOR, ""),
    )


def metadata(obj: Mapping[str, Any], kind: str) -> tuple[Mapping[str, Any], str, str, str]:
    """metadata, namespace, name and uid, all required."""
    if not isinstance(obj, Mapping):
        raise Malformed(f"a {kind} should be a JSON object, not {type(obj).__name__}")
    meta = mapping(obj, "metadata", kind)
    name = text(meta, "name", f"{kind}.metadata")
    uid = text(meta, "uid", f"{kind}.metadata")
    namespace = text(meta, "namespace", f"{kind}.metadata")
    if not name or not uid:
        raise Malformed(f"a {kind} needs metadata.name and metadata.uid")
    return meta, namespace, name, uid
