"""Broker users of a test's own, made with ``rabbitmqctl`` and deleted afterwards.

For tests of what one broker user can do that another cannot (RabbitMQ checks a
message's ``user_id`` against the user of the connection that publishes it), and
of passwords that must never be logged. Needs ``rabbitmqctl`` for the broker the
tests use; a test without it is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest

__all__ = ["broker_user"]


def _ctl(*args: str) -> None:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()}")


@contextlib.asynccontextmanager
async def broker_user(
    amqp_url: str,
    *,
    prefix: str = "ferry-test",
    password: str | None = None,
    configure: str = ".*",
    write: str = ".*",
    read: str = ".*",
) -> AsyncIterator[tuple[str, str]]:
    """A new user on the broker of ``amqp_url``; yields ``(name, its AMQP URL)``."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is needed to create a second broker user")
    parts = urlsplit(amqp_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("rabbitmqctl reaches only the local broker")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    secret = password or uuid.uuid4().hex
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    await asyncio.to_thread(_ctl, "add_user", name, secret)
    try:
        await asyncio.to_thread(_ctl, "set_permissions", "-p", vhost, name, configure, write, read)
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        netloc = f"{quote(name, safe='')}:{quote(secret, safe='')}@{host}"
        yield name, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await asyncio.to_thread(_ctl, "delete_user", name)
