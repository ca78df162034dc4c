"""The watcher's settings: ``FERRY_*`` plus ``KUBECONFIG``, read only by :mod:`bootstrap`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from ferry_runtime import RuntimeSettings


class WatcherSettings(RuntimeSettings):
    model_config = SettingsConfigDict(populate_by_name=True)

    http_port: int = 8083
    #: The name this cluster goes by in every rollout event.
    cluster_name: str = "local"
    #: Comma-separated environments this cluster runs: the only ones this watcher reports.
    #: A workload annotated with another is dropped (and counted). Empty trusts every
    #: workload's ``ferry.dev/environment`` annotation, and says so at start.
    cluster_environments: str = ""
    #: Comma-separated namespaces to watch; empty watches all namespaces.
    watch_namespaces: str = ""
    #: The kubeconfig file. Unset: in-cluster config inside a pod, else ~/.kube/config.
    kubeconfig: Path | None = Field(
        default=None, validation_alias=AliasChoices("kubeconfig", "FERRY_KUBECONFIG", "KUBECONFIG")
    )
    kube_context: str | None = None
    #: Set by Kubernetes inside a pod: then the service account's in-cluster config is used.
    kubernetes_service_host: str = Field(
        default="",
        validation_alias=AliasChoices("kubernetes_service_host", "KUBERNETES_SERVICE_HOST"),
    )
    #: A watch silent (no event, no bookmark) for this long is dead and restarted.
    watch_inactivity_timeout: float = Field(default=90.0, gt=0)
    #: Server-side timeout of one watch request; the watcher then resumes where it was.
    watch_timeout_seconds: int = Field(default=290, ge=1)
    #: Objects per page when listing (``limit``/``continue``), as informers page.
    watch_list_page_size: int = Field(default=500, ge=1, le=10_000)
    #: Longest pause between reconnection attempts.
    watch_backoff_max: float = Field(default=30.0, gt=0)
    #: A rollout the watcher finds finished in its first list is reported again (under its
    #: usual id) only when Kubernetes says it finished within this many seconds: it may have
    #: finished while no watcher watched. Older ones are not reported again. 0: never.
    watch_catch_up_seconds: float = Field(default=900.0, ge=0)
    #: Log lines of a failing container included in a rollout failure.
    failure_log_lines: int = Field(default=20, ge=0, le=500)

    @property
    def environments(self) -> list[str]:
        return [env.strip() for env in self.cluster_environments.split(",") if env.strip()]

    @property
    def namespaces(self) -> list[str]:
        return [ns.strip() for ns in self.watch_namespaces.split(",") if ns.strip()]
