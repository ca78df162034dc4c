"""Fixtures of artifact-ingest's tests: the example artifact of the repository, and settings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ferry_events import ArtifactPublished
from ferry_ingest.settings import IngestSettings
from ferry_testing import BrokerNamespace

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _load_manifests() -> dict[str, dict[str, str]]:
    return {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }


_ARTIFACT: dict[str, Any] = json.loads((EXAMPLES / "artifact.json").read_text())
_MANIFESTS = _load_manifests()


@pytest.fixture
def example_artifact() -> dict[str, Any]:
    """``examples/artifact.json`` as CI would send it (a fresh copy to change at will)."""
    return copy.deepcopy(_ARTIFACT)


@pytest.fixture
def example_manifests() -> dict[str, dict[str, str]]:
    """``examples/manifests/``: environment -> file name -> YAML text (a fresh copy)."""
    return copy.deepcopy(_MANIFESTS)


@pytest.fixture
def example_published(
    example_artifact: dict[str, Any], example_manifests: dict[str, dict[str, str]]
) -> ArtifactPublished:
    """The example as the event CI publishes."""
    return ArtifactPublished(artifact=example_artifact, manifests=example_manifests)


@pytest.fixture
def ingest_settings(broker_ns: BrokerNamespace) -> IngestSettings:
    """Settings pointing artifact-ingest at the test's broker namespace."""
    return IngestSettings(**broker_ns.settings())
