"""Housekeeping: forget what promotion no longer needs to remember."""

from __future__ import annotations

from datetime import datetime

from ferry_promotion.service_layer.unit_of_work import UnitOfWorkFactory


async def purge(
    uow: UnitOfWorkFactory, *, sent_before: datetime, processed_before: datetime
) -> None:
    """Forget relayed outbox events and inbox ids older than the given times."""
    async with uow() as tx:
        await tx.outbox.forget(sent_before)
        await tx.inbox.forget(processed_before)
        await tx.commit()
