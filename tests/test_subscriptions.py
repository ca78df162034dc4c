"""Every service's composition root consumes exactly the event types that ferry_events'
SUBSCRIPTIONS lists for it: the contract ``ferry dlq replay`` trusts."""

from __future__ import annotations

from pathlib import Path

from ferry_events import SUBSCRIPTIONS
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_ingest.bootstrap import build as build_ingest
from ferry_ingest.settings import IngestSettings
from ferry_notifier.bootstrap import build as build_notifier
from ferry_notifier.settings import NotifierSettings
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_runtime import ServiceRuntime
from ferry_watcher.bootstrap import build as build_watcher
from ferry_watcher.settings import WatcherSettings


def _consumed(runtime: ServiceRuntime) -> frozenset[str]:
    return frozenset(runtime.queues().routing_keys)


async def test_each_service_consumes_what_the_contract_says(tmp_path: Path) -> None:
    runtimes = {
        "artifact-ingest": build_ingest(IngestSettings()),
        "git-writer": build_git_writer(
            GitWriterSettings(data_dir=tmp_path / "writer", config_repo_url=str(tmp_path / "r"))
        ),
        "notifier": build_notifier(
            NotifierSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")
        ),
        "cluster-watcher": build_watcher(WatcherSettings(kubeconfig=tmp_path / "none")).runtime,
    }
    promotion = await build_promotion(PromotionSettings(data_dir=tmp_path / "promotion"))
    runtimes["promotion"] = promotion.runtime
    assert set(runtimes) == set(SUBSCRIPTIONS)
    for service, runtime in runtimes.items():
        assert runtime.service == service
        assert _consumed(runtime) == SUBSCRIPTIONS[service], service
