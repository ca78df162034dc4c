"""Promotion's API, called as the logged-in person (their own token), so that promotion's
rules apply unchanged: who may approve where, four eyes, freezes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    message: str


class PromotionApi:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=3.0))

    async def close(self) -> None:
        await self._http.aclose()

    async def decide(self, token: str, release_id: str, decision: str, text: str) -> Outcome:
        """``approve`` (with a comment) or ``reject`` (with a reason) one release."""
        assert decision in ("approve", "reject")
        body = {"comment": text} if decision == "approve" else {"reason": text}
        url = f"{self._base}/v1/releases/{quote(release_id, safe='')}/{decision}"
        try:
            response = await self._http.post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            return Outcome(
                ok=False, message=f"promotion's API at {self._base} did not answer ({exc!r})"
            )
        if response.status_code < 300:
            status = ""
            try:
                status = str(response.json().get("status", ""))
            except ValueError:
                status = ""
            done = "approved" if decision == "approve" else "rejected"
            return Outcome(
                ok=True, message=f"{release_id} {done}" + (f" (now {status})" if status else "")
            )
        try:
            problem = response.json()
            detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
        except ValueError:
            detail = response.reason_phrase
        return Outcome(ok=False, message=f"promotion refused ({response.status_code}): {detail}")
