"""The local cluster simulator applies the config repo (a real bare git remote) as Flux would,
rolls workloads out as the kubelet would, and the watcher reports what happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_kube_sim.simulator import LocalCluster
from ferry_testing import EventTap, git

pytestmark = pytest.mark.amqp


def write_release(
    repo: Path,
    env: str,
    service: str,
    artifact: str,
    release: str,
    simulate: str = "",
    kind: str = "Deployment",
) -> None:
    obj = k.workload(
        kind,
        service,
        namespace="shop",
        artifact_id=artifact,
        release_id=release,
        environment=env,
        replicas=2,
    )
    del obj["metadata"]["namespace"]  # the folder says where it goes
    if simulate:
        obj["metadata"]["annotations"]["ferry.dev/simulate"] = simulate
    folder = repo / "environments" / env / "shop" / service
    folder.mkdir(parents=True, exist_ok=True)
    service_yaml = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service}}
    (folder / "deployment.yaml").write_text(yaml.safe_dump_all([obj, service_yaml]))
    (folder / "artifact.json").write_text(json.dumps({"id": artifact}))


def push(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", message, cwd=repo)
    git("push", "--quiet", "origin", "HEAD:main", cwd=repo)


async def test_the_simulator_rolls_out_the_config_repo_and_the_watcher_reports_it(
    bare_remote: Path, tmp_path: Path, kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    work = tmp_path / "work"
    git("clone", "--quiet", str(bare_remote), str(work))
    git("config", "user.email", "git-writer@example.com", cwd=work)
    git("config", "user.name", "git-writer", cwd=work)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    write_release(work, "dev", "payments", "master-1111111111-aaaaaaaaaa", "rel-1")
    write_release(
        work, "dev", "ledger", "master-2222222222-bbbbbbbbbb", "rel-2", simulate="crashloop"
    )
    for mode in ("imagepull", "oom", "config-error", "progress-deadline"):
        write_release(work, "dev", f"svc-{mode}", "master-4444444444-dddddddddd", "rel-4", mode)
    write_release(work, "dev", "migrate", "master-5555555555-eeeeeeeeee", "rel-5", kind="Job")
    write_release(work, "dev", "db", "master-6666666666-ffffffffff", "rel-6", kind="StatefulSet")
    push(work, "[dev/payments] release")

    cluster = LocalCluster(kube, config_repo=str(bare_remote), poll_interval=0.2, step=0.05)
    await cluster.start()
    try:
        async with watcher():
            done = await event_tap.wait_one(
                "ferry.rollout.succeeded.v1", lambda e: e.data["service"] == "payments"
            )
            crashed = await event_tap.wait_one(
                "ferry.rollout.failed.v1", lambda e: e.data["service"] == "ledger"
            )
            reasons = {}
            for mode in ("imagepull", "oom", "config-error", "progress-deadline"):
                event = await event_tap.wait_one(
                    "ferry.rollout.failed.v1", lambda e, m=mode: e.data["service"] == f"svc-{m}"
                )
                reasons[mode] = event.data["reason"]
            for name in ("migrate", "db"):
                await event_tap.wait_one(
                    "ferry.rollout.succeeded.v1", lambda e, n=name: e.data["service"] == n
                )
            write_release(work, "dev", "payments", "master-3333333333-cccccccccc", "rel-3")
            push(work, "[dev/payments] release again")
            again = await event_tap.wait_one(
                "ferry.rollout.succeeded.v1", lambda e: e.data["releaseId"] == "rel-3"
            )
    finally:
        await cluster.stop()
    assert reasons == {
        "imagepull": "ErrImagePull",
        "oom": "OOMKilled",
        "config-error": "CreateContainerConfigError",
        "progress-deadline": "ProgressDeadlineExceeded",
    }
    assert done.data["namespace"] == "dev-shop"
    assert done.data["environment"] == "dev"
    assert done.data["artifactId"] == "master-1111111111-aaaaaaaaaa"
    assert crashed.data["reason"] == "CrashLoopBackOff"
    assert crashed.data["logs"][-1] == "giving up after 3 attempts"
    assert "keeps crashing" in crashed.data["message"]
    assert again.data["workload"]["generation"] == 2
    assert again.data["workload"]["uid"] == done.data["workload"]["uid"]
    pods = [
        p["metadata"]["name"]
        for p in kube.objects("Pod", "dev-shop")
        if p["metadata"]["name"].startswith("payments-")
    ]
    assert len(pods) == 2  # the old ReplicaSet's pods are gone
