"""`make run`: every Ferry service as a local process, logs interleaved and labelled.

Creates `.ferry/` on first run: a bare config repository (`.ferry/config.git`),
a tokens file with a development admin token (`.ferry/dev-token`) and a second
identity for approvals (`.ferry/reviewer-token`). Without `KUBECONFIG`, it also
starts the local Kubernetes *simulator* (it plays Flux and the kubelet), so the
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
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

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


def broker_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


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
    """The bare config repo and the tokens file; returns the settings every service gets."""
    data_dir.mkdir(parents=True, exist_ok=True)
    repo = data_dir / "config.git"
    if not (repo / "HEAD").exists():
        subprocess.run(
            ["git", "init", "--bare", "--quiet", "--initial-branch=main", str(repo)], check=True
        )
        say(f"created the local config repository {_shown(repo)}")
    tokens_file = data_dir / "tokens.yaml"
    if not tokens_file.exists():
        entries = []
        for name, email, roles in (
            ("dev", "dev@example.com", ["admin"]),
            (
                "reviewer",
                "reviewer@example.com",
                ["developer", "releaser:staging", "releaser:prod"],
            ),
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
    return {
        "FERRY_DATA_DIR": str(data_dir),
        "FERRY_CONFIG_REPO_URL": str(repo),
        "FERRY_API_TOKENS_FILE": str(tokens_file),
        "FERRY_LOG_FORMAT": os.environ.get("FERRY_LOG_FORMAT", "console"),
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
    parser.add_argument("--data-dir", default=str(ROOT / ".ferry"))
    parser.add_argument(
        "--base-port",
        type=int,
        default=8080,
        help="promotion's API port; the other services use the next ones, the simulator +10",
    )
    args = parser.parse_args()

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
        if available(module):
            procs.append(Proc(name, module, port, {"FERRY_HTTP_PORT": str(port)}))
        else:
            say(f"{name} is not built yet; skipping it")

    width = max(len(p.name) for p in procs)
    pumps = []
    for index, proc in enumerate(procs):
        if proc.module == "ferry_kube_sim":
            argv = [
                sys.executable, "-m", proc.module,
                "--config-repo", env["FERRY_CONFIG_REPO_URL"],
                "--port", str(base + 10),
                "--kubeconfig-out", env["KUBECONFIG"],
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
    cli = "uv run ferry"
    if base != 8080:
        cli += f" --server http://127.0.0.1:{base}"
    if data_dir != (ROOT / ".ferry").resolve():
        cli += f" --token $(cat {token_file})"
    not_ready = await wait_ready(procs)
    if not_ready:
        say(f"not ready after 60 s: {', '.join(not_ready)} (see their logs above)")
    else:
        say(
            "Ferry is running.\n"
            f"       API:    http://127.0.0.1:{base}  (admin token: {token_file})\n"
            f"       Board:  http://127.0.0.1:{base + 5}/  (the dashboard: log in with a token)\n"
            f"       Config: {_shown(data_dir / 'config.git')}\n"
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
