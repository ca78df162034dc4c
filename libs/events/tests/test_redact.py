"""Masking credentials: the user part of a URL too, secret query values, Slack tokens."""

from __future__ import annotations

import pytest

from ferry_events import mask_secrets, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://TOKEN@host/x", "https://***@host/x"),
        ("https://user:pass@host/x", "https://user:***@host/x"),
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        (
            "postgresql+asyncpg://ferry:pw@db:5432/ferry",
            "postgresql+asyncpg://ferry:***@db:5432/ferry",
        ),
        (
            "smtp://mailer:s3cret@smtp.example:587?starttls=true",
            "smtp://mailer:***@smtp.example:587?starttls=true",
        ),
        (
            "https://slack.example/api/?token=xoxb-1-2&x=1",
            "https://slack.example/api/?token=***&x=1",
        ),
        ("https://hooks.slack.com/services/T0/B0/abcdef", "https://hooks.slack.com/services/***"),
        ("https://host/x?sig=abc", "https://host/x?sig=***"),
        ("amqp://host/", "amqp://host/"),
        ("/srv/config.git", "/srv/config.git"),
        ("git@github.com:org/config.git", "git@github.com:org/config.git"),
        ("", ""),
        ("http://host:notaport/", "***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_a_password_with_an_at_sign_is_masked_whole() -> None:
    assert mask_url("https://u:p@ss@host/x") == "https://u:***@host/x"


def test_urls_inside_text_are_masked() -> None:
    text = (
        "fatal: unable to access 'https://ghp_abc123@git.example/org/config.git/': 403;"
        " remote error: denied for http://ci:hunter2@127.0.0.1:9/x"
    )
    masked = mask_secrets(text)
    assert "ghp_abc123" not in masked
    assert "hunter2" not in masked
    assert "'https://***@git.example/org/config.git/'" in masked
    assert "http://ci:***@127.0.0.1:9/x" in masked


def test_slack_tokens_are_masked_anywhere() -> None:
    masked = mask_secrets("invalid_auth for xoxb-1234-5678-abcdEFGH and xapp-1-A0-99")
    assert masked == "invalid_auth for xoxb-*** and xapp-***"


def test_github_tokens_are_masked_anywhere() -> None:
    masked = mask_secrets(
        "Bad credentials for ghp_16C7e42F292c6912E7710c838347Ae178B4a, "
        "github_pat_11ABCDEFG0_abcdefXYZ and ghs_abc123 in my_var"
    )
    assert masked == "Bad credentials for ghp_***, github_pat_*** and ghs_*** in my_var"


def test_text_without_secrets_is_unchanged() -> None:
    text = "cannot fetch the config repo from /srv/config.git: exit code 128 (box://)"
    assert mask_secrets(text) == text
