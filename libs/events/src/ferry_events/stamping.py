"""A stamped environment folder: what a release writes to ``environments/<env>/<ns>/<service>/``.

Part of the contract: git-writer commits exactly :func:`environment_files`, and
promotion's preview (``GET /v1/releases/preview``) diffs what runs against the
same function's output, so what is previewed is what is committed.

Every workload document (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
CronJob, Pod) gets the annotations in ``metadata.annotations`` and in its pod
template's ``metadata.annotations`` (for a CronJob also in ``jobTemplate``'s
metadata, so the Jobs it creates carry them). Every other document is kept
byte for byte as CI wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from ferry_events.yamlload import YamlLimitExceeded, load_yaml_document

__all__ = [
    "ARTIFACT_FILE",
    "MANIFEST_SUFFIXES",
    "WORKLOAD_KINDS",
    "InvalidManifest",
    "Stamp",
    "environment_files",
    "split_documents",
    "stamp_manifest",
    "stamp_workload",
]

#: The artifact's own description, copied byte for byte into the environment folder.
ARTIFACT_FILE: Final = "artifact.json"
#: The file names that are manifests (anything else of a build's environment is not copied).
MANIFEST_SUFFIXES: Final = (".yaml", ".yml")

WORKLOAD_KINDS: Final = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
)

#: A document separator: ``---`` at the start of a line, alone or followed by a space.
_SEPARATOR: Final = re.compile(r"^---(?:[ \t].*)?$", re.MULTILINE)

SERVICE: Final = "ferry.dev/service"
ENVIRONMENT: Final = "ferry.dev/environment"
ARTIFACT_ID: Final = "ferry.dev/artifact-id"
RELEASE_ID: Final = "ferry.dev/release-id"
AUTHOR: Final = "ferry.dev/author"


class InvalidManifest(ValueError):
    """A manifest that is not YAML, or a workload whose shape is not a Kubernetes object."""

    code = "invalid-manifest"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a release writes onto every workload."""

    service: str
    environment: str
    artifact_id: str
    release_id: str
    author: str

    def annotations(self) -> dict[str, str]:
        return {
            SERVICE: self.service,
            ENVIRONMENT: self.environment,
            ARTIFACT_ID: self.artifact_id,
            RELEASE_ID: self.release_id,
            AUTHOR: self.author,
        }


def split_documents(text: str) -> tuple[list[str], list[str]]:
    """The documents of a multi-document YAML stream and the separator lines between them.

    ``documents[0] + separators[0] + documents[1] + ...`` is ``text`` again, byte for byte.
    """
    documents: list[str] = []
    separators: list[str] = []
    last = 0
    for match in _SEPARATOR.finditer(text):
        documents.append(text[last : match.start()])
        end = match.end() + 1 if text[match.end() : match.end() + 1] == "\n" else match.end()
        separators.append(text[match.start() : end])
        last = end
    documents.append(text[last:])
    return documents, separators


def _annotate(obj: dict[str, Any], annotations: Mapping[str, str], where: str) -> None:
    metadata = obj.setdefault("metadata", {})
    if metadata is None:
        metadata = obj["metadata"] = {}
    if not isinstance(metadata, dict):
        raise InvalidManifest(f"{where}.metadata is not a mapping")
    current = metadata.get("annotations")
    if current is None:
        current = metadata["annotations"] = {}
    if not isinstance(current, dict):
        raise InvalidManifest(f"{where}.metadata.annotations is not a mapping")
    current.update(annotations)


def _child(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise InvalidManifest(f"{where}.{key} is missing or not a mapping")
    return value


def stamp_workload(doc: dict[str, Any], stamp: Stamp) -> dict[str, Any]:
    """Annotate one workload object in place (and return it)."""
    kind = doc["kind"]
    annotations = stamp.annotations()
    _annotate(doc, annotations, kind)
    if kind == "Pod":
        return doc
    spec = _child(doc, "spec", kind)
    if kind == "CronJob":
        job = _child(spec, "jobTemplate", f"{kind}.spec")
        _annotate(job, annotations, f"{kind}.spec.jobTemplate")
        spec = _child(job, "spec", f"{kind}.spec.jobTemplate")
        where = f"{kind}.spec.jobTemplate.spec"
    else:
        where = f"{kind}.spec"
    template = _child(spec, "template", where)
    _annotate(template, annotations, f"{where}.template")
    return doc


def stamp_manifest(text: str, stamp: Stamp, *, name: str = "manifest") -> str:
    """``text`` with every workload document stamped; other documents unchanged."""
    documents, separators = split_documents(text)
    out: list[str] = []
    for index, chunk in enumerate(documents):
        try:
            # The loader and limits artifact-ingest validated with: what it accepted loads.
            doc = load_yaml_document(chunk)
        except YamlLimitExceeded as exc:
            raise InvalidManifest(f"{name}: document {index + 1}: {exc}") from exc
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidManifest(f"{name}: document {index + 1} is not valid YAML: {exc}") from exc
        if isinstance(doc, dict) and doc.get("kind") in WORKLOAD_KINDS:
            try:
                stamp_workload(doc, stamp)
            except InvalidManifest as exc:
                raise InvalidManifest(f"{name}: document {index + 1}: {exc}") from exc
            out.append(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
        else:
            out.append(chunk)
        if index < len(separators):
            out.append(separators[index])
    return "".join(out)


def environment_files(
    artifact: bytes, manifests: Mapping[str, bytes], stamp: Stamp, *, where: str = "manifest"
) -> dict[str, bytes]:
    """The complete content of an environment folder, keyed by path relative to it.

    ``artifact`` is the build's ``artifact.json`` (kept byte for byte); ``manifests`` the
    files of the build's folder for the environment (``builds/<service>/<id>/<env>/``),
    keyed by path relative to it: each ``.yaml``/``.yml`` one is stamped, any other file is
    left out. ``where`` (that folder) prefixes the names in errors. Raises
    :class:`InvalidManifest` for a manifest that is not UTF-8 or not YAML.
    """
    files: dict[str, bytes] = {ARTIFACT_FILE: artifact}
    for name, content in sorted(manifests.items()):
        if not name.endswith(MANIFEST_SUFFIXES):
            continue
        try:
            text = content.decode()
        except UnicodeDecodeError:
            raise InvalidManifest(f"{where}/{name} is not UTF-8 text") from None
        files[name] = stamp_manifest(text, stamp, name=f"{where}/{name}").encode()
    return files
