"""git-writer's settings: the runtime's, plus the config repository it writes.

Every one is an environment variable with the ``FERRY_`` prefix, for example
``FERRY_CONFIG_REPO_URL``. Only the composition root reads them. The repository
URL and branch come from here and nowhere else: no event can name a URL or ref.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from pydantic import Field, field_validator

from ferry_runtime import RuntimeSettings

_BRANCH: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class GitWriterSettings(RuntimeSettings):
    """Settings of git-writer."""

    http_port: int = 8082
    #: The config repo's remote. Empty: a bare repo under the data dir
    #: (``<FERRY_DATA_DIR>/config.git``), created when absent.
    config_repo_url: str = ""
    config_repo_branch: str = "main"
    #: The committer of every commit (the author is the person who asked, when known).
    git_author_name: str = "Ferry"
    git_author_email: str = "ferry@localhost"
    #: Seconds a single git command (fetch, push) may take before it is killed.
    git_timeout: float = Field(default=60.0, gt=0)
    #: Pushes rejected as non-fast-forward before the batch is retried through the broker.
    git_push_attempts: int = Field(default=10, ge=1, le=100)
    #: Most events written in one fetch-commit-push cycle.
    git_max_batch: int = Field(default=200, ge=1, le=5000)

    @field_validator("config_repo_url")
    @classmethod
    def _plain_transport(cls, value: str) -> str:
        if value.startswith("-") or "::" in value or "\n" in value:
            raise ValueError(
                "must be a path or a file://, ssh://, https:// or user@host:path URL; "
                "'<transport>::' URLs and values starting with '-' are refused"
            )
        return value

    @field_validator("config_repo_branch")
    @classmethod
    def _branch_name(cls, value: str) -> str:
        if not _BRANCH.fullmatch(value) or ".." in value or value.endswith((".lock", "/")):
            raise ValueError("must be a plain branch name such as 'main'")
        return value

    def repo_url(self) -> str:
        """The remote to clone from and push to."""
        return self.config_repo_url or str(self.default_remote().resolve())

    def default_remote(self) -> Path:
        return self.data_dir / "config.git"

    def clone_dir(self) -> Path:
        """git-writer's own clone: ``<FERRY_DATA_DIR>/git-writer/config.git``."""
        return self.data_dir / "git-writer" / "config.git"
