"""A Kubernetes API test server: the real API's JSON on loopback, for the watcher's tests.

It serves list and watch of Deployments, StatefulSets, DaemonSets (``apps/v1``),
Jobs (``batch/v1``) and Pods (``v1``), namespaced and across all namespaces, as
the real API server does: a global ``resourceVersion`` counter, paged lists
(``limit`` and ``continue``), chunked JSON-lines watch streams, ``BOOKMARK``
events when asked for, an ``ERROR`` event carrying a ``410`` Status when a
watch asks for a resourceVersion older than the retained history, pod log
reads and enough discovery for a client.

A test drives it through Python: :meth:`KubeApiServer.create`, :meth:`update`,
:meth:`update_status`, :meth:`delete`, :meth:`set_pod_log`, and it breaks it on
purpose with :meth:`cut_streams` (the connection drops), :meth:`stall_streams`
(the connection stays open and goes silent), :meth:`compact` (the history is
gone, so resuming watches get ``410 Gone``) and :meth:`emit_raw` (a line the
server would never send). :meth:`write_kubeconfig` points any client at it.

It is a test double of the API's wire format, not of its semantics: no
admission, no validation beyond what a test needs, no authentication.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web


@dataclass(frozen=True)
class Resource:
    """One served resource type."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES: dict[str, Resource] = {
    r.kind: r
    for r in (
        Resource("apps", "v1", "Deployment", "deployments"),
        Resource("apps", "v1", "StatefulSet", "statefulsets"),
        Resource("apps", "v1", "DaemonSet", "daemonsets"),
        Resource("batch", "v1", "Job", "jobs"),
        Resource("", "v1", "Pod", "pods"),
    )
}
_BY_PLURAL = {r.plural: r for r in RESOURCES.values()}

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class _Event:
    rv: int
    kind: str
    namespace: str
    type: str
    obj: dict[str, Any]


@dataclass(eq=False)
class _Stream:
    """One open watch connection."""

    kind: str
    namespace: str | None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    stalled: bool = False
    transport: asyncio.BaseTransport | None = None

    def matches(self, kind: str, namespace: str) -> bool:
        return kind == self.kind and (self.namespace is None or self.namespace == namespace)


