"""The config repository, through GitPython and the git CLI: fetch, read, commit, push.

git-writer keeps a bare clone (``<data dir>/git-writer/config.git``). It has no
work tree to get dirty: every cycle reads the branch as fetched from the
remote, plans its commits on top of it in memory (:class:`Session`), writes them
in one ``git fast-import`` run and pushes them in one ``git push``. A failed
push leaves nothing behind: the next cycle starts again from what the remote
holds.

Errors::

    RepoError
    ├── RemoteUnavailable   fetch or push failed: remote down, unreachable, refusing (retry later)
    └── PushRejected        someone else pushed first (non-fast-forward): fetch and re-apply
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Final

import git
from git.exc import GitCommandError

from ferry_gitwriter.adapters.fastimport import write_stream
from ferry_gitwriter.adapters.session import PlannedCommit, Session
from ferry_gitwriter.domain.changes import EVENT_ID, Identity
from ferry_runtime import get_logger, mask_secrets, mask_url

__all__ = [
    "ConfigWriter",
    "PlannedCommit",
    "PushRejected",
    "RemoteUnavailable",
    "RepoError",
    "Session",
    "ensure_bare_remote",
]

log = get_logger(__name__)

WORK_REF: Final = "refs/ferry/work"
REPACK_EVERY: Final = 200
_FIELD: Final = "\x1f"


class RepoError(Exception):
    """A git operation on the config repo failed."""


class RemoteUnavailable(RepoError):
    """The remote could not be fetched from or pushed to; nothing was written."""


class PushRejected(RepoError):
    """The remote branch moved since the fetch (someone else pushed): fetch and re-apply."""


class ConfigWriter:
    """git-writer's clone of the config repo. Every method blocks: call it from a thread."""

    def __init__(
        self,
        path: Path,
        url: str,
        *,
        branch: str = "main",
        committer: Identity,
        timeout: float = 60.0,
        before_push: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.url = url
        self.branch = branch
        self.committer = committer
        self.timeout = timeout
        self._before_push = before_push
        self._repo: git.Repo | None = None
        self._head: str | None = None
        self._indexed = False
        self._events: dict[str, str] = {}
        self._objects: dict[str, git.Tree | git.Blob | None] = {}
        self._objects_of: str | None = None
        self.pushes = 0

    # ------------------------------------------------------------------ set-up

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            raise RuntimeError("ConfigWriter.open() was not called")
        return self._repo

    @property
    def opened(self) -> bool:
        return self._repo is not None

    @property
    def head(self) -> str | None:
        """The branch head as last fetched or pushed (None: the branch has no commits)."""
        return self._head

    def open(self) -> None:
        """Create the bare clone if needed and point ``origin`` at the configured URL."""
        if (self.path / "HEAD").exists():
            repo = git.Repo(self.path)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(self.path, bare=True)
        repo.git.update_environment(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="")
        with repo.config_writer() as config:
            config.set_value('protocol "ext"', "allow", "never")
            config.set_value("fetch", "prune", "true")
            # No background work inside a cycle: git-writer repacks on its own schedule.
            config.set_value("fetch", "writeFetchHEAD", "false")
            config.set_value("maintenance", "auto", "false")
            config.set_value("gc", "auto", "0")
        names = [remote.name for remote in repo.remotes]
        if "origin" in names:
            origin = repo.remote("origin")
            if origin.url != self.url:
                repo.delete_remote(origin)
                names.remove("origin")
        if "origin" not in names:
            repo.create_remote("origin", self.url)
        self._repo = repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _git(self, *args: str, istream: BinaryIO | None = None) -> str:
        result = self.repo.git.execute(
            ["git", *args], istream=istream, kill_after_timeout=self.timeout
        )
        return str(result)

    # ------------------------------------------------------------------ fetch

    def sync(self) -> Session:
        """Fetch the branch and start a session on it. Raises :class:`RemoteUnavailable`."""
        started = time.perf_counter()
        try:
            self._git("fetch", "--quiet", "--prune", "origin")
        except GitCommandError as exc:
            raise RemoteUnavailable(
                self._masked(f"cannot fetch the config repo from {self.url}: {_stderr(exc)}")
            ) from exc
        head = self._remote_head()
        self._update_index(head)
        self._head = head
        log.debug("fetched", head=head, seconds=round(time.perf_counter() - started, 4))
        return Session(repo=self, base=head)

    def _masked(self, text: str) -> str:
        """``text`` with the credentials of the remote's URL, or of any URL, masked (it goes
        into dead letters and logs)."""
        return mask_secrets(text.replace(self.url, mask_url(self.url)))

    def _remote_head(self) -> str | None:
        ref = git.Reference(self.repo, f"refs/remotes/origin/{self.branch}")
        try:
            return str(ref.commit.hexsha)
        except ValueError:  # no such ref: the remote branch has no commits yet
            return None

    # ------------------------------------------------------------------ the trailer index

    def commit_for_event(self, event_id: str) -> str | None:
        """The commit on the branch whose ``Ferry-Event-Id`` trailer is ``event_id``."""
        return self._events.get(event_id)

    def _update_index(self, head: str | None) -> None:
        if head == self._head and self._indexed:
            return
        if head is None:
            self._events = {}
        elif self._indexed and self._head is not None and self._is_ancestor(self._head, head):
            self._index_log(f"{self._head}..{head}")
        else:
            self._events = {}
            self._index_log(head)
        self._indexed = True

    def _is_ancestor(self, old: str, new: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", old, new)
        except GitCommandError:
            return False
        return True

    def _index_log(self, revisions: str) -> None:
        out = self._git(
            "log",
            "--reverse",
            f"--format=%H{_FIELD}%(trailers:key={EVENT_ID},valueonly,separator=%x1f)",
            revisions,
        )
        for line in out.splitlines():
            sha, *event_ids = line.split(_FIELD)
            for event_id in event_ids:
                if event_id.strip():
                    self._events.setdefault(event_id.strip(), sha)

    # ------------------------------------------------------------------ reading

    def _tree(self, commit: str | None, path: str) -> git.Tree | git.Blob | None:
        """The object at ``path`` in ``commit``, memoised: a commit's trees never change."""
        if commit is None:
            return None
        if commit != self._objects_of:
            self._objects = {"": self.repo.commit(commit).tree}
            self._objects_of = commit
        if path in self._objects:
            return self._objects[path]
        parent_path, _, name = path.rpartition("/")
        parent = self._tree(commit, parent_path)
        found: git.Tree | git.Blob | None = None
        if isinstance(parent, git.Tree):
            try:
                child = parent[name]
            except KeyError:
                child = None
            if isinstance(child, git.Tree | git.Blob):
                found = child
        self._objects[path] = found
        return found

    def read_blob(self, commit: str | None, path: str) -> bytes | None:
        obj = self._tree(commit, path)
        if not isinstance(obj, git.Blob):
            return None
        data: bytes = obj.data_stream.read()
        return data

    def read_tree(self, commit: str | None, directory: str) -> dict[str, bytes]:
        obj = self._tree(commit, directory)
        if not isinstance(obj, git.Tree):
            return {}
        prefix = directory.rstrip("/") + "/"
        files: dict[str, bytes] = {}
        for item in obj.traverse():
            if isinstance(item, git.Blob):
                files[str(item.path)[len(prefix) :]] = item.data_stream.read()
        return files

    def subfolders(self, commit: str | None, directory: str) -> list[str]:
        """The names of the trees directly below ``directory`` in ``commit``."""
        obj = self._tree(commit, directory)
        if not isinstance(obj, git.Tree):
            return []
        return [str(tree.name) for tree in obj.trees]

    def file_paths(self, commit: str | None, directory: str) -> list[str]:
        """The paths of the files below ``directory`` in ``commit``, relative to it (no content)."""
        obj = self._tree(commit, directory)
        if not isinstance(obj, git.Tree):
            return []
        prefix = directory.rstrip("/") + "/"
        return [
            str(item.path)[len(prefix) :] for item in obj.traverse() if isinstance(item, git.Blob)
        ]

    def last_commit_touching(self, commit: str | None, path: str) -> str | None:
        if commit is None:
            return None
        out = self._git("log", "-1", "--format=%H", commit, "--", path).strip()
        return out or None

    def trailers_of_last_change(self, commit: str | None, path: str) -> list[tuple[str, str]]:
        """The trailers of the last commit that changed ``path`` (empty: none)."""
        if commit is None:
            return []
        out = self._git("log", "-1", "--format=%(trailers:only,unfold)", commit, "--", path)
        pairs = []
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                pairs.append((key.strip(), value.strip()))
        return pairs

    # ------------------------------------------------------------------ writing

    def commit_and_push(self, session: Session) -> dict[int, str]:
        """Write the session's commits and push them in one push; returns mark -> sha.

        Raises :class:`PushRejected` when the remote moved, :class:`RemoteUnavailable`
        when it cannot be reached. Either way the remote is untouched.
        """
        if not session.commits:
            return {}
        marks = self._fast_import(session.base, session.commits)
        tip = marks[session.commits[-1].mark]
        if self._before_push is not None:
            self._before_push()
        self._push(tip)
        self.pushes += 1
        if self.pushes % REPACK_EVERY == 0:
            self._repack()
        for event_id, mark in session.event_marks.items():
            self._events.setdefault(event_id, marks[mark])
        self._head = tip
        return marks

    def _fast_import(self, base: str | None, commits: Iterable[PlannedCommit]) -> dict[int, str]:
        with tempfile.TemporaryDirectory(prefix="fast-import-", dir=self.path.parent) as scratch:
            stream_path = Path(scratch) / "stream"
            marks_path = Path(scratch) / "marks"
            with stream_path.open("wb") as stream:
                write_stream(stream, base, list(commits), self.committer, ref=WORK_REF)
            with stream_path.open("rb") as stream:
                try:
                    self._git(
                        "fast-import",
                        "--quiet",
                        "--force",
                        "--done",
                        "--date-format=raw",
                        f"--export-marks={marks_path}",
                        istream=stream,
                    )
                except GitCommandError as exc:
                    raise RepoError(f"git fast-import failed: {_stderr(exc)}") from exc
            marks: dict[int, str] = {}
            for line in marks_path.read_text().splitlines():
                mark, sha = line.split()
                marks[int(mark.lstrip(":"))] = sha
        return marks

    def _repack(self) -> None:
        """Pack the loose objects and packs fast-import and fetch leave behind, now and then."""
        try:
            self._git("-c", "gc.auto=6700", "-c", "gc.autoPackLimit=50", "gc", "--auto", "--quiet")
        except GitCommandError as exc:
            log.warning("git gc failed; will try again later", error=_stderr(exc))

    def _push(self, tip: str) -> None:
        try:
            self._git("push", "--porcelain", "origin", f"{WORK_REF}:refs/heads/{self.branch}")
        except GitCommandError as exc:
            text = f"{exc.stdout or ''}\n{exc.stderr or ''}"
            if _is_rejection(text):
                raise PushRejected(
                    f"the config repo's {self.branch} moved since it was fetched"
                ) from exc
            raise RemoteUnavailable(
                self._masked(f"cannot push to the config repo at {self.url}: {_stderr(exc)}")
            ) from exc
        log.debug("pushed", tip=tip)


def _is_rejection(text: str) -> bool:
    if "[rejected]" in text:  # non-fast-forward, fetch first, stale info
        return True
    racing = ("failed to update ref", "cannot lock ref", "but expected", "incorrect old value")
    return "[remote rejected]" in text and any(marker in text for marker in racing)


def _stderr(exc: GitCommandError) -> str:
    """What git said, on one line, with the credentials of any URL in it masked."""
    text = str(exc.stderr or exc.stdout or exc).strip()
    for prefix in ("stderr:", "stdout:"):
        text = text.removeprefix(prefix).strip()
    return mask_secrets(" ".join(text.strip("'").split()) or str(exc))


def ensure_bare_remote(path: Path, branch: str) -> Path:
    """The default config repo: a bare repository under the data dir, created when absent."""
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True)
        git.Repo.init(path, bare=True, initial_branch=branch)
    return path
