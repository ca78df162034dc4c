"""``POST /v1/slack/commands`` and ``POST /v1/slack/interactions``.

Both read the raw body and verify Slack's signature before anything else; a
refusal is ``401 application/problem+json`` and nothing is parsed, published
or stored. Slack shows a 200 answer's JSON to the person, so every other
outcome (bad usage, unknown user, a missing role) is a 200 with an
ephemeral message that says what was wrong and what to do.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ferry_promotion.entrypoints.slack.chatops import ChatOps, Refused

__all__ = ["MAX_BODY_BYTES", "SlackRouter"]

#: Slack's requests are a few kilobytes; anything far larger is not from Slack.
MAX_BODY_BYTES: Final = 256 * 1024

PROBLEM_JSON: Final = "application/problem+json"


def _problem(request: Request, status: int, title: str, code: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"https://ferry.dev/problems/slack-{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": request.url.path,
        },
        status_code=status,
        media_type=PROBLEM_JSON,
    )


async def _verified_body(chatops: ChatOps, endpoint: str, request: Request) -> bytes | Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _problem(
            request, 413, "Payload Too Large", "too-large", "Slack requests are at most 256 KiB"
        )
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _problem(
            request, 413, "Payload Too Large", "too-large", "Slack requests are at most 256 KiB"
        )
    try:
        await chatops.verify(endpoint, body, request.headers)
    except Refused as exc:
        return _problem(
            request,
            401,
            "Unauthorized",
            "signature",
            f"not a verified Slack request: {exc.reason}",
        )
    return body


class SlackRouter(APIRouter):
    """The Slack routes; ``chatops`` is kept for shutdown (``await router.chatops.aclose()``)."""

    def __init__(self, chatops: ChatOps) -> None:
        super().__init__(prefix="/v1/slack", tags=["slack"])
        self.chatops = chatops
        refused: dict[int | str, dict[str, Any]] = {
            401: {"description": "not a verified Slack request (problem+json)"}
        }
        self.add_api_route(
            "/commands",
            self.commands,
            methods=["POST"],
            summary="A /ferry slash command (Slack request signing, form-encoded)",
            responses=refused,
        )
        self.add_api_route(
            "/interactions",
            self.interactions,
            methods=["POST"],
            summary="A click on a Ferry button (Slack request signing, form field payload)",
            responses=refused,
        )

    async def commands(self, request: Request) -> Response:
        body = await _verified_body(self.chatops, "commands", request)
        if isinstance(body, Response):
            return body
        return JSONResponse(await self.chatops.command(body))

    async def interactions(self, request: Request) -> Response:
        body = await _verified_body(self.chatops, "interactions", request)
        if isinstance(body, Response):
            return body
        await self.chatops.interaction(body)
        return Response(status_code=200)
