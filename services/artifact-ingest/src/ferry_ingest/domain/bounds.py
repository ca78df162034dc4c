"""What a build may put into its environment folder: its own namespace, nothing wider.

Flux applies ``environments/<env>/`` with a service account that has rights in the
environments' namespaces only, but a build refused here never reaches git at all:

- ``cluster-scoped-kind``    a kind that is not namespaced (Namespace, ClusterRole,
                             ClusterRoleBinding, CustomResourceDefinition, admission
                             webhooks, PersistentVolume, StorageClass, PriorityClass, ...),
                             unless FERRY_INGEST_ALLOWED_KINDS permits it;
- ``foreign-namespace``      ``metadata.namespace`` (or a kustomization's ``namespace``)
                             other than the artifact's namespace;
- ``remote-kustomize-base``  a kustomization entry that is not a file of the same folder
                             (a URL, a git or GitHub reference, an absolute path, ``..``),
                             or a ``helmCharts`` entry (which kustomize fetches).

``List`` kinds are looked into: every item is checked like a document.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ferry_events import is_safe_segment

#: Kinds of the Kubernetes API (and common add-ons) that are not namespaced.
CLUSTER_SCOPED_KINDS: Final = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterIssuer",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PodSecurityPolicy",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "SelfSubjectAccessReview",
        "SelfSubjectReview",
        "SelfSubjectRulesReview",
        "StorageClass",
        "StorageVersionMigration",
        "SubjectAccessReview",
        "TokenReview",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)
KUSTOMIZE_API: Final = "kustomize.config.k8s.io/"
KUSTOMIZATION_FILES: Final = frozenset({"kustomization.yaml", "kustomization.yml"})
#: Kustomization fields that name other files or folders.
_REFERENCE_FIELDS: Final = (
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "patchesStrategicMerge",
)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one environment's files may contain.

    ``namespace`` is the artifact's: ``""`` when the environment decides it (then objects
    name none), ``None`` to leave namespaces unchecked.
    """

    namespace: str | None
    allowed_kinds: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OutOfBounds:
    """One thing a document may not do; ``code`` is a reason code."""

    code: str
    message: str


def is_kustomization(document: dict[str, Any], file_name: str) -> bool:
    """A kustomize ``Kustomization`` (not Flux's, which has a different apiVersion)."""
    api = document.get("apiVersion")
    if isinstance(api, str) and api.startswith(KUSTOMIZE_API):
        return True
    return file_name.lower() in KUSTOMIZATION_FILES and "apiVersion" not in document


def out_of_bounds(document: dict[str, Any], file_name: str, bounds: Bounds) -> list[OutOfBounds]:
    """Every way ``document`` (one document of ``file_name``) reaches past ``bounds``."""
    if is_kustomization(document, file_name):
        return _kustomization(document, bounds)
    return [problem for obj in _objects(document) for problem in _object(obj, bounds)]


def _objects(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield document
    kind = document.get("kind")
    items = document.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                yield from _objects(item)


def _object(obj: dict[str, Any], bounds: Bounds) -> list[OutOfBounds]:
    problems: list[OutOfBounds] = []
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    what = f"{_short(kind)} {_short(name)!r}" if isinstance(name, str) else _short(kind)
    if isinstance(kind, str) and kind in CLUSTER_SCOPED_KINDS and kind not in bounds.allowed_kinds:
        problems.append(
            OutOfBounds(
                "cluster-scoped-kind",
                f"{what} is cluster-scoped: a build may only hold objects of its own namespace. "
                "Ask the platform team to apply it, or to permit the kind with "
                "FERRY_INGEST_ALLOWED_KINDS",
            )
        )
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if bounds.namespace is not None and namespace not in (None, "", bounds.namespace):
        problems.append(
            OutOfBounds(
                "foreign-namespace",
                f"{what} is in namespace {_short(namespace)!r}, but the artifact's namespace is "
                f"{_named(bounds.namespace)}: leave metadata.namespace out or set it to the "
                "artifact's",
            )
        )
    return problems


def _kustomization(document: dict[str, Any], bounds: Bounds) -> list[OutOfBounds]:
    problems: list[OutOfBounds] = []
    namespace = document.get("namespace")
    if bounds.namespace is not None and namespace not in (None, "", bounds.namespace):
        problems.append(
            OutOfBounds(
                "foreign-namespace",
                f"the kustomization sets namespace {_short(namespace)!r}, but the artifact's "
                f"namespace is {_named(bounds.namespace)}",
            )
        )
    for key in _REFERENCE_FIELDS:
        entries = document.get(key)
        for entry in entries if isinstance(entries, list) else []:
            path = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(path, str) and not is_safe_segment(path):
                problems.append(
                    OutOfBounds(
                        "remote-kustomize-base",
                        f"the kustomization's {key} entry {_short(path)!r} is not a file of "
                        "this build: every resource must be one of the artifact's own files "
                        "(no URLs, git references, absolute paths or '..')",
                    )
                )
    if document.get("helmCharts"):
        problems.append(
            OutOfBounds(
                "remote-kustomize-base",
                "the kustomization has helmCharts, which kustomize fetches from a remote "
                "repository: render the chart in CI and ship the output",
            )
        )
    return problems


def _short(value: Any, length: int = 63) -> str:
    text = str(value)
    if not text.isprintable():
        text = text.encode("ascii", errors="backslashreplace").decode("ascii")
    return text if len(text) <= length else text[: length - 1] + "…"


def _named(namespace: str) -> str:
    return repr(namespace) if namespace else "not set (the environment decides it)"
