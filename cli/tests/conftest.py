"""What the CLI tests share: a loopback HTTP server that answers as docs/api.md says
promotion does, the real ``ferry`` command in its own process, and a port nobody serves."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

from ferry_testing.net import free_port


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, Any] | Callable[["Recorded"], tuple[int, Any]]


@dataclass
class FakeApi:
    """Routes ``(method, path)`` to a status and a JSON body (or a callable making one)."""

    url: str = ""
    routes: dict[tuple[str, str], Reply] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def on(self, method: str, path: str, reply: Reply) -> None:
        self.routes[(method, path)] = reply


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            recorded = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            api.requests.append(recorded)
            reply = api.routes.get((self.command, parts.path))
            if reply is None:
                status, body = (
                    404,
                    {
                        "type": "https://ferry.dev/problems/not-found",
                        "title": "Not Found",
                        "status": 404,
                        "detail": f"no route {parts.path}",
                    },
                )
            elif callable(reply):
                status, body = reply(recorded)
            else:
                status, body = reply
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            content_type = "application/problem+json" if status >= 400 else "application/json"
            if isinstance(body, bytes):
                content_type = "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names

    return Handler


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _isolated_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No developer's own config, token, server or .ferry/dev-token leaks into a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.chdir(home)
    monkeypatch.setenv("FERRY_CONFIG", str(home / "config.yaml"))
    for name in ("FERRY_SERVER", "FERRY_TOKEN", "FERRY_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


class Run(NamedTuple):
    """What one ``ferry`` process did."""

    code: int
    stdout: str
    stderr: str


RunFerry = Callable[..., Awaitable[Run]]


async def _run_ferry(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry_cli",
        *args,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def run_ferry() -> RunFerry:
    """The real command in its own process: real exit codes, real start-up."""
    return _run_ferry


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on (bound once, then released)."""
    return free_port()
