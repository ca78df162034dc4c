"""A loopback git server over smart HTTP: the real ``git http-backend`` behind aiohttp.

For tests of what services do with an ``https://TOKEN@host/...`` remote: clones,
fetches and pushes work as against a forge (anonymous access is allowed, so a
URL with only a user part works too). :meth:`GitHttpServer.refuse` makes every
request answer a git ``ERR`` line with a text of the test's choosing, which git
prints on stderr as ``remote error: ...``, as a forge that echoes the URL would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType

from aiohttp import web

from ferry_testing.net import serve_app

__all__ = ["GitHttpServer"]


def _pkt(text: str) -> bytes:
    payload = text.encode()
    return f"{len(payload) + 4:04x}".encode() + payload


class GitHttpServer:
    """Serves the bare repositories under ``root`` at ``http://127.0.0.1:<port>/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.requests = 0
        self._refusal: str | None = None
        self._runner: web.AppRunner | None = None

    def url(self, name: str, *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{name}"

    def refuse(self, message: str | None) -> None:
        """Answer every request with ``ERR <message>`` (``None``: serve again)."""
        self._refusal = message

    async def __aenter__(self) -> GitHttpServer:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, self.port = await serve_app(app)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        service = request.query.get("service", "git-upload-pack")
        if self._refusal is not None:
            body = _pkt(f"# service={service}\n") + b"0000" + _pkt(f"ERR {self._refusal}\n")
            return web.Response(body=body, content_type=f"application/x-{service}-advertisement")
        payload = await request.read()
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + request.match_info["path"],
            "QUERY_STRING": request.query_string,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(payload)),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            # a user name turns on receive-pack (pushes), as behind a forge's login
            "REMOTE_USER": "ferry-test",
            "REMOTE_ADDR": "127.0.0.1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await process.communicate(payload)
        head, _, body = out.partition(b"\r\n\r\n")
        if not _:
            head, _, body = out.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=body, headers=headers)
