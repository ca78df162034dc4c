"""Reading what CI built: ``artifact.json`` and a manifests directory ``<environment>/*.yaml``.

Every problem is a :class:`CliError` with exit code USAGE (2) that names the
file and what was expected. The artifact itself is not validated here:
artifact-ingest does that and reports every problem at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ferry_cli.errors import CliError, ExitCode

MANIFEST_SUFFIXES: Final = (".yaml", ".yml")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{what} {path} does not exist", ExitCode.USAGE) from None
    except IsADirectoryError:
        raise CliError(f"{what} {path} is a directory, not a file", ExitCode.USAGE) from None
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{what} {path} is not UTF-8 text (byte {exc.start})", ExitCode.USAGE
        ) from exc
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}", ExitCode.USAGE) from exc


def read_artifact(path: Path) -> dict[str, Any]:
    """The artifact spec as CI wrote it, as a raw JSON object."""
    text = _read_text(path, "artifact file")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"artifact file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            ExitCode.USAGE,
        ) from exc
    if not isinstance(document, dict):
        raise CliError(
            f"artifact file {path} must hold a JSON object (release-manager's artifact.json), "
            f"not a {type(document).__name__}",
            ExitCode.USAGE,
        )
    return document


def _environment_files(folder: Path, warnings: list[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for item in sorted(folder.iterdir()):
        if item.name.startswith("."):
            continue
        if item.is_file() and item.suffix in MANIFEST_SUFFIXES:
            files[item.name] = _read_text(item, "manifest")
        else:
            warnings.append(f"{item} is not a *.yaml file; left out")
    return files


def read_manifests(directory: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``environment -> file name -> YAML text``, and warnings about files left out."""
    if not directory.exists():
        raise CliError(
            f"manifests directory {directory} does not exist",
            ExitCode.USAGE,
            hint="--manifests DIR must hold one folder per environment with its *.yaml files, "
            "for example DIR/dev/deployment.yaml",
        )
    if not directory.is_dir():
        raise CliError(f"manifests path {directory} is not a directory", ExitCode.USAGE)
    manifests: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise CliError(
            f"cannot list manifests directory {directory}: {exc.strerror}", ExitCode.USAGE
        ) from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            warnings.append(f"{entry} is not in an environment folder; left out")
            continue
        files = _environment_files(entry, warnings)
        if files:
            manifests[entry.name] = files
        else:
            warnings.append(f"environment folder {entry} has no *.yaml files")
    if not manifests:
        raise CliError(
            f"no manifests found in {directory}",
            ExitCode.USAGE,
            hint="expected DIR/<environment>/*.yaml, for example DIR/dev/deployment.yaml",
        )
    return manifests, warnings
