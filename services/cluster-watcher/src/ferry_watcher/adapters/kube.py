"""Read-only Kubernetes access through kubernetes_asyncio: list, watch and pod logs.

The generated API functions do the requests (configuration, authentication,
TLS, paths and query parameters are the client's). Their responses are read
raw (``_preload_content=False``) rather than through ``Watch.stream``, because
the watcher needs what ``Watch.stream`` hides: each event's plain JSON (so one
malformed object is skipped instead of ending the stream), a read deadline
(a silent watch is dead), and ``410 Gone`` handed to the caller at once.
The watcher never writes: it calls only list, watch and ``pods/log`` get.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from kubernetes_asyncio import client, config

from ferry_runtime import get_logger

log = get_logger(__name__)

LIST_TIMEOUT: Final = aiohttp.ClientTimeout(total=60, sock_connect=10)
WATCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=None, sock_connect=10)


class KubeError(Exception):
    """The API answered with an error status, or the connection failed."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Gone(KubeError):
    """``410 Gone``: the resourceVersion asked for is older than the API keeps. Re-list."""


class WatchSilent(KubeError):
    """Nothing (not even a bookmark) arrived within the inactivity timeout."""


@dataclass(frozen=True)
class WatchEvent:
    """One line of a watch stream, as sent: ``type`` and the raw ``object``.

    ``error`` is set instead when the line could not be read as a watch event.
    """

    type: str
    object: Any
    error: str = ""


async def connect(
    kubeconfig: Path | None, *, in_cluster: bool, context: str | None, page_size: int = 500
) -> KubeApi:
    """A client configured from the kubeconfig file, or from the pod's service account.

    Raises :class:`KubeError` saying what is wrong when neither can be read.
    """
    try:
        if in_cluster and kubeconfig is None:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            api = client.ApiClient(configuration)
            source = "in-cluster service account"
        else:
            api = await config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context
            )
            source = str(kubeconfig) if kubeconfig else "~/.kube/config"
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise KubeError(f"cannot read the Kubernetes configuration: {exc}") from exc
    log.info("kubernetes client configured", source=source, host=api.configuration.host)
    return KubeApi(api, page_size=page_size)


Lister = Callable[..., Awaitable[Any]]


class KubeApi:
    """List, watch and read pod logs, as plain JSON."""

    def __init__(self, api: client.ApiClient, *, page_size: int = 500) -> None:
        self._api = api
        self._page_size = page_size
        apps = client.AppsV1Api(api)
        batch = client.BatchV1Api(api)
        core = client.CoreV1Api(api)
        self._core = core
        self._all: dict[str, Lister] = {
            "Deployment": apps.list_deployment_for_all_namespaces,
            "StatefulSet": apps.list_stateful_set_for_all_namespaces,
            "DaemonSet": apps.list_daemon_set_for_all_namespaces,
            "Job": batch.list_job_for_all_namespaces,
            "Pod": core.list_pod_for_all_namespaces,
        }
        self._namespaced: dict[str, Lister] = {
            "Deployment": apps.list_namespaced_deployment,
            "StatefulSet": apps.list_namespaced_stateful_set,
            "DaemonSet": apps.list_namespaced_daemon_set,
            "Job": batch.list_namespaced_job,
            "Pod": core.list_namespaced_pod,
        }

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def close(self) -> None:
        await self._api.close()

    async def _call(self, kind: str, namespace: str | None, **kwargs: Any) -> Any:
        try:
            if namespace:
                return await self._namespaced[kind](namespace, _preload_content=False, **kwargs)
            return await self._all[kind](_preload_content=False, **kwargs)
        except client.ApiException as exc:
            raise KubeError(f"{kind} request failed: {exc.reason}", status=exc.status) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(f"{kind} request failed: {exc!r}") from exc

    @staticmethod
    async def _check(response: Any, what: str) -> None:
        if 200 <= response.status <= 299:
            return
        body = await response.text()
        response.release()
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body
        cls = Gone if response.status == 410 else KubeError
        raise cls(f"{what}: HTTP {response.status}: {message}", status=response.status)

    async def list(self, kind: str, namespace: str | None) -> tuple[list[Any], str]:
        """Every object of ``kind`` (in ``namespace``, or all), and the list's resourceVersion.

        Read in pages of ``page_size`` (``limit`` and ``continue``), as informers do, so a
        large cluster never answers with one huge response. A continue token that expired
        (410) raises :class:`Gone`: the caller lists again from the start.
        """
        items: list[Any] = []
        resource_version = ""
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"limit": self._page_size}
            if token:
                extra["_continue"] = token
            response = await self._call(kind, namespace, _request_timeout=LIST_TIMEOUT, **extra)
            await self._check(response, f"listing {kind}")
            try:
                body = await response.json(content_type=None)
            except (ValueError, aiohttp.ClientError) as exc:
                raise KubeError(f"listing {kind}: the answer is not JSON: {exc!r}") from exc
            finally:
                response.release()
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise KubeError(f"listing {kind}: the answer has no items list")
            meta = body.get("metadata") or {}
            items += body["items"]
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if not token:
                return items, resource_version

    async def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        inactivity_timeout: float,
    ) -> AsyncIterator[WatchEvent]:
        """The events after ``resource_version``, with bookmarks, until the server ends the
        stream. Raises :class:`Gone` on 410, :class:`WatchSilent` when nothing arrives for
        ``inactivity_timeout`` seconds, :class:`KubeError` on any other failure."""
        response = await self._call(
            kind,
            namespace,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            _request_timeout=WATCH_TIMEOUT,
        )
        await self._check(response, f"watching {kind}")
        buffer = b""
        try:
            while True:
                try:
                    chunk = await _read_within(response.content.readany(), inactivity_timeout)
                except TimeoutError as exc:
                    raise WatchSilent(
                        f"the {kind} watch was silent for {inactivity_timeout:g}s"
                    ) from exc
                except (aiohttp.ClientError, OSError) as exc:
                    raise KubeError(f"the {kind} watch broke: {exc!r}") from exc
                if not chunk:
                    return  # the server ended the stream (timeoutSeconds): resume
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = _parse_line(line)
                        if event.type == "ERROR" and isinstance(event.object, dict):
                            code = event.object.get("code")
                            message = f"{kind} watch: {event.object.get('message', '')}"
                            if code == 410:
                                raise Gone(message, status=410)
                            raise KubeError(message, status=int(code or 0))
                        yield event
        finally:
            response.release()

    async def pod_log(self, namespace: str, pod: str, container: str, tail_lines: int) -> str:
        """The last lines the container wrote; its previous instance's when it restarted."""
        for previous in (True, False):
            try:
                text = await self._core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    container=container,
                    tail_lines=tail_lines,
                    previous=previous,
                    _request_timeout=LIST_TIMEOUT,
                )
            except client.ApiException as exc:
                if previous and exc.status == 400:
                    continue  # no previous instance: read the current one
                raise KubeError(f"reading logs of {pod}/{container}: {exc.reason}") from exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise KubeError(f"reading logs of {pod}/{container}: {exc!r}") from exc
            if text or not previous:
                return str(text or "")
        return ""


async def _read_within(read: Awaitable[bytes], timeout: float) -> bytes:
    return await asyncio.wait_for(read, timeout)


def _parse_line(line: bytes) -> WatchEvent:
    try:
        data = json.loads(line)
    except ValueError:
        return WatchEvent("", None, error=f"not JSON: {line[:200]!r}")
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or "object" not in data:
        return WatchEvent("", None, error=f"not a watch event: {line[:200]!r}")
    return WatchEvent(data["type"], data["object"])
