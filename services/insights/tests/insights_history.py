"""A scripted history of events with chosen times, and its DORA numbers computed by hand.

The window: the 14 days before ``TO`` (2026-12-01T00:00Z), weeks [11-17, 11-24) and
[11-24, 12-01). In prod:

payments (squad checkout)
  a0  succeeded 11-10                       before the window: not counted
  a1  committedAt 11-18 09:00, succeeded 11-18 10:00           lead 3600
      (a second success report at 10:05 changes nothing)
  a2  no committedAt, ci.start 11-19 12:00, FAILED 11-19 13:00 failed, no lead
  a3  committedAt 11-19 13:05, succeeded 11-19 13:30           lead 1500; restores a2: 1800
  a4  committedAt 11-25 08:00, succeeded 11-25 10:00           lead 7200
      rollback requested 11-25 11:00 (time of the request event): a4 failed
      a3 redeployed by the rollback, succeeded 11-25 11:10     restores a4: 600 (no new deployment)
search (squad discovery)
  s1  committedAt 11-26 00:00, succeeded 11-26 01:00           lead 3600
  s2  committedAt 11-27 10:00, succeeded 11-27 12:00           lead 7200
      rollback requested 11-27 13:00: s2 failed (s1 is not: s2 came between)
      s1 redeployed, succeeded 11-27 13:20                     restores s2: 1200
  s3  never announced (no artifact event), FAILED 11-28 09:00  failed, never restored

prod: 7 deployments, 7/14 = 0.5 a day; leads 1500 3600 3600 7200 7200: median 3600, p90 7200
(the 5th of 5); failed a2 a4 s2 s3: 4/7; restores 600 1200 1800: median 1200, one unrestored.
week 1: a1 a2 a3: 3, 3/7 a day, leads 1500 3600 (median 2550, p90 3600), 1/3, restore 1800.
week 2: a4 s1 s2 s3: 4, 4/7 a day, leads 3600 7200 7200 (median 7200, p90 7200), 3/4,
        restores 600 1200 (median 900).
staging: a1 succeeded 11-18 09:45: 1 deployment, lead 2700, rate 0, no restore.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ferry_events import (
    Actor,
    ArtifactSpec,
    ArtifactStored,
    CloudEvent,
    EventData,
    Intent,
    ReleaseRequested,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    Workload,
)

TO = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 14
SQUADS = {"payments": "checkout", "search": "discovery"}
ACTOR = Actor(subject="dev", email="dev@example.com", name="Dev")


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _event(data: EventData, time: datetime, key: str) -> CloudEvent:
    return CloudEvent.new(data, source="ferry/test", time=time, event_id=f"{key}-{data.event_type}")


def stored(
    service: str, artifact_id: str, *, committed: datetime | None, ci_start: datetime
) -> CloudEvent:
    application: dict[str, Any] = {
        "branch": "master",
        "sha": f"{artifact_id}0000",
        "authorName": "Dev",
        "authorEmail": "dev@example.com",
        "message": f"change {artifact_id}",
    }
    if committed is not None:
        application["committedAt"] = committed.isoformat()
    spec = ArtifactSpec.model_validate(
        {
            "id": artifact_id,
            "service": service,
            "namespace": service,
            "squad": SQUADS[service],
            "application": application,
            "ci": {"jobUrl": f"https://ci.example.com/{artifact_id}", "start": ci_start},
        }
    )
    data = ArtifactStored(
        artifact=spec, environments=["dev", "staging", "prod"], commit_sha="c0ffee", path="builds"
    )
    return _event(data, ci_start, f"stored-{service}-{artifact_id}")


def rollout(
    kind: str, service: str, artifact_id: str, observed: datetime, env: str = "prod"
) -> CloudEvent:
    fields: dict[str, Any] = {
        "cluster": "local",
        "environment": env,
        "namespace": service,
        "service": service,
        "artifact_id": artifact_id,
        "release_id": f"rel-{env}-{artifact_id}-{observed:%d%H%M}",
        "workload": Workload(kind="Deployment", name=service, uid=f"uid-{service}"),
        "observed_at": observed,
    }
    data: EventData
    if kind == "failed":
        data = RolloutFailed(**fields, reason="CrashLoopBackOff", message="back-off restarting")
    elif kind == "started":
        data = RolloutStarted(**fields)
    else:
        data = RolloutSucceeded(**fields)
    # the envelope's time is when the watcher published, a little after it observed
    return _event(data, observed.replace(second=30), f"{kind}-{env}-{service}-{observed:%d%H%M}")


def rollback(service: str, requested: datetime, env: str = "prod") -> CloudEvent:
    data = ReleaseRequested(
        release_id=f"rollback-{service}-{requested:%d%H%M}",
        service=service,
        environment=env,
        intent=Intent.ROLLBACK,
        actor=ACTOR,
        reason="it broke",
        requested_at=requested,
    )
    return _event(data, requested, f"rollback-{service}-{requested:%d%H%M}")


def history() -> list[CloudEvent]:
    return [
        stored("payments", "a0", committed=at(9, 9), ci_start=at(9, 9, 30)),
        rollout("succeeded", "payments", "a0", at(10, 10)),
        stored("payments", "a1", committed=at(18, 9), ci_start=at(18, 9, 30)),
        rollout("succeeded", "payments", "a1", at(18, 9, 45), env="staging"),
        rollout("started", "payments", "a1", at(18, 9, 55)),
        rollout("succeeded", "payments", "a1", at(18, 10)),
        rollout("succeeded", "payments", "a1", at(18, 10, 5)),
        stored("payments", "a2", committed=None, ci_start=at(19, 12)),
        rollout("failed", "payments", "a2", at(19, 13)),
        stored("payments", "a3", committed=at(19, 13, 5), ci_start=at(19, 13, 10)),
        rollout("succeeded", "payments", "a3", at(19, 13, 30)),
        stored("payments", "a4", committed=at(25, 8), ci_start=at(25, 8, 10)),
        rollout("succeeded", "payments", "a4", at(25, 10)),
        rollback("payments", at(25, 11)),
        rollout("succeeded", "payments", "a3", at(25, 11, 10)),
        stored("search", "s1", committed=at(26, 0), ci_start=at(26, 0, 5)),
        rollout("succeeded", "search", "s1", at(26, 1)),
        stored("search", "s2", committed=at(27, 10), ci_start=at(27, 10, 5)),
        rollout("succeeded", "search", "s2", at(27, 12)),
        rollback("search", at(27, 13)),
        rollout("succeeded", "search", "s1", at(27, 13, 20)),
        rollout("failed", "search", "s3", at(28, 9)),
    ]


#: The whole answer for prod, by hand (see the module docstring).
PROD: dict[str, Any] = {
    "deployments": 7,
    "deploymentsPerDay": 0.5,
    "leadTimeSeconds": {"median": 3600, "p90": 7200},
    "changeFailureRate": round(4 / 7, 4),
    "timeToRestoreSeconds": {"median": 1200},
    "failedDeployments": 4,
    "unrestoredFailures": 1,
}
PROD_WEEKS: list[dict[str, Any]] = [
    {
        "from": "2026-11-17T00:00:00Z",
        "to": "2026-11-24T00:00:00Z",
        "deployments": 3,
        "deploymentsPerDay": round(3 / 7, 4),
        "leadTimeSeconds": {"median": 2550, "p90": 3600},
        "changeFailureRate": round(1 / 3, 4),
        "timeToRestoreSeconds": {"median": 1800},
        "failedDeployments": 1,
        "unrestoredFailures": 0,
    },
    {
        "from": "2026-11-24T00:00:00Z",
        "to": "2026-12-01T00:00:00Z",
        "deployments": 4,
        "deploymentsPerDay": round(4 / 7, 4),
        "leadTimeSeconds": {"median": 7200, "p90": 7200},
        "changeFailureRate": 0.75,
        "timeToRestoreSeconds": {"median": 900},
        "failedDeployments": 3,
        "unrestoredFailures": 1,
    },
]
PAYMENTS = {
    "deployments": 4,
    "deploymentsPerDay": round(4 / 14, 4),
    "leadTimeSeconds": {"median": 3600, "p90": 7200},
    "changeFailureRate": 0.5,
    "timeToRestoreSeconds": {"median": 1200},
}
DISCOVERY = {
    "deployments": 2,
    "deploymentsPerDay": round(2 / 14, 4),
    "leadTimeSeconds": {"median": 5400, "p90": 7200},
    "changeFailureRate": 0.5,
    "timeToRestoreSeconds": {"median": 1200},
}
STAGING = {
    "deployments": 1,
    "deploymentsPerDay": round(1 / 14, 4),
    "leadTimeSeconds": {"median": 2700, "p90": 2700},
    "changeFailureRate": 0.0,
    "timeToRestoreSeconds": {"median": None},
}
NO_DATA = {
    "deployments": 0,
    "deploymentsPerDay": 0.0,
    "leadTimeSeconds": {"median": None, "p90": None},
    "changeFailureRate": None,
    "timeToRestoreSeconds": {"median": None},
}


def subset(answer: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``answer`` that ``expected`` names (to compare with ==)."""
    return {key: answer[key] for key in expected}
