"""The API test server speaks what the stock kubernetes_asyncio client expects, typed models and
``Watch.stream`` included."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client, config, watch

from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k


@pytest.fixture
async def api(kubeconfig: Path):
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    await api.close()


async def test_discovery_list_and_typed_models(kube: KubeApiServer, api) -> None:
    version = await client.VersionApi(api).get_code()
    assert version.major == "1"
    groups = await client.ApisApi(api).get_api_versions()
    assert {g.name for g in groups.groups} == {"apps", "batch"}
    kube.create(k.deployment("payments", namespace="shop", replicas=3))
    kube.create(k.workload("Job", "migrate", namespace="shop"))
    deployments = await client.AppsV1Api(api).list_namespaced_deployment("shop")
    assert [d.metadata.name for d in deployments.items] == ["payments"]
    assert deployments.items[0].spec.replicas == 3
    assert deployments.items[0].metadata.generation == 1
    jobs = await client.BatchV1Api(api).list_job_for_all_namespaces()
    assert jobs.items[0].spec.template.spec.restart_policy == "Never"
    assert int(jobs.metadata.resource_version) == kube.resource_version


async def test_watch_stream_bookmarks_and_410(kube: KubeApiServer, api) -> None:
    apps = client.AppsV1Api(api)
    listed = await apps.list_deployment_for_all_namespaces()
    obj = kube.create(k.deployment("payments"))
    kube.update_status("Deployment", "default", "payments", k.complete_status(obj))
    seen = []
    async with watch.Watch() as w:
        async for event in w.stream(
            apps.list_deployment_for_all_namespaces,
            resource_version=listed.metadata.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=2,
        ):
            seen.append(event["type"])
            if event["type"] == "BOOKMARK":
                break
    assert seen[:2] == ["ADDED", "MODIFIED"]
    assert seen[-1] == "BOOKMARK"
    kube.compact()

    async def resume() -> None:
        async with watch.Watch() as w:
            async for _ in w.stream(
                apps.list_deployment_for_all_namespaces,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=2,
            ):
                pass

    with pytest.raises(client.ApiException) as info:
        await resume()
    assert info.value.status == 410


async def test_pod_logs_tail(kube: KubeApiServer, api) -> None:
    dep = kube.create(k.deployment("payments"))
    kube.create(k.pod_for(dep, "payments-1"))
    kube.set_pod_log("default", "payments-1", "payments", "one\ntwo\nthree\n")
    core = client.CoreV1Api(api)
    text = await core.read_namespaced_pod_log(
        "payments-1", "default", container="payments", tail_lines=2
    )
    assert text == "two\nthree\n"
    with pytest.raises(client.ApiException) as info:
        await core.read_namespaced_pod_log("nope", "default")
    assert info.value.status == 404


async def test_lists_come_in_pages_with_one_resource_version(kube: KubeApiServer, api) -> None:
    for i in range(5):
        kube.create(k.deployment(f"svc-{i}"))
    apps = client.AppsV1Api(api)
    first = await apps.list_namespaced_deployment("default", limit=2)
    kube.create(k.deployment("svc-9"))  # after the first page: later pages still carry its rv
    second = await apps.list_namespaced_deployment(
        "default", limit=2, _continue=first.metadata._continue
    )
    third = await apps.list_namespaced_deployment(
        "default", limit=2, _continue=second.metadata._continue
    )
    names = [d.metadata.name for page in (first, second, third) for d in page.items]
    assert names == ["svc-0", "svc-1", "svc-2", "svc-3", "svc-4", "svc-9"]
    assert third.metadata._continue is None
    assert {p.metadata.resource_version for p in (first, second, third)} == {
        first.metadata.resource_version
    }
