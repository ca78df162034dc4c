"""Is a published artifact fit to be stored? Every problem found, not just the first.

Plain functions over plain data: the raw ``artifact`` dict and ``manifests``
(environment -> file name -> YAML text) of an ``ArtifactPublished`` event go in,
an :class:`Accepted` (typed spec and manifests) or a :class:`Rejected` (every
:class:`~ferry_events.Reason`, plus whatever identifies the artifact) comes out.

Reason codes (stable, for machines; ``message`` is for people):

- ``invalid-artifact``        a field of the artifact spec is missing or wrong
- ``no-manifests``            no environment has any manifest
- ``invalid-manifests``       the manifests are not environment -> file name -> YAML text
- ``invalid-environment``     an environment name is not a DNS label
- ``environment-not-allowed`` an environment outside FERRY_INGEST_ENVIRONMENTS
- ``too-many-files``          more files in one environment than allowed
- ``invalid-file-name``       a file name is not one safe path segment ending in .yaml/.yml
- ``file-too-large``          one file over the per-file limit
- ``manifests-too-large``     all files together over the total limit
- ``invalid-yaml``            a file does not parse as YAML
- ``not-a-kubernetes-object`` a YAML document lacks apiVersion, kind or metadata.name
- ``cluster-scoped-kind``     an object that is not namespaced (see ``bounds``)
- ``foreign-namespace``       an object in a namespace other than the artifact's
- ``remote-kustomize-base``   a kustomization that reaches outside the build
- ``tests-failed``            the CI ``test`` stage reports failed tests
- ``no-identity``             no AMQP ``user_id`` (with FERRY_CI_IDENTITIES_FILE; ``identities``)
- ``identity-not-allowed``    that identity may not publish this service or namespace
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ferry_events import DNS_LABEL, ArtifactSpec, Manifests, Reason, is_safe_segment
from ferry_ingest.domain.bounds import Bounds
from ferry_ingest.domain.documents import check_yaml
from ferry_ingest.domain.identities import CiIdentities, check_identity
from ferry_ingest.domain.text import cut as _cut
from ferry_ingest.domain.text import shown as _shown

KIB: Final = 1024
MANIFEST_SUFFIXES: Final = (".yaml", ".yml")
#: Identifying strings copied into a rejection are cut to this length.
_MAX_ECHO: Final = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """What ingest accepts. ``environments`` empty means any environment name."""

    max_file_bytes: int = 256 * KIB
    max_total_bytes: int = 1024 * KIB
    max_files_per_environment: int = 100
    environments: frozenset[str] = field(default_factory=frozenset)
    #: Cluster-scoped kinds a build may hold anyway (FERRY_INGEST_ALLOWED_KINDS).
    allowed_kinds: frozenset[str] = field(default_factory=frozenset)
    #: Who may publish which service (FERRY_CI_IDENTITIES_FILE); None: anyone may.
    identities: CiIdentities | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The artifact passed every check."""

    artifact: ArtifactSpec
    manifests: Manifests


@dataclass(frozen=True, slots=True)
class Rejected:
    """The artifact failed; ``reasons`` has every problem found.

    The identifying fields are filled in when they could be read from the raw
    artifact: ``artifact_id`` and ``service`` only when they are valid (other
    services use them as names), the rest when they are strings.
    """

    reasons: tuple[Reason, ...]
    artifact_id: str | None = None
    service: str | None = None
    squad: str | None = None
    author_email: str | None = None
    branch: str | None = None

    def codes(self) -> list[str]:
        """The reason codes, in the order found."""
        return [r.code for r in self.reasons]


Outcome = Accepted | Rejected


def validate(
    artifact: Mapping[str, Any],
    manifests: Mapping[str, Any],
    limits: Limits | None = None,
    *,
    identity: str | None = None,
) -> Outcome:
    """Check who published it (``identity``: the message's AMQP ``user_id``), the artifact
    spec, its CI results and its manifests; report every problem."""
    limits = limits or Limits()
    spec, reasons = check_spec(artifact)
    if limits.identities is not None and spec is not None:
        reasons += check_identity(limits.identities, identity, spec.service, spec.namespace)
    reasons += check_ci(artifact)
    # Namespaces are checked against a valid spec only: a broken one is refused already.
    namespace = spec.namespace if spec is not None else None
    checked, manifest_reasons = check_manifests(manifests, limits, namespace)
    reasons += manifest_reasons
    if spec is not None and not reasons:
        return Accepted(artifact=spec, manifests=checked)
    return _rejected(artifact, reasons)


