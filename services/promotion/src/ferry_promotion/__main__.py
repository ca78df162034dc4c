"""``python -m ferry_promotion``: run the promotion service."""

from __future__ import annotations

import asyncio

from ferry_promotion.bootstrap import SERVICE, build
from ferry_promotion.settings import PromotionSettings
from ferry_runtime import configure_logging


async def _run() -> None:
    settings = PromotionSettings()
    configure_logging(SERVICE, level=settings.log_level, fmt=settings.log_format)
    service = await build(settings)
    await service.runtime.run()


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()
