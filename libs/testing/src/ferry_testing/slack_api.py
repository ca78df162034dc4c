"""A loopback server that answers as Slack's Web API does, for tests.

It serves ``chat.postMessage`` (with message ``metadata``), ``chat.update``,
``chat.delete``, ``conversations.history`` and ``conversations.replies`` (newest or
oldest first, ``oldest``/``latest``/``inclusive``, ``limit`` and ``cursor`` pages, the
metadata only with ``include_all_metadata``), ``conversations.open``,
``users.lookupByEmail`` and ``users.info`` under ``/api/``, takes ``response_url``
posts under ``/response/<key>``, records every call, and can be told to fail:
``ratelimit(method, retry_after)`` answers the next call of ``method`` with
HTTP 429 ``ratelimited`` and a ``Retry-After`` header; ``fail(method, status)``
answers with a server error; ``delay(method, seconds)`` does what the next call asks
at once but answers only after ``seconds`` (a client that gave up never hears that
it worked); unknown emails get ``users_not_found``; ``hold(token)`` keeps the calls
made with that token waiting until ``release()``, and drops those whose client has
gone away by then (as if Slack never got them).

A message's ``ts`` is the time it was posted, as Slack's is. Unlike Slack, which
answers a post to ``#name`` with the channel's id, it keeps the channel as it was
named, and reads it by that name; a DM to user ``U…`` lands in channel ``D…``.

    async with SlackApi() as slack:
        slack.add_user("jane@example.com", "U0JANE")
        ... FERRY_SLACK_API_URL=slack.base_url ...
        assert slack.calls_to("chat.postMessage")[0].params["channel"] == "#deploys"
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ferry_testing.net import serve_app


@dataclass
class SlackCall:
    """One request the server answered."""

    method: str
    params: dict[str, Any]
    at: float
    status: int
    token: str = ""


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: float | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[Any] = field(default_factory=list)
    thread_ts: str | None = None
    updates: int = 0
    #: The message metadata it was posted with (``event_type``, ``event_payload``).
    metadata: dict[str, Any] | None = None
    #: A reply also sent to the channel (``reply_broadcast``).
    broadcast: bool = False


class SlackApi:
    """The fake Slack Web API (aiohttp, on 127.0.0.1 and a free port)."""

    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self.users: dict[str, str] = {}
        #: The IANA time zone ``users.info`` gives per user id (none: no ``tz`` field).
        self.zones: dict[str, str] = {}
        self.messages: dict[tuple[str, str], Message] = {}
        #: JSON bodies posted to each ``response_url`` (see :meth:`response_url`), in order.
        self.responses: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._last_ts = 0.0
        #: Messages removed with ``chat.delete``, in order.
        self.deleted: list[Message] = []
        self._delays: dict[str, deque[float]] = defaultdict(deque)
        self._changed = asyncio.Event()
        self._held_tokens: set[str] = set()
        self._released = asyncio.Event()
        #: Calls waiting right now because their token is held.
        self.waiting = 0
        #: The held calls, by id (a request is not hashable).
        self._held: dict[int, web.Request] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ programming

    def add_user(self, email: str, user_id: str, tz: str | None = None) -> None:
        """A Slack user; ``tz`` is the time zone ``users.info`` says they set (IANA name)."""
        self.users[email.lower()] = user_id
        if tz is not None:
            self.zones[user_id] = tz

    def ratelimit(self, method: str, retry_after: float = 1.0, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get 429 ``ratelimited`` with Retry-After."""
        for _ in range(times):
            self._faults[method].append(_Fault(429, "ratelimited", retry_after))

    def fail(self, method: str, status: int = 503, times: int = 1, error: str = "") -> None:
        """The next ``times`` calls of ``method`` get this HTTP status (and Slack error)."""
        for _ in range(times):
            self._faults[method].append(_Fault(status, error or "service_unavailable"))

    def delay(self, method: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` take effect at once, but are answered
        only after ``seconds``: a client whose timeout is shorter gives up on a call
        that worked."""
        for _ in range(times):
            self._delays[method].append(seconds)

    def hold(self, token: str) -> None:
        """Calls with this bot token wait, unanswered, until :meth:`release`."""
        self._held_tokens.add(token)
        self._released.clear()

    @property
    def held_connected(self) -> int:
        """Held calls whose client is still connected (a dead client's drop to 0)."""
        held = self._held.values()
        return sum(1 for r in held if r.transport is not None and not r.transport.is_closing())

    def release(self) -> None:
        """Answer the held calls; a call whose client went away meanwhile is dropped
        (recorded with status 499, no message posted), as Slack never saw it."""
        self._held_tokens.clear()
        self._released.set()

    # ------------------------------------------------------------------ reading

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method and (not ok_only or c.status == 200)]

    async def wait_for(
        self, method: str, count: int = 1, *, timeout: float = 15.0, ok_only: bool = True
    ) -> list[SlackCall]:
        """Wait until ``method`` has been called ``count`` times (answered 200 by default)."""
        async with asyncio.timeout(timeout):
            while len(self.calls_to(method, ok_only=ok_only)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.calls_to(method, ok_only=ok_only)

    def response_url(self, key: str) -> str:
        """A ``response_url`` (as Slack puts in slash commands and interactions) on this server."""
        return f"http://127.0.0.1:{self.port}/response/{key}"

    async def wait_for_responses(
        self, key: str, count: int = 1, *, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` messages have been posted to ``response_url(key)``."""
        async with asyncio.timeout(timeout):
            while len(self.responses[key]) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.responses[key]

    # ------------------------------------------------------------------ serving

    async def __aenter__(self) -> SlackApi:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/response/{key}", self._respond)
        self._runner, self.port = await serve_app(app)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        for key in ("blocks", "attachments", "metadata"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    def _answer(
        self, call: SlackCall, body: dict[str, Any], status: int = 200, **headers: str
    ) -> web.Response:
        call.status = status
        self.calls.append(call)
        self._changed.set()
        return web.json_response(body, status=status, headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        call = SlackCall(method, params, time.monotonic(), 0, token)
        if not token:
            return self._answer(call, {"ok": False, "error": "not_authed"})
        if token in self._held_tokens:
            self._held[id(request)] = request
            self.waiting += 1
            self._changed.set()
            try:
                await self._released.wait()
            finally:
                self.waiting -= 1
                self._held.pop(id(request), None)
            if request.transport is None or request.transport.is_closing():
                return self._answer(call, {"ok": False, "error": "client_gone"}, 499)
        if self._faults[method]:
            fault = self._faults[method].popleft()
            headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after else {}
            return self._answer(call, {"ok": False, "error": fault.error}, fault.status, **headers)
        handler = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.open": self._open,
            "users.lookupByEmail": self._lookup,
            "users.info": self._info,
        }.get(method)
        if handler is None:
            return self._answer(call, {"ok": False, "error": "unknown_method"})
        body = handler(params)
        if self._delays[method]:
            self.calls.append(call)  # it took effect: seen at once
            call.status = 200
            self._changed.set()
            await asyncio.sleep(self._delays[method].popleft())
            return web.json_response(body)
        return self._answer(call, body)

    def _next_ts(self) -> str:
        """Now, as Slack writes a ts; never the same twice."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel.startswith("U"):
            channel = "D" + channel[1:]  # a DM to a user lands in their IM channel
        thread_ts = params.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        metadata = params.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return {"ok": False, "error": "invalid_metadata_format"}
        ts = self._next_ts()
        message = Message(
            channel,
            ts,
            str(params.get("text", "")),
            list(params.get("blocks") or []),
            thread_ts,
            metadata=metadata,
            broadcast=bool(thread_ts) and _true(params.get("reply_broadcast")),
        )
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": _shown(message, metadata=True)}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (str(params.get("channel", "")), str(params.get("ts", "")))
        message = self.messages.pop(key, None)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        self.deleted.append(message)
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users", "")).split(",") if u]
        if len(users) != 1 or not users[0].startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[0][1:]}}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A channel's messages, newest first: its own, and replies also sent to it."""
        channel = str(params.get("channel", ""))
        shown = [
            m
            for m in self.messages.values()
            if m.channel == channel and (m.thread_ts is None or m.broadcast)
        ]
        if not shown and not any(c == channel for c, _ in self.messages):
            return {"ok": False, "error": "channel_not_found"}
        return _page(sorted(shown, key=lambda m: float(m.ts), reverse=True), params)

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A message and its replies, oldest first."""
        channel, ts = str(params.get("channel", "")), str(params.get("ts", ""))
        parent = self.messages.get((channel, ts))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        return _page([parent, *self.thread(channel, ts)], params)

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (str(params.get("channel", "")), str(params.get("ts", "")))
        message = self.messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.text = str(params.get("text", ""))
        message.blocks = list(params.get("blocks") or [])
        message.updates += 1
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message.text}

    def _lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email", "")).lower()
        user_id = self.users.get(email)
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": {"id": user_id, "profile": {"email": email}}}

    def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user", ""))
        for email, known in self.users.items():
            if known == user_id:
                user: dict[str, Any] = {"id": user_id, "profile": {"email": email}}
                if user_id in self.zones:
                    user["tz"] = self.zones[user_id]
                return {"ok": True, "user": user}
        return {"ok": False, "error": "user_not_found"}

    async def _respond(self, request: web.Request) -> web.Response:
        """A post to a ``response_url``: Slack answers a bare ``ok`` (no Web API envelope)."""
        self.responses[request.match_info["key"]].append(await request.json())
        self._changed.set()
        return web.Response(text="ok")

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies to a message, oldest first."""
        return sorted(
            (m for m in self.messages.values() if m.channel == channel and m.thread_ts == ts),
            key=lambda m: float(m.ts),
        )


