"""Settings and the composition root, without a broker."""

from __future__ import annotations

import pytest

from ferry_events import ArtifactPublished
from ferry_ingest.bootstrap import build, limits
from ferry_ingest.settings import IngestSettings

VARIABLES = (
    "FERRY_HTTP_PORT",
    "FERRY_INGEST_ENVIRONMENTS",
    "FERRY_INGEST_MAX_FILE_BYTES",
    "FERRY_INGEST_MAX_TOTAL_BYTES",
    "FERRY_INGEST_MAX_FILES_PER_ENVIRONMENT",
    "FERRY_INGEST_CONCURRENCY",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = IngestSettings()
    assert settings.http_port == 8081
    assert settings.ingest_concurrency == 4
    assert limits(settings).max_file_bytes == 256 * 1024
    assert limits(settings).max_total_bytes == 1024 * 1024
    assert limits(settings).max_files_per_environment == 100
    assert limits(settings).environments == frozenset()


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_INGEST_ENVIRONMENTS", "dev, staging,prod,")
    monkeypatch.setenv("FERRY_INGEST_MAX_FILE_BYTES", "1000")
    monkeypatch.setenv("FERRY_INGEST_MAX_TOTAL_BYTES", "5000")
    monkeypatch.setenv("FERRY_INGEST_MAX_FILES_PER_ENVIRONMENT", "7")
    configured = limits(IngestSettings())
    assert configured.environments == frozenset({"dev", "staging", "prod"})
    assert (configured.max_file_bytes, configured.max_total_bytes) == (1000, 5000)
    assert configured.max_files_per_environment == 7


def test_a_bad_limit_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_INGEST_MAX_FILE_BYTES", "0")
    with pytest.raises(ValueError, match="ingest_max_file_bytes"):
        IngestSettings()


def test_the_service_consumes_only_published_artifacts() -> None:
    runtime = build(IngestSettings())
    assert runtime.service == "artifact-ingest"
    assert runtime.queues().routing_keys == (ArtifactPublished.event_type,)
    assert runtime.queues().main == "ferry.artifact-ingest"
