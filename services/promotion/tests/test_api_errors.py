"""401, 403, 404, 409 and 422 as problem+json with specific details."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.amqp

RELEASE = {"service": "payments", "environment": "dev", "intent": "release", "artifactId": "m-1"}


async def test_unauthorized_without_or_with_unknown_token(h) -> None:
    missing = await h.client.post("/v1/releases", json=RELEASE)
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in missing.json()["detail"]
    unknown = await h.client.get("/v1/services", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert unknown.json()["title"] == "Unauthorized"


async def test_forbidden_by_role(h) -> None:
    prod = await h.client.post(
        "/v1/releases", json={**RELEASE, "environment": "prod"}, headers=h.h("alice")
    )
    assert prod.status_code == 403
    body = prod.json()
    assert body["type"] == "https://ferry.dev/problems/forbidden"
    assert "releaser:prod or admin" in body["detail"]
    assert "alice has developer" in body["detail"]
    viewer = await h.client.post("/v1/releases", json=RELEASE, headers=h.h("vic"))
    assert viewer.status_code == 403
    allowed = await h.client.post(
        "/v1/releases", json={**RELEASE, "environment": "prod"}, headers=h.h("bob")
    )
    assert allowed.status_code == 202
    assert allowed.headers["location"].endswith(allowed.json()["releaseId"])


INVALID = [
    ({**RELEASE, "environment": "qa"}, "environment"),
    ({**RELEASE, "environment": "Not A Name"}, "environment"),
    ({**RELEASE, "intent": "deploy"}, "intent"),
    ({**RELEASE, "intent": "auto-release"}, "intent"),
    ({k: v for k, v in RELEASE.items() if k != "service"}, "service"),
    ({**RELEASE, "branch": "master"}, "artifactId"),
    ({**RELEASE, "artifactId": None}, "artifactId"),
    ({**RELEASE, "artifactId": "../etc"}, "artifactId"),
    ({**RELEASE, "intent": "promote", "artifactId": None, "branch": "x"}, "branch"),
    (
        {**RELEASE, "intent": "promote", "artifactId": None, "fromEnvironment": "dev"},
        "fromEnvironment",
    ),
    ({**RELEASE, "intent": "rollback", "artifactId": None, "branch": "x"}, "branch"),
    ({**RELEASE, "reason": "x" * 3000}, "reason"),
]


async def test_invalid_bodies_name_the_field(h) -> None:
    for body, field in INVALID:
        response = await h.client.post("/v1/releases", json=body, headers=h.h("alice"))
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["status"] == 422
        assert field in [e["field"] for e in problem["errors"]], problem


async def test_malformed_json_and_bad_query(h) -> None:
    response = await h.client.post(
        "/v1/releases",
        content=b"{nope",
        headers={**h.h("alice"), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"]
    bad_limit = await h.client.get("/v1/services/payments/history?limit=0", headers=h.h("vic"))
    assert bad_limit.status_code == 422
    assert bad_limit.json()["errors"][0]["field"] == "limit"


async def test_not_found_and_conflict(h) -> None:
    missing = await h.client.get("/v1/releases/nope", headers=h.h("vic"))
    assert missing.status_code == 404
    assert "no release nope" in missing.json()["detail"]
    no_route = await h.client.get("/v1/nothing", headers=h.h("vic"))
    assert no_route.status_code == 404
    assert no_route.headers["content-type"].startswith("application/problem+json")
    wrong_method = await h.client.delete("/v1/services", headers=h.h("vic"))
    assert wrong_method.status_code == 405
    h.config.store("payments", "m-1")
    release_id = await h.request("alice", **RELEASE)
    await h.wait_status(release_id, "approved")
    conflict = await h.client.post(f"/v1/releases/{release_id}/approve", headers=h.h("carol"))
    assert conflict.status_code == 409
    assert "is not awaiting approval: it is approved" in conflict.json()["detail"]
    assert (await h.client.get("/v1/services/nope", headers=h.h("vic"))).status_code == 404


async def test_openapi_and_operational_routes(h) -> None:
    document = (await h.client.get("/openapi.json")).json()
    assert "/v1/releases" in document["paths"]
    assert (await h.client.get("/healthz")).status_code == 200
    ready = await h.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"broker": True, "database": True, "config-repo": True}
    assert (await h.client.get("/metrics")).status_code == 200
