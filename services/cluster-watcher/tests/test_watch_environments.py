"""A watcher reports only its cluster's environments (FERRY_CLUSTER_ENVIRONMENTS): a workload
annotated with another is dropped and counted, through kubernetes_asyncio, the API test
server and the real broker."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_testing import EventTap
from ferry_watcher.domain import EnvironmentScope, Fact, Stamp, WorkloadRef

pytestmark = pytest.mark.amqp

STARTED = "ferry.rollout.started.v1"
SUCCEEDED = "ferry.rollout.succeeded.v1"
FAILED = "ferry.rollout.failed.v1"


def foreign_facts(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("ferry_watcher_foreign_facts_total", {"outcome": outcome}) or 0.0
    )


async def test_a_dev_watcher_seeing_a_staging_annotation_reports_nothing(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    before = {outcome: foreign_facts(outcome) for outcome in ("started", "succeeded", "failed")}
    async with watcher(cluster_environments="dev"):
        # one forged rollout fails (its pod cannot pull), another succeeds
        failing = kube.create(k.deployment("payments", namespace="shop", environment="staging"))
        kube.create(
            k.pod_for(
                failing,
                "payments-1",
                containers=[k.container_status("payments", waiting="ErrImagePull")],
            )
        )
        done = kube.create(k.deployment("payments-api", namespace="shop", environment="staging"))
        kube.update_status("Deployment", "shop", "payments-api", k.complete_status(done))
        # a sentinel in dev, created after: once its failure is reported, every change
        # to the staging workload has been seen and handled
        sentinel = kube.create(k.deployment("sentinel", namespace="shop", environment="dev"))
        kube.create(
            k.pod_for(
                sentinel,
                "sentinel-1",
                containers=[k.container_status("sentinel", waiting="ErrImagePull")],
            )
        )
        await event_tap.wait_one(FAILED, lambda e: e.data["workload"]["name"] == "sentinel")
        await asyncio.sleep(0.2)
    assert {e.data["service"] for e in event_tap.events} == {"sentinel"}, "a forged fact went out"
    assert all(e.data["environment"] == "dev" for e in event_tap.events)
    assert foreign_facts("started") == before["started"] + 2
    assert foreign_facts("succeeded") == before["succeeded"] + 1
    assert foreign_facts("failed") == before["failed"] + 1


async def test_a_watcher_for_several_environments_reports_each_of_them(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher(cluster_environments="dev, staging"):
        for environment in ("dev", "staging"):
            obj = kube.create(
                k.deployment(f"svc-{environment}", namespace="shop", environment=environment)
            )
            kube.update_status("Deployment", "shop", f"svc-{environment}", k.complete_status(obj))
        succeeded = await event_tap.wait_for(SUCCEEDED, count=2)
    assert {e.data["environment"] for e in succeeded} == {"dev", "staging"}


@pytest.fixture
def own_logging() -> Iterator[None]:
    """The watcher's logging writes to this test's captured stderr: undo it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("own_logging")
async def test_a_watcher_without_the_setting_says_what_it_trusts(
    kube: KubeApiServer, watcher, event_tap: EventTap, capsys: pytest.CaptureFixture[str]
) -> None:
    async with watcher():
        obj = kube.create(k.deployment("payments", namespace="shop", environment="prod"))
        kube.update_status("Deployment", "shop", "payments", k.complete_status(obj))
        succeeded = await event_tap.wait_one(SUCCEEDED)
    assert succeeded.data["environment"] == "prod"
    warnings = [
        json.loads(line)
        for line in capsys.readouterr().err.splitlines()
        if "FERRY_CLUSTER_ENVIRONMENTS" in line
    ]
    assert warnings, "no warning about FERRY_CLUSTER_ENVIRONMENTS"
    assert warnings[0]["level"] == "warning"
    assert "any environment" in warnings[0]["event"]
    assert "ferry.dev/environment" in warnings[0]["event"]


def _fact(environment: str) -> Fact:
    return Fact(
        outcome="started",
        event_id=f"id-{environment}",
        workload=WorkloadRef("Deployment", "shop", "payments", "uid-1", 1),
        stamp=Stamp("payments", environment, "master-1-2", "rel-1", "jane@example.com"),
    )


def test_the_scope_splits_facts_by_environment() -> None:
    dev, prod = _fact("dev"), _fact("prod")
    assert EnvironmentScope.of(["dev"]).split([dev, prod]) == ([dev], [prod])
    assert EnvironmentScope.of([]).split([dev, prod]) == ([dev, prod], [])
    assert EnvironmentScope.of([]).trusts_annotations
    assert not EnvironmentScope.of(["dev", ""]).allows("")
