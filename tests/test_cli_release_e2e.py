"""The ``ferry`` CLI end to end: a build pushed by CI reaches the config repo through
artifact-ingest and git-writer, is released through promotion's API, and shows in
``ferry status``, ``history`` and ``artifacts``. Every service runs in-process on one
broker namespace; the CLI runs as its own process, as a person or CI runs it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

import pytest

from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_ingest.bootstrap import build as build_ingest
from ferry_ingest.settings import IngestSettings
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, log_subjects, running

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARTIFACT_ID = "master-0017d995e3-67e9d69164"


async def ferry(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry_cli",
        *args,
        env={**os.environ, "COLUMNS": "250", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_push_release_watch_and_status_through_every_service(
    broker_ns: BrokerNamespace, bare_remote: Path, tmp_path: Path
) -> None:
    admin, developer = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    # the tokens file is made with the CLI's own skeleton, as an operator would
    entries = []
    for token, subject, role in ((admin, "jane", "admin"), (developer, "dev", "developer")):
        code, out, err = await ferry(
            "token",
            "hash",
            token,
            "--subject",
            subject,
            "--email",
            f"{subject}@example.com",
            "--role",
            role,
            env={},
        )
        assert code == 0, err
        entries.append(out.split("\n", 1)[1])
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n" + "".join(entries))

    ingest = build_ingest(IngestSettings(**broker_ns.settings()))
    writer = build_git_writer(
        GitWriterSettings(
            **broker_ns.settings(), data_dir=tmp_path / "writer", config_repo_url=str(bare_remote)
        )
    )
    promotion = await build_promotion(
        PromotionSettings(
            **broker_ns.settings(),
            data_dir=tmp_path / "promotion",
            config_repo_url=str(bare_remote),
            api_tokens_file=tokens,
            config_max_age=0.0,
        )
    )
    async with running(ingest), running(writer), running(promotion.runtime):
        env = {
            "FERRY_SERVER": f"http://127.0.0.1:{promotion.runtime.http_port}",
            "FERRY_TOKEN": admin,
            "FERRY_AMQP_URL": broker_ns.amqp_url,
            "FERRY_EXCHANGE": broker_ns.exchange,
        }
        code, out, err = await ferry(
            "artifact",
            "push",
            str(EXAMPLES / "artifact.json"),
            "--manifests",
            str(EXAMPLES / "manifests"),
            "--wait",
            "-o",
            "json",
            env=env,
        )
        assert code == 0, err
        assert json.loads(out)["outcome"]["status"] == "stored"

        code, out, err = await ferry(
            "release",
            "payments",
            "--artifact",
            ARTIFACT_ID,
            "--to",
            "dev",
            "--reason",
            "first release",
            "-o",
            "json",
            env=env,
        )
        assert code == 0, err
        release_id = json.loads(out)["releaseId"]

        code, out, err = await ferry(
            "watch",
            release_id,
            "--until",
            "committed",
            "--interval",
            "0.2",
            "--timeout",
            "60",
            "-o",
            "json",
            env=env,
        )
        assert code == 0, err
        watched = json.loads(out)
        assert watched["status"] == "committed"
        assert [t["status"] for t in watched["timeline"]][-1] == "committed"
        assert watched["actor"]["subject"] == "jane"

        code, out, err = await ferry("status", "-o", "json", env=env)
        assert code == 0, err
        [payments] = [s for s in json.loads(out)["services"] if s["service"] == "payments"]
        assert payments["environments"]["dev"]["artifactId"] == ARTIFACT_ID
        assert payments["environments"]["dev"]["commitSha"] == watched["commitSha"]

        code, table, err = await ferry("status", env=env)
        assert code == 0, err
        assert "payments" in table
        assert ARTIFACT_ID in table

        code, out, err = await ferry("history", "payments", "--env", "dev", "-o", "json", env=env)
        assert code == 0, err
        assert json.loads(out)["history"][0]["releaseId"] == release_id

        # approving what is already committed: the API's 409, exit 1
        code, out, err = await ferry("approve", release_id, env=env)
        assert code == 1
        assert "not awaiting approval" in err

        # a policy file goes to the real API as it takes it; a wrong field is named
        policy = tmp_path / "payments.yaml"
        policy.write_text("autoRelease:\n  - branch: master\n    environment: dev\n")
        code, out, err = await ferry("policy", "apply", str(policy), "-o", "json", env=env)
        assert code == 0, err
        assert json.loads(out)["status"] == "requested"
        # a freeze window written as docs/policies.md writes it: YAML reads the unquoted
        # times as datetimes, and the CLI sends them as the ISO-8601 strings they were
        policy.write_text(
            "freezeWindows:\n"
            "  - environment: prod\n"
            "    timezone: Europe/Copenhagen\n"
            "    start: 2026-12-20T00:00:00\n"
            "    end: 2027-01-02T00:00:00\n"
            "    reason: holidays\n"
        )
        code, out, err = await ferry("policy", "apply", str(policy), "-o", "json", env=env)
        assert code == 0, err
        assert json.loads(out)["status"] == "requested"
        policy.write_text("freeze: always\n")
        code, out, err = await ferry("policy", "apply", str(policy), env=env)
        assert code == 1
        assert "freeze" in err

        # a developer may not release to the protected prod: the API's problem, exit 4
        code, out, err = await ferry(
            "release",
            "payments",
            "--artifact",
            ARTIFACT_ID,
            "--to",
            "prod",
            env={**env, "FERRY_TOKEN": developer},
        )
        assert code == 4, err
        assert "Traceback" not in err
        assert "prod" in err

        # a release of a build that was never stored: the CLI waits for the decision,
        # prints it with its reason and exits 1 (--no-wait keeps the receipt and exit 0)
        code, out, err = await ferry(
            "release", "payments", "--artifact", "master-0000000000-0000000000", "--to", "dev",
            env=env,
        )  # fmt: skip
        assert code == 1, (out, err)
        assert "rejected" in err
        assert "master-0000000000-0000000000" in err
        code, out, err = await ferry(
            "release", "payments", "--artifact", "master-0000000000-0000000000", "--to", "dev",
            "--no-wait", env=env,
        )  # fmt: skip
        assert code == 0, err
        assert "is requested" in out

    assert any(release_id in s or ARTIFACT_ID in s for s in log_subjects(bare_remote))