# --------------------------------------------------------------------------- the spec


def check_spec(artifact: Mapping[str, Any]) -> tuple[ArtifactSpec | None, list[Reason]]:
    """The typed spec, or ``None`` and one reason per field that is wrong."""
    try:
        return ArtifactSpec.model_validate(dict(artifact)), []
    except ValidationError as exc:
        return None, [_spec_reason(error) for error in exc.errors()]


def _spec_reason(error: ErrorDetails) -> Reason:
    path = "artifact" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
    )
    kind = error["type"]
    if kind == "missing":
        return Reason(code="invalid-artifact", message=f"{path} is required", field=path)
    message = error["msg"]
    if kind in {"value_error", "assertion_error"}:
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    else:
        message = message[:1].lower() + message[1:]
    given = error.get("input")
    if isinstance(given, str | int | float):
        shown = _cut(given, 80) if isinstance(given, str) else given
        message += f" (got {shown!r})"
    return Reason(code="invalid-artifact", message=f"{path}: {message}", field=path)


# --------------------------------------------------------------------------- CI results


def check_ci(artifact: Mapping[str, Any]) -> list[Reason]:
    """A ``test`` stage with failed tests refuses the artifact.

    Read from the raw artifact, so that failed tests are reported even when other
    fields of the spec are wrong.
    """
    stages = artifact.get("stages")
    if not isinstance(stages, list):
        return []
    for index, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or stage.get("id") != "test":
            continue
        data = stage.get("data")
        data = data if isinstance(data, Mapping) else {}
        results = data.get("results")
        failed = results.get("failed") if isinstance(results, Mapping) else None
        if not isinstance(failed, int) or isinstance(failed, bool) or failed <= 0:
            return []
        url = data.get("url")
        where = f"; see {_shown(url, 500)}" if isinstance(url, str) and url else ""
        tests = "test" if failed == 1 else "tests"
        return [
            Reason(
                code="tests-failed",
                message=(
                    f"the CI test stage reports {failed} failed {tests}{where}. "
                    "Fix them and push again: Ferry does not store artifacts with failing tests."
                ),
                field=f"artifact.stages[{index}].data.results.failed",
            )
        ]
    return []


# --------------------------------------------------------------------------- manifests


def check_manifests(
    manifests: Mapping[str, Any], limits: Limits, namespace: str | None = None
) -> tuple[Manifests, list[Reason]]:
    """The manifests as environment -> file name -> text, and every problem with them.

    ``namespace`` is the artifact's (``""``: the environment decides, so objects name
    none; ``None``: not checked).
    Environments without files are left out of the result.
    """
    reasons: list[Reason] = []
    checked: Manifests = {}
    total = 0
    if not any(manifests.values()):
        reasons.append(
            Reason(
                code="no-manifests",
                message=(
                    "there are no manifests: give at least one environment with at least one "
                    "YAML file (manifests: {environment: {file name: YAML text}})"
                ),
                field="manifests",
            )
        )
    for env, files in manifests.items():
        where = f"manifests.{_shown(env)}"
        reasons += _check_environment_name(env, limits)
        if not isinstance(files, Mapping):
            reasons.append(
                Reason(
                    code="invalid-manifests",
                    message=(
                        f"{where} must map file names to YAML text, got {type(files).__name__}"
                    ),
                    field=where,
                )
            )
            continue
        if len(files) > limits.max_files_per_environment:
            reasons.append(
                Reason(
                    code="too-many-files",
                    message=(
                        f"environment '{_shown(env)}' has {len(files)} files, more than the "
                        f"limit of {limits.max_files_per_environment} "
                        "(FERRY_INGEST_MAX_FILES_PER_ENVIRONMENT)"
                    ),
                    field=where,
                )
            )
        for name, text in files.items():
            bounds = Bounds(namespace, limits.allowed_kinds)
            size, file_reasons = check_file(env, name, text, limits, bounds)
            total += size
            reasons += file_reasons
            if isinstance(text, str):
                checked.setdefault(env, {})[name] = text
    if total > limits.max_total_bytes:
        reasons.append(
            Reason(
                code="manifests-too-large",
                message=(
                    f"the manifests are {_size(total)} together, over the limit of "
                    f"{_size(limits.max_total_bytes)} (FERRY_INGEST_MAX_TOTAL_BYTES)"
                ),
                field="manifests",
            )
        )
    return checked, reasons


