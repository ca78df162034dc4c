"""Where things live in the config repo, computed only from validated ids.

Every path git-writer writes goes through these functions. An id that is not
a safe path segment (or a DNS label where Kubernetes needs one) is refused
with :class:`UnsafeId`, so no event can choose a path outside its folder.
"""

from __future__ import annotations

from typing import Final

from ferry_events import (
    ALL_ENVIRONMENTS,
    ARTIFACT_FILE,
    DNS_LABEL,
    MANIFEST_SUFFIXES,
    is_safe_segment,
)

__all__ = [
    "ARTIFACT_FILE",
    "BUILDS",
    "ENVIRONMENTS",
    "HALTS_FILE",
    "MANIFEST_SUFFIXES",
    "POLICIES",
    "REJECTED",
    "UnsafeId",
    "build_dir",
    "dns_label",
    "environment_dir",
    "environment_root",
    "halt_environment",
    "manifest_name",
    "policy_file",
    "rejected_file",
    "segment",
]

BUILDS: Final = "builds"
ENVIRONMENTS: Final = "environments"
POLICIES: Final = "policies"
REJECTED: Final = "rejected"
HALTS_FILE: Final = "halts.yaml"


class UnsafeId(ValueError):
    """An id from an event that cannot be used as a path segment in the config repo."""

    code = "unsafe-path"


def dns_label(value: str, what: str) -> str:
    """``value`` when it is a lowercase DNS label, else :class:`UnsafeId`."""
    if not DNS_LABEL.fullmatch(value):
        raise UnsafeId(
            f"{what} {value!r} is not a lowercase DNS label (a-z, 0-9, '-', at most 63 "
            "characters); git-writer will not use it as a folder name in the config repo"
        )
    return value


def segment(value: str, what: str) -> str:
    """``value`` when it is one safe path segment, else :class:`UnsafeId`."""
    if not is_safe_segment(value):
        raise UnsafeId(
            f"{what} {value!r} is not a safe path segment (letters, digits, '.', '-', '_'; "
            "no leading dot, no '..'); git-writer will not use it as a path in the config repo"
        )
    return value


def manifest_name(value: str) -> str:
    """A manifest file name: a safe segment ending in ``.yaml`` (``.yaml`` is added if missing)."""
    segment(value, "manifest file name")
    return value if value.endswith(MANIFEST_SUFFIXES) else f"{value}.yaml"


def build_dir(service: str, artifact_id: str) -> str:
    """``builds/<service>/<artifactId>``."""
    return f"{BUILDS}/{dns_label(service, 'service')}/{segment(artifact_id, 'artifact id')}"


def environment_root(environment: str) -> str:
    """``environments/<env>``: one folder per namespace below it."""
    return f"{ENVIRONMENTS}/{dns_label(environment, 'environment')}"


def environment_dir(environment: str, namespace: str, service: str) -> str:
    """``environments/<env>/<namespace>/<service>``: the folder Flux applies."""
    return (
        f"{environment_root(environment)}/"
        f"{dns_label(namespace, 'namespace')}/{dns_label(service, 'service')}"
    )


def policy_file(service: str) -> str:
    """``policies/<service>.yaml``."""
    return f"{POLICIES}/{dns_label(service, 'service')}.yaml"


def rejected_file(service: str) -> str:
    """``rejected/<service>.yaml``: the service's artifacts marked bad."""
    return f"{REJECTED}/{dns_label(service, 'service')}.yaml"


def halt_environment(value: str) -> str:
    """An environment a halt names: a DNS label, or ``*`` for every environment."""
    return value if value == ALL_ENVIRONMENTS else dns_label(value, "environment")
