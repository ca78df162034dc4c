"""``python -m ferry_insights``: run insights until SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import sys

from ferry_insights.adapters.db import DATABASE_ERRORS
from ferry_insights.bootstrap import SERVICE, build
from ferry_insights.settings import InsightsSettings
from ferry_runtime import BrokerUnavailable, configure_logging, get_logger, mask_url


async def _run(settings: InsightsSettings) -> None:
    service = await build(settings)
    # What start-up made (imported modules, the app, its templates) lives as long as the
    # process: frozen, a full garbage collection walks only what requests make. Without it,
    # every full collection during a page walked every import (pauses of ~100 ms; the
    # matrix page, which makes many objects, triggered them: docs/insights.md, "Speed").
    gc.collect()
    gc.freeze()
    await service.runtime.run()


def main() -> None:
    settings = InsightsSettings()
    configure_logging(SERVICE, level=settings.log_level, fmt=settings.log_format)
    log = get_logger("ferry_insights")
    try:
        asyncio.run(_run(settings))
    except BrokerUnavailable as exc:
        log.error("cannot start", reason=str(exc))  # noqa: TRY400 - the reason is the message
        sys.exit(3)
    except DATABASE_ERRORS as exc:
        log.error(  # noqa: TRY400
            "cannot start: the database is not usable",
            database=mask_url(settings.resolved_database_url()),
            reason=str(exc).splitlines()[0] if str(exc) else repr(exc),
            hint="check FERRY_DATABASE_URL (postgresql+asyncpg://... or empty for SQLite)",
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
