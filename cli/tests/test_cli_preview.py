"""``--dry-run`` on release, promote and rollback against a loopback server that answers as
docs/api.md says ``GET /v1/releases/preview`` does: the query sent, the diff and verdicts
printed (coloured only on a terminal and without NO_COLOR), and the exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from ferry_cli.app import app

runner = CliRunner()
ESC = "\x1b["
DIFF = (
    "--- a/environments/prod/payments/payments/deployment.yaml\n"
    "+++ b/environments/prod/payments/payments/deployment.yaml\n"
    "@@ -5,7 +5,7 @@\n"
    "   annotations:\n"
    "-    ferry.dev/artifact-id: master-a\n"
    "+    ferry.dev/artifact-id: master-b\n"
    "     ferry.dev/release-id: <new-release-id>\n"
)


def preview_doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "service": "payments",
        "environment": "prod",
        "intent": "release",
        "artifactId": "master-b",
        "promotedFrom": None,
        "namespace": "payments",
        "runningArtifactId": "master-a",
        "configCommit": "4f1c0a9b8e7d6c5b4a39281706f5e4d3c2b1a098",
        "releaseIdPlaceholder": "<new-release-id>",
        "outcome": "approve",
        "detail": "",
        "violations": [],
        "checks": [
            {"policy": "halted", "verdict": "passed", "message": "prod is not halted"},
            {"policy": "approvals", "verdict": "needs-approval", "message": "1 approval(s)"},
        ],
        "summary": {"added": 0, "removed": 0, "changed": 1},
        "files": [
            {
                "path": "environments/prod/payments/payments/deployment.yaml",
                "change": "changed",
                "diff": DIFF,
                "binary": False,
            }
        ],
        "diff": DIFF,
        "commitFailure": None,
    }
    doc.update(extra)
    return doc


def ferry(fake_api, *args: str) -> Any:
    return runner.invoke(app, ["--server", fake_api.url, "--token", "t0k", *args])


@pytest.fixture(autouse=True)
def _no_colour_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLORTERM"):
        monkeypatch.delenv(name, raising=False)


def test_release_dry_run_asks_the_preview_and_prints_the_diff_and_verdicts(fake_api) -> None:
    fake_api.on("GET", "/v1/releases/preview", (200, preview_doc()))
    result = ferry(fake_api, "release", "payments", "--artifact", "master-b", "--to", "prod",
                   "--dry-run")  # fmt: skip
    assert result.exit_code == 0, result.output
    [sent] = fake_api.requests
    assert sent.method == "GET"
    assert sent.query == {
        "service": ["payments"],
        "environment": ["prod"],
        "artifactId": ["master-b"],
    }
    assert sent.headers["authorization"] == "Bearer t0k"
    out = result.output
    assert ESC not in out  # not a terminal: no colour
    assert "dry run: release payments master-b → prod (namespace payments)" in out
    assert "decision now: approve" in out
    assert "passed         halted: prod is not halted" in out
    assert "needs-approval approvals: 1 approval(s)" in out
    assert "files: 0 added, 0 removed, 1 changed" in out
    assert out.endswith(DIFF)  # every diff line whole, in order
    # nothing but the preview was asked for
    assert [r.path for r in fake_api.requests] == ["/v1/releases/preview"]


def test_colour_on_a_terminal_and_none_with_no_color(fake_api, monkeypatch) -> None:
    fake_api.on("GET", "/v1/releases/preview", (200, preview_doc()))
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich's switch for "treat the output as a terminal"
    coloured = ferry(fake_api, "release", "payments", "-a", "master-b", "--to", "prod", "--dry-run")
    assert coloured.exit_code == 0, coloured.output
    lines = coloured.output.splitlines()
    added = next(line for line in lines if "+    ferry.dev/artifact-id: master-b" in line)
    removed = next(line for line in lines if "-    ferry.dev/artifact-id: master-a" in line)
    assert added.startswith(f"{ESC}32m")  # green
    assert removed.startswith(f"{ESC}31m")  # red
    assert f"{ESC}32mpassed" in coloured.output

    monkeypatch.setenv("NO_COLOR", "1")
    plain = ferry(fake_api, "release", "payments", "-a", "master-b", "--to", "prod", "--dry-run")
    assert plain.exit_code == 0, plain.output
    assert f"{ESC}32m" not in plain.output
    assert f"{ESC}31m" not in plain.output
    assert "+    ferry.dev/artifact-id: master-b" in plain.output


def test_a_rejection_or_a_failing_manifest_exits_1_and_json_is_the_document(fake_api) -> None:
    refused = preview_doc(
        outcome="reject",
        violations=[{"policy": "halted", "message": "prod is halted: incident 4711"}],
        checks=[{"policy": "halted", "verdict": "failed", "message": "prod is halted"}],
    )
    fake_api.on("GET", "/v1/releases/preview", (200, refused))
    result = ferry(fake_api, "release", "payments", "-b", "master", "--to", "prod", "--dry-run")
    assert result.exit_code == 1, result.output
    assert "decision now: reject" in result.output
    assert "failed         halted: prod is halted" in result.output
    assert fake_api.requests[0].query["branch"] == ["master"]

    as_json = ferry(fake_api, "-o", "json", "release", "payments", "-a", "x", "--to", "prod",
                    "--dry-run")  # fmt: skip
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == refused

    failing = preview_doc(
        files=[],
        diff="",
        commitFailure={"reason": "invalid-manifest", "message": "deployment.yaml: not YAML"},
    )
    fake_api.on("GET", "/v1/releases/preview", (200, failing))
    broken = ferry(fake_api, "release", "payments", "-a", "x", "--to", "prod", "--dry-run")
    assert broken.exit_code == 1
    assert "git-writer would fail it: invalid-manifest: deployment.yaml: not YAML" in broken.output


def test_promote_and_rollback_dry_runs_send_their_intent(fake_api) -> None:
    fake_api.on("GET", "/v1/releases/preview", (200, preview_doc(intent="promote")))
    promote = ferry(fake_api, "promote", "payments", "--to", "prod", "--from", "dev", "--dry-run")
    assert promote.exit_code == 0, promote.output
    back = ferry(fake_api, "rollback", "payments", "--in", "prod", "--dry-run")
    assert back.exit_code == 0, back.output
    assert [r.query for r in fake_api.requests] == [
        {
            "service": ["payments"],
            "environment": ["prod"],
            "intent": ["promote"],
            "fromEnvironment": ["dev"],
        },
        {"service": ["payments"], "environment": ["prod"], "intent": ["rollback"]},
    ]
    named = ferry(fake_api, "promote", "payments", "--to", "prod", "-a", "m-1", "--dry-run")
    assert named.exit_code == 2
    assert "does not take --artifact" in named.output
    to = ferry(fake_api, "rollback", "payments", "--in", "prod", "--to", "m-1", "--dry-run")
    assert to.exit_code == 2
    assert "does not take --to" in to.output
    assert len(fake_api.requests) == 2  # the refused ones asked nothing


def test_a_problem_from_the_preview_is_shown_as_for_a_request(fake_api) -> None:
    fake_api.on(
        "GET",
        "/v1/releases/preview",
        (
            403,
            {
                "title": "Forbidden",
                "status": 403,
                "detail": "releasing to prod needs the role releaser:prod or admin; jane has "
                "developer",
            },
        ),
    )
    result = ferry(fake_api, "release", "payments", "-a", "m-1", "--to", "prod", "--dry-run")
    assert result.exit_code == 4
    assert "releasing to prod needs the role releaser:prod" in result.output