def _clone(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of plain JSON data (several times faster than ``copy.deepcopy``)."""
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class NotFound(KeyError):
    """No such object in the test server."""


class KubeApiServer:
    """A loopback Kubernetes API for tests (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bookmark_interval: float = 60.0,
        history_limit: int = 100_000,
    ) -> None:
        self.host = host
        self._port = port
        self.bookmark_interval = bookmark_interval
        self.history_limit = history_limit
        # Start from the clock, with no history before it: a client that still holds a
        # resourceVersion from an earlier run of the server gets 410 and re-lists.
        self._rv = int(time.time() * 1000)
        self._floor = self._rv
        self._objects: dict[Key, dict[str, Any]] = {}
        self._history: deque[_Event] = deque()
        self._streams: set[_Stream] = set()
        self._logs: dict[tuple[str, str, str], str] = {}
        self._runner: web.AppRunner | None = None
        #: The latest requests (path and query), newest last, for tests to inspect.
        self.requests: deque[str] = deque(maxlen=10_000)
        self.watch_requests = 0
        self.list_requests = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> KubeApiServer:
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        for slash in ("", "/"):
            app.router.add_get("/api" + slash, self._api_versions)
            app.router.add_get("/apis" + slash, self._api_groups)
        app.router.add_get("/api/{version}", self._resource_list)
        app.router.add_get("/apis/{group}/{version}", self._resource_list)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self._pod_log)
        for prefix in ("/api/{version}", "/apis/{group}/{version}"):
            app.router.add_get(prefix + "/{plural}", self._collection)
            app.router.add_get(prefix + "/namespaces/{ns}/{plural}", self._collection)
            app.router.add_post(prefix + "/namespaces/{ns}/{plural}", self._http_create)
            app.router.add_get(prefix + "/namespaces/{ns}/{plural}/{name}", self._http_get)
            app.router.add_put(prefix + "/namespaces/{ns}/{plural}/{name}", self._http_replace)
            app.router.add_put(
                prefix + "/namespaces/{ns}/{plural}/{name}/status", self._http_replace_status
            )
            app.router.add_delete(prefix + "/namespaces/{ns}/{plural}/{name}", self._http_delete)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound socket
        assert isinstance(server, asyncio.Server)
        self._port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for stream in list(self._streams):
            stream.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeApiServer:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def resource_version(self) -> int:
        return self._rv

    def write_kubeconfig(self, path: Path, *, context: str = "ferry-test") -> Path:
        """A kubeconfig pointing at this server, without authentication."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------ the object store

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, kind: str, namespace: str, type_: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self._history.append(_Event(rv, kind, namespace, type_, obj))
        while len(self._history) > self.history_limit:
            self._floor = self._history.popleft().rv
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n"
        for stream in self._streams:
            if stream.matches(kind, namespace):
                stream.queue.put_nowait(line)

    @staticmethod
    def _key(obj: dict[str, Any]) -> Key:
        kind = obj.get("kind")
        if kind not in RESOURCES:
            raise ValueError(f"the test server does not serve kind {kind!r}")
        meta = obj.get("metadata") or {}
        return kind, meta.get("namespace") or "default", meta["name"]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object; the server assigns uid, resourceVersion and generation."""
        key = self._key(obj)
        if key in self._objects:
            raise ValueError(f"{key[0]} {key[1]}/{key[2]} already exists")
        new = _clone(obj)
        resource = RESOURCES[key[0]]
        new["apiVersion"] = resource.api_version
        meta = new.setdefault("metadata", {})
        meta["namespace"] = key[1]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        if key[0] != "Pod":
            meta["generation"] = 1
        meta["resourceVersion"] = str(self._next_rv())
        new.setdefault("status", {})
        self._objects[key] = new
        self._record(key[0], key[1], "ADDED", new)
        return _clone(new)

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object. A changed ``spec`` bumps ``metadata.generation``; an absent
        ``status`` keeps the stored one. A change-less update changes nothing (as the API)."""
        key = self._key(obj)
        old = self._objects.get(key)
        if old is None:
            raise NotFound(f"{key[0]} {key[1]}/{key[2]} does not exist")
        new = _clone(obj)
        new["apiVersion"] = old["apiVersion"]
        meta = new.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp", "namespace"):
            meta[kept] = old["metadata"][kept]
        if "generation" in old["metadata"]:
            changed = new.get("spec") != old.get("spec")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        if "status" not in new:
            new["status"] = _clone(old.get("status", {}))
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return _clone(old)
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[key] = new
        self._record(key[0], key[1], "MODIFIED", new)
        return _clone(new)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update."""
        return self.update(obj) if self._key(obj) in self._objects else self.create(obj)

    def update_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the status only (the status subresource): no generation bump."""
        old = self.get(kind, namespace, name)
        old["status"] = _clone(status)
        return self.update(old)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        old = self._objects.pop(key, None)
        if old is None:
            raise NotFound(f"{kind} {namespace}/{name} does not exist")
        gone = _clone(old)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(kind, namespace, "DELETED", gone)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            raise NotFound(f"{kind} {namespace}/{name} does not exist")
        return _clone(obj)

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            _clone(obj)
            for (k, ns, _), obj in sorted(self._objects.items())
            if k == kind and (namespace is None or ns == namespace)
        ]

    def set_pod_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """What ``kubectl logs`` would show for this container."""
        self._logs[(namespace, pod, container)] = text

    # ------------------------------------------------------------------ faults

    def cut_streams(self) -> int:
        """Drop every open watch connection, as a network fault or API restart would."""
        cut = 0
        for stream in list(self._streams):
            if stream.transport is not None:
                stream.transport.close()
            stream.queue.put_nowait(None)
            cut += 1
        return cut

    def stall_streams(self) -> int:
        """Keep every open watch connection open but send nothing on it ever again."""
        for stream in self._streams:
            stream.stalled = True
        return len(self._streams)

    def compact(self) -> int:
        """Forget the event history, as etcd compaction does: watches resuming from an
        older resourceVersion get an ``ERROR`` event with a ``410`` Status."""
        self._history.clear()
        self._floor = self._rv
        return self._floor

    def emit_raw(self, kind: str, line: str) -> None:
        """Send ``line`` as is on every open watch of ``kind`` (for malformed-input tests)."""
        for stream in self._streams:
            if stream.kind == kind:
                stream.queue.put_nowait(line.rstrip("\n") + "\n")

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def wait_for_streams(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` watch connections are open (before :meth:`emit_raw`)."""
        async with asyncio.timeout(timeout):
            while len(self._streams) < count:  # noqa: ASYNC110 - a test helper polling a count
                await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ HTTP: discovery

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0+ferry-test-server",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.22.0",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    async def _api_versions(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self._port}"}
                ],
            }
        )

    async def _api_groups(self, _: web.Request) -> web.Response:
        groups = []
        for name in ("apps", "batch"):
            version = {"groupVersion": f"{name}/v1", "version": "v1"}
            groups.append({"name": name, "versions": [version], "preferredVersion": version})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def _resource_list(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        resources = [
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": True,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "update", "watch"],
            }
            for r in RESOURCES.values()
            if r.group == group and r.version == version
        ]
        if not resources:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        group_version = f"{group}/{version}" if group else version
        return web.json_response(
            {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
        )

    # ------------------------------------------------------------------ HTTP: reads

    def _resource(self, request: web.Request) -> Resource | None:
        resource = _BY_PLURAL.get(request.match_info["plural"])
        if resource is None:
            return None
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        if resource.group != group or resource.version != version:
            return None
        return resource

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        resource = self._resource(request)
        if resource is None:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        namespace = request.match_info.get("ns")
        if request.query.get("watch") in ("1", "true", "True"):
            return await self._watch(request, resource, namespace)
        self.list_requests += 1
        # Pages (``limit`` and ``continue``) go in key order; every page carries the first
        # page's resourceVersion, so a watch from it misses nothing that changed meanwhile.
        snapshot, after = self._rv, ("", "")
        token = request.query.get("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                snapshot, after = int(decoded["rv"]), (decoded["ns"], decoded["name"])
            except (ValueError, KeyError, TypeError):
                return _problem(400, "BadRequest", f"invalid continue token {token!r}")
        limit = int(request.query.get("limit") or 0)
        items = [
            (ns, name, obj)
            for (kind, ns, name), obj in sorted(self._objects.items())
            if kind == resource.kind
            and (namespace is None or ns == namespace)
            and (not token or (ns, name) > after)
        ]
        meta: dict[str, Any] = {"resourceVersion": str(snapshot)}
        if limit and len(items) > limit:
            items = items[:limit]
            last = {"rv": snapshot, "ns": items[-1][0], "name": items[-1][1]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
        body = {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": meta,
            "items": [
                {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for _, _, o in items
            ],
        }
        return web.json_response(body)

    def _backlog(self, resource: Resource, namespace: str | None, since: int) -> Iterator[str]:
        for event in self._history:
            if (
                event.rv > since
                and event.kind == resource.kind
                and (namespace is None or event.namespace == namespace)
            ):
                yield json.dumps({"type": event.type, "object": event.obj}) + "\n"

    async def _watch(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> web.StreamResponse:
        self.watch_requests += 1
        raw_rv = request.query.get("resourceVersion", "")
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true", "True")
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        if raw_rv not in ("", "0") and not raw_rv.isdigit():
            return _problem(400, "BadRequest", f"invalid resource version {raw_rv!r}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        stream = _Stream(resource.kind, namespace, transport=request.transport)
        # No await between computing the backlog and registering: nothing can slip between.
        if raw_rv in ("", "0"):
            lines = [
                json.dumps({"type": "ADDED", "object": obj}) + "\n"
                for (kind, ns, _), obj in sorted(self._objects.items())
                if kind == resource.kind and (namespace is None or ns == namespace)
            ]
        elif int(raw_rv) < self._floor:
            status = _status(410, "Expired", f"too old resource version: {raw_rv} ({self._floor})")
            await response.write((json.dumps({"type": "ERROR", "object": status}) + "\n").encode())
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        else:
            lines = list(self._backlog(resource, namespace, int(raw_rv)))
        for line in lines:
            stream.queue.put_nowait(line)
        self._streams.add(stream)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    item = await asyncio.wait_for(stream.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and not stream.stalled and loop.time() < deadline:
                        bookmark = {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": resource.kind,
                                "apiVersion": resource.api_version,
                                "metadata": {"resourceVersion": str(self._rv)},
                            },
                        }
                        await response.write((json.dumps(bookmark) + "\n").encode())
                    continue
                if item is None:
                    return response
                if stream.stalled:
                    continue
                await response.write(item.encode())
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(stream)
        return response

    async def _pod_log(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self._objects.get(("Pod", ns, name))
        if pod is None:
            return _problem(404, "NotFound", f'pods "{name}" not found')
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers", [])]
        container = request.query.get("container") or (containers[0] if containers else "")
        if container not in containers:
            return _problem(
                400,
                "BadRequest",
                f"container {container} is not valid for pod {name}",
            )
        text = self._logs.get((ns, name, container), "")
        tail = request.query.get("tailLines")
        if tail is not None and tail.isdigit():
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail) :]) if int(tail) else ""
        return web.Response(text=text, content_type="text/plain")

    async def _http_get(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        if resource is None:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        obj = self._objects.get(
            (resource.kind, request.match_info["ns"], request.match_info["name"])
        )
        if obj is None:
            return _problem(
                404, "NotFound", f'{resource.plural} "{request.match_info["name"]}" not found'
            )
        return web.json_response(obj)

    # ------------------------------------------------------------------ HTTP: writes (simulator)

    async def _body(self, request: web.Request, resource: Resource) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        body["kind"] = resource.kind
        meta = body.setdefault("metadata", {})
        meta["namespace"] = request.match_info["ns"]
        if "name" in request.match_info:
            meta["name"] = request.match_info["name"]
        return body

    async def _http_create(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        if resource is None:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        body = await self._body(request, resource)
        if self._key(body) in self._objects:
            return _problem(
                409,
                "AlreadyExists",
                f'{resource.plural} "{body["metadata"]["name"]}" already exists',
            )
        return web.json_response(self.create(body), status=201)

    async def _http_replace(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        if resource is None:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        body = await self._body(request, resource)
        return web.json_response(self.apply(body))

    async def _http_replace_status(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        if resource is None:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        body = await self._body(request, resource)
        try:
            obj = self.update_status(
                resource.kind,
                request.match_info["ns"],
                request.match_info["name"],
                body.get("status") or {},
            )
        except NotFound as exc:
            return _problem(404, "NotFound", str(exc))
        return web.json_response(obj)

    async def _http_delete(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        if resource is None:
            return _problem(404, "NotFound", f"the server could not find {request.path}")
        try:
            self.delete(resource.kind, request.match_info["ns"], request.match_info["name"])
        except NotFound as exc:
            return _problem(404, "NotFound", str(exc))
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})


def _problem(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status(code, reason, message), status=code)
