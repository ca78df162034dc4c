"""The git CLI as promotion runs it: no shell, no prompt, secrets masked in its errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ferry_runtime import TemporaryError, mask_secrets


class GitError(TemporaryError):
    """A git command failed (remote unreachable, ...): retry later."""


async def run_git(*args: str, cwd: Path | None = None, check: bool = True) -> tuple[int, str]:
    """Run the git CLI without a shell; returns (exit code, stdout). Raises GitError on failure."""
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "PATH": _path()},
    )
    out, err = await process.communicate()
    code = process.returncode or 0
    if check and code != 0:
        raise GitError(
            f"git {args[0]} failed ({code}): "
            f"{mask_secrets(err.decode(errors='replace').strip())[:500]}",
            code="git-failed",
        )
    return code, out.decode(errors="replace")


def _path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin")


def parse_trailers(block: str) -> dict[str, str]:
    """``Key: value`` lines of a commit's trailer block; the first value of a key wins."""
    found: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            found.setdefault(key.strip(), value.strip())
    return found
