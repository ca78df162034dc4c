"""git-writer's batch handler: every waiting event, one fetch, one commit each, one push.

First, each event is judged on its own (unsafe ids, an event type it does not
handle): one that can never be written is dead-lettered at once, without
touching git, so it is not retried with the batch when the remote is down.
Then a cycle, run in a worker thread so the event loop (and ``/healthz``) stays free:

1. fetch the branch (the remote is the truth; nothing local survives a cycle);
2. for each delivery, in order: if its event id is already in a ``Ferry-Event-Id``
   trailer, answer with that commit; otherwise plan its change (domain) against the
   fetched branch plus the changes planned before it in the batch;
3. write all commits (``git fast-import``) and push them at once; if someone else
   pushed first, wait (jittered exponential backoff), fetch and re-plan everything;
4. back on the loop: publish each result event and wait for its confirm. The
   runtime acks each delivery only after that.

A failure of one delivery (unsafe id, conflicting build, or any unexpected error
while planning it, such as a ``RecursionError``) fails only that one: a release
becomes its own ``release.failed`` with the reason, anything else its own dead
letter, and the rest of the batch is written.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ferry_events import (
    ArtifactAccepted,
    ArtifactMarkChangeRequested,
    ArtifactStored,
    CloudEvent,
    EventData,
    HaltChangeRequested,
    PolicyChanged,
    PolicyChangeRequested,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
)
from ferry_gitwriter.adapters.repo import (
    ConfigWriter,
    PushRejected,
    RemoteUnavailable,
    RepoError,
    Session,
)
from ferry_gitwriter.domain import paths
from ferry_gitwriter.domain.changes import (
    CommitPlan,
    Refused,
    ReleaseFailure,
    Unchanged,
    check_event,
    plan_policy,
    plan_release,
    plan_store_artifact,
    release_namespace,
)
from ferry_gitwriter.domain.marks import halt_result, mark_result, plan_halt, plan_mark
from ferry_gitwriter.metrics import BATCH_SIZE, COMMITS, CYCLE_SECONDS, DUPLICATES, PUSHES
from ferry_runtime import Delivery, PermanentError, TemporaryError, get_logger

log = get_logger(__name__)

SOURCE = "ferry/git-writer"
HANDLED = (
    ArtifactAccepted,
    ReleaseApproved,
    PolicyChangeRequested,
    HaltChangeRequested,
    ArtifactMarkChangeRequested,
)

Publish = Callable[[CloudEvent], Awaitable[None]]


@dataclass(slots=True)
class _Answer:
    """What one delivery came to, before the push tells the shas of new commits."""

    #: a mark of this cycle's commits, a sha already on the branch, or None (no commit)
    commit: int | str | None = None
    no_change: bool = False
    namespace: str = ""
    failure: ReleaseFailure | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff between pushes rejected as non-fast-forward."""

    attempts: int = 10
    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))  # noqa: S311 - jitter


class GitWriter:
    """Handles batches of artifact, release and policy events for the config repo."""

    def __init__(self, repo: ConfigWriter, publish: Publish, *, backoff: Backoff | None = None):
        self._repo = repo
        self._publish = publish
        self._backoff = backoff or Backoff()

    async def handle_batch(
        self, deliveries: Sequence[Delivery[EventData]]
    ) -> list[BaseException | None]:
        """The runtime's batch handler: one outcome (None = done) per delivery."""
        BATCH_SIZE.observe(len(deliveries))
        outcomes: list[BaseException | None] = [_refusal(delivery) for delivery in deliveries]
        writable = [d for d, outcome in zip(deliveries, outcomes, strict=True) if outcome is None]
        if writable:
            written = iter(await self._write_batch(writable))
            outcomes = [next(written) if outcome is None else outcome for outcome in outcomes]
        return outcomes

    async def _write_batch(
        self, deliveries: Sequence[Delivery[EventData]]
    ) -> list[BaseException | None]:
        try:
            with CYCLE_SECONDS.time():
                answers = await asyncio.to_thread(self._write, deliveries)
        except RemoteUnavailable as exc:
            PUSHES.labels("failed").inc()
            error = TemporaryError(str(exc), code="config-repo-unavailable")
            return [error] * len(deliveries)
        except PushRejected as exc:
            error = TemporaryError(
                f"{exc}; gave up after {self._backoff.attempts} attempts", code="push-conflict"
            )
            return [error] * len(deliveries)
        except RepoError as exc:
            return [TemporaryError(str(exc), code="config-repo-error")] * len(deliveries)
        return list(await asyncio.gather(*map(self._settle, deliveries, answers)))

    async def _settle(self, delivery: Delivery[EventData], answer: _Answer) -> BaseException | None:
        if answer.error is not None:
            return answer.error
        data = result_of(delivery.data, answer)
        try:
            await self._publish(CloudEvent.new(data, source=SOURCE, cause=delivery.event))
        except Exception as exc:  # noqa: BLE001 - the delivery is retried; the commit is idempotent
            return exc
        return None

    # ------------------------------------------------------------------ in the worker thread

    def _write(self, deliveries: Sequence[Delivery[EventData]]) -> list[_Answer]:
        started = time.perf_counter()
        attempt = 0
        while True:
            session = self._repo.sync()
            answers = [self._answer(session, delivery) for delivery in deliveries]
            try:
                marks = self._repo.commit_and_push(session)
            except PushRejected:
                PUSHES.labels("rejected").inc()
                attempt += 1
                if attempt >= self._backoff.attempts:
                    raise
                delay = self._backoff.delay(attempt)
                log.info("push rejected; fetching and re-applying", attempt=attempt, delay=delay)
                time.sleep(delay)
                continue
            break
        if session.commits:
            PUSHES.labels("ok").inc()
        for commit in session.commits:
            COMMITS.labels(commit.plan.kind).inc()
        for answer in answers:
            if isinstance(answer.commit, int):
                answer.commit = marks[answer.commit]
        log.info(
            "batch written",
            deliveries=len(deliveries),
            commits=len(session.commits),
            push_attempts=attempt + 1,
            seconds=round(time.perf_counter() - started, 4),
        )
        return answers

    def _answer(self, session: Session, delivery: Delivery[EventData]) -> _Answer:
        try:
            return self._planned(session, delivery)
        except RepoError:
            raise  # git itself failed: the whole cycle is retried
        except Exception as exc:  # noqa: BLE001 - one poisoned event fails only itself
            return _unexpected(delivery, exc)

    def _planned(self, session: Session, delivery: Delivery[EventData]) -> _Answer:
        event_id = delivery.event.id
        data = delivery.data
        try:
            if isinstance(data, ReleaseApproved):
                namespace = release_namespace(data, session)
            else:
                namespace = ""
            done = session.commit_for(event_id)
            if done is not None:
                DUPLICATES.inc()
                log.info("already committed; answering again", event_id=event_id, commit=done)
                return _Answer(commit=done, namespace=namespace)
            planned = _plan(event_id, data, session)
        except Refused as exc:
            log.warning("refused", code=exc.code, reason=str(exc), event_id=event_id)
            return _Answer(error=PermanentError(str(exc), code=exc.code))
        except paths.UnsafeId as exc:
            return _Answer(error=PermanentError(str(exc), code=exc.code))
        if isinstance(planned, ReleaseFailure):
            return _Answer(failure=planned)
        if isinstance(planned, Unchanged):
            return _Answer(
                commit=session.last_change(planned.path) or session.base,
                no_change=True,
                namespace=namespace,
            )
        return _Answer(commit=session.add(event_id, planned), namespace=namespace)


