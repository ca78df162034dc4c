"""Start-up stays light: loading the command tree imports none of the heavy modules
(each command imports what it needs), and httpx's own CLI is kept out."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["httpx", "aio_pika", "ferry_events", "ferry_runtime", "rich.table", "yaml", "pydantic"]


PROBE = """
import json, sys
names = {names!r}
print(json.dumps({{m: sys.modules.get(m) is not None for m in names}}))
"""


def _loaded_after(code: str) -> dict[str, bool]:
    probe = code + PROBE.format(names=[*HEAVY, "httpx._main"])
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_command_tree_loads_no_heavy_module() -> None:
    loaded = _loaded_after("import ferry_cli.app")
    assert [m for m in HEAVY if loaded[m]] == []


def test_the_api_client_does_not_load_httpx_command_line_tool() -> None:
    loaded = _loaded_after("import ferry_cli.api")
    assert loaded["httpx"]
    assert not loaded["httpx._main"]
    assert not loaded["aio_pika"]
