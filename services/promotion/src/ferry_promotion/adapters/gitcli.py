"""The git CLI as promotion runs it: no shell, no prompt, secrets masked in its errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
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


async def read_files(
    cwd: Path, commit: str, directory: str, keep: Callable[[str], bool] | None = None
) -> dict[str, bytes]:
    """Every file below ``directory`` at ``commit`` (those whose relative path ``keep`` accepts),
    keyed by path relative to it, as git holds it (a symlink is the text of its target, never
    followed): one ``git ls-tree`` and one ``git cat-file --batch``."""
    prefix = directory.rstrip("/") + "/"
    _, listing = await run_git("ls-tree", "-r", "-z", commit, "--", prefix, cwd=cwd)
    blobs: list[tuple[str, str]] = []
    for entry in listing.split("\0"):
        meta, tab, path = entry.partition("\t")
        fields = meta.split()
        if tab and len(fields) == 3 and fields[1] == "blob" and path.startswith(prefix):
            name = path[len(prefix) :]
            if keep is None or keep(name):
                blobs.append((name, fields[2]))
    if not blobs:
        return {}
    process = await asyncio.create_subprocess_exec(
        "git",
        "cat-file",
        "--batch",
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "PATH": _path()},
    )
    out, err = await process.communicate("".join(f"{sha}\n" for _, sha in blobs).encode())
    if process.returncode:
        raise GitError(
            f"git cat-file failed ({process.returncode}): "
            f"{mask_secrets(err.decode(errors='replace').strip())[:500]}",
            code="git-failed",
        )
    files: dict[str, bytes] = {}
    at = 0
    for name, _ in blobs:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        size = int(header[2]) if len(header) == 3 else 0
        files[name] = out[end + 1 : end + 1 + size]
        at = end + 1 + size + 1
    return files


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
