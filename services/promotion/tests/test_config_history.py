"""promotion reads the release history of the config repo once, then only what each fetch
added; a rewritten branch is read again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferry_promotion.adapters.configrepo import ConfigReader
from ferry_testing import git


async def test_history_is_extended_by_each_fetch_and_read_again_after_a_rewrite(
    config: Any, tmp_path: Path
) -> None:
    config.store("payments", "a-1")
    config.store("payments", "a-2")
    config.store("ledger", "b-1")
    first = config.release("dev", "payments", "a-1")
    config.release("dev", "ledger", "b-1")
    reader = ConfigReader(str(config.remote), "main", tmp_path / "clone")
    await reader.start()
    assert [e.artifact_id for e in await reader.history("payments")] == ["a-1"]

    config.release("staging", "payments", "a-1", intent="promote", promoted_from="dev")
    config.release("dev", "payments", "a-2")
    await reader.refresh(force=True)
    entries = await reader.history("payments")
    assert [(e.environment, e.artifact_id) for e in entries] == [
        ("dev", "a-2"),
        ("staging", "a-1"),
        ("dev", "a-1"),
    ]
    assert entries[1].promoted_from == "dev"
    assert [e.artifact_id for e in await reader.history("payments", "dev")] == ["a-2", "a-1"]
    assert [e.artifact_id for e in await reader.history("ledger")] == ["b-1"]

    # the branch is rewritten to the first release: the newer entries are gone
    git("push", "--quiet", "--force", "origin", f"{first}:main", cwd=config.work)
    await reader.refresh(force=True)
    assert [e.artifact_id for e in await reader.history("payments")] == ["a-1"]
    assert await reader.history("ledger") == []
