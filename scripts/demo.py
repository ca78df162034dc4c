"""`make demo`: the whole loop against a running `make run`, step by step.

1. apply a policy that auto-releases master builds to dev;
2. push an artifact (as CI would) and see it stored, auto-released to dev and rolled out;
3. promote it to staging and see it roll out;
4. push a broken build, release it to dev and see it fail with its reason;
5. roll dev back and see the good build roll out again.

Each step prints the event that confirmed it. Exit code 0 when every step was confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from ferry_events import CloudEvent, decode

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLI_ENV: dict[str, str] = dict(os.environ)


class Tap:
    """Every event on the Ferry exchange, for the demo to wait on."""

    def __init__(self, amqp_url: str, exchange: str) -> None:
        self.amqp_url = amqp_url
        self.exchange = exchange
        self.events: list[CloudEvent] = []
        self.changed = asyncio.Event()
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "#")
        await queue.consume(self.on_message, no_ack=True)

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            self.events.append(
                decode(message.body, headers=message.headers, content_type=message.content_type)
            )
        except Exception:  # noqa: BLE001 - the demo ignores what it cannot read
            return
        self.changed.set()

    async def wait(
        self, types: set[str], where: Callable[[CloudEvent], bool], timeout: float
    ) -> CloudEvent:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.type in types and where(event):
                    return event
            seen = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {' or '.join(sorted(types))} within {timeout:.0f} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


def step(number: int, text: str) -> None:
    print(f"\n\033[1m{number}. {text}\033[0m", flush=True)


def confirmed(event: CloudEvent, detail: str = "") -> None:
    data = event.data
    bits = [
        f"{k}={data[k]}"
        for k in ("environment", "artifactId", "reason", "commitSha")
        if data.get(k)
    ]
    print(f"   \033[32m✓\033[0m {event.type}  {' '.join(bits)} {detail}".rstrip(), flush=True)


def ferry(*args: str) -> None:
    command = [sys.executable, "-m", "ferry_cli", *args]
    print(f"   $ ferry {' '.join(args)}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env=CLI_ENV)


def write_build(target: Path, artifact_id: str, *, broken: bool) -> tuple[Path, Path]:
    artifact: dict[str, Any] = json.loads((EXAMPLES / "artifact.json").read_text())
    artifact["id"] = artifact_id
    artifact["application"]["message"] = (
        "Switch the acquirer client to the new SDK"
        if broken
        else artifact["application"]["message"]
    )
    manifests = target / "manifests"
    shutil.copytree(EXAMPLES / "manifests", manifests)
    for env_dir in manifests.iterdir():
        deployment = env_dir / "deployment.yaml"
        text = deployment.read_text().replace("master-0017d995e3-67e9d69164", artifact_id)
        if broken:
            text = text.replace(
                "  labels:\n    app: payments\nspec:",
                "  labels:\n    app: payments\n  annotations:\n"
                "    ferry.dev/simulate: crashloop\nspec:",
                1,
            )
        deployment.write_text(text)
    artifact_path = target / "artifact.json"
    artifact_path.write_text(json.dumps(artifact, indent=2))
    return artifact_path, manifests


async def run(args: argparse.Namespace) -> int:
    CLI_ENV.update(
        FERRY_SERVER=args.server,
        FERRY_AMQP_URL=args.amqp_url,
        FERRY_EXCHANGE=args.exchange,
    )
    token = args.token or (Path(args.data_dir) / "dev-token").read_text().strip()
    CLI_ENV["FERRY_TOKEN"] = token
    client = httpx.AsyncClient(
        base_url=args.server, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    tap = Tap(args.amqp_url, args.exchange)
    await tap.start()
    run_id = uuid.uuid4().hex[:8]
    good = f"master-{run_id}01-demo000001"
    bad = f"master-{run_id}02-demo000002"
    service = "payments"
    timeout = args.timeout
    workdir = Path(tempfile.mkdtemp(prefix="ferry-demo-"))
    env_ok = {"ferry.rollout.succeeded.v1"}
    outcome = {"ferry.rollout.succeeded.v1", "ferry.rollout.failed.v1"}
    try:
        step(1, "Apply a policy: master builds of payments go to dev automatically")
        policy = {"service": service, "autoRelease": [{"branch": "master", "environment": "dev"}]}
        response = await client.put(f"/v1/policies/{service}", json=policy)
        response.raise_for_status()
        confirmed(
            await tap.wait(
                {"ferry.policy.changed.v1"}, lambda e: e.data.get("service") == service, timeout
            )
        )

        step(2, f"CI pushes build {good}; Ferry stores it, auto-releases it to dev, dev rolls out")
        artifact, manifests = write_build(workdir / "good", good, broken=False)
        ferry("artifact", "push", str(artifact), "--manifests", str(manifests))
        confirmed(
            await tap.wait(
                {"ferry.artifact.stored.v1"},
                lambda e: e.data.get("artifact", {}).get("id") == good,
                timeout,
            )
        )
        confirmed(
            await tap.wait(
                {"ferry.release.committed.v1"},
                lambda e: e.data.get("artifactId") == good and e.data.get("environment") == "dev",
                timeout,
            )
        )
        confirmed(
            await tap.wait(
                env_ok,
                lambda e: e.data.get("artifactId") == good and e.data.get("environment") == "dev",
                timeout,
            )
        )

        step(3, "Promote what runs in dev to staging")
        ferry("promote", service, "--to", "staging")
        confirmed(
            await tap.wait(
                env_ok,
                lambda e: (
                    e.data.get("artifactId") == good and e.data.get("environment") == "staging"
                ),
                timeout,
            )
        )

        step(4, f"CI pushes a broken build {bad}; it is released to dev and crash-loops")
        artifact, manifests = write_build(workdir / "bad", bad, broken=True)
        ferry("artifact", "push", str(artifact), "--manifests", str(manifests))
        failed = await tap.wait(
            outcome,
            lambda e: e.data.get("artifactId") == bad and e.data.get("environment") == "dev",
            timeout,
        )
        confirmed(failed, f"message={failed.data.get('message', '')!r}")
        if failed.type != "ferry.rollout.failed.v1":
            print("   the broken build did not fail: is the cluster the local simulator?")
            return 1

        step(5, "Roll dev back to the previous release")
        ferry("rollback", service, "--in", "dev")
        confirmed(
            await tap.wait(
                env_ok,
                lambda e: e.data.get("artifactId") == good and e.data.get("environment") == "dev",
                timeout,
            )
        )
        print("\n\033[1mDemo complete:\033[0m every step was confirmed by its event.")
        return 0
    except (TimeoutError, httpx.HTTPError, subprocess.CalledProcessError) as exc:
        print(f"\n\033[31mdemo stopped:\033[0m {exc}", file=sys.stderr)
        return 1
    finally:
        await tap.close()
        await client.aclose()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("FERRY_SERVER", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("FERRY_TOKEN"))
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("FERRY_DATA_DIR") or str(ROOT / ".ferry"),
        help="where make run keeps state [default: FERRY_DATA_DIR, else .ferry]",
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("FERRY_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    )
    parser.add_argument("--exchange", default=os.environ.get("FERRY_EXCHANGE", "ferry.events"))
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each event"
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
