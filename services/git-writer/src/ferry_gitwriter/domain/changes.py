"""The git change set of each event: which files, which commit title, which trailers.

Plain functions over plain data. They read the config repo only through the
:class:`TreeReader` protocol (the state the change applies to: the fetched
branch plus the changes already planned earlier in the same batch) and return
a :class:`CommitPlan`, an :class:`Unchanged` (the repo already holds exactly
this), a :class:`ReleaseFailure`, or raise :class:`Refused` for input that can
never be written. :func:`check_event` refuses what can be judged from the event
alone, before the repo is read (or even reachable).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from ferry_events import (
    DNS_LABEL,
    ArtifactAccepted,
    ArtifactMarkChangeRequested,
    ArtifactSpec,
    EventData,
    HaltChangeRequested,
    InvalidManifest,
    PolicyChangeRequested,
    ReleaseApproved,
    Stamp,
    environment_files,
)
from ferry_gitwriter.domain import paths
from ferry_gitwriter.domain.plan import (
    ACTOR,
    ARTIFACT_ID,
    ENVIRONMENT,
    EVENT_ID,
    INTENT,
    PROMOTED_FROM,
    RELEASE_ID,
    SEQUENCE,
    SERVICE,
    CommitPlan,
    Held,
    Identity,
    Refused,
    ReleaseFailure,
    TreeReader,
    Unchanged,
    identity,
    one_line,
    trailers,
)

__all__ = [
    "ACTOR",
    "ARTIFACT_ID",
    "ENVIRONMENT",
    "EVENT_ID",
    "INTENT",
    "PROMOTED_FROM",
    "RELEASE_ID",
    "SEQUENCE",
    "SERVICE",
    "CommitPlan",
    "Held",
    "Identity",
    "Refused",
    "ReleaseFailure",
    "TreeReader",
    "Unchanged",
    "artifact_json",
    "build_files",
    "check_event",
    "identity",
    "one_line",
    "plan_policy",
    "plan_release",
    "plan_store_artifact",
    "policy_yaml",
    "release_namespace",
    "trailers",
]

# --------------------------------------------------------------------------- the event alone


def check_event(data: EventData) -> None:
    """Refuse an event that no state of the repo could make writable.

    Every id that becomes a path (service, artifact id, environment, a release's
    namespace when it names one, manifest file names) must be safe, and the event
    must be one git-writer handles. Judged before git is touched, so such an event
    is dead-lettered at once even when the remote is down. Raises :class:`Refused`.
    """
    try:
        if isinstance(data, ArtifactAccepted):
            paths.build_dir(data.artifact.service, data.artifact.id)
            for environment, documents in data.manifests.items():
                paths.dns_label(environment, "environment")
                for name in documents:
                    paths.manifest_name(name)
        elif isinstance(data, ReleaseApproved):
            paths.build_dir(data.service, data.artifact_id)
            paths.environment_root(data.environment)
            if data.namespace:
                paths.dns_label(data.namespace, "namespace")
        elif isinstance(data, PolicyChangeRequested):
            paths.policy_file(data.service)
        elif isinstance(data, HaltChangeRequested):
            paths.halt_environment(data.environment)
        elif isinstance(data, ArtifactMarkChangeRequested):
            paths.build_dir(data.service, data.artifact_id)
        else:
            raise Refused(
                f"git-writer does not handle {data.event_type}; "
                "its queue should not be bound to it",
                code="unhandled-event-type",
            )
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc


# --------------------------------------------------------------------------- artifacts


def artifact_json(spec: ArtifactSpec) -> bytes:
    """``artifact.json`` as written: camelCase, two-space indent, newline-terminated."""
    return (json.dumps(spec.to_wire(), indent=2, ensure_ascii=False) + "\n").encode()


def build_files(spec: ArtifactSpec, manifests: Mapping[str, Mapping[str, str]]) -> dict[str, bytes]:
    """The files of ``builds/<service>/<artifactId>/``, relative to it."""
    files = {paths.ARTIFACT_FILE: artifact_json(spec)}
    for environment, documents in manifests.items():
        env = paths.dns_label(environment, "environment")
        for name, text in documents.items():
            files[f"{env}/{paths.manifest_name(name)}"] = text.encode()
    return files


def plan_store_artifact(
    event_id: str,
    spec: ArtifactSpec,
    manifests: Mapping[str, Mapping[str, str]],
    tree: TreeReader,
) -> CommitPlan | Unchanged:
    """Store a build under ``builds/``; builds never change once written."""
    try:
        folder = paths.build_dir(spec.service, spec.id)
        files = build_files(spec, manifests)
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    existing = tree.files_under(folder)
    if existing == files:
        return Unchanged(folder)
    if existing:
        raise Refused(
            f"artifact {spec.id} of {spec.service} is already stored in {folder}/ with different "
            "content; builds are immutable. Publish the new build under a new artifact id.",
            code="artifact-conflict",
        )
    app = spec.application
    return CommitPlan(
        title=one_line(f"[builds/{spec.service}] store {spec.id}"),
        trailers=trailers(
            (EVENT_ID, event_id),
            (ARTIFACT_ID, spec.id),
            (SERVICE, spec.service),
            (ACTOR, app.author_email or app.author_name),
        ),
        author=identity(app.author_name, app.author_email),
        folders={folder: files},
        path=folder,
        kind="artifact",
    )


# --------------------------------------------------------------------------- releases


def plan_release(
    event_id: str, approved: ReleaseApproved, tree: TreeReader
) -> CommitPlan | Unchanged | ReleaseFailure:
    """Replace the environment folder with the build's manifests for it, stamped.

    A service runs in one namespace per environment: when the release moves it to
    another namespace, the old ``environments/<env>/<old-ns>/<service>/`` folder is
    removed in the same commit, so Flux (with pruning on) deletes the old workload.
    """
    try:
        build = paths.build_dir(approved.service, approved.artifact_id)
        paths.dns_label(approved.environment, "environment")
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    spec_bytes = tree.read(f"{build}/{paths.ARTIFACT_FILE}")
    if spec_bytes is None:
        return ReleaseFailure(
            "unknown-artifact",
            f"artifact {approved.artifact_id} of {approved.service} is not stored in the config "
            f"repo ({build}/ does not exist); publish it first or pick a stored artifact",
        )
    spec = _read_spec(spec_bytes)
    manifests = tree.files_under(f"{build}/{approved.environment}")
    if not manifests:
        return ReleaseFailure(
            "no-manifests-for-environment",
            f"artifact {approved.artifact_id} of {approved.service} has no manifests for "
            f"{approved.environment} ({build}/{approved.environment}/ is empty or missing)",
        )
    namespace = _namespace(approved, spec)
    try:
        folder = paths.environment_dir(approved.environment, namespace, approved.service)
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    application = spec.get("application")
    app: dict[str, Any] = application if isinstance(application, dict) else {}
    author = approved.author_email or str(app.get("authorEmail") or "")
    stamp = Stamp(
        service=approved.service,
        environment=approved.environment,
        artifact_id=approved.artifact_id,
        release_id=approved.release_id,
        author=author,
    )
    try:
        files = environment_files(spec_bytes, manifests, stamp, where=build)
    except InvalidManifest as exc:
        return ReleaseFailure(exc.code, str(exc))
    moved_from = _other_namespaces(approved.environment, namespace, approved.service, tree)
    newer = _newer_release(approved, [folder, *_folders(approved, moved_from)], tree)
    if newer is not None:
        return newer
    if not moved_from and tree.files_under(folder) == files:
        return Unchanged(folder)
    folders: dict[str, Mapping[str, bytes]] = {folder: files}
    body = ""
    if moved_from:
        old = [
            paths.environment_dir(approved.environment, ns, approved.service) for ns in moved_from
        ]
        folders.update((path, {}) for path in old)
        body = one_line(
            f"Moves {approved.service} in {approved.environment} to namespace {namespace} from "
            f"{', '.join(moved_from)}: removes {', '.join(f'{path}/' for path in old)}"
        )
    actor = approved.actor.display()
    return CommitPlan(
        title=one_line(
            f"[{approved.environment}/{approved.service}] {approved.intent.value} "
            f"{approved.artifact_id} by {actor}"
        ),
        trailers=trailers(
            (EVENT_ID, event_id),
            (RELEASE_ID, approved.release_id),
            (ARTIFACT_ID, approved.artifact_id),
            (SERVICE, approved.service),
            (ENVIRONMENT, approved.environment),
            (INTENT, approved.intent.value),
            (ACTOR, actor),
            (PROMOTED_FROM, approved.promoted_from),
            (SEQUENCE, str(approved.sequence) if approved.sequence is not None else None),
        ),
        author=identity(approved.actor.name or approved.actor.subject, approved.actor.email),
        folders=folders,
        path=folder,
        kind="release",
        body=body,
    )


def _folders(approved: ReleaseApproved, namespaces: list[str]) -> list[str]:
    return [paths.environment_dir(approved.environment, ns, approved.service) for ns in namespaces]


def _newer_release(
    approved: ReleaseApproved, folders: list[str], tree: TreeReader
) -> ReleaseFailure | None:
    """A failure when the environment already holds a release numbered above this one.

    Requests are numbered per service and environment when promotion records them;
    committing an older one over a newer one (a delayed retry, a slow approval) would
    take the environment back, so it is refused. A release without a number (from a
    producer before numbers) is not ordered.
    """
    if approved.sequence is None:
        return None
    held: list[Held] = [h for h in map(tree.held, folders) if h is not None]
    newest = max(held, key=lambda h: h.sequence, default=None)
    if newest is None or newest.sequence <= approved.sequence:
        return None
    return ReleaseFailure(
        "superseded",
        f"{approved.environment} already holds release {newest.release_id} "
        f"(#{newest.sequence}) of {approved.service}, requested after this one "
        f"(#{approved.sequence}); an older release is never committed over a newer one",
    )


def _other_namespaces(
    environment: str, namespace: str, service: str, tree: TreeReader
) -> list[str]:
    """The namespaces of ``environment``, other than ``namespace``, that hold ``service``.

    Only DNS-label folder names are looked at: others are not namespaces Ferry wrote.
    """
    found = []
    for name in sorted(tree.subfolders(paths.environment_root(environment))):
        if name == namespace or not DNS_LABEL.fullmatch(name):
            continue
        if tree.files_under(paths.environment_dir(environment, name, service)):
            found.append(name)
    return found


def release_namespace(approved: ReleaseApproved, tree: TreeReader) -> str:
    """The namespace folder of a release: the event's, else the artifact's, else the environment.

    (release-manager falls back to the environment name the same way.)
    """
    if approved.namespace:
        return approved.namespace
    try:
        build = paths.build_dir(approved.service, approved.artifact_id)
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    raw = tree.read(f"{build}/{paths.ARTIFACT_FILE}")
    return _namespace(approved, _read_spec(raw) if raw is not None else {})


def _namespace(approved: ReleaseApproved, spec: Mapping[str, Any]) -> str:
    return approved.namespace or str(spec.get("namespace") or "") or approved.environment


def _read_spec(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- policies


def policy_yaml(policy: Mapping[str, Any]) -> bytes:
    """A policy as YAML, keys in the order given."""
    return yaml.safe_dump(
        dict(policy), sort_keys=False, default_flow_style=False, allow_unicode=True
    ).encode()


def plan_policy(
    event_id: str, request: PolicyChangeRequested, tree: TreeReader
) -> CommitPlan | Unchanged:
    """Write or delete ``policies/<service>.yaml``."""
    try:
        path = paths.policy_file(request.service)
    except paths.UnsafeId as exc:
        raise Refused(str(exc), code=exc.code) from exc
    content = None if request.policy is None else policy_yaml(request.policy)
    if tree.read(path) == content:
        return Unchanged(path)
    actor = request.actor.display()
    verb = "delete" if content is None else "apply"
    return CommitPlan(
        title=one_line(f"[policies/{request.service}] {verb} by {actor}"),
        trailers=trailers(
            (EVENT_ID, event_id),
            (SERVICE, request.service),
            (ACTOR, actor),
        ),
        author=identity(request.actor.name or request.actor.subject, request.actor.email),
        files={path: content},
        path=path,
        kind="policy",
    )
