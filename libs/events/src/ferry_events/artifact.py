"""The artifact spec, field for field as release-manager's ``artifact.json``.

Existing CI scripts that write ``artifact.json`` for release-manager keep
working: the names below are its names.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from pydantic import Field, field_validator

from ferry_events._wire import WireModel

#: A safe single path segment: letters, digits, dot, dash, underscore; no leading dot.
SAFE_SEGMENT: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Kubernetes DNS-1123 label, used for service, namespace and environment names.
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def is_safe_segment(value: str) -> bool:
    """True when ``value`` can be used as one directory name in the config repo."""
    return bool(SAFE_SEGMENT.fullmatch(value)) and ".." not in value


class Application(WireModel):
    """The source change an artifact was built from."""

    branch: str
    sha: str
    author_name: str = ""
    author_email: str = ""
    committer_name: str = ""
    committer_email: str = ""
    message: str = ""
    name: str = ""
    url: str = ""
    provider: str = ""
    #: When the change was committed (optional; Ferry's addition to release-manager's spec).
    #: insights measures lead time for changes from it, else from ``ci.start``.
    committed_at: datetime | None = None


class CI(WireModel):
    """The CI job that built the artifact."""

    job_url: str = ""
    start: datetime | None = None
    end: datetime | None = None


class Stage(WireModel):
    """One CI stage (build, test, push, snyk, ...) with stage-specific data."""

    id: str
    name: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class ArtifactSpec(WireModel):
    """What CI built: the release-manager ``artifact.json``."""

    id: str = Field(min_length=1, max_length=128)
    service: str = Field(min_length=1, max_length=63)
    namespace: str = ""
    squad: str = ""
    application: Application
    ci: CI = Field(default_factory=CI)
    stages: list[Stage] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id_is_a_path_segment(cls, value: str) -> str:
        if not is_safe_segment(value):
            raise ValueError(
                "must be one path segment of letters, digits, '.', '-' or '_' "
                "(release-manager ids look like master-0017d995e3-67e9d69164)"
            )
        return value

    @field_validator("service")
    @classmethod
    def _service_is_a_dns_label(cls, value: str) -> str:
        if not DNS_LABEL.fullmatch(value):
            raise ValueError("must be a lowercase DNS label (a-z, 0-9, '-'), at most 63 characters")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_dns_label(cls, value: str) -> str:
        if value and not DNS_LABEL.fullmatch(value):
            raise ValueError("must be empty or a lowercase DNS label (a-z, 0-9, '-')")
        return value

    def stage(self, stage_id: str) -> Stage | None:
        """The stage with this id, if CI reported one."""
        return next((s for s in self.stages if s.id == stage_id), None)

    def failed_tests(self) -> int:
        """How many tests the ``test`` stage reported as failed (0 when there is none)."""
        test = self.stage("test")
        if test is None:
            return 0
        results = test.data.get("results")
        if not isinstance(results, dict):
            return 0
        failed = results.get("failed", 0)
        return failed if isinstance(failed, int) else 0


#: environment -> file name -> YAML text, as CI rendered them.
Manifests = dict[str, dict[str, str]]
