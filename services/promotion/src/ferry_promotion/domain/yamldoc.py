"""YAML documents read with the line of every value, so a person is told where a problem is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Path = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: where (field path and line) and why."""

    field: str
    line: int | None
    message: str

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field or '(document)'}: {self.message}"


class DocumentError(ValueError):
    """A document that cannot be used; ``problems`` says every reason found."""

    def __init__(self, what: str, problems: Sequence[Problem]) -> None:
        self.what = what
        self.problems = list(problems)
        super().__init__(f"{what} is invalid: " + "; ".join(p.describe() for p in self.problems))


def _lines(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            _lines(value, (*path, name), out)
            # a field is reported at its key's line (its value may start on the next one)
            out[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


@dataclass(frozen=True, slots=True)
class Document:
    """Parsed YAML (``data``) and the line of every field path."""

    data: Any
    lines: dict[Path, int]

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest parent that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get(())


def parse_yaml(text: str, what: str) -> Document:
    """Parse one YAML document; a syntax error becomes a :class:`DocumentError` with its line."""
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise DocumentError(
            what, [Problem("", line, f"not valid YAML: {exc.problem or exc.context}")]
        ) from exc
    except yaml.YAMLError as exc:
        raise DocumentError(what, [Problem("", None, f"not valid YAML: {exc}")]) from exc
    lines: dict[Path, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return Document(data=data, lines=lines)


def field_name(loc: Sequence[str | int]) -> str:
    """``("approvals", 0, "required")`` -> ``approvals[0].required``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_of(exc: ValidationError, doc: Document | None = None) -> list[Problem]:
    """Every pydantic error as a :class:`Problem` with its field path and line."""
    found: list[Problem] = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = str(err["msg"]).removeprefix("Value error, ")
        line = doc.line_of(loc) if doc is not None else None
        found.append(Problem(field_name(loc), line, message))
    return found


def validate_document(model: type[M], doc: Document, what: str) -> M:
    """Validate ``doc.data`` as ``model``; errors name the field and the line."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise DocumentError(what, problems_of(exc, doc)) from exc
