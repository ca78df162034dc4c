"""A read-only clone of the config repository that promotion keeps current.

Promotion never pushes. It fetches on start, when an event says the repo
changed (``mark_stale``), and before a decision when its copy is older than
``max_age`` seconds. After each fetch it loads a :class:`Snapshot` (the
environments, the policy files and what runs where) that readers share
without locks; files under ``builds/`` and the history are read on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ferry_events import DNS_LABEL, ArtifactSpec, is_safe_segment
from ferry_promotion.adapters.coalesce import Coalesced
from ferry_promotion.adapters.gitcli import GitError, parse_trailers, read_files, run_git
from ferry_promotion.domain.decision import HistoryEntry
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS
from ferry_promotion.domain.environments import parse_environments as _parse_environments
from ferry_promotion.domain.policies import parse_policy
from ferry_promotion.domain.safety import HALTS_FILE, parse_halts, parse_marks
from ferry_promotion.domain.snapshot import Deployment, PolicyFile, Snapshot
from ferry_promotion.domain.yamldoc import DocumentError
from ferry_runtime import get_logger

log = get_logger(__name__)

_RELEASE_INTENTS = {"release", "promote", "rollback", "auto-release"}


class ConfigReader:
    """The read-only clone and its current snapshot."""

    def __init__(
        self,
        url: str,
        branch: str,
        path: Path,
        *,
        max_age: float = 3.0,
        min_interval: float = 0.5,
    ) -> None:
        self.url = url
        self.branch = branch
        self.path = path
        self.max_age = max_age
        self.min_interval = min(min_interval, max_age)
        self._snapshot = Snapshot(commit=None, fetched_at=0.0)
        self._lock = asyncio.Lock()
        # mark_stale() bumps _wanted; a fetch that started after it sets _loaded to it
        self._wanted = 1
        self._loaded = 0
        self._wanted_for: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._history_cache: dict[str, list[HistoryEntry]] = {}
        self._history_head: str | None = None
        self._history_limit = 0
        self._remote_head = Coalesced(self._ls_remote, "ls-remote")

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def mark_stale(self, service: str | None = None) -> None:
        """Something (about ``service``) changed the remote: fetch soon, and before the next
        fresh read or decision about that service."""
        self._wanted += 1
        if service is None:
            self._wanted_for.clear()
            self._wanted_for[""] = self._wanted
        else:
            self._wanted_for[service] = self._wanted
        self._wake.set()

    async def start(self) -> Snapshot:
        if not (self.path / ".git").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            await run_git("init", "--quiet", str(self.path))
        _, remotes = await run_git("remote", cwd=self.path)
        if "origin" in remotes.split():
            await run_git("remote", "set-url", "origin", self.url, cwd=self.path)
        else:
            await run_git("remote", "add", "origin", self.url, cwd=self.path)
        return await self.refresh(force=True)

    async def remote_head(self) -> str | None:
        """The commit the remote's branch is at now (None: no commits), from a ``git
        ls-remote`` that started after this call; calls made at once share one."""
        return await self._remote_head()

    async def _ls_remote(self) -> str | None:
        _, heads = await run_git("ls-remote", "origin", f"refs/heads/{self.branch}", cwd=self.path)
        return heads.split()[0] if heads.strip() else None

    async def holds(self, commit: str) -> bool:
        """Whether the current snapshot is at ``commit`` or after it."""
        head = self._snapshot.commit
        if head is None:
            return False
        return head == commit or await self._is_ancestor(commit, head)

    async def current(
        self, *, fresh: bool = False, service: str | None = None, holding: str | None = None
    ) -> Snapshot:
        """A snapshot no older than ``max_age`` (fetching inline only when it is older).

        Events that change the remote mark the clone stale and wake the background
        refresher (:meth:`keep_fresh`). A caller that must see those changes waits for
        a fetch that started after them: ``fresh=True`` (API reads: a reader that saw a
        commit's status also sees the commit), or ``service=`` (a decision: it sees every
        commit about its service that promotion has heard of), so a stream of commits
        about other services costs a decision no fetch.

        ``holding``: the commit a request was accepted at. The snapshot returned is at it or
        after it, fetching (once, and again if needed) when the clone is older: a decision
        never uses older config than the API it was asked through had, whichever replica
        made it. A failed fetch raises a ``TemporaryError`` (the decision is retried); a
        remote whose head is not after that commit (its history was rewritten) is used as
        it is now, with a warning.
        """
        if holding is not None and not await self.holds(holding):
            await self.refresh(force=True)
            if not await self.holds(holding):
                log.warning(
                    "the config repo's head is not after the commit a request was accepted "
                    "at (was its history rewritten?); deciding on the head",
                    head=self._snapshot.commit,
                    accepted_at=holding,
                )
            return self._snapshot
        needed = self._wanted if fresh else self._wanted_for.get("", 0)
        if service is not None:
            needed = max(needed, self._wanted_for.get(service, 0))
        age = time.monotonic() - self._snapshot.fetched_at
        if (
            age > self.max_age
            or self._loaded < needed
            or (self._refresher is None and self._loaded < self._wanted)
        ):
            return await self.refresh(at_least=needed)
        return self._snapshot

    async def keep_fresh(self) -> None:
        """Refresh when marked stale (at most every ``min_interval``) and every ``max_age / 2``."""
        self._refresher = asyncio.current_task()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(self.max_age / 2, 1.0))
                self._wake.clear()
                try:
                    await self.refresh()
                except GitError as exc:
                    log.warning("config repo fetch failed; retrying", error=str(exc))
                await asyncio.sleep(max(self.min_interval, 0.05))
        finally:
            self._refresher = None

    async def refresh(self, *, force: bool = False, at_least: int | None = None) -> Snapshot:
        """Fetch and load a new snapshot. Concurrent callers share one fetch: a fetch that
        started after this call, or that covers generation ``at_least``, is good enough."""
        requested = time.monotonic()
        async with self._lock:
            if not force and self._snapshot.fetched_at >= requested:
                return self._snapshot
            if not force and at_least is not None and 0 < at_least <= self._loaded:
                age = time.monotonic() - self._snapshot.fetched_at
                if age <= self.max_age:
                    return self._snapshot
            generation = self._wanted
            started = time.monotonic()
            ref = f"refs/remotes/origin/{self.branch}"
            code, _ = await run_git(
                "fetch",
                "--quiet",
                "--prune",
                "origin",
                f"+refs/heads/{self.branch}:{ref}",
                cwd=self.path,
                check=False,
            )
            if code != 0:
                _, heads = await run_git("ls-remote", "--heads", "origin", cwd=self.path)
                if f"refs/heads/{self.branch}" in heads:
                    raise GitError(f"git fetch of {self.branch} failed", code="git-failed")
                # an empty remote (no commits yet) is a valid config repo
                self._snapshot = Snapshot(commit=None, fetched_at=started)
                self._loaded = generation
                return self._snapshot
            _, sha = await run_git("rev-parse", ref, cwd=self.path)
            sha = sha.strip()
            if sha != self._snapshot.commit:
                await run_git(
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "--quiet",
                    "--force",
                    "--detach",
                    sha,
                    cwd=self.path,
                )
                self._snapshot = self._load(sha, started)
            else:
                self._snapshot = replace(self._snapshot, commit=sha, fetched_at=started)
            self._loaded = generation
            return self._snapshot

    # ------------------------------------------------------------------ loading

    def _load(self, sha: str, fetched_at: float) -> Snapshot:
        environments = DEFAULT_ENVIRONMENTS
        env_error: str | None = None
        env_file = self.path / "environments.yaml"
        if env_file.is_file():
            try:
                environments = _parse_environments(env_file.read_text())
            except DocumentError as exc:
                env_error = str(exc)
                log.error(  # noqa: TRY400 - a config problem, not a crash
                    "environments.yaml is invalid; using the defaults (dev, staging, prod)",
                    error=env_error,
                    commit=sha,
                )
        policies: dict[str, PolicyFile] = {}
        policy_dir = self.path / "policies"
        if policy_dir.is_dir():
            for file in sorted(policy_dir.glob("*.yaml")):
                service = file.stem
                if not DNS_LABEL.fullmatch(service):
                    continue
                text = file.read_text(errors="replace")
                try:
                    policies[service] = PolicyFile(service, text, parse_policy(text, service), None)
                except DocumentError as exc:
                    log.error(  # noqa: TRY400 - a config problem, not a crash
                        "policy file is invalid; releases of this service are refused until "
                        "it is fixed",
                        service=service,
                        error=str(exc),
                        commit=sha,
                    )
                    policies[service] = PolicyFile(service, text, None, str(exc))
        deployments: dict[tuple[str, str], Deployment] = {}
        env_root = self.path / "environments"
        if env_root.is_dir():
            for spec_file in env_root.glob("*/*/*/artifact.json"):
                env_name, namespace, service = spec_file.parts[-4:-1]
                try:
                    spec = ArtifactSpec.model_validate(json.loads(spec_file.read_text()))
                except (ValueError, OSError) as exc:
                    log.warning("unreadable artifact.json", path=str(spec_file), error=str(exc))
                    continue
                deployments[(env_name, service)] = Deployment(env_name, namespace, service, spec)
        halts_file = self.path / HALTS_FILE
        halts = parse_halts(halts_file.read_text(errors="replace")) if halts_file.is_file() else {}
        marks = {
            file.stem: parse_marks(file.stem, file.read_text(errors="replace"))
            for file in sorted((self.path / "rejected").glob("*.yaml"))
            if DNS_LABEL.fullmatch(file.stem)
        }
        log.info(
            "config repo loaded",
            commit=sha,
            environments=environments.names(),
            policies=len(policies),
            deployments=len(deployments),
            halts=sorted(halts),
        )
        return Snapshot(
            sha, fetched_at, environments, env_error, policies, deployments, halts, marks
        )

    async def artifact(self, service: str, artifact_id: str) -> ArtifactSpec | None:
        """``builds/<service>/<artifactId>/artifact.json`` at the current snapshot."""
        if not DNS_LABEL.fullmatch(service) or not is_safe_segment(artifact_id):
            return None
        async with self._lock:
            file = self.path / "builds" / service / artifact_id / "artifact.json"
            if not file.is_file():
                return None
            try:
                return ArtifactSpec.model_validate(json.loads(file.read_text()))
            except (ValueError, OSError):
                return None

    async def build_environments(self, service: str, artifact_id: str) -> list[str]:
        """The environments the artifact has manifests for."""
        if not DNS_LABEL.fullmatch(service) or not is_safe_segment(artifact_id):
            return []
        async with self._lock:
            folder = self.path / "builds" / service / artifact_id
            if not folder.is_dir():
                return []
            return sorted(p.name for p in folder.iterdir() if p.is_dir())

    async def list_builds(self, service: str) -> list[ArtifactSpec]:
        """Every artifact under ``builds/<service>/`` (for a catalog that missed events)."""
        if not DNS_LABEL.fullmatch(service):
            return []
        found: list[ArtifactSpec] = []
        async with self._lock:
            folder = self.path / "builds" / service
            if not folder.is_dir():
                return []
            for spec_file in folder.glob("*/artifact.json"):
                try:
                    found.append(ArtifactSpec.model_validate(json.loads(spec_file.read_text())))
                except (ValueError, OSError):
                    continue
        return found

    async def files(
        self, commit: str, directory: str, keep: Callable[[str], bool] | None = None
    ) -> dict[str, bytes]:
        """Every file below ``directory`` at ``commit`` (relative paths; those ``keep`` accepts),
        as git holds it. ``directory`` is built by the caller from validated names only."""
        async with self._lock:
            return await read_files(self.path, commit, directory, keep)

    # ------------------------------------------------------------------ history

    async def history(
        self, service: str, environment: str | None = None, *, limit: int = 5000
    ) -> list[HistoryEntry]:
        """Release commits of ``service`` (in ``environment``), newest first, from the trailers."""
        snapshot = self._snapshot
        if snapshot.commit is None:
            return []
        cached = await self._history_at(snapshot.commit, limit)
        return [
            e
            for e in cached
            if e.artifact_id
            and e.environment
            and (environment is None or e.environment == environment)
            and e.intent in _RELEASE_INTENTS
            and e.service == service
        ]

    async def _history_at(self, commit: str, limit: int) -> list[HistoryEntry]:
        """Every release commit up to ``commit``, newest first (at most ``limit``).

        Read once, then extended with each fetch: when the commit read last is an ancestor
        of ``commit`` only the commits between them are read, so a long history costs its
        ``git log`` once rather than after every commit."""
        last = self._history_head
        if last is None or limit > self._history_limit:
            entries = await self._all_history(commit, limit)
            self._history_limit = limit
        elif last == commit:
            entries = self._history_cache[last]
        elif await self._is_ancestor(last, commit):
            newer = await self._all_history(f"{last}..{commit}", self._history_limit)
            entries = (newer + self._history_cache[last])[: self._history_limit]
        else:  # the branch was rewritten: read it again
            entries = await self._all_history(commit, self._history_limit)
        self._history_cache = {commit: entries}
        self._history_head = commit
        return entries[:limit]

    async def _is_ancestor(self, old: str, new: str) -> bool:
        code, _ = await run_git("merge-base", "--is-ancestor", old, new, cwd=self.path, check=False)
        return code == 0

    async def _all_history(self, revisions: str, limit: int) -> list[HistoryEntry]:
        _, out = await run_git(
            "log",
            f"--max-count={limit}",
            "--format=%H%x1f%cI%x1f%(trailers:only,unfold)%x1e",
            revisions,
            "--",
            "environments",
            cwd=self.path,
        )
        entries: list[HistoryEntry] = []
        for raw in out.split("\x1e"):
            record = raw.strip("\n")
            if not record.strip():
                continue
            parts = record.split("\x1f")
            if len(parts) < 3:
                continue
            sha, when, trailers_text = parts[0].strip(), parts[1].strip(), parts[2]
            trailers = parse_trailers(trailers_text)
            try:
                at = datetime.fromisoformat(when).astimezone(UTC)
            except ValueError:
                at = datetime.now(UTC)
            entries.append(
                HistoryEntry(
                    artifact_id=trailers.get("Ferry-Artifact-Id", ""),
                    commit_sha=sha,
                    at=at,
                    intent=trailers.get("Ferry-Intent", ""),
                    actor=trailers.get("Ferry-Actor", ""),
                    release_id=trailers.get("Ferry-Release-Id", ""),
                    promoted_from=trailers.get("Ferry-Promoted-From", ""),
                    environment=trailers.get("Ferry-Environment", ""),
                    service=trailers.get("Ferry-Service", ""),
                )
            )
        return entries
