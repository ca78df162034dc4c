"""The local cluster SIMULATOR for ``make run``: not Kubernetes, a stand-in that plays it.

It starts the Kubernetes API test server (:mod:`ferry_kube_sim.server`)
and plays two parts against it:

- **Flux**: it polls the config repository's branch, reads every
  ``environments/<env>/`` folder and applies the workloads it finds there
  (Deployments, StatefulSets, DaemonSets, Jobs; other kinds are skipped), and
  prunes the ones that disappeared. The simulator is one cluster for every
  environment, so environment ``<env>``'s namespace ``<ns>`` becomes the
  namespace ``<env>-<ns>``.
- **the kubelet and controllers**: when a workload's spec changes, it moves
  the workload's status and pods through a rollout over a second or two.
  A workload that asks for it with the annotation ``ferry.dev/simulate``
  (on its metadata or its pod template) fails instead: ``crashloop``
  (CrashLoopBackOff, with logs), ``imagepull`` (ErrImagePull, then
  ImagePullBackOff), ``oom`` (OOMKilled), ``config-error``
  (CreateContainerConfigError) or ``progress-deadline`` (the Deployment's
  ProgressDeadlineExceeded; a Job fails instead).
  With ``--faults FILE`` the cluster itself can break a workload that does not
  ask for it: the file (JSON, ``{"<namespace>/<name>": "<mode>"}`` with the
  simulator's namespace ``<env>-<ns>``) is read as each rollout starts, and a
  workload it names fails that rollout in that mode; no file, no fault.

Run it with::

    python -m ferry_kube_sim --config-repo URL --port 8090 \\
        --kubeconfig-out .ferry/kubeconfig

and point ``KUBECONFIG`` at the written file. Pointing ``KUBECONFIG`` at a
real cluster (with Flux watching the same config repo) replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferry_kube_sim import objects as k
from ferry_kube_sim.server import RESOURCES, KubeApiServer, NotFound
from ferry_runtime import configure_logging, get_logger

log = get_logger("ferry.k8s-simulator")

SIMULATE = "ferry.dev/simulate"
MODES = ("crashloop", "imagepull", "oom", "config-error", "progress-deadline")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
Key = tuple[str, str, str]


# --------------------------------------------------------------------------- reading the repo


@dataclass(frozen=True)
class Manifest:
    environment: str
    path: str
    obj: dict[str, Any]


def read_environments(checkout: Path, environments: list[str] | None = None) -> list[Manifest]:
    """Every workload under ``environments/<env>/``, placed in namespace ``<env>-<ns>``."""
    root = checkout / "environments"
    found: list[Manifest] = []
    if not root.is_dir():
        return found
    for env_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        env = env_dir.name
        if environments and env not in environments:
            continue
        for file in sorted(env_dir.rglob("*")):
            if file.suffix not in (".yaml", ".yml") or not file.is_file():
                continue
            relative = file.relative_to(env_dir)
            folder_ns = relative.parts[0] if len(relative.parts) > 2 else "default"
            try:
                docs = list(yaml.safe_load_all(file.read_text()))
            except yaml.YAMLError as exc:
                log.warning(
                    "simulator (flux): skipped unreadable YAML", file=str(file), error=str(exc)
                )
                continue
            for doc in docs:
                if not isinstance(doc, dict):
                    continue
                if doc.get("kind") not in WORKLOAD_KINDS:
                    continue
                meta = doc.setdefault("metadata", {})
                ns = meta.get("namespace") or folder_ns
                meta["namespace"] = f"{env}-{ns}"
                found.append(Manifest(env, str(file.relative_to(checkout)), doc))
    return found


async def _git(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace").strip()


# --------------------------------------------------------------------------- the simulator


@dataclass
class _Rollout:
    task: asyncio.Task[None]
    generation: int


@dataclass
class LocalCluster:
    """Flux and the kubelet against a :class:`KubeApiServer` (see the module docstring)."""

    server: KubeApiServer
    config_repo: str
    branch: str = "main"
    poll_interval: float = 2.0
    step: float = 0.3
    environments: list[str] | None = None
    workdir: Path | None = None
    faults: Path | None = None
    _applied: set[Key] = field(default_factory=set)
    _rollouts: dict[Key, _Rollout] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _last_commit: str = ""
    _waiting: bool = False
    _temp: tempfile.TemporaryDirectory[str] | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        if self.workdir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="ferry-k8s-simulator-")
            self.workdir = Path(self._temp.name)
        self._tasks.append(asyncio.create_task(self._flux(), name="simulator-flux"))
        log.info(
            "simulator started: this is NOT a Kubernetes cluster, it plays Flux and the kubelet",
            api=self.server.url,
            config_repo=self.config_repo,
            branch=self.branch,
        )

    async def stop(self) -> None:
        for task in [*self._tasks, *(r.task for r in self._rollouts.values())]:
            task.cancel()
        for task in [*self._tasks, *(r.task for r in self._rollouts.values())]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._rollouts.clear()
        if self._temp is not None:
            self._temp.cleanup()

    # ------------------------------------------------------------------ flux

    async def _flux(self) -> None:
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("simulator (flux): sync failed; trying again")
            await asyncio.sleep(self.poll_interval)

    async def _checkout(self) -> Path | None:
        assert self.workdir is not None
        checkout = self.workdir / "config"
        if not (checkout / ".git").exists():
            if checkout.exists():
                shutil.rmtree(checkout)
            code, out = await _git(
                "clone", "--quiet", "--branch", self.branch, self.config_repo, str(checkout)
            )
            if code != 0:
                if not self._waiting:
                    log.info("simulator (flux): config repo not readable yet", detail=out[-300:])
                self._waiting = True
                return None
            self._waiting = False
            return checkout
        code, out = await _git("fetch", "--quiet", "origin", self.branch, cwd=checkout)
        if code != 0:
            log.warning("simulator (flux): fetch failed", detail=out[-300:])
            return checkout
        await _git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=checkout)
        return checkout

    async def sync_once(self) -> bool:
        """Fetch, then apply what changed. Returns True when a new commit was applied."""
        checkout = await self._checkout()
        if checkout is None:
            return False
        code, head = await _git("rev-parse", "HEAD", cwd=checkout)
        if code != 0 or head == self._last_commit:
            self.synced.set()
            return False
        manifests = read_environments(checkout, self.environments)
        seen: set[Key] = set()
        for manifest in manifests:
            obj = manifest.obj
            key: Key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            seen.add(key)
            self._apply(key, obj, manifest)
        for key in sorted(self._applied - seen):
            self._prune(key)
        self._applied = seen
        self._last_commit = head
        log.info("simulator (flux): applied", commit=head[:12], workloads=len(seen))
        self.synced.set()
        return True

    def _apply(self, key: Key, obj: dict[str, Any], manifest: Manifest) -> None:
        try:
            result = self.server.apply(obj)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("simulator (flux): could not apply", file=manifest.path, error=str(exc))
            return
        generation = int(result["metadata"].get("generation", 1))
        current = self._rollouts.get(key)
        if current is not None and current.generation == generation:
            return
        if current is not None:
            current.task.cancel()
        log.info(
            "simulator (flux): applied workload",
            kind=key[0],
            namespace=key[1],
            name=key[2],
            generation=generation,
            artifact_id=_annotation(result, "ferry.dev/artifact-id"),
            simulate=_mode(result) or None,
        )
        task = asyncio.create_task(self._rollout(key), name=f"simulator-rollout-{key[2]}")
        self._rollouts[key] = _Rollout(task, generation)

    def _prune(self, key: Key) -> None:
        rollout = self._rollouts.pop(key, None)
        if rollout is not None:
            rollout.task.cancel()
        with contextlib.suppress(NotFound):
            self.server.delete(*key)
        for pod in self._pods_of(key):
            with contextlib.suppress(NotFound):
                self.server.delete("Pod", key[1], pod["metadata"]["name"])
        log.info("simulator (flux): pruned", kind=key[0], namespace=key[1], name=key[2])

    # ------------------------------------------------------------------ kubelet

    def _pods_of(self, key: Key) -> list[dict[str, Any]]:
        prefix = f"{key[2]}-"
        return [
            p
            for p in self.server.objects("Pod", key[1])
            if p["metadata"]["name"].startswith(prefix)
            and p["metadata"].get("annotations", {}).get("simulator.ferry.dev/owner") == key[0]
        ]

    def _set_status(self, key: Key, status: dict[str, Any]) -> None:
        self.server.update_status(key[0], key[1], key[2], status)

    def _put_pod(self, pod: dict[str, Any]) -> None:
        self.server.apply(pod)

    async def _rollout(self, key: Key) -> None:
        try:
            await self._run_rollout(key)
        except NotFound:
            pass  # pruned meanwhile
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("simulator (kubelet): rollout failed", name=key[2])

    async def _run_rollout(self, key: Key) -> None:
        kind, namespace, name = key
        obj = self.server.get(kind, namespace, name)
        mode = _mode(obj) or self._fault(namespace, name)
        want = k.desired(obj)
        revision = k.template_hash(obj)
        owner_uid = obj["metadata"]["uid"]
        if kind == "Deployment":  # pods belong to a ReplicaSet of this template
            owner_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{owner_uid}/{revision}"))
        old_pods = [p for p in self._pods_of(key) if revision not in p["metadata"]["name"]]
        await asyncio.sleep(self.step)
        if kind != "Job":
            self._set_status(
                key, k.rollout_status(obj, updated=0, ready=0, total=len(old_pods) or want)
            )
        log.info(
            "simulator (kubelet): rolling out",
            kind=kind,
            name=name,
            replicas=want,
            simulate=mode or None,
        )

        def pod_name(i: int) -> str:
            if kind == "StatefulSet":
                return f"{name}-{i}"
            return f"{name}-{revision}-{i}"

        def new_pod(
            i: int, containers: list[dict[str, Any]] | None = None, phase: str = "Running"
        ) -> dict[str, Any]:
            pod = k.pod_for(
                obj,
                pod_name(i),
                containers=containers,
                owner_uid=owner_uid,
                owner_kind="ReplicaSet" if kind == "Deployment" else kind,
                phase=phase,
            )
            pod["metadata"]["annotations"]["simulator.ferry.dev/owner"] = kind
            return pod

        container = obj["spec"]["template"]["spec"]["containers"][0]
        cname, image = container["name"], container["image"]
        if mode:
            await self._fail(key, obj, mode, new_pod, cname, image, pod_name(0))
            return
        for i in range(want):
            self._put_pod(
                new_pod(
                    i,
                    [
                        k.container_status(
                            cname, image=image, ready=False, waiting="ContainerCreating"
                        )
                    ],
                    "Pending",
                )
            )
            self.server.set_pod_log(namespace, pod_name(i), cname, _happy_logs(name))
            await asyncio.sleep(self.step)
            self._put_pod(new_pod(i))
            if old_pods:
                old = old_pods.pop(0)
                with contextlib.suppress(NotFound):
                    self.server.delete("Pod", namespace, old["metadata"]["name"])
            if kind != "Job":
                self._set_status(
                    key,
                    k.rollout_status(obj, updated=i + 1, ready=i + 1, total=i + 1 + len(old_pods)),
                )
        for old in old_pods:
            with contextlib.suppress(NotFound):
                self.server.delete("Pod", namespace, old["metadata"]["name"])
        await asyncio.sleep(self.step)
        if kind == "Job":
            for i in range(want):
                self._put_pod(
                    new_pod(
                        i,
                        [
                            k.container_status(
                                cname, image=image, terminated="Completed", exit_code=0
                            )
                        ],
                        "Succeeded",
                    )
                )
        self._set_status(key, k.complete_status(obj))
        log.info("simulator (kubelet): rolled out", kind=kind, namespace=namespace, name=name)

    def _fault(self, namespace: str, name: str) -> str:
        """The failure mode ``--faults`` gives the workload now, or ``""``."""
        if self.faults is None:
            return ""
        try:
            faults = json.loads(self.faults.read_text())
        except FileNotFoundError:
            return ""
        except (OSError, ValueError) as exc:
            log.warning("simulator: faults file unreadable; no fault", error=str(exc))
            return ""
        mode = faults.get(f"{namespace}/{name}", "") if isinstance(faults, dict) else ""
        if mode and mode not in MODES:
            log.warning("simulator: unknown fault; rolling out normally", value=mode, known=MODES)
            return ""
        return str(mode)

    async def _fail(
        self,
        key: Key,
        obj: dict[str, Any],
        mode: str,
        new_pod: Any,
        cname: str,
        image: str,
        pod: str,
    ) -> None:
        kind, namespace, name = key
        log.info("simulator (kubelet): failing on purpose", name=name, simulate=mode)
        if mode in ("crashloop", "oom"):
            self.server.set_pod_log(namespace, pod, cname, _crash_logs(name, oom=mode == "oom"))
            reason = "OOMKilled" if mode == "oom" else "Error"
            code = 137 if mode == "oom" else 1
            self._put_pod(
                new_pod(
                    0, [k.container_status(cname, image=image, terminated=reason, exit_code=code)]
                )
            )
            for restarts in range(1, 30):
                await asyncio.sleep(self.step * 3)
                self._put_pod(
                    new_pod(
                        0,
                        [
                            k.container_status(
                                cname,
                                image=image,
                                waiting="CrashLoopBackOff",
                                waiting_message=f"back-off {min(10 * 2**restarts, 300)}s "
                                f"restarting failed container={cname}",
                                last_terminated=reason,
                                exit_code=code,
                                restarts=restarts,
                            )
                        ],
                    )
                )
                if kind == "Job" and restarts >= 2:
                    self._set_status(key, k.job_status(obj, succeeded=False, failed_pods=restarts))
                    return
        elif mode == "imagepull":
            self._put_pod(
                new_pod(
                    0,
                    [
                        k.container_status(
                            cname,
                            image=image,
                            waiting="ErrImagePull",
                            waiting_message=f'failed to pull image "{image}": not found',
                        )
                    ],
                    "Pending",
                )
            )
            await asyncio.sleep(self.step * 3)
            self._put_pod(
                new_pod(
                    0,
                    [
                        k.container_status(
                            cname,
                            image=image,
                            waiting="ImagePullBackOff",
                            waiting_message=f'Back-off pulling image "{image}"',
                        )
                    ],
                    "Pending",
                )
            )
        elif mode == "config-error":
            self._put_pod(
                new_pod(
                    0,
                    [
                        k.container_status(
                            cname,
                            image=image,
                            waiting="CreateContainerConfigError",
                            waiting_message=f'secret "{name}-secrets" not found',
                        )
                    ],
                    "Pending",
                )
            )
        elif mode == "progress-deadline":
            self._put_pod(
                new_pod(
                    0,
                    [
                        k.container_status(
                            cname, image=image, ready=False, waiting="ContainerCreating"
                        )
                    ],
                    "Pending",
                )
            )
            await asyncio.sleep(self.step * 5)
            if kind == "Deployment":
                self._set_status(key, k.progress_deadline_status(obj))
            elif kind == "Job":
                self._set_status(key, k.job_status(obj, succeeded=False))


def _annotation(obj: dict[str, Any], name: str) -> str:
    for meta in (
        obj.get("metadata") or {},
        ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {},
    ):
        value = (meta.get("annotations") or {}).get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _mode(obj: dict[str, Any]) -> str:
    mode = _annotation(obj, SIMULATE)
    if mode and mode not in MODES:
        log.warning(
            "simulator: unknown ferry.dev/simulate value; rolling out normally",
            value=mode,
            known=MODES,
        )
        return ""
    return mode


def _happy_logs(name: str) -> str:
    return (
        "\n".join(
            json.dumps({"level": "info", "message": m})
            for m in (f"{name} starting", "connected to dependencies", "listening on :8080")
        )
        + "\n"
    )


def _crash_logs(name: str, *, oom: bool) -> str:
    lines: Iterator[dict[str, str]] = iter(
        [
            {"level": "info", "message": f"{name} starting"},
            {"level": "info", "message": "loading configuration"},
            {
                "level": "error",
                "message": "allocating 2GiB cache"
                if oom
                else "cannot connect to database at db:5432: connection refused",
            },
            {"level": "fatal", "message": "out of memory" if oom else "giving up after 3 attempts"},
        ]
    )
    return "\n".join(json.dumps(line) for line in lines) + "\n"


# --------------------------------------------------------------------------- command line


async def run(args: argparse.Namespace) -> None:
    server = KubeApiServer(host=args.host, port=args.port)
    await server.start()
    kubeconfig = server.write_kubeconfig(Path(args.kubeconfig_out), context="ferry-simulator")
    cluster = LocalCluster(
        server,
        config_repo=args.config_repo,
        branch=args.branch,
        poll_interval=args.poll_interval,
        step=args.step,
        environments=[e for e in args.environments.split(",") if e] or None,
        faults=Path(args.faults) if args.faults else None,
    )
    await cluster.start()
    log.info(
        "LOCAL CLUSTER SIMULATOR ready (not Kubernetes): point KUBECONFIG at the kubeconfig",
        kubeconfig=str(kubeconfig),
        api=server.url,
        kinds=sorted(RESOURCES),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("simulator stopping")
    await cluster.stop()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ferry_kube_sim",
        description="Local cluster SIMULATOR (not Kubernetes): plays Flux and the kubelet "
        "against a loopback Kubernetes API, for `make run`.",
    )
    parser.add_argument("--config-repo", required=True, help="URL or path of the config repo")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="API port (0: any free port)")
    parser.add_argument("--kubeconfig-out", default=".ferry/kubeconfig")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between fetches")
    parser.add_argument("--step", type=float, default=0.3, help="seconds per rollout step")
    parser.add_argument("--environments", default="", help="comma list; empty: every folder")
    parser.add_argument(
        "--faults",
        default="",
        help='JSON file {"<namespace>/<name>": "<mode>"} read as each rollout starts: '
        "those workloads fail in that mode",
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("FERRY_LOG_FORMAT", "auto"),
        choices=["auto", "json", "console"],
        help="as the services' FERRY_LOG_FORMAT (default: that variable, else auto)",
    )
    args = parser.parse_args(argv)
    configure_logging("k8s-simulator", fmt=args.log_format)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
