"""Where the CLI finds its server and token: the only module that reads settings.

Precedence, first found wins:

- server: ``--server``, ``FERRY_SERVER``, ``server:`` in the config file,
  ``http://127.0.0.1:8080``;
- token: ``--token``, ``FERRY_TOKEN``, ``token:`` in the config file, then the
  token ``make run`` writes, ``$FERRY_DATA_DIR/dev-token`` (else ``.ferry/dev-token``
  in the current directory), used only when the server is on this machine.

- dashboard (links to a release's page, e.g. in ``ferry watch``): ``FERRY_DASHBOARD_URL``,
  ``dashboard:`` in the config file, else none.

The config file is ``$FERRY_CONFIG``, else ``$XDG_CONFIG_HOME/ferry/config.yaml``,
else ``~/.config/ferry/config.yaml``::

    server: https://ferry.example.com
    token: s3cr3t
    dashboard: https://insights.example.com

Flags and environment variables are parsed by Typer (``envvar=``), not by
pydantic-settings: importing pydantic-settings would add about half a second
to every command, and a CLI's flags already are its settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ferry_cli.errors import CliError, ExitCode

DEFAULT_SERVER: Final = "http://127.0.0.1:8080"
DEV_TOKEN_FILE: Final = Path(".ferry") / "dev-token"
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """The server to talk to and the token to present (``token_source`` says where it came from)."""

    server: str
    token: str | None
    token_source: str


def config_path() -> Path:
    explicit = os.environ.get("FERRY_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ferry" / "config.yaml"


def read_config(path: Path) -> dict[str, str]:
    """The ``server`` and ``token`` of a config file; ``{}`` when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(
            f"cannot read the config file {path}: {exc.strerror}", ExitCode.USAGE
        ) from exc
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(
            f"the config file {path} is not valid YAML: {exc}",
            ExitCode.USAGE,
            hint="it holds two keys, for example 'server: http://127.0.0.1:8080' and 'token: ...'",
        ) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CliError(
            f"the config file {path} must be a mapping with 'server' and 'token'",
            ExitCode.USAGE,
        )
    return {
        key: str(loaded[key])
        for key in ("server", "token", "dashboard")
        if loaded.get(key) is not None
    }


def dashboard_url() -> str | None:
    """Insights' dashboard, for links to a release's page: ``FERRY_DASHBOARD_URL``, else
    ``dashboard:`` in the config file; None when neither is set (no link is shown)."""
    found = os.environ.get("FERRY_DASHBOARD_URL", "").strip()
    source = "FERRY_DASHBOARD_URL"
    if not found:
        found = read_config(config_path()).get("dashboard", "").strip()
        source = f"dashboard: in {config_path()}"
    if not found:
        return None
    if not found.startswith(("http://", "https://")):
        raise CliError(
            f"the dashboard {found!r} ({source}) is not an http:// or https:// URL",
            ExitCode.USAGE,
            hint="set FERRY_DASHBOARD_URL to insights' address, e.g. https://ferry.example.com",
        )
    return found.rstrip("/")


def release_page(dashboard: str, release_id: str) -> str:
    """The dashboard's page of one release."""
    from urllib.parse import quote

    return f"{dashboard}/releases/{quote(release_id, safe='')}"


def dev_token_file() -> Path:
    """Where ``make run`` wrote its development token: its ``FERRY_DATA_DIR``, else ``.ferry``."""
    data_dir = os.environ.get("FERRY_DATA_DIR")
    return Path(data_dir).expanduser() / "dev-token" if data_dir else DEV_TOKEN_FILE


def is_loopback(server: str) -> bool:
    return (urlsplit(server).hostname or "") in _LOOPBACK


def resolve_api(server: str | None, token: str | None) -> ApiTarget:
    """The server and token from flags/environment (already merged by Typer) and files."""
    config: dict[str, str] | None = None

    def from_config() -> dict[str, str]:
        nonlocal config
        if config is None:
            config = read_config(config_path())
        return config

    resolved_server = (server or from_config().get("server") or DEFAULT_SERVER).rstrip("/")
    if not resolved_server.startswith(("http://", "https://")):
        raise CliError(
            f"the server {resolved_server!r} is not an http:// or https:// URL",
            ExitCode.USAGE,
            hint="pass --server http://host:8080 or set FERRY_SERVER",
        )
    if token:
        return ApiTarget(resolved_server, token, "--token or FERRY_TOKEN")
    if from_config().get("token"):
        return ApiTarget(resolved_server, from_config()["token"], str(config_path()))
    dev_file = dev_token_file()
    if is_loopback(resolved_server) and dev_file.is_file():
        dev = dev_file.read_text(encoding="utf-8").strip()
        if dev:
            return ApiTarget(resolved_server, dev, str(dev_file))
    return ApiTarget(resolved_server, None, "none")
