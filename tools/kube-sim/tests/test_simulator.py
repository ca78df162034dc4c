"""The simulator plays Flux (a real bare git remote in, workloads applied and pruned) and the
kubelet (statuses and pods moved through a rollout), in process and as ``python -m
ferry_kube_sim``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_kube_sim.simulator import LocalCluster, read_environments
from ferry_testing import git


def write_workload(
    repo: Path, env: str, name: str, *, simulate: str = "", kind: str = "Deployment"
) -> None:
    obj = k.workload(kind, name, namespace="shop", environment=env, replicas=2)
    del obj["metadata"]["namespace"]  # the folder says where it goes
    if simulate:
        obj["metadata"]["annotations"]["ferry.dev/simulate"] = simulate
    folder = repo / "environments" / env / "shop" / name
    folder.mkdir(parents=True, exist_ok=True)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}}
    (folder / "deployment.yaml").write_text(yaml.safe_dump_all([obj, service]))


def work_tree(bare_remote: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    git("clone", "--quiet", str(bare_remote), str(work))
    git("config", "user.email", "git-writer@example.com", cwd=work)
    git("config", "user.name", "git-writer", cwd=work)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    return work


def push(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", message, cwd=repo)
    git("push", "--quiet", "origin", "HEAD:main", cwd=repo)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """The first truthy result of ``check``, polled until ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_read_environments_places_each_environment_in_its_own_namespace(tmp_path: Path) -> None:
    write_workload(tmp_path, "dev", "payments")
    write_workload(tmp_path, "prod", "payments", simulate="oom")
    (tmp_path / "environments" / "dev" / "broken.yaml").write_text("a: [unclosed\n")
    found = read_environments(tmp_path)
    assert [(m.environment, m.obj["metadata"]["namespace"], m.obj["kind"]) for m in found] == [
        ("dev", "dev-shop", "Deployment"),
        ("prod", "prod-shop", "Deployment"),
    ]
    assert [m.environment for m in read_environments(tmp_path, ["prod"])] == ["prod"]


async def test_the_cluster_rolls_out_fails_on_request_and_prunes(
    bare_remote: Path, tmp_path: Path, kube: KubeApiServer
) -> None:
    work = work_tree(bare_remote, tmp_path)
    write_workload(work, "dev", "payments")
    write_workload(work, "dev", "ledger", simulate="imagepull")
    push(work, "two workloads")
    cluster = LocalCluster(kube, config_repo=str(bare_remote), poll_interval=0.1, step=0.02)
    await cluster.start()
    try:

        async def available() -> bool:
            objs = kube.objects("Deployment", "dev-shop")
            status = next(
                (o.get("status") or {} for o in objs if o["metadata"]["name"] == "payments"), {}
            )
            return status.get("availableReplicas") == 2

        async def pulling() -> str:
            pods = [
                p
                for p in kube.objects("Pod", "dev-shop")
                if p["metadata"]["name"].startswith("ledger-")
            ]
            states = [
                s["state"].get("waiting", {}).get("reason", "")
                for p in pods
                for s in p["status"]["containerStatuses"]
            ]
            return next((s for s in states if s == "ImagePullBackOff"), "")

        await eventually(available)
        assert await eventually(pulling) == "ImagePullBackOff"
        payments_pods = [
            p
            for p in kube.objects("Pod", "dev-shop")
            if p["metadata"]["name"].startswith("payments-")
        ]
        assert len(payments_pods) == 2
        assert all(p["status"]["phase"] == "Running" for p in payments_pods)

        git("rm", "--quiet", "-r", "environments/dev/shop/ledger", cwd=work)
        push(work, "ledger goes")

        async def pruned() -> bool:
            names = {o["metadata"]["name"] for o in kube.objects("Deployment", "dev-shop")}
            pods = [
                p
                for p in kube.objects("Pod", "dev-shop")
                if p["metadata"]["name"].startswith("ledger-")
            ]
            return names == {"payments"} and not pods

        await eventually(pruned)
    finally:
        await cluster.stop()


async def test_a_faults_file_fails_the_next_rollout_of_a_workload_that_did_not_ask(
    bare_remote: Path, tmp_path: Path, kube: KubeApiServer
) -> None:
    work = work_tree(bare_remote, tmp_path)
    write_workload(work, "dev", "payments")
    push(work, "payments")
    faults = tmp_path / "faults.json"
    cluster = LocalCluster(
        kube, config_repo=str(bare_remote), poll_interval=0.1, step=0.02, faults=faults
    )
    await cluster.start()
    try:

        async def waiting(reason: str) -> bool:
            pods = [
                p
                for p in kube.objects("Pod", "dev-shop")
                if p["metadata"]["name"].startswith("payments-")
            ]
            return any(
                s["state"].get("waiting", {}).get("reason") == reason
                for p in pods
                for s in p["status"]["containerStatuses"]
            )

        async def available() -> bool:
            objs = kube.objects("Deployment", "dev-shop")
            return any((o.get("status") or {}).get("availableReplicas") == 2 for o in objs)

        await eventually(available)  # no file yet: no fault
        faults.write_text('{"dev-shop/payments": "crashloop", "dev-shop/other": "melt"}')
        path = work / "environments/dev/shop/payments/deployment.yaml"
        deployment = next(yaml.safe_load_all(path.read_text()))
        deployment["spec"]["template"]["metadata"].setdefault("labels", {})["v"] = "2"
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "payments"}}
        path.write_text(yaml.safe_dump_all([deployment, service]))
        push(work, "payments, a new template")
        await eventually(lambda: waiting("CrashLoopBackOff"))
    finally:
        await cluster.stop()


async def test_python_m_ferry_kube_sim_serves_a_kubeconfig_and_stops_on_sigterm(
    bare_remote: Path, tmp_path: Path
) -> None:
    work = work_tree(bare_remote, tmp_path)
    write_workload(work, "dev", "payments")
    push(work, "one workload")
    kubeconfig = tmp_path / "out" / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ferry_kube_sim",
        "--config-repo", str(bare_remote), "--port", "0",
        "--kubeconfig-out", str(kubeconfig),
        "--poll-interval", "0.1", "--step", "0.02", "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:

        async def written() -> bool:
            return kubeconfig.exists()

        await eventually(written)
        config = yaml.safe_load(kubeconfig.read_text())
        url = config["clusters"][0]["cluster"]["server"]
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                path = "/apis/apps/v1/namespaces/dev-shop/deployments/payments"
                async with http.get(url + path) as response:
                    if response.status != 200:
                        return False
                    body = await response.json()
                return (body.get("status") or {}).get("readyReplicas") == 2

            await eventually(ready)
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
        assert proc.returncode == 0
        assert b"LOCAL CLUSTER SIMULATOR ready (not Kubernetes)" in output
        assert b"simulator stopping" in output
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
