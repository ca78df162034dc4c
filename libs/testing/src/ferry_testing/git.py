"""Real git repositories for tests: a bare remote in a temporary folder and clones of it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    """Run the git CLI and return its output (raises on failure)."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout


def make_bare_remote(path: Path, branch: str = "main") -> Path:
    """An empty bare repository (no commits yet), as a new config repo would be."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "--bare", "--quiet", f"--initial-branch={branch}", str(path))
    return path


def clone(remote: Path, into: Path, branch: str = "main") -> Path:
    git("clone", "--quiet", "--branch", branch, str(remote), str(into))
    git("config", "user.email", "someone-else@example.com", cwd=into)
    git("config", "user.name", "Someone Else", cwd=into)
    return into


def log_subjects(remote: Path, branch: str = "main") -> list[str]:
    """Commit titles on ``branch`` of ``remote``, newest first."""
    out = git("--git-dir", str(remote), "log", "--format=%s", branch)
    return [line for line in out.splitlines() if line]


def trailer_values(remote: Path, key: str, branch: str = "main") -> list[str]:
    """Every value of trailer ``key`` on ``branch``, newest first."""
    out = git("--git-dir", str(remote), "log", f"--format=%(trailers:key={key},valueonly)", branch)
    return [line.strip() for line in out.splitlines() if line.strip()]


def show(remote: Path, path: str, branch: str = "main") -> str:
    return git("--git-dir", str(remote), "show", f"{branch}:{path}")
