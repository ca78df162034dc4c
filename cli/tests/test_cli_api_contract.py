"""The API commands against a loopback server that answers as docs/api.md says:
the requests they send, what they print, and the exit codes scripts rely on."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ferry_cli.app import app

runner = CliRunner()


def ferry(*args: str) -> Any:
    return runner.invoke(app, list(args))


def problem(status: int, title: str, detail: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """An error reply: the status and its problem+json document."""
    return status, {"title": title, "status": status, "detail": detail, **extra}


def release_doc(status: str = "committed", **extra: Any) -> dict[str, Any]:
    return {
        "releaseId": "rel-1",
        "service": "payments",
        "environment": "staging",
        "intent": "promote",
        "artifactId": "master-0017d995e3-67e9d69164",
        "status": status,
        "actor": {"subject": "jane", "email": "jane@example.com"},
        "reason": "ship it",
        "requestedAt": "2026-11-28T10:00:00Z",
        "updatedAt": "2026-11-28T10:00:05Z",
        "commitSha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "violations": [],
        "approvals": {"required": 0, "granted": [], "expiresAt": None},
        "timeline": [
            {
                "at": "2026-11-28T10:00:00Z",
                "status": "requested",
                "eventType": "ferry.release.requested.v1",
                "detail": "requested by jane",
            }
        ],
        **extra,
    }


def history_entry(artifact: str, at: str, **extra: Any) -> dict[str, Any]:
    """One entry of GET /v1/services/payments/history."""
    return {
        "environment": "prod",
        "artifactId": artifact,
        "intent": "release",
        "actor": "jane",
        "commitSha": "abc",
        "releaseId": f"rel-{artifact}",
        "at": at,
        "promotedFrom": None,
        **extra,
    }


def history_reply(*entries: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"service": "payments", "history": list(entries)}


SERVICES = {
    "environments": ["dev", "staging", "prod"],
    "services": [
        {
            "service": "payments",
            "environments": {
                "dev": {
                    "artifactId": "master-0017d995e3-67e9d69164",
                    "commitSha": "4b825dc642",
                    "releasedAt": "2026-11-28T10:00:00Z",
                    "releasedBy": "jane@example.com",
                    "rollout": "succeeded",
                    "rolloutReason": None,
                },
                "prod": {
                    "artifactId": "master-aaaaaaaaaa-bbbbbbbbbb",
                    "commitSha": "5c825dc642",
                    "releasedAt": "2026-11-27T10:00:00Z",
                    "releasedBy": "bob@example.com",
                    "rollout": "failed",
                    "rolloutReason": "ImagePullBackOff",
                },
            },
        }
    ],
}


def test_release_sends_the_contract_body_with_the_bearer_token(fake_api) -> None:
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-1", "status": "requested"}))
    result = ferry(
        "release",
        "payments",
        "--artifact",
        "master-1",
        "--to",
        "dev",
        "--reason",
        "hotfix",
        "--server",
        fake_api.url,
        "--token",
        "t0ken",
        "--no-wait",
    )
    assert result.exit_code == 0, result.output
    [request] = fake_api.requests
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.json() == {
        "service": "payments",
        "environment": "dev",
        "intent": "release",
        "artifactId": "master-1",
        "branch": None,
        "fromEnvironment": None,
        "reason": "hotfix",
        "overrideFreeze": False,
    }
    assert "rel-1" in result.stdout
    assert "ferry watch rel-1" in result.stdout


def test_promote_and_rollback_bodies(fake_api) -> None:
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-2", "status": "requested"}))
    promoted = ferry(
        "promote",
        "payments",
        "--to",
        "prod",
        "--from",
        "staging",
        "--server",
        fake_api.url,
        "-o",
        "json",
        "--no-wait",
    )
    rolled = ferry("rollback", "payments", "--in", "prod", "--server", fake_api.url, "--no-wait")
    named = ferry(
        "rollback",
        "payments",
        "--in",
        "prod",
        "--to",
        "master-old",
        "--server",
        fake_api.url,
        "--no-wait",
    )
    assert (promoted.exit_code, rolled.exit_code, named.exit_code) == (0, 0, 0)
    assert json.loads(promoted.stdout) == {"releaseId": "rel-2", "status": "requested"}
    bodies = [r.json() for r in fake_api.requests]
    assert bodies[0]["intent"] == "promote"
    assert bodies[0]["fromEnvironment"] == "staging"
    assert bodies[0]["environment"] == "prod"
    # not a terminal: no picker, the server rolls back to the previous release
    assert bodies[1]["intent"] == "rollback"
    assert bodies[1]["artifactId"] is None
    assert bodies[2]["artifactId"] == "master-old"


def test_release_needs_exactly_one_of_artifact_or_branch(fake_api) -> None:
    both = ferry(
        "release",
        "payments",
        "--artifact",
        "a",
        "--branch",
        "b",
        "--to",
        "dev",
        "--server",
        fake_api.url,
    )
    neither = ferry("release", "payments", "--to", "dev", "--server", fake_api.url)
    missing_to = ferry("release", "payments", "--artifact", "a", "--server", fake_api.url)
    assert (both.exit_code, neither.exit_code, missing_to.exit_code) == (2, 2, 2)
    assert "exactly one of --artifact" in both.stderr
    assert fake_api.requests == []


def test_forbidden_problem_is_shown_with_exit_code_4(fake_api) -> None:
    problem = {
        "type": "https://ferry.dev/problems/forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "releasing to prod needs the role releaser:prod or admin; jane has developer",
        "instance": "/v1/releases",
    }
    fake_api.on("POST", "/v1/releases", (403, problem))
    result = ferry("release", "payments", "-b", "master", "--to", "prod", "--server", fake_api.url)
    assert result.exit_code == 4
    assert "Forbidden: releasing to prod needs the role releaser:prod" in result.stderr
    assert "Traceback" not in result.output
    as_json = ferry(
        "release",
        "payments",
        "-b",
        "master",
        "--to",
        "prod",
        "--server",
        fake_api.url,
        "--output",
        "json",
    )
    assert as_json.exit_code == 4
    error = json.loads(as_json.stderr)
    assert error["exitCode"] == 4
    assert error["problem"] == problem
    assert as_json.stdout == ""


def test_missing_token_is_401_with_a_hint(fake_api) -> None:
    fake_api.on("GET", "/v1/services", problem(401, "Unauthorized", "no bearer token"))
    result = ferry("status", "--server", fake_api.url)
    assert result.exit_code == 4
    assert "authorization" not in fake_api.requests[0].headers
    assert "Unauthorized: no bearer token" in result.stderr
    assert "FERRY_TOKEN" in result.stderr


def test_validation_problem_lists_each_field_and_exits_1(fake_api) -> None:
    invalid = problem(
        422,
        "Invalid request",
        "the body has 1 error",
        errors=[{"field": "environment", "message": "unknown environment 'qa'"}],
    )
    fake_api.on("POST", "/v1/releases", invalid)
    result = ferry("promote", "payments", "--to", "qa", "--server", fake_api.url)
    assert result.exit_code == 1
    assert "environment: unknown environment 'qa'" in result.stderr


def test_approve_conflict_and_reject(fake_api) -> None:
    fake_api.on(
        "POST",
        "/v1/releases/rel-1/approve",
        problem(409, "Not awaiting approval", "release rel-1 was already rejected by bob"),
    )
    fake_api.on("POST", "/v1/releases/rel-1/reject", lambda r: (200, release_doc("rejected")))
    approved = ferry("approve", "rel-1", "--comment", "lgtm", "--server", fake_api.url)
    rejected = ferry("reject", "rel-1", "--reason", "not now", "--server", fake_api.url)
    assert approved.exit_code == 1
    assert "already rejected by bob" in approved.stderr
    assert rejected.exit_code == 0
    assert "now rejected" in rejected.stdout
    assert fake_api.requests[0].json() == {"comment": "lgtm"}
    assert fake_api.requests[1].json() == {"reason": "not now"}


def test_unreachable_server_exits_3(closed_port: int) -> None:
    result = ferry("status", "--server", f"http://127.0.0.1:{closed_port}")
    assert result.exit_code == 3
    assert "could not reach the Ferry API" in result.stderr


def test_server_error_without_json_is_a_message_not_a_traceback(fake_api) -> None:
    fake_api.on("GET", "/v1/services/payments", (500, b"Internal Server Error"))
    result = ferry("describe", "payments", "--server", fake_api.url)
    assert result.exit_code == 1
    assert "500 Internal Server Error" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_status_table_and_json(fake_api) -> None:
    fake_api.on("GET", "/v1/services", (200, SERVICES))
    table = ferry("status", "--server", fake_api.url)
    as_json = ferry("--output", "json", "status", "--server", fake_api.url)
    assert table.exit_code == 0
    for text in (
        "payments",
        "dev",
        "staging",
        "prod",
        "master-0017d995e3-67e9d69164",
        "succeeded",
        "failed",
        "ImagePullBackOff",
    ):
        assert text in table.stdout
    assert json.loads(as_json.stdout) == SERVICES


def test_history_and_artifacts_pass_their_filters(fake_api) -> None:
    promoted = history_entry(
        "master-2",
        "2026-11-28T10:00:00Z",
        intent="promote",
        releaseId="rel-9",
        promotedFrom="staging",
    )
    fake_api.on("GET", "/v1/services/payments/history", history_reply(promoted))
    fake_api.on(
        "GET",
        "/v1/services/payments/artifacts",
        (
            200,
            {
                "service": "payments",
                "artifacts": [
                    {
                        "artifactId": "master-2",
                        "branch": "master",
                        "sha": "0017d995e3ac",
                        "author": "jane@example.com",
                        "message": "Retry on 503\n\nbody",
                        "storedAt": "2026-11-28T09:00:00Z",
                        "environments": ["dev", "staging"],
                    }
                ],
            },
        ),
    )
    history = ferry(
        "history", "payments", "--env", "prod", "--limit", "5", "--server", fake_api.url
    )
    artifacts = ferry("artifacts", "payments", "--branch", "master", "--server", fake_api.url)
    assert (history.exit_code, artifacts.exit_code) == (0, 0)
    assert fake_api.requests[0].query == {"environment": ["prod"], "limit": ["5"]}
    assert fake_api.requests[1].query == {"branch": ["master"], "limit": ["50"]}
    assert "rel-9" in history.stdout
    assert "staging" in history.stdout
    assert "Retry on 503" in artifacts.stdout


def test_get_shows_the_timeline(fake_api) -> None:
    doc = release_doc(
        "awaiting-approval",
        approvals={
            "required": 2,
            "granted": [{"subject": "bob", "email": "bob@example.com", "at": "x"}],
            "expiresAt": "2026-11-29T10:00:00Z",
        },
    )
    fake_api.on("GET", "/v1/releases/rel-1", (200, doc))
    result = ferry("get", "rel-1", "--server", fake_api.url)
    assert result.exit_code == 0
    assert "ferry.release.requested.v1" in result.stdout
    assert "approvals: 1/2 (bob@example.com)" in result.stdout


def test_watch_follows_until_rolled_out(fake_api) -> None:
    statuses = iter(["requested", "approved", "committed", "rolled-out"])

    def next_state(_: Any) -> tuple[int, Any]:
        status = next(statuses)
        doc = release_doc(status)
        doc["timeline"] = [
            {"at": f"t{i}", "status": s, "eventType": f"e.{s}", "detail": None}
            for i, s in enumerate(["requested", "approved", "committed", "rolled-out"])
            if i <= ["requested", "approved", "committed", "rolled-out"].index(status)
        ]
        return 200, doc

    fake_api.on("GET", "/v1/releases/rel-1", next_state)
    result = ferry("watch", "rel-1", "--interval", "0.1", "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    assert len(fake_api.requests) == 4
    for status in ("requested", "approved", "committed", "rolled-out"):
        assert f"e.{status}" in result.stdout


def test_watch_exits_1_on_rejection_with_its_violations(fake_api) -> None:
    doc = release_doc(
        "rejected",
        violations=[
            {"policy": "freeze-window", "message": "prod is frozen until 2026-12-01T08:00Z"}
        ],
    )
    fake_api.on("GET", "/v1/releases/rel-1", (200, doc))
    result = ferry("watch", "rel-1", "--server", fake_api.url, "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "rejected"
    assert "freeze-window: prod is frozen" in result.stderr


def test_watch_links_the_release_page_of_the_dashboard(fake_api, monkeypatch) -> None:
    fake_api.on("GET", "/v1/releases/rel-1", (200, release_doc("rolled-out")))
    plain = ferry("watch", "rel-1", "--server", fake_api.url)
    assert plain.exit_code == 0, plain.output
    assert "dashboard" not in plain.stdout  # no FERRY_DASHBOARD_URL, no link

    monkeypatch.setenv("FERRY_DASHBOARD_URL", "https://ferry.example.com/")
    table = ferry("watch", "rel-1", "--server", fake_api.url)
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0] == "dashboard: https://ferry.example.com/releases/rel-1"
    as_json = ferry("watch", "rel-1", "--server", fake_api.url, "-o", "json")
    assert json.loads(as_json.stdout)["dashboardUrl"] == "https://ferry.example.com/releases/rel-1"

    monkeypatch.setenv("FERRY_DASHBOARD_URL", "ferry.example.com")
    bad = ferry("watch", "rel-1", "--server", fake_api.url)
    assert bad.exit_code == 2
    assert "is not an http:// or https:// URL" in bad.stderr


def test_watch_until_committed_and_timeout(fake_api) -> None:
    fake_api.on("GET", "/v1/releases/rel-1", (200, release_doc("committed")))
    committed = ferry("watch", "rel-1", "--until", "committed", "--server", fake_api.url)
    stuck = ferry(
        "watch", "rel-1", "--timeout", "0.3", "--interval", "0.1", "--server", fake_api.url
    )
    assert committed.exit_code == 0
    assert stuck.exit_code == 1
    assert "still committed after 0.3 s" in stuck.stderr


def test_token_from_config_file_then_dev_token(fake_api, tmp_path: Path, monkeypatch) -> None:
    fake_api.on("GET", "/v1/services", (200, SERVICES))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".ferry").mkdir()
    (tmp_path / ".ferry" / "dev-token").write_text("dev-secret\n")
    assert ferry("status", "--server", fake_api.url).exit_code == 0
    assert fake_api.requests[-1].headers["authorization"] == "Bearer dev-secret"
    # make run with FERRY_DATA_DIR wrote its token there
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "dev-token").write_text("other-secret\n")
    monkeypatch.setenv("FERRY_DATA_DIR", str(tmp_path / "elsewhere"))
    assert ferry("status", "--server", fake_api.url).exit_code == 0
    assert fake_api.requests[-1].headers["authorization"] == "Bearer other-secret"

    config = tmp_path / "config.yaml"
    config.write_text(f"server: {fake_api.url}\ntoken: from-config\n")
    monkeypatch.setenv("FERRY_CONFIG", str(config))
    assert ferry("status").exit_code == 0
    assert fake_api.requests[-1].headers["authorization"] == "Bearer from-config"

    monkeypatch.setenv("FERRY_TOKEN", "from-env")
    assert ferry("status").exit_code == 0
    assert fake_api.requests[-1].headers["authorization"] == "Bearer from-env"


def test_dev_token_is_never_sent_to_a_remote_server(tmp_path: Path, monkeypatch) -> None:
    from ferry_cli.config import resolve_api

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".ferry").mkdir()
    (tmp_path / ".ferry" / "dev-token").write_text("dev-secret")
    assert resolve_api("http://127.0.0.1:8080", None).token == "dev-secret"
    assert resolve_api("https://ferry.example.com", None).token is None


def test_policy_apply_sends_the_yaml_file(fake_api, tmp_path: Path) -> None:
    policy = tmp_path / "payments.yaml"
    text = "autoRelease:\n  - branch: master\n    environment: dev\n"
    policy.write_text(text)
    fake_api.on("PUT", "/v1/policies/payments", (202, {"requestId": "p-1", "status": "requested"}))
    result = ferry("policy", "apply", str(policy), "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    [request] = fake_api.requests
    assert request.json() == {"autoRelease": [{"branch": "master", "environment": "dev"}]}
    assert request.headers["content-type"] == "application/json"
    assert "p-1" in result.stdout

    broken = tmp_path / "broken.yaml"
    broken.write_text("autoRelease: [\n")
    assert ferry("policy", "apply", str(broken), "--server", fake_api.url).exit_code == 2
    assert (
        ferry("policy", "apply", str(tmp_path / "nope.yaml"), "--server", fake_api.url).exit_code
        == 2
    )


def test_policy_list_of_every_service_and_delete(fake_api) -> None:
    fake_api.on("GET", "/v1/services", (200, SERVICES))
    fake_api.on("GET", "/v1/policies/payments", (200, {"autoRelease": [{"branch": "master"}]}))
    fake_api.on(
        "DELETE", "/v1/policies/payments", (202, {"requestId": "p-2", "status": "requested"})
    )
    listed = ferry("policy", "list", "--server", fake_api.url, "-o", "json")
    deleted = ferry("policy", "delete", "payments", "--server", fake_api.url)
    assert listed.exit_code == 0
    assert json.loads(listed.stdout) == {
        "policies": {"payments": {"autoRelease": [{"branch": "master"}]}}
    }
    assert deleted.exit_code == 0
    assert fake_api.requests[-1].method == "DELETE"


def test_token_hash_prints_a_tokens_entry() -> None:
    result = ferry("token", "hash", "test", "--subject", "jane", "--role", "releaser:prod")
    digest = hashlib.sha256(b"test").hexdigest()
    assert result.exit_code == 0
    assert f"sha256: {digest}" in result.stdout
    assert "subject: jane" in result.stdout
    assert '"releaser:prod"' in result.stdout
    from_stdin = runner.invoke(app, ["token", "hash", "-", "-o", "json"], input="test\n")
    assert json.loads(from_stdin.stdout)["sha256"] == digest


def test_rollback_picker_offers_earlier_releases(fake_api) -> None:
    fake_api.on(
        "GET",
        "/v1/services/payments/history",
        history_reply(
            history_entry("master-3", "t3"),
            history_entry("master-2", "t2"),
            history_entry("master-3", "t1b"),
            history_entry("master-1", "t1"),
        ),
    )
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-4", "status": "requested"}))
    back = release_doc("approved", releaseId="rel-4", artifactId="master-1", environment="prod")
    fake_api.on("GET", "/v1/releases/rel-4", (200, back))
    result = runner.invoke(
        app,
        ["rollback", "payments", "--in", "prod", "--pick", "--server", fake_api.url],
        input="2\n",
    )
    assert result.exit_code == 0, result.output
    assert fake_api.requests[0].query == {"environment": ["prod"], "limit": ["20"]}
    # the one running now (master-3) is not offered; each earlier artifact once, newest first
    assert "master-2" in result.stdout
    assert result.stdout.index("master-2") < result.stdout.index("master-1")
    assert "release rel-4 (master-1 to prod) is approved" in result.stdout
    assert fake_api.requests[1].json()["artifactId"] == "master-1"


def test_every_view_a_command_names_exists() -> None:
    from typing import get_args

    from ferry_cli import render
    from ferry_cli.common import View

    assert [v for v in get_args(View) if not callable(getattr(render, v, None))] == []


def test_policy_apply_sends_unquoted_timestamps_as_iso_strings(fake_api, tmp_path: Path) -> None:
    policy = tmp_path / "payments.yaml"
    # as docs/policies.md writes a freeze window: YAML reads these as datetime and date
    policy.write_text(
        "freezeWindows:\n"
        "  - environment: prod\n"
        "    timezone: Europe/Copenhagen\n"
        "    start: 2026-11-01T00:00:00\n"
        "    end: 2026-11-02T08:30:00Z\n"
        "    until: 2026-12-24\n"
    )
    fake_api.on("PUT", "/v1/policies/payments", (202, {"requestId": "p-1", "status": "requested"}))
    result = ferry("policy", "apply", str(policy), "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    [request] = fake_api.requests
    [window] = request.json()["freezeWindows"]
    assert window["start"] == "2026-11-01T00:00:00"  # naive stays naive
    assert window["end"] == "2026-11-02T08:30:00+00:00"
    assert window["until"] == "2026-12-24"


def test_policy_apply_input_problems_are_messages_with_exit_2(fake_api, tmp_path: Path) -> None:
    def apply(name: str, text: str | None) -> Any:
        path = tmp_path / name
        if text is None:
            path.mkdir()
        else:
            path.write_text(text)
        return ferry("policy", "apply", str(path), "--server", fake_api.url)

    empty = apply("empty.yaml", "")
    assert empty.exit_code == 2
    assert (
        f"{tmp_path / 'empty.yaml'} is empty; a policy is a YAML mapping, see docs/policies.md"
        in (" ".join(empty.stderr.split()))
    )
    broken = apply("broken.yaml", "autoRelease:\n  - branch: [\n")
    assert broken.exit_code == 2
    assert str(tmp_path / "broken.yaml") in broken.stderr.replace("\n", "")
    assert "<byte string>" not in broken.stderr
    for name, text in (
        ("list.yaml", "- a\n- b\n"),
        ("binary.yaml", "blob: !!binary aGVsbG8=\n"),
        ("nan.yaml", "limit: .nan\n"),
        ("set.yaml", "s: !!set {a, b}\n"),
        ("python.yaml", "x: !!python/object:os.system ls\n"),
        ("dir.yaml", None),
    ):
        result = apply(name, text)
        assert result.exit_code == 2, (name, result.output)
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), name
    assert fake_api.requests == []


def test_help_and_usage_errors_name_values_as_the_docs_do() -> None:
    history = ferry("history", "--help")
    assert history.exit_code == 0
    assert "Usage: ferry history [OPTIONS] SERVICE" in history.stdout
    assert "--env ENV" in history.stdout
    assert "--limit N" in history.stdout
    promote = ferry("promote", "--help").stdout
    assert "--to ENV" in promote
    assert "--from ENV" in promote
    assert "--artifact ID" in promote
    for text in (history.stdout, promote, ferry("--help").stdout):
        assert "<str>" not in text
        assert "{" not in text
    missing = ferry("watch")
    assert missing.exit_code == 2
    assert "Usage: ferry watch [OPTIONS] RELEASE_ID" in missing.output
    assert "Missing argument 'RELEASE_ID'" in missing.output


def test_artifacts_column_says_it_lists_manifests(fake_api) -> None:
    artifact = {
        "artifactId": "master-2",
        "branch": "master",
        "sha": "0017d995e3ac",
        "author": "jane@example.com",
        "message": "Retry on 503",
        "storedAt": "2026-11-28T09:00:00Z",
        "environments": ["dev", "staging"],
    }
    fake_api.on(
        "GET",
        "/v1/services/payments/artifacts",
        (200, {"service": "payments", "artifacts": [artifact]}),
    )
    result = ferry("artifacts", "payments", "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    assert "manifests for" in result.stdout
    assert "released to" not in result.stdout


def test_each_field_error_is_its_own_line(fake_api) -> None:
    errors = [
        {"field": "freezeWindows[0].start", "message": "not a date-time"},
        {"field": "approvals[0].required", "message": "must be between 1 and 10"},
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    fake_api.on(
        "GET", "/v1/services/payments", problem(422, "Invalid policy", detail, errors=errors)
    )
    result = ferry("describe", "payments", "--server", fake_api.url)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert "  - freezeWindows[0].start: not a date-time" in lines
    assert "  - approvals[0].required: must be between 1 and 10" in lines
    assert "; " not in result.stderr


def test_piped_history_keeps_ids_whole(fake_api, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    long_id = "0193a4c2-7f1e-7b3c-9d2e-5f6a7b8c9d0e-" + "x" * 40
    entry = history_entry(
        "feature-a-rather-long-branch-name-0017d995e3-67e9d69164",
        "2026-11-28T10:00:00.123456+00:00",
        releaseId=long_id,
        environment="production-eu-west-1",
        promotedFrom="staging-eu-west-1",
        actor="jane.doe@example.com",
    )
    fake_api.on("GET", "/v1/services/payments/history", history_reply(entry))
    result = ferry("history", "payments", "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    assert long_id in result.stdout
    assert "2026-11-28T10:00:00.123456+00:00" in result.stdout
    assert "…" not in result.stdout


def test_policy_list_of_one_service_prints_the_api_document(fake_api) -> None:
    document = {"autoRelease": [{"branch": "master", "environment": "dev"}]}
    fake_api.on("GET", "/v1/policies/payments", (200, document))
    result = ferry("policy", "list", "payments", "--server", fake_api.url, "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == document


def test_watch_stops_when_a_later_release_superseded_it(fake_api) -> None:
    fake_api.on("GET", "/v1/releases/rel-1", (200, release_doc("committed", supersededBy="rel-2")))
    result = ferry("watch", "rel-1", "--interval", "0.1", "--server", fake_api.url)
    assert result.exit_code == 1
    assert "release rel-1 was superseded by release rel-2 before it rolled out" in " ".join(
        result.stderr.split()
    )
    assert len(fake_api.requests) == 1
    # still not superseded (null): watch keeps waiting, as before
    fake_api.on("GET", "/v1/releases/rel-3", (200, release_doc("committed", supersededBy=None)))
    waiting = ferry(
        "watch", "rel-3", "--timeout", "0.3", "--interval", "0.1", "--server", fake_api.url
    )
    assert waiting.exit_code == 1
    assert "still committed after 0.3 s" in waiting.stderr


def test_release_waits_for_the_decision_and_exits_1_when_it_is_rejected(fake_api) -> None:
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-1", "status": "requested"}))
    states = iter([release_doc("requested"), release_doc("requested")])
    rejected = release_doc(
        "rejected",
        violations=[{"policy": "artifact-exists", "message": "master-9 is not stored"}],
    )
    fake_api.on("GET", "/v1/releases/rel-1", lambda _: (200, next(states, rejected)))
    result = ferry("release", "payments", "-a", "master-9", "--to", "dev", "--server", fake_api.url)
    assert result.exit_code == 1, result.output
    assert "release rel-1 rejected" in result.stderr
    assert "artifact-exists: master-9 is not stored" in result.stderr
    assert [r.method for r in fake_api.requests] == ["POST", "GET", "GET", "GET"]


def test_release_prints_what_it_was_decided_to_and_who_must_approve(fake_api) -> None:
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-1", "status": "requested"}))
    waiting = release_doc("awaiting-approval", approvals={"required": 2, "granted": []})
    fake_api.on("GET", "/v1/releases/rel-1", (200, waiting))
    result = ferry("promote", "payments", "--to", "prod", "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    assert "is awaiting-approval: 0 of 2 approvals" in result.stdout
    assert "ferry approve rel-1" in result.stdout

    as_json = ferry("promote", "payments", "--to", "prod", "--server", fake_api.url, "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["status"] == "awaiting-approval"


def test_a_request_waiting_for_its_chain_is_a_decision(fake_api) -> None:
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-1", "status": "requested"}))
    chained = release_doc("requested", waitingSince="2026-11-28T10:00:01Z")
    chained["timeline"] = [
        {"at": "t0", "status": "requested", "eventType": "ferry.release.requested.v1"},
        {"at": "t1", "status": "requested", "detail": "waits for master-1 to roll out in staging"},
    ]
    fake_api.on("GET", "/v1/releases/rel-1", (200, chained))
    result = ferry("promote", "payments", "--to", "prod", "--server", fake_api.url)
    assert result.exit_code == 0, result.output
    assert "waiting (waits for master-1 to roll out in staging)" in result.stdout


def test_an_undecided_release_prints_the_receipt_after_the_wait(fake_api) -> None:
    fake_api.on("POST", "/v1/releases", (202, {"releaseId": "rel-1", "status": "requested"}))
    fake_api.on("GET", "/v1/releases/rel-1", (200, release_doc("requested")))
    result = ferry(
        "release", "payments", "-b", "master", "--to", "dev", "--wait-timeout", "0.4",
        "--server", fake_api.url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "is requested (not decided within 0.4 s)" in result.stdout
    assert "ferry watch rel-1" in result.stdout


def test_at_schedules_release_promote_and_rollback_and_cancel_cancels(fake_api) -> None:
    scheduled = {"releaseId": "rel-3", "status": "scheduled", "scheduledAt": "2026-12-24T02:00:00Z"}
    fake_api.on("POST", "/v1/releases", (202, scheduled))
    server = ("--server", fake_api.url)
    released = ferry(
        "release", "payments", "-a", "m-1", "--to", "dev", "--at", "2026-12-24T02:00:00Z", *server
    )
    promoted = ferry("promote", "payments", "--to", "prod", "--at", "02:00", *server)
    rolled = ferry("rollback", "payments", "--in", "prod", "--at", "23:59", "--no-pick", *server)
    assert (released.exit_code, promoted.exit_code, rolled.exit_code) == (0, 0, 0)
    # scheduled: the receipt says when and how to cancel, and nothing waits for a decision
    assert "is scheduled for 2026-12-24T02:00:00Z" in released.stdout
    assert "ferry cancel rel-3" in released.stdout
    bodies = [r.json() for r in fake_api.requests]
    assert len(bodies) == 3
    assert bodies[0]["at"] == "2026-12-24T02:00:00Z"
    for body, clock in ((bodies[1], "02:00:00"), (bodies[2], "23:59:00")):
        # HH:MM is the next such time here, sent with this machine's offset
        sent = datetime.fromisoformat(body["at"])
        assert sent.tzinfo is not None
        assert body["at"][11:19] == clock
        assert timedelta(0) < sent - datetime.now(UTC) <= timedelta(days=1)

    fake_api.on(
        "POST", "/v1/releases/rel-3/cancel", (200, release_doc("cancelled", releaseId="rel-3"))
    )
    cancelled = ferry("cancel", "rel-3", "--reason", "not tonight", *server)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled release rel-3; it is now cancelled" in cancelled.stdout
    assert fake_api.requests[-1].json() == {"reason": "not tonight"}
    fake_api.on(
        "POST",
        "/v1/releases/rel-3/cancel",
        problem(409, "Conflict", "release rel-3 is not scheduled, so it cannot be cancelled"),
    )
    again = ferry("cancel", "rel-3", *server)
    assert again.exit_code != 0
    assert "cannot be cancelled" in again.output
