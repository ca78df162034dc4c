"""A small client of promotion's HTTP API (docs/api.md), and its error mapping.

Every response that is not a success becomes a :class:`CliError` whose message
is the problem document's ``title`` and ``detail``, with the exit code a script
can rely on: 401/403 → AUTH, other 4xx → REFUSED, a server that cannot be
reached (or a gateway in front of it that says so: 502/503/504) → UNREACHABLE.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

# httpx's package __init__ imports its own command-line tool (httpx._main), which pulls in
# click, rich.progress and pygments: about 0.4 s of every API command's start-up. A None in
# sys.modules makes that import fail, and httpx then falls back to a stub ``main``.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx

from ferry_cli.config import ApiTarget
from ferry_cli.errors import CliError, ExitCode

Json = dict[str, Any]

_CREDENTIAL_HINT = (
    "pass --token, set FERRY_TOKEN, or put 'token: ...' in ~/.config/ferry/config.yaml "
    "(make run writes a development token to .ferry/dev-token)"
)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _problem_of(response: httpx.Response) -> Json | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _problem_details(problem: Json) -> list[str]:
    """One line per field error (422) or policy violation in a problem document."""
    details: list[str] = []
    for item in problem.get("errors") or []:
        if isinstance(item, dict):
            field = item.get("field") or item.get("loc") or "body"
            details.append(f"{field}: {item.get('message') or item.get('msg') or item}")
        else:
            details.append(str(item))
    for violation in problem.get("violations") or []:
        if isinstance(violation, dict):
            details.append(f"{violation.get('policy')}: {violation.get('message')}")
    return details


def problem_error(response: httpx.Response, target: ApiTarget) -> CliError:
    """The CliError for an error response, from its problem+json body when it has one."""
    status = response.status_code
    problem = _problem_of(response)
    title, detail = "", problem and problem.get("detail")
    if problem is not None:
        title = str(problem.get("title") or response.reason_phrase or "error")
        detail = problem.get("detail")
        message = f"{title}: {detail}" if detail else title
    else:
        text = response.text.strip()
        message = f"{status} {response.reason_phrase}" + (f": {text[:300]}" if text else "")
    hint: str | None = None
    if status == 401:
        code = ExitCode.AUTH
        hint = (
            _CREDENTIAL_HINT
            if target.token is None
            else f"the token from {target.token_source} was not accepted by {target.server}"
        )
    elif status == 403:
        code = ExitCode.AUTH
    elif status in (502, 503, 504):
        code = ExitCode.UNREACHABLE
        hint = f"the API at {target.server} is not available; try again, or check that it runs"
    else:
        code = ExitCode.REFUSED
    details = _problem_details(problem or {})
    if len(details) == 1 and details[0] in message:
        # a detail that already says what the one field error says is not repeated below it
        details = []
    elif details and isinstance(detail, str) and all(line in detail for line in details):
        # the detail is the field errors joined into one line: print them one per line
        message = title
    return CliError(message, code, details=details, hint=hint, payload=problem)


class ApiClient:
    """Calls promotion's API with the bearer token; returns JSON documents."""

    def __init__(
        self,
        target: ApiTarget,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.target = target
        headers = {"Accept": "application/json", "User-Agent": "ferry-cli"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self._http = httpx.Client(
            base_url=target.server,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Json | None = None,
        params: dict[str, str | int] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        not_found_ok: bool = False,
    ) -> Json | None:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            response = self._http.request(
                method, path, json=json, params=params, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise CliError(
                f"the Ferry API at {self.target.server} did not answer in time ({exc!r})",
                ExitCode.UNREACHABLE,
                hint="is promotion running and reachable? (make run starts it locally)",
            ) from exc
        except httpx.TransportError as exc:
            raise CliError(
                f"could not reach the Ferry API at {self.target.server}: {exc}",
                ExitCode.UNREACHABLE,
                hint="start promotion (make run), or point --server / FERRY_SERVER at it",
            ) from exc
        if not_found_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise problem_error(response, self.target)
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise CliError(
                f"{method} {path} answered {response.status_code} with a body that is not JSON",
                ExitCode.REFUSED,
                hint=f"is {self.target.server} really the Ferry API?",
            ) from exc
        if not isinstance(body, dict):
            raise CliError(f"{method} {path} answered with JSON that is not an object")
        return body

    def _document(self, method: str, path: str, **options: Any) -> Json:
        """``request`` for a route that always answers with a document (a 404 is an error)."""
        body = self.request(method, path, **options)
        assert body is not None
        return body

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> Json:
        return self._document("GET", path, params=params)

    # ------------------------------------------------------------------ releases

    def create_release(
        self,
        *,
        service: str,
        environment: str,
        intent: str,
        artifact_id: str | None = None,
        branch: str | None = None,
        from_environment: str | None = None,
        reason: str = "",
        override_freeze: bool = False,
        at: str | None = None,
    ) -> Json:
        body: Json = {
            "service": service,
            "environment": environment,
            "intent": intent,
            "artifactId": artifact_id,
            "branch": branch,
            "fromEnvironment": from_environment,
            "reason": reason,
            "overrideFreeze": override_freeze,
        }
        if at is not None:
            body["at"] = at
        return self._document("POST", "/v1/releases", json=body)

    def preview(
        self,
        *,
        service: str,
        environment: str,
        artifact_id: str | None = None,
        branch: str | None = None,
        intent: str | None = None,
        from_environment: str | None = None,
    ) -> Json:
        """``GET /v1/releases/preview``: what the request would change, and its verdicts."""
        params: dict[str, str | int] = {"service": service, "environment": environment}
        for key, value in (
            ("artifactId", artifact_id),
            ("branch", branch),
            ("intent", intent),
            ("fromEnvironment", from_environment),
        ):
            if value is not None:
                params[key] = value
        return self._get("/v1/releases/preview", params)

    def release(self, release_id: str) -> Json:
        return self._get(f"/v1/releases/{_segment(release_id)}")

    def approve(self, release_id: str, comment: str) -> Json:
        return self._document(
            "POST", f"/v1/releases/{_segment(release_id)}/approve", json={"comment": comment}
        )

    def reject(self, release_id: str, reason: str) -> Json:
        return self._document(
            "POST", f"/v1/releases/{_segment(release_id)}/reject", json={"reason": reason}
        )

    def cancel(self, release_id: str, reason: str) -> Json:
        return self._document(
            "POST", f"/v1/releases/{_segment(release_id)}/cancel", json={"reason": reason}
        )

    # ------------------------------------------------------------------ services

    def services(self) -> Json:
        return self._get("/v1/services")

    def service(self, service: str) -> Json:
        return self._get(f"/v1/services/{_segment(service)}")

    def history(self, service: str, *, environment: str | None, limit: int) -> Json:
        params: dict[str, str | int] = {"limit": limit}
        if environment:
            params["environment"] = environment
        return self._get(f"/v1/services/{_segment(service)}/history", params)

    def artifacts(self, service: str, *, branch: str | None, limit: int) -> Json:
        params: dict[str, str | int] = {"limit": limit}
        if branch:
            params["branch"] = branch
        return self._get(f"/v1/services/{_segment(service)}/artifacts", params)

    # ------------------------------------------------------------------ insights

    def dora(self, params: dict[str, str | int]) -> Json:
        """``GET /v1/insights/dora`` of the insights service (docs/insights.md)."""
        return self._get("/v1/insights/dora", params)

    # ------------------------------------------------------------------ policies

    def policy(self, service: str) -> Json | None:
        """The policy document of ``service``, or None when it has none (404)."""
        return self.request("GET", f"/v1/policies/{_segment(service)}", not_found_ok=True)

    def put_policy(self, service: str, document: bytes, content_type: str) -> Json:
        return self._document(
            "PUT", f"/v1/policies/{_segment(service)}", content=document, content_type=content_type
        )

    def delete_policy(self, service: str) -> Json:
        return self._document("DELETE", f"/v1/policies/{_segment(service)}")

    # ------------------------------------------------------------------ halts and marks

    def halts(self) -> Json:
        return self._get("/v1/halts")

    def halt(self, environment: str, reason: str) -> Json:
        body: Json = {"environment": environment, "reason": reason}
        return self._document("POST", "/v1/halts", json=body)

    def resume(self, environment: str) -> Json:
        return self._document("DELETE", f"/v1/halts/{_segment(environment)}")

    def reject_artifact(self, service: str, artifact_id: str, reason: str) -> Json:
        path = f"/v1/services/{_segment(service)}/artifacts/{_segment(artifact_id)}/reject"
        return self._document("POST", path, json={"reason": reason})

    def unreject_artifact(self, service: str, artifact_id: str) -> Json:
        path = f"/v1/services/{_segment(service)}/artifacts/{_segment(artifact_id)}/reject"
        return self._document("DELETE", path)
