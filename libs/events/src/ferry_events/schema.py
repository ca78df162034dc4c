"""JSON Schema of every event type, written to ``docs/events/``.

``python -m ferry_events.schema docs/events`` regenerates them; a test fails
when the checked-in files differ from what the models say.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ferry_events.envelope import CloudEvent
from ferry_events.registry import EventRegistry, default_registry


def schemas(registry: EventRegistry = default_registry) -> dict[str, str]:
    """File name -> JSON Schema text, for the envelope and every event type's ``data``."""
    out: dict[str, str] = {
        "cloudevent.json": json.dumps(CloudEvent.model_json_schema(), indent=2, sort_keys=True)
        + "\n"
    }
    for type_name in registry.types():
        model = registry.model_for(type_name)
        schema = model.model_json_schema(by_alias=True, mode="serialization")
        schema["$id"] = f"https://ferry.dev/schemas/{type_name}.json"
        schema["title"] = type_name
        out[f"{type_name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path) -> list[Path]:
    """Write every schema under ``directory`` and remove stale ones; return what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = schemas()
    for stale in directory.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events")
    for path in write(target):
        sys.stdout.write(f"wrote {path}\n")


if __name__ == "__main__":
    main()
