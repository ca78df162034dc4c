"""Ferry's release path as real processes, with a cluster: git-writer, promotion and the
cluster-watcher (and any other service asked for) on a broker namespace and a config repo,
and ``python -m ferry_kube_sim`` as the Kubernetes API that plays Flux and the kubelet, so
that rollout facts come from the cluster.

    async with release_system(ns, tap, tmp, remote, examples=EXAMPLES,
                              environments=["staging", "prod"], roles=ROLES) as system:
        await system.api.store(accepted_build(EXAMPLES, artifact_id))
        system.fail("prod", "crashloop")   # the cluster breaks: the next rollout there fails
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ferry_testing.broker import BrokerNamespace, EventTap
from ferry_testing.net import free_port
from ferry_testing.releases import ReleaseApi
from ferry_testing.services import ServiceProcess

__all__ = ["RELEASE_PATH", "ReleaseSystem", "release_system", "write_tokens"]

#: The services every release system runs: service name to module.
RELEASE_PATH: Mapping[str, str] = {
    "git-writer": "ferry_gitwriter",
    "promotion": "ferry_promotion",
    "cluster-watcher": "ferry_watcher",
}


def write_tokens(path: Path, roles: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """A tokens file for promotion's API with one token per person and their roles; the
    tokens by person."""
    tokens = {name: secrets.token_urlsafe(16) for name in roles}
    lines = ["tokens:"]
    for name, granted in roles.items():
        digest = hashlib.sha256(tokens[name].encode()).hexdigest()
        lines += [
            f"  - subject: {name}",
            f"    email: {name}@example.com",
            f"    roles: {json.dumps(list(granted))}",
            f"    sha256: {digest}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return tokens


@dataclass
class ReleaseSystem:
    """The running system: promotion's API, the processes by service (and ``simulator``)."""

    api: ReleaseApi
    processes: dict[str, ServiceProcess]
    faults: Path

    def fail(self, environment: str, mode: str, *, namespace: str = "", name: str = "") -> None:
        """Break the cluster: from now on every rollout of the workload ``name`` (the
        service's, by default) in ``environment`` fails in ``mode`` (``crashloop``, ...),
        whatever its manifests say."""
        faults = json.loads(self.faults.read_text()) if self.faults.exists() else {}
        key = f"{environment}-{namespace or self.api.service}/{name or self.api.service}"
        faults[key] = mode
        self.faults.write_text(json.dumps(faults))

    def mend(self) -> None:
        """The cluster breaks nothing any more (rollouts under way stay as they are)."""
        self.faults.unlink(missing_ok=True)

    async def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), in threads so that loopback servers
        of this loop keep answering meanwhile; stopping twice is stopping once."""
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.processes.values()))


@contextlib.asynccontextmanager
async def release_system(
    ns: BrokerNamespace,
    tap: EventTap,
    tmp: Path,
    remote: Path,
    *,
    examples: Path,
    environments: Sequence[str],
    roles: Mapping[str, Sequence[str]],
    services: Mapping[str, str] | None = None,
    env: Mapping[str, Mapping[str, str]] | None = None,
    poll_interval: float = 0.2,
    step: float = 0.1,
) -> AsyncIterator[ReleaseSystem]:
    """Start the simulator of ``environments`` (fetching ``remote``), then
    :data:`RELEASE_PATH` and ``services`` (name to module) with the common settings and
    ``env[name]``; yield once all are ready, stop them all when the block ends.

    The cluster-watcher watches ``environments`` through the kubeconfig the simulator
    writes; promotion's API listens on a free port with a token per person of ``roles``;
    each service keeps its data under ``tmp/<name>`` and logs to ``tmp/<name>.log``."""
    tokens = write_tokens(tmp / "tokens.yaml", roles)
    kubeconfig, faults = tmp / "kubeconfig", tmp / "faults.json"
    port = free_port()
    simulator = ServiceProcess(
        "ferry_kube_sim",
        {"FERRY_LOG_FORMAT": "json"},
        tmp / "kube-sim.log",
        args=[
            "--config-repo", str(remote), "--port", str(free_port()),
            "--kubeconfig-out", str(kubeconfig), "--environments", ",".join(environments),
            "--poll-interval", str(poll_interval), "--step", str(step),
            "--faults", str(faults),
        ],
    )  # fmt: skip
    common = ns.env(
        FERRY_LOG_FORMAT="json",
        FERRY_LOG_LEVEL="DEBUG",
        FERRY_RETRY_DELAYS="[0.2, 0.5, 1.0]",
        FERRY_HTTP_PORT="0",
        FERRY_CONFIG_REPO_URL=str(remote),
    )
    own = {
        "promotion": {
            "FERRY_HTTP_PORT": str(port),
            "FERRY_API_TOKENS_FILE": str(tmp / "tokens.yaml"),
            "FERRY_CONFIG_MAX_AGE": "0.5",
        },
        "cluster-watcher": {
            "KUBECONFIG": str(kubeconfig),
            "FERRY_CLUSTER_ENVIRONMENTS": ",".join(environments),
        },
    }
    processes: dict[str, ServiceProcess] = {}
    for name, module in {**RELEASE_PATH, **(services or {})}.items():
        settings = {
            **common,
            "FERRY_DATA_DIR": str(tmp / name),
            **own.get(name, {}),
            **(env or {}).get(name, {}),
        }
        processes[name] = ServiceProcess(module, settings, tmp / f"{name}.log")
    system = ReleaseSystem(
        api=ReleaseApi(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10),
            tokens,
            tap,
            ns,
            remote,
            json.loads((examples / "artifact.json").read_text())["service"],
        ),
        processes={**processes, "simulator": simulator},
        faults=faults,
    )
    try:
        simulator.start()
        for name, process in processes.items():
            if name != "cluster-watcher":
                process.start()
        # the watcher reads the kubeconfig that the simulator writes once it serves
        await simulator.logged("LOCAL CLUSTER SIMULATOR ready", timeout=60)
        processes["cluster-watcher"].start()
        for process in processes.values():
            await process.logged('"event": "ready"')
        yield system
    finally:
        try:
            await system.stop()
        finally:
            await system.api.client.aclose()
