"""artifact-ingest's settings: the runtime's, plus the limits on what it accepts.

Every one is an environment variable with the ``FERRY_`` prefix, for example
``FERRY_INGEST_MAX_FILE_BYTES``. Only the composition root reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from ferry_runtime import RuntimeSettings


class IngestSettings(RuntimeSettings):
    """Settings of artifact-ingest."""

    http_port: int = 8081
    #: Largest manifest file accepted, in bytes (UTF-8).
    ingest_max_file_bytes: int = Field(default=256 * 1024, ge=1)
    #: Largest total of every manifest file of one artifact, in bytes.
    ingest_max_total_bytes: int = Field(default=1024 * 1024, ge=1)
    #: Most files one environment may have.
    ingest_max_files_per_environment: int = Field(default=100, ge=1)
    #: Environments manifests may be given for, comma-separated; empty accepts any name.
    ingest_environments: Annotated[tuple[str, ...], NoDecode] = ()
    #: Cluster-scoped kinds a build may hold anyway, comma-separated (default: none).
    ingest_allowed_kinds: Annotated[tuple[str, ...], NoDecode] = ()
    #: Who may publish which service and namespace (YAML ``identities: {<broker user>:
    #: {services: [...], namespaces: [...]}}``); unset: any publisher may publish any service.
    ci_identities_file: Path | None = None
    #: Messages handled at once.
    ingest_concurrency: int = Field(default=4, ge=1, le=256)

    @field_validator("ingest_environments", "ingest_allowed_kinds", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
