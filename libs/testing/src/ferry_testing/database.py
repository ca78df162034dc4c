"""Databases for tests: SQLite files, and throwaway PostgreSQL databases on the local server."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    return os.environ.get("FERRY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)


def postgres_answers(url: str | None = None) -> bool:
    parts = urlsplit(url or postgres_admin_url())
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database; yields its SQLAlchemy asyncpg URL and drops it after."""
    import asyncpg

    admin = postgres_admin_url()
    name = f"ferry_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(admin)
    url = f"postgresql+asyncpg://{parts.netloc}/{name}"
    try:
        yield url
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
