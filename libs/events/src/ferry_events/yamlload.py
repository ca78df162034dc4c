"""One YAML loader, with explicit limits, for every place that parses CI's manifests.

artifact-ingest validates manifests and git-writer stamps them later: if the two
parsed differently, a text ingest accepted could fail (or crash) git-writer's
batch. Both call :func:`load_yaml_documents` with the same :class:`YamlLimits`, so a
manifest that passed ingest loads in git-writer too.

The limits are checked on the parser's event stream *before* anything is built,
without recursion, so a 10,000-deep text costs a scan, not a ``RecursionError``:

- ``max_bytes``     the text, in UTF-8 bytes;
- ``max_depth``     nested mappings and sequences (Kubernetes objects need about 20);
- ``max_aliases``   ``*alias`` references (the "billion laughs" expansion);
- ``max_documents`` documents in one stream.

Only plain data is built (the safe loader: tags such as ``!!python/object`` are
refused). libyaml's loader is used when PyYAML was built with it, else the pure one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import yaml

#: libyaml's safe loader when PyYAML was built with it (about 6x faster), else the pure one.
_LOADER: Final[type[yaml.SafeLoader]] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN: Final = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE: Final = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """What one YAML text may contain."""

    max_bytes: int = 1024 * 1024
    max_depth: int = 64
    max_aliases: int = 64
    max_documents: int = 256


#: The limits ingest checks and git-writer relies on.
DEFAULT_YAML_LIMITS: Final = YamlLimits()


class YamlLimitExceeded(yaml.YAMLError):
    """The text is over one of the :class:`YamlLimits`; the message says which and where."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def load_yaml_documents(text: str, limits: YamlLimits = DEFAULT_YAML_LIMITS) -> list[Any]:
    """Every document of ``text`` (``None`` for an empty one), checked against ``limits``.

    Raises :class:`YamlLimitExceeded`, or another ``yaml.YAMLError`` for text that is
    not YAML, or ``ValueError``/``TypeError``/``OverflowError`` for a scalar that looks
    typed but is not (such as the timestamp ``2026-13-45``).
    """
    check_yaml_limits(text, limits)
    return list(yaml.load_all(text, Loader=_LOADER))


def load_yaml_document(text: str, limits: YamlLimits = DEFAULT_YAML_LIMITS) -> Any:
    """The single document of ``text`` (``None`` when empty), checked against ``limits``."""
    documents = [doc for doc in load_yaml_documents(text, limits) if doc is not None]
    if len(documents) > 1:
        raise yaml.YAMLError(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None


def check_yaml_limits(text: str, limits: YamlLimits = DEFAULT_YAML_LIMITS) -> None:
    """Raise :class:`YamlLimitExceeded` when ``text`` is over ``limits``; build nothing."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_bytes:
        raise YamlLimitExceeded(
            f"the YAML text is {size} bytes, over the limit of {limits.max_bytes}"
        )
    depth = aliases = documents = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > limits.max_depth:
                raise YamlLimitExceeded(
                    f"the YAML is nested more than {limits.max_depth} levels deep",
                    line=_line(event),
                )
        elif isinstance(event, _CLOSE):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise YamlLimitExceeded(
                    f"the YAML has more than {limits.max_aliases} aliases (*name references)",
                    line=_line(event),
                )
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > limits.max_documents:
                raise YamlLimitExceeded(
                    f"the YAML has more than {limits.max_documents} documents",
                    line=_line(event),
                )


def _line(event: yaml.Event) -> int | None:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else None
