"""From a CloudEvents ``type`` to its model, upcasting older versions on the way.

An upcaster turns the ``data`` of ``<name>.vN`` into the ``data`` of
``<name>.vN+1``; the registry chains them until it reaches a registered model,
so a consumer only ever handles the newest version it knows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from pydantic import ValidationError

from ferry_events.envelope import CloudEvent
from ferry_events.errors import MalformedEvent, UnknownEventType, UnknownEventVersion
from ferry_events.types import ALL_EVENT_TYPES, EventData

_TYPE_NAME: Final = re.compile(r"^(?P<name>[a-z][a-z0-9.-]*[a-z0-9])\.v(?P<version>[0-9]{1,4})$")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def split_type(type_name: str) -> tuple[str, int]:
    """``ferry.artifact.published.v1`` -> (``ferry.artifact.published``, 1)."""
    match = _TYPE_NAME.fullmatch(type_name)
    if match is None:
        raise UnknownEventType(
            f"event type {type_name!r} is not of the form '<name>.v<version>', "
            "for example 'ferry.artifact.published.v1'"
        )
    return match["name"], int(match["version"])


class EventRegistry:
    """Known event models by type name, and upcasters from older versions."""

    def __init__(self, models: Iterable[type[EventData]] = ()) -> None:
        self._models: dict[str, type[EventData]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for model in models:
            self.register(model)

    def register(self, model: type[EventData]) -> None:
        """Make ``model`` readable under its ``event_type``."""
        split_type(model.event_type)
        self._models[model.event_type] = model

    def register_upcaster(self, name: str, from_version: int, upcaster: Upcaster) -> None:
        """Teach the registry to read ``<name>.v<from_version>`` as the next version."""
        self._upcasters[(name, from_version)] = upcaster

    def types(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._models)

    def model_for(self, type_name: str) -> type[EventData]:
        """The model registered for exactly this type name."""
        try:
            return self._models[type_name]
        except KeyError:
            raise UnknownEventType(f"unknown event type {type_name!r}") from None

    def upcast(self, event: CloudEvent) -> CloudEvent:
        """The same event at the newest version this registry can read.

        Raises :class:`UnknownEventType` for a name it does not know and
        :class:`UnknownEventVersion` for a version no upcaster chain reaches.
        """
        if event.type in self._models:
            return event
        name, version = split_type(event.type)
        known = sorted(v for n, v in (split_type(t) for t in self._models) if n == name)
        if not known:
            raise UnknownEventType(
                f"unknown event type {event.type!r}; known types: {', '.join(self.types())}"
            )
        data = dict(event.data)
        current = version
        while f"{name}.v{current}" not in self._models:
            upcaster = self._upcasters.get((name, current))
            if upcaster is None:
                raise UnknownEventVersion(
                    f"{name} version {version} cannot be read: this reader knows "
                    f"version(s) {', '.join(map(str, known))} and has no upcaster from v{current}"
                )
            data = upcaster(data)
            current += 1
        return event.model_copy(update={"type": f"{name}.v{current}", "data": data})

    def parse(self, event: CloudEvent) -> tuple[CloudEvent, EventData]:
        """Upcast ``event`` and validate its ``data`` against the model of its type."""
        event = self.upcast(event)
        model = self._models[event.type]
        try:
            return event, model.model_validate(event.data)
        except ValidationError as exc:
            raise MalformedEvent(
                f"data of {event.type} does not match its schema: {describe_errors(exc)}"
            ) from exc


def describe_errors(exc: ValidationError) -> str:
    """Every validation error as ``field: message``, joined, for a person to read."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


#: The registry of every event type in this library.
default_registry: Final = EventRegistry(ALL_EVENT_TYPES)
