"""git-writer's settings: the only source of the repo URL and branch, checked on start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ferry_gitwriter.settings import GitWriterSettings


def test_defaults_put_the_remote_and_the_clone_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FERRY_DATA_DIR", str(tmp_path))
    settings = GitWriterSettings()
    assert settings.http_port == 8082
    assert settings.config_repo_branch == "main"
    assert settings.repo_url() == str((tmp_path / "config.git").resolve())
    assert settings.clone_dir() == tmp_path / "git-writer" / "config.git"


def test_repo_url_and_branch_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_CONFIG_REPO_URL", "ssh://git@git.internal/config.git")
    monkeypatch.setenv("FERRY_CONFIG_REPO_BRANCH", "release/main")
    settings = GitWriterSettings()
    assert settings.repo_url() == "ssh://git@git.internal/config.git"
    assert settings.config_repo_branch == "release/main"


@pytest.mark.parametrize("url", ["ext::sh -c touch% pwned", "--upload-pack=touch x", "a\nb"])
def test_transport_helper_and_option_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="transport"):
        GitWriterSettings(config_repo_url=url)


@pytest.mark.parametrize("branch", ["../x", "-f", "main.lock", "a b", ""])
def test_odd_branch_names_are_refused(branch: str) -> None:
    with pytest.raises(ValidationError, match="plain branch name"):
        GitWriterSettings(config_repo_branch=branch)
