"""Issue 14, item 5, end to end: releases asked for ``at`` a time a few seconds ahead, through
the API and the CLI, promotion's timer and outbox on the real broker, git-writer committing
to a real bare remote. One commits at its time, after (and over) a release committed while it
waited; one is cancelled and never commits; one meets a halt set after it was asked for, since
its policies are read when it falls due."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ferry_testing import BrokerNamespace, EventTap, log_subjects, trailer_values

from .test_cli_release_e2e import ferry
from .test_promotion_flow import artifact, flow

pytestmark = pytest.mark.amqp

A = "master-aaaaaaaaaa-1111111111"
B = "master-bbbbbbbbbb-2222222222"
#: How far ahead the releases are scheduled: room for what the test does before their time
#: (a cancel and one release committed, a second or two on a loaded machine).
AHEAD = timedelta(seconds=8)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def test_a_scheduled_release_commits_at_its_time_and_a_cancelled_one_never(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        await f.store(artifact(A))
        await f.store(artifact(B))
        server = {"FERRY_SERVER": str(f.client.base_url), "FERRY_TOKEN": f.tokens["jane"]}

        # through the CLI: one scheduled an hour ahead, then cancelled
        code, out, err = await ferry(
            "release", f.service, "-a", B, "--to", "staging",
            "--at", _rfc3339(datetime.now(UTC) + timedelta(hours=1)), "-o", "json", env=server,
        )  # fmt: skip
        assert code == 0, (out, err)
        receipt = json.loads(out)
        assert receipt["status"] == "scheduled"
        code, out, err = await ferry(
            "cancel", receipt["releaseId"], "--reason", "not today", env=server
        )
        assert code == 0, (out, err)
        assert f"cancelled release {receipt['releaseId']}; it is now cancelled" in out

        # a halt of prod, set before the prod release below falls due
        halted = await f.client.post(
            "/v1/halts",
            json={"environment": "prod", "reason": "change freeze"},
            headers=f.auth("root"),
        )
        assert halted.status_code == 202, halted.text
        await f.tap.wait_one(
            "ferry.halt.changed.v1",
            lambda e: e.data["requestId"] == halted.json()["requestId"],
            timeout=20,
        )

        at = (datetime.now(UTC) + AHEAD).replace(microsecond=0)
        scheduled = await f.request(
            environment="dev", intent="release", artifactId=A, at=_rfc3339(at)
        )
        into_prod = await f.request(
            environment="prod", intent="release", artifactId=A, at=_rfc3339(at)
        )
        cancelled = await f.request(
            environment="staging", intent="release", artifactId=B, at=_rfc3339(at)
        )
        stopped = await f.client.post(
            f"/v1/releases/{cancelled}/cancel",
            json={"reason": "not today"},
            headers=f.auth("bob"),  # may release there, though not the requester
        )
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "cancelled"

        # a release asked for now commits while the scheduled one waits, unsuperseded
        now = await f.wait(
            await f.request(environment="dev", intent="release", artifactId=B),
            "committed",
            "rejected",
        )
        assert (now["status"], now["sequence"]) == ("committed", 1), now
        waiting = await f.wait(scheduled, "scheduled", timeout=1)
        assert waiting["supersededBy"] is None
        assert waiting["sequence"] is None
        assert datetime.now(UTC) < at, "the setup took longer than AHEAD: raise it"

        done = await f.wait(scheduled, "committed", "rejected", "failed", timeout=30)
        assert done["status"] == "committed", done
        assert done["sequence"] == 2  # numbered when due: newer than what committed before
        due = next(e for e in done["timeline"] if e["status"] == "requested")
        assert datetime.fromisoformat(due["at"]) >= at
        assert [e["status"] for e in done["timeline"]][:2] == ["scheduled", "requested"]
        assert log_subjects(f.remote)[0].startswith(f"[dev/{f.service}] release {A}")
        assert trailer_values(f.remote, "Ferry-Release-Id")[0] == scheduled
        assert trailer_values(f.remote, "Ferry-Sequence")[0] == "2"

        refused = await f.wait(into_prod, "rejected", timeout=30)
        [violation] = refused["violations"]
        assert violation["policy"] == "halted"
        assert "change freeze" in violation["message"]

        # the cancelled one, due at the same time: still cancelled, never published or committed
        gone = await f.wait(cancelled, "cancelled", timeout=1)
        assert gone["timeline"][-1]["detail"] == "cancelled by bob@example.com: not today"
        late = await f.client.post(f"/v1/releases/{cancelled}/cancel", headers=f.auth("jane"))
        assert late.status_code == 409
        requested = {e.data["releaseId"] for e in f.tap.of_type("ferry.release.requested.v1")}
        assert scheduled in requested
        assert into_prod in requested
        assert cancelled not in requested
        assert receipt["releaseId"] not in requested
        assert cancelled not in trailer_values(f.remote, "Ferry-Release-Id")
        assert not any(s.startswith("[staging/") for s in log_subjects(f.remote))