def _true(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _shown(message: Message, *, metadata: bool) -> dict[str, Any]:
    """A message as Slack's Web API shows it."""
    shown: dict[str, Any] = {
        "type": "message",
        "bot_id": "B0FERRY",
        "text": message.text,
        "blocks": message.blocks,
        "ts": message.ts,
    }
    if message.thread_ts:
        shown["thread_ts"] = message.thread_ts
        if message.broadcast:
            shown["subtype"] = "thread_broadcast"
    if metadata and message.metadata is not None:
        shown["metadata"] = message.metadata
    return shown


def _page(messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
    """One page of ``messages`` within ``oldest``/``latest`` (``inclusive``), ``limit``
    long, from the ``cursor``; the next cursor when there are more."""
    inclusive = _true(params.get("inclusive"))
    oldest = float(params.get("oldest") or 0)
    latest = float(params.get("latest") or time.time() + 1)

    def within(m: Message) -> bool:
        ts = float(m.ts)
        if inclusive:
            return oldest <= ts <= latest
        return oldest < ts < latest

    kept = [m for m in messages if within(m)]
    limit = max(1, min(int(params.get("limit") or 100), 999))
    cursor = str(params.get("cursor") or "")
    start = int(base64.b64decode(cursor).decode().removeprefix("offset:")) if cursor else 0
    page = kept[start : start + limit]
    more = start + limit < len(kept)
    next_cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
    metadata = _true(params.get("include_all_metadata"))
    return {
        "ok": True,
        "messages": [_shown(m, metadata=metadata) for m in page],
        "has_more": more,
        "pin_count": 0,
        "response_metadata": {"next_cursor": next_cursor},
    }