def check_file(
    env: str, name: str, text: Any, limits: Limits, bounds: Bounds | None = None
) -> tuple[int, list[Reason]]:
    """The size of one manifest file in bytes, and every problem with it."""
    label = f"{_shown(env)}/{_shown(name)}"
    path = f"manifests.{_shown(env)}.{_shown(name)}"
    reasons = _check_file_name(env, name, path)
    if not isinstance(text, str):
        reasons.append(
            Reason(
                code="invalid-manifests",
                message=f"{label} must be YAML text, got {type(text).__name__}",
                field=path,
            )
        )
        return 0, reasons
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_file_bytes:
        reasons.append(
            Reason(
                code="file-too-large",
                message=(
                    f"{label} is {_size(size)}, over the limit of "
                    f"{_size(limits.max_file_bytes)} per file (FERRY_INGEST_MAX_FILE_BYTES)"
                ),
                field=path,
            )
        )
        return size, reasons
    return size, reasons + check_yaml(label, text, path, bounds)


def _check_environment_name(env: str, limits: Limits) -> list[Reason]:
    where = f"manifests.{_shown(env)}"
    if not DNS_LABEL.fullmatch(env):
        return [
            Reason(
                code="invalid-environment",
                message=(
                    f"environment name '{_shown(env)}' must be a lowercase DNS label "
                    "(a-z, 0-9 and '-', at most 63 characters), such as 'staging'"
                ),
                field=where,
            )
        ]
    if limits.environments and env not in limits.environments:
        known = ", ".join(sorted(limits.environments))
        return [
            Reason(
                code="environment-not-allowed",
                message=(
                    f"environment {env!r} is not one Ferry releases to (known: {known}); "
                    "rename the manifests folder or add the environment to "
                    "FERRY_INGEST_ENVIRONMENTS"
                ),
                field=where,
            )
        ]
    return []


def _check_file_name(env: str, name: str, path: str) -> list[Reason]:
    if is_safe_segment(name) and name.lower().endswith(MANIFEST_SUFFIXES):
        return []
    return [
        Reason(
            code="invalid-file-name",
            message=(
                f"manifest file name '{_shown(name)}' in '{_shown(env)}' must be one path "
                "segment of letters, digits, '.', '-' or '_' ending in .yaml or .yml, such as "
                "'deployment.yaml'"
            ),
            field=path,
        )
    ]


# --------------------------------------------------------------------------- helpers


def _rejected(artifact: Mapping[str, Any], reasons: list[Reason]) -> Rejected:
    application = artifact.get("application")
    app: Mapping[str, Any] = application if isinstance(application, Mapping) else {}
    artifact_id = artifact.get("id")
    service = artifact.get("service")
    return Rejected(
        reasons=tuple(reasons),
        artifact_id=artifact_id
        if isinstance(artifact_id, str) and is_safe_segment(artifact_id)
        else None,
        service=service if isinstance(service, str) and DNS_LABEL.fullmatch(service) else None,
        squad=_echo(artifact.get("squad")),
        author_email=_echo(app.get("authorEmail", app.get("author_email"))),
        branch=_echo(app.get("branch")),
    )


def _echo(value: Any) -> str | None:
    return _shown(value, _MAX_ECHO) if isinstance(value, str) and value else None


def _size(n: int) -> str:
    if n >= KIB * KIB and n % (KIB * KIB) == 0:
        return f"{n // (KIB * KIB)} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} bytes"
