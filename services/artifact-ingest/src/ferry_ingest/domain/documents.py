"""One manifest file, document by document: YAML within limits, Kubernetes objects, in bounds.

Parsed with ferry_events' loader and its limits (depth, aliases, documents, size),
the very one git-writer stamps with, so a file accepted here loads there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from ferry_events import Reason, YamlLimitExceeded, load_yaml_documents
from ferry_ingest.domain.bounds import Bounds, is_kustomization, out_of_bounds
from ferry_ingest.domain.text import cut as _cut
from ferry_ingest.domain.text import has_text as _text


def check_yaml(label: str, text: str, path: str, bounds: Bounds | None = None) -> list[Reason]:
    """Every document of one file must be a Kubernetes object; empty documents are skipped.

    ``label`` names the file in messages (``dev/deployment.yaml``), ``path`` in ``field``;
    with ``bounds``, every object must also stay within them (see ``bounds``).
    """
    name = label.rsplit("/", 1)[-1]
    reasons: list[Reason] = []
    try:
        for number, document in _documents(text):
            if isinstance(document, dict) and is_kustomization(document, name):
                problem = None
            else:
                problem = kubernetes_object_problem(document)
            if problem is not None:
                reasons.append(
                    Reason(
                        code="not-a-kubernetes-object",
                        message=f"{label}, document {number}: {problem}",
                        field=path,
                    )
                )
            elif bounds is not None:
                reasons += [
                    Reason(
                        code=out.code,
                        message=f"{label}, document {number}: {out.message}",
                        field=path,
                    )
                    for out in out_of_bounds(document, name, bounds)
                ]
    except YamlLimitExceeded as exc:
        at = f" (at line {exc.line})" if exc.line is not None else ""
        reasons.append(
            Reason(
                code="invalid-yaml",
                message=f"{label}: {exc}{at}; Ferry refuses YAML over its limits",
                field=path,
            )
        )
    except yaml.YAMLError as exc:
        reasons.append(
            Reason(code="invalid-yaml", message=_yaml_message(label, text, exc), field=path)
        )
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for scalars that look typed but are not,
        # such as the timestamp 2026-13-45.
        reasons.append(
            Reason(code="invalid-yaml", message=f"{label} is not valid YAML: {exc}", field=path)
        )
    return reasons


def _documents(text: str) -> Iterator[tuple[int, Any]]:
    """(1-based number, document) for every non-empty document."""
    for number, document in enumerate(load_yaml_documents(text), start=1):
        if document is not None:
            yield number, document


def kubernetes_object_problem(document: Any) -> str | None:
    """What keeps ``document`` from being a Kubernetes object, or ``None``."""
    if not isinstance(document, dict):
        return (
            f"expected a Kubernetes object (a mapping with apiVersion, kind and metadata.name), "
            f"got {_yaml_kind(document)}"
        )
    missing = [key for key in ("apiVersion", "kind") if not _text(document.get(key))]
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not _text(metadata.get("name")):
        missing.append("metadata.name")
    if not missing:
        return None
    kind = document.get("kind")
    what = (
        f"the {_cut(kind, 63)} object" if isinstance(kind, str) and kind.strip() else "the object"
    )
    return f"{what} has no {', '.join(missing)} (every Kubernetes object needs them)"


def _yaml_message(label: str, text: str, exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return (
            f"{label} is not valid YAML: character #x{exc.character:04x} is not allowed "
            f"({exc.reason}) at line {line}"
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            started = exc.context_mark
            at = f" (from line {started.line + 1})" if started is not None else ""
            problem = f"{exc.context}{at}: {exc.problem}"
        if mark is not None:
            return (
                f"{label} is not valid YAML: {problem} at line {mark.line + 1}, "
                f"column {mark.column + 1}"
            )
        return f"{label} is not valid YAML: {problem}"
    return f"{label} is not valid YAML: {exc}"


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_cut(value, 40)!r}"
    return f"a {type(value).__name__}"
