"""The samples of a ``verification`` check, from Prometheus's HTTP API.

One ``GET /api/v1/query_range`` per check, over [now - ``for``, now], evaluated every
``for / 100`` (at least every second, so at most about a hundred points a series): every
point of every series returned is a sample the check's bounds must hold for. The call is
asynchronous (aiohttp) with a total timeout; every failure (unreachable, timeout, an HTTP or
a PromQL error, an answer that is no matrix) comes back as ``Samples.error``, never as an
exception and never as an empty pass. Implements ``service_layer.ports.Metrics``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ferry_promotion.domain.policies import PrometheusCheck
from ferry_promotion.domain.verification import Samples

#: Points per series a check asks for at most (Prometheus refuses more than 11,000).
POINTS = 100
#: The most of an answer read (a query over many series is refused, not buffered).
MAX_BYTES = 8 * 1024 * 1024


def step_of(window: timedelta) -> float:
    """Seconds between two evaluations over ``window``: ``window / POINTS``, at least 1 s."""
    return max(1.0, math.ceil(window.total_seconds() / POINTS))


def _problem(text: str) -> str:
    return " ".join(text.split())[:300]


def _values(body: Any) -> Samples:  # noqa: PLR0911 - one return per way an answer is wrong
    """The samples of a ``query_range`` answer (or why it is not one)."""
    if not isinstance(body, dict):
        return Samples(error="Prometheus answered something that is not a JSON object")
    if body.get("status") != "success":
        kind, error = body.get("errorType", "error"), body.get("error", "no reason given")
        return Samples(error=f"Prometheus refused the query ({kind}): {_problem(str(error))}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        return Samples(error="Prometheus answered with no range of samples (resultType matrix)")
    series = data.get("result")
    if not isinstance(series, list):
        return Samples(error="Prometheus answered with no list of series")
    values: list[float] = []
    for one in series:
        points = one.get("values") if isinstance(one, dict) else None
        if not isinstance(points, list):
            return Samples(error="Prometheus answered a series without values")
        for point in points:
            try:
                values.append(float(point[1]))
            except (TypeError, ValueError, IndexError):
                return Samples(error=f"Prometheus answered a sample that is no number: {point!r}")
    return Samples(values=tuple(values), series=len(series))


class PrometheusMetrics:
    """Prometheus at ``base_url`` (``FERRY_PROMETHEUS_URL``), asked with a total ``timeout``."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def samples(self, check: PrometheusCheck, now: datetime) -> Samples:
        start = now - check.window
        params = {
            "query": check.query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{now.timestamp():.3f}",
            "step": f"{step_of(check.window):g}",
            "timeout": f"{max(1.0, self.timeout - 1):g}s",
        }
        url = f"{self.base_url}/api/v1/query_range"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http,
                http.get(url, params=params, allow_redirects=False) as response,
            ):
                raw = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    raw += chunk
                    if len(raw) > MAX_BYTES:
                        return Samples(error=f"Prometheus answered more than {MAX_BYTES} bytes")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return Samples(
                        error=f"Prometheus answered HTTP {response.status} that is not JSON"
                    )
                if response.status >= 400 and not isinstance(body, dict):
                    return Samples(error=f"Prometheus answered HTTP {response.status}")
                return _values(body)
        except TimeoutError:
            return Samples(error=f"Prometheus did not answer within {self.timeout:g}s")
        except aiohttp.ClientError as exc:
            return Samples(error=f"Prometheus is unreachable ({type(exc).__name__})")
