"""The four DORA keys as Prometheus gauges per environment, computed when scraped.

Every replica computes them from the same database, so any replica's ``/metrics`` gives the
same numbers; a key with no data has no sample (rather than a made-up 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from prometheus_client import Gauge

from ferry_insights.domain.dora import Keys, Window
from ferry_insights.service_layer.use_cases import Projections, dora
from ferry_runtime import get_logger

log = get_logger(__name__)

DEPLOYMENTS: Final = Gauge(
    "ferry_dora_deployments",
    "Deployments (first rollout results) in the window, by environment.",
    ["environment"],
)
FREQUENCY: Final = Gauge(
    "ferry_dora_deployments_per_day",
    "Deployment frequency: deployments per day over the window, by environment.",
    ["environment"],
)
LEAD_TIME: Final = Gauge(
    "ferry_dora_lead_time_seconds",
    "Lead time for changes (change time to rollout success), by environment and quantile.",
    ["environment", "quantile"],
)
FAILURE_RATE: Final = Gauge(
    "ferry_dora_change_failure_rate",
    "Change failure rate: failed or rolled-back deployments / deployments, by environment.",
    ["environment"],
)
RESTORE: Final = Gauge(
    "ferry_dora_time_to_restore_seconds",
    "Median time to restore (failure to the next rollout success), by environment.",
    ["environment"],
)
WINDOW: Final = Gauge("ferry_dora_window_days", "The window of the ferry_dora_* gauges, in days.")


def _put(gauge: Gauge, value: float | None, *labels: str) -> None:
    if value is None:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
        return
    gauge.labels(*labels).set(value)


class DoraGauges:
    """Refreshes the gauges at most every ``max_age`` seconds, on scrape."""

    def __init__(
        self,
        store: Projections,
        clock: Callable[[], datetime],
        *,
        days: int = 30,
        max_age: float = 15.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._days = days
        self._max_age = max_age
        self._refreshed = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._refreshed < self._max_age:
                return
            try:
                window = Window.days_before(self._clock(), self._days)
                for environment in await self._store.environments():
                    found = await dora(self._store, environment, window)
                    self.set(environment, found.keys)
                WINDOW.set(self._days)
                self._refreshed = time.monotonic()
            except Exception:  # the database is down: /metrics still answers, with old values
                log.exception("DORA gauges not refreshed")

    @staticmethod
    def set(environment: str, keys: Keys) -> None:
        DEPLOYMENTS.labels(environment).set(keys.deployments)
        _put(FREQUENCY, keys.deployments_per_day, environment)
        _put(LEAD_TIME, keys.lead_time_median, environment, "0.5")
        _put(LEAD_TIME, keys.lead_time_p90, environment, "0.9")
        _put(FAILURE_RATE, keys.change_failure_rate, environment)
        _put(RESTORE, keys.time_to_restore_median, environment)
