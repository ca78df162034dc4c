"""`make run`: every Ferry service as a local process, logs interleaved and labelled.

Creates `.ferry/` on first run: a bare config repository (`.ferry/config.git`),
a tokens file with a development admin token (`.ferry/dev-token`) and a second
identity for approvals (`.ferry/reviewer-token`). Without `KUBECONFIG`, it also
starts the local Kubernetes *simulator* (it plays Flux and the kubelet; it fetches the
config repo every `FERRY_SIMULATOR_POLL_INTERVAL` seconds, 2 by default), so the
whole loop works on a laptop. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

from ferry_events import mask_url
from ferry_runtime import RuntimeSettings, broker_answers
from ferry_runtime.topology import declare_topology

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["36", "33", "35", "32", "34", "91", "96"]


@dataclass
class Proc:
    name: str
    module: str
    port: int | None
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None


def say(message: str) -> None:
    sys.stderr.write(f"\033[1mferry\033[0m  {message}\n")


def _exit_status(code: int) -> str:
    """``-9`` -> ``killed by SIGKILL``, ``1`` -> ``exit code 1``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def ensure_state(data_dir: Path) -> dict[str, str]:
    """The config repo and the tokens file; returns the settings every service gets.

    ``FERRY_CONFIG_REPO_URL`` and ``FERRY_API_TOKENS_FILE`` from the environment win: then
    that repository and those tokens are used as they are, and nothing is written for them.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "FERRY_DATA_DIR": str(data_dir),
        "FERRY_LOG_FORMAT": os.environ.get("FERRY_LOG_FORMAT", "console"),
    }
    given_repo = os.environ.get("FERRY_CONFIG_REPO_URL")
    if given_repo:
        settings["FERRY_CONFIG_REPO_URL"] = given_repo
        say(f"config repository from FERRY_CONFIG_REPO_URL: {mask_url(given_repo)}")
    else:
        repo = data_dir / "config.git"
        if not (repo / "HEAD").exists():
            subprocess.run(
                ["git", "init", "--bare", "--quiet", "--initial-branch=main", str(repo)],
                check=True,
            )
            say(f"created the local config repository {_shown(repo)}")
        settings["FERRY_CONFIG_REPO_URL"] = str(repo)
    given_tokens = os.environ.get("FERRY_API_TOKENS_FILE")
    if given_tokens:
        settings["FERRY_API_TOKENS_FILE"] = given_tokens
        say(f"API tokens from FERRY_API_TOKENS_FILE: {given_tokens}")
        return settings
    tokens_file = data_dir / "tokens.yaml"
    settings["FERRY_API_TOKENS_FILE"] = str(tokens_file)
    if tokens_file.exists():
        return settings
    entries = []
    for name, email, roles in (
        ("dev", "dev@example.com", ["admin"]),
        ("reviewer", "reviewer@example.com", ["developer", "releaser:staging", "releaser:prod"]),
    ):
        token = f"ferry-{name}-{secrets.token_urlsafe(24)}"
        (data_dir / f"{name}-token").write_text(token + "\n", encoding="utf-8")
        (data_dir / f"{name}-token").chmod(0o600)
        digest = hashlib.sha256(token.encode()).hexdigest()
        entries.append(
            f"  - subject: {name}\n    email: {email}\n    name: {name.title()}\n"
            f"    roles: [{', '.join(repr(r) for r in roles)}]\n    sha256: {digest}\n"
        )
    tokens_file.write_text(
        f"# Development identities written by `make run`. Tokens: {_shown(data_dir)}/*-token\n"
        "tokens:\n" + "".join(entries),
        encoding="utf-8",
    )
    tokens_file.chmod(0o600)
    say(
        f"wrote development tokens: {_shown(data_dir / 'dev-token')} (admin), "
        f"{_shown(data_dir / 'reviewer-token')}"
    )
    return settings


#: The services whose replicas share one database; with replicas, each gets its own
#: database on the PostgreSQL server given (``<name>_<service>``).
DATABASE_SERVICES = ("promotion", "notifier", "insights")


async def postgres_urls(server_url: str) -> dict[str, str]:
    """``postgresql://host/ferry`` -> one ``postgresql+asyncpg://host/ferry_<service>`` each,
    created when missing."""
    import asyncpg  # type: ignore[import-not-found,unused-ignore]

    parts = urlsplit(server_url)
    base = (parts.path.lstrip("/") or "ferry").replace("-", "_")
    names = {service: f"{base}_{service}" for service in DATABASE_SERVICES}

    admin = parts._replace(scheme="postgresql", path="/postgres").geturl()
    connection = await asyncpg.connect(admin, timeout=10)
    try:
        for name in names.values():
            found = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not found:
                await connection.execute(f'CREATE DATABASE "{name}"')
                say(f"created the database {name}")
    finally:
        await connection.close()
    return {
        service: parts._replace(scheme="postgresql+asyncpg", path=f"/{name}").geturl()
        for service, name in names.items()
    }


def available(module: str) -> bool:
    """True when ``python -m module`` can run (a module, or a package with ``__main__``)."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            return False
        if spec.submodule_search_locations is None:
            return True
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