def _refusal(delivery: Delivery[EventData]) -> PermanentError | None:
    """A permanent error for an event that can be refused without the repo, else None."""
    try:
        check_event(delivery.data)
    except Refused as exc:
        log.warning("refused", code=exc.code, reason=str(exc), event_id=delivery.event.id)
        return PermanentError(str(exc), code=exc.code)
    except Exception as exc:
        log.exception("could not check the event", event_id=delivery.event.id)
        return PermanentError(f"could not check the event: {exc!r}", code="unexpected-error")
    return None


def _unexpected(delivery: Delivery[EventData], exc: Exception) -> _Answer:
    """An error nobody planned for while planning one delivery: it fails that one only.

    A release becomes ``release.failed`` (promotion and the developer hear of it); any
    other event is dead-lettered. Neither is retried: planning is pure, so it would
    fail the same way again (``RecursionError`` is not a temporary error).
    """
    reason = f"git-writer could not plan this change: {type(exc).__name__}: {str(exc)[:500]}"
    log.error(
        "planning failed; failing this delivery only",
        event_id=delivery.event.id,
        reason=reason,
        exc_info=exc,
    )
    if isinstance(delivery.data, ReleaseApproved):
        return _Answer(failure=ReleaseFailure("unexpected-error", reason))
    return _Answer(error=PermanentError(reason, code="unexpected-error"))


def _plan(
    event_id: str, data: EventData, session: Session
) -> CommitPlan | Unchanged | ReleaseFailure:
    if isinstance(data, ArtifactAccepted):
        return plan_store_artifact(event_id, data.artifact, data.manifests, session)
    if isinstance(data, ReleaseApproved):
        return plan_release(event_id, data, session)
    if isinstance(data, PolicyChangeRequested):
        return plan_policy(event_id, data, session)
    if isinstance(data, HaltChangeRequested):
        return plan_halt(event_id, data, session)
    if isinstance(data, ArtifactMarkChangeRequested):
        return plan_mark(event_id, data, session)
    raise Refused(f"git-writer does not handle {data.event_type}", code="unhandled-event-type")


def result_of(data: EventData, answer: _Answer) -> EventData:
    """The event git-writer publishes for a handled delivery."""
    sha = str(answer.commit or "")
    if isinstance(data, ArtifactAccepted):
        return ArtifactStored(
            artifact=data.artifact,
            environments=sorted(data.manifests),
            commit_sha=sha,
            path=paths.build_dir(data.artifact.service, data.artifact.id),
        )
    if isinstance(data, ReleaseApproved):
        if answer.failure is not None:
            return ReleaseFailed(
                release_id=data.release_id,
                service=data.service,
                environment=data.environment,
                artifact_id=data.artifact_id,
                intent=data.intent,
                actor=data.actor,
                reason=answer.failure.code,
                message=answer.failure.message,
                author_email=data.author_email,
            )
        return ReleaseCommitted(
            release_id=data.release_id,
            service=data.service,
            environment=data.environment,
            namespace=answer.namespace,
            artifact_id=data.artifact_id,
            intent=data.intent,
            actor=data.actor,
            commit_sha=sha,
            promoted_from=data.promoted_from,
            author_email=data.author_email,
            no_change=answer.no_change,
        )
    if isinstance(data, PolicyChangeRequested):
        return PolicyChanged(
            request_id=data.request_id,
            service=data.service,
            policy=data.policy,
            actor=data.actor,
            commit_sha=sha,
            deleted=data.policy is None,
        )
    if isinstance(data, HaltChangeRequested):
        return halt_result(data, sha, no_change=answer.no_change)
    if isinstance(data, ArtifactMarkChangeRequested):
        return mark_result(data, sha, no_change=answer.no_change)
    raise TypeError(f"no result for {data.event_type}")
