"""The notifier's event handler: what an event means, who hears it, and delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial

from ferry_events import ArtifactStored, EventData
from ferry_events.deadletter import DESTINATION_HEADER
from ferry_notifier.adapters.store import STORE_UNAVAILABLE, DeliveryRecord, Store
from ferry_notifier.adapters.templates import Renderer
from ferry_notifier.delivery import Deliverer, Job
from ferry_notifier.domain.flood import FloodPosition
from ferry_notifier.domain.notice import (
    Link,
    Notice,
    artifact_context,
    release_context,
)
from ferry_notifier.domain.routing import Destination, RoutingConfig, route
from ferry_notifier.domain.translation import notice_for
from ferry_runtime import Delivery, TemporaryError, get_logger

log = get_logger(__name__)

#: Publishes a delivery's event to the dead-letter queue for one destination, with the reason.
DeadLetterPublisher = Callable[[Delivery[EventData], Destination, str, int], Awaitable[None]]


class Notifier:
    def __init__(
        self,
        *,
        store: Store,
        routing: RoutingConfig,
        renderer: Renderer,
        deliverer: Deliverer,
        dead_letter: DeadLetterPublisher,
        flood_window: timedelta,
        config_commit_url: str = "",
        dashboard_url: str = "",
    ) -> None:
        self._store = store
        self._routing = routing
        self._renderer = renderer
        self._deliverer = deliverer
        self._dead_letter = dead_letter
        self._flood_window = flood_window
        self._commit_url = config_commit_url
        self._dashboard_url = dashboard_url

    async def handle(self, delivery: Delivery[EventData]) -> None:
        try:
            await self._handle(delivery)
        except STORE_UNAVAILABLE as exc:
            raise TemporaryError(f"notifier store unavailable: {exc}", code="store") from exc

    async def _handle(self, delivery: Delivery[EventData]) -> None:
        event, data = delivery.event, delivery.data
        if isinstance(data, ArtifactStored):
            await self._store.remember_artifact(artifact_context(data))
            return
        notice, records = await self.enrich(notice_for(event, data), event.id)
        flood = FloodPosition(event.id, 1)
        if notice.flood_key:
            flood = await self._store.flood_position(notice.flood_key, event.id, self._flood_window)
        destinations = route(notice, self._routing)
        if not destinations:
            log.info("nobody to tell", kind=notice.kind)
            return
        job = Job(
            event=event,
            notice=notice,
            render=partial(self._renderer.render, notice, count=flood.number),
            flood=flood,
            dead_letter=partial(self._dead_letter, delivery),
            replay_destination=str(delivery.headers.get(DESTINATION_HEADER, "")),
            records=records,
        )
        statuses = await self._deliverer.deliver(job, destinations)
        log.info("notified", kind=notice.kind, destinations=statuses)

    async def enrich(
        self, notice: Notice, event_id: str
    ) -> tuple[Notice, dict[str, DeliveryRecord]]:
        """Fill in people, squad and links from what earlier events said; with the records
        of this event's earlier deliveries (a redelivered event has some)."""
        notice = notice.with_squad(self._routing.squads)
        if notice.kind == "approval.requested":
            approvers = self._routing.approvers_for(notice.service, notice.environment)
            notice = replace(notice, approvers=approvers)
        remembered = await self._store.remember(
            release_context(notice), notice.artifact_id, event_id
        )
        notice = notice.with_context(remembered.release, remembered.artifact)
        notice = notice.with_squad(self._routing.squads)
        if notice.commit_sha and self._commit_url:
            url = self._commit_url.replace("{sha}", notice.commit_sha)
            notice = replace(notice, links=(*notice.links, Link("config commit", url)))
        return notice.with_dashboard(self._dashboard_url), remembered.deliveries