async def pump(proc: Proc, colour: str, width: int) -> None:
    assert proc.process is not None
    assert proc.process.stdout is not None
    label = f"\033[{colour}m{proc.name:<{width}}\033[0m |"
    async for raw in proc.process.stdout:
        line = raw.decode(errors="replace").rstrip()
        sys.stdout.write(f"{label} {line}\n")
        sys.stdout.flush()


async def wait_ready(procs: list[Proc], timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    pending = {p.name: p for p in procs if p.port}
    while pending and time.monotonic() < deadline:
        for name, proc in list(pending.items()):
            if proc.process is not None and proc.process.returncode is not None:
                pending.pop(name)
                continue
            try:
                with urlopen(f"http://127.0.0.1:{proc.port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        pending.pop(name)
            except OSError:
                pass
        await asyncio.sleep(0.5)
    return sorted(pending)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("FERRY_DATA_DIR") or str(ROOT / ".ferry"),
        help="where state is kept [default: FERRY_DATA_DIR, else .ferry]",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=8080,
        help="promotion's API port; the other services use the next ones, the simulator +10, "
        "replica k of each +100*(k-1)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="processes of every service (each with its own data dir; needs --postgres above 1)",
    )
    parser.add_argument(
        "--postgres",
        default="",
        metavar="URL",
        help="a PostgreSQL server (postgresql://host/ferry): promotion, notifier and insights "
        "each get a database there (ferry_promotion, ...) shared by their replicas",
    )
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be 1 or more")
    if args.replicas > 1 and not args.postgres:
        parser.error(
            "--replicas above 1 needs --postgres URL (make run REPLICAS=2 POSTGRES=URL): "
            "the replicas of promotion, notifier and insights share one database"
        )

    amqp = os.environ.get("FERRY_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    if not broker_answers(amqp):
        say(
            f"no RabbitMQ answers at {urlsplit(amqp).hostname}:{urlsplit(amqp).port or 5672}.\n"
            "       Start one: 'rabbitmq-server -detached' (Debian package rabbitmq-server), or\n"
            "       'docker compose -f deploy/docker-compose.yml up rabbitmq',\n"
            "       or set FERRY_AMQP_URL."
        )
        return 3

    data_dir = Path(args.data_dir).resolve()
    env = {**os.environ, **ensure_state(data_dir), "PYTHONUNBUFFERED": "1"}
    databases = await postgres_urls(args.postgres) if args.postgres else {}
    procs: list[Proc] = []
    if not os.environ.get("KUBECONFIG") and available("ferry_kube_sim"):
        kubeconfig = data_dir / "kubeconfig"
        procs.append(
            Proc(
                "k8s-simulator",
                "ferry_kube_sim",
                None,
                {"FERRY_SIMULATOR_KUBECONFIG_OUT": str(kubeconfig)},
            )
        )
        env["KUBECONFIG"] = str(kubeconfig)
    base = args.base_port
    for name, module, port in (
        ("artifact-ingest", "ferry_ingest", base + 1),
        ("git-writer", "ferry_gitwriter", base + 2),
        ("promotion", "ferry_promotion", base),
        ("cluster-watcher", "ferry_watcher", base + 3),
        ("notifier", "ferry_notifier", base + 4),
        ("insights", "ferry_insights", base + 5),
    ):
        if not available(module):
            say(f"{name} is not built yet; skipping it")
            continue
        for replica in range(args.replicas):
            extra = {"FERRY_HTTP_PORT": str(port + 100 * replica)}
            label = name
            if args.replicas > 1:
                label = f"{name}-{replica + 1}"
                extra["FERRY_DATA_DIR"] = str(data_dir / "replicas" / label)
            if name in databases:
                extra["FERRY_DATABASE_URL"] = databases[name]
            if name == "notifier":  # messages link to the local dashboard
                extra.setdefault(
                    "FERRY_DASHBOARD_URL",
                    env.get("FERRY_DASHBOARD_URL") or f"http://127.0.0.1:{base + 5}",
                )
            procs.append(Proc(label, module, port + 100 * replica, extra))

    # every queue and binding first, so that nothing a service publishes while another one
    # is still starting misses that one's queue
    declared = await declare_topology(RuntimeSettings())
    say(
        f"declared the topology: {len(declared)} service queues, bound to "
        f"{env.get('FERRY_EXCHANGE', 'ferry.events')}"
    )
    width = max(len(p.name) for p in procs)
    pumps = []
    for index, proc in enumerate(procs):
        if proc.module == "ferry_kube_sim":
            argv = [
                sys.executable, "-m", proc.module,
                "--config-repo", env["FERRY_CONFIG_REPO_URL"],
                "--port", str(base + 10),
                "--kubeconfig-out", env["KUBECONFIG"],
                "--poll-interval", env.get("FERRY_SIMULATOR_POLL_INTERVAL", "2"),
            ]  # fmt: skip
        else:
            argv = [sys.executable, "-m", proc.module]
        proc.process = await asyncio.create_subprocess_exec(
            *argv,
            env={**env, **proc.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        pumps.append(asyncio.create_task(pump(proc, COLOURS[index % len(COLOURS)], width)))
        if proc.module == "ferry_kube_sim":
            for _ in range(100):  # the watcher needs the kubeconfig the simulator writes
                if Path(env["KUBECONFIG"]).exists():
                    break
                await asyncio.sleep(0.1)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    token_file = _shown(data_dir / "dev-token")
    # the CLI as it runs in any shell from the repository (uv may not be on that shell's PATH)
    cli = _shown(ROOT / ".venv" / "bin" / "ferry") if (ROOT / ".venv").is_dir() else "uv run ferry"
    if base != 8080:
        cli += f" --server http://127.0.0.1:{base}"
    data_dir_given = os.environ.get("FERRY_DATA_DIR")
    if data_dir != (ROOT / ".ferry").resolve() and (
        not data_dir_given or Path(data_dir_given).resolve() != data_dir
    ):
        cli += f" --token $(cat {token_file})"
    apis = "  ".join(f"http://127.0.0.1:{p.port}" for p in procs if p.module == "ferry_promotion")
    not_ready = await wait_ready(procs)
    if not_ready:
        say(f"not ready after 60 s: {', '.join(not_ready)} (see their logs above)")
    else:
        tokens = (
            f"(admin token: {token_file})"
            if not os.environ.get("FERRY_API_TOKENS_FILE")
            else "(tokens: FERRY_API_TOKENS_FILE)"
        )
        say(
            "Ferry is running"
            + (f", {args.replicas} replicas of every service" if args.replicas > 1 else "")
            + ".\n"
            f"       API:    {apis}  {tokens}\n"
            f"       Board:  http://127.0.0.1:{base + 5}/  (the dashboard: log in with a token)\n"
            f"       Config: {mask_url(env['FERRY_CONFIG_REPO_URL'])}\n"
            f"       Try:    {cli} artifact push examples/artifact.json "
            "--manifests examples/manifests --wait\n"
            f"               {cli} status        (Ctrl-C stops everything)"
        )

    async def any_exit() -> None:
        waits = [asyncio.create_task(p.process.wait()) for p in procs if p.process]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    exit_watch = asyncio.create_task(any_exit())
    stop_watch = asyncio.create_task(stop.wait())
    await asyncio.wait({exit_watch, stop_watch}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if exit_watch.done() and not stop.is_set():
        dead = [
            f"{p.name} ({_exit_status(p.process.returncode)})"
            for p in procs
            if p.process and p.process.returncode is not None
        ]
        say(
            f"{', '.join(dead)} exited; stopping the others (make run keeps all or none; "
            "to run one service by hand: uv run python -m <module> with the same FERRY_* settings)"
        )
        code = 1
    else:
        say("stopping every service")
    for proc in procs:
        if proc.process and proc.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc.process:
            try:
                await asyncio.wait_for(proc.process.wait(), 30)
            except TimeoutError:
                say(f"{proc.name} did not stop within 30 s; killing it")
                proc.process.kill()
                await proc.process.wait()
    for task in pumps:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    exit_watch.cancel()
    stop_watch.cancel()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
