"""A cycle's view of the config repo: the branch as fetched, plus the commits planned on top of
it in memory, which the domain plans against (it is a ``TreeReader``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ferry_gitwriter.domain.changes import CommitPlan, Held
from ferry_gitwriter.domain.plan import held_from


class BranchReader(Protocol):
    """What a session reads of the fetched branch (the :class:`ConfigWriter` does it)."""

    def read_blob(self, commit: str | None, path: str) -> bytes | None: ...

    def read_tree(self, commit: str | None, directory: str) -> dict[str, bytes]: ...

    def subfolders(self, commit: str | None, directory: str) -> list[str]: ...

    def file_paths(self, commit: str | None, directory: str) -> list[str]: ...

    def last_commit_touching(self, commit: str | None, path: str) -> str | None: ...

    def trailers_of_last_change(self, commit: str | None, path: str) -> list[tuple[str, str]]: ...

    def commit_for_event(self, event_id: str) -> str | None: ...


@dataclass(slots=True)
class PlannedCommit:
    """A commit of a session: its fast-import mark and its plan."""

    mark: int
    plan: CommitPlan


@dataclass
class Session:
    """The branch as fetched, plus the commits planned on top of it in this cycle.

    It is the :class:`~ferry_gitwriter.domain.changes.TreeReader` the domain plans against.
    """

    repo: BranchReader
    base: str | None
    overlay: dict[str, bytes | None] = field(default_factory=dict)
    commits: list[PlannedCommit] = field(default_factory=list)
    #: event id -> mark of the commit this session made for it
    event_marks: dict[str, int] = field(default_factory=dict)
    #: path -> mark of the last commit in this session that touched it
    touched: dict[str, int] = field(default_factory=dict)
    #: folder -> the overlay paths below it (every ancestor folder of each path)
    _below: dict[str, set[str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ TreeReader

    def read(self, path: str) -> bytes | None:
        if path in self.overlay:
            return self.overlay[path]
        return self.repo.read_blob(self.base, path)

    def files_under(self, directory: str) -> dict[str, bytes]:
        prefix = directory.rstrip("/") + "/"
        files = self.repo.read_tree(self.base, directory)
        for path in self._below.get(directory.rstrip("/"), ()):
            relative = path[len(prefix) :]
            content = self.overlay[path]
            if content is None:
                files.pop(relative, None)
            else:
                files[relative] = content
        return files

    def subfolders(self, directory: str) -> set[str]:
        directory = directory.rstrip("/")
        prefix = directory + "/"
        names = set(self.repo.subfolders(self.base, directory))
        touched: dict[str, list[str]] = {}
        for path in self._below.get(directory, ()):
            name, slash, _ = path[len(prefix) :].partition("/")
            if slash:
                touched.setdefault(name, []).append(path)
        for name, below in touched.items():
            if any(self.overlay[path] is not None for path in below):
                names.add(name)
            elif name in names:
                # every change below it this session is a deletion: does any base file survive?
                deleted = set(below)
                folder = f"{prefix}{name}"
                base_files = self.repo.file_paths(self.base, folder)
                if all(f"{folder}/{relative}" in deleted for relative in base_files):
                    names.discard(name)
        return names

    def held(self, folder: str) -> Held | None:
        folder = folder.rstrip("/")
        if folder in self.touched:
            return held_from(self.commits[self.touched[folder] - 1].plan.trailers)
        return held_from(self.repo.trailers_of_last_change(self.base, folder))

    def _set(self, path: str, content: bytes | None) -> None:
        self.overlay[path] = content
        folder = path
        while "/" in folder:
            folder = folder.rpartition("/")[0]
            self._below.setdefault(folder, set()).add(path)

    # ------------------------------------------------------------------ planning

    def commit_for(self, event_id: str) -> int | str | None:
        """The mark (this session) or sha (on the branch) of the commit made for ``event_id``."""
        if event_id in self.event_marks:
            return self.event_marks[event_id]
        return self.repo.commit_for_event(event_id)

    def add(self, event_id: str, plan: CommitPlan) -> int:
        """Plan ``plan`` as the next commit; returns its mark."""
        mark = len(self.commits) + 1
        for folder, files in plan.folders.items():
            for relative in self.files_under(folder):
                self._set(f"{folder}/{relative}", None)
            for relative, content in files.items():
                self._set(f"{folder}/{relative}", content)
            self.touched[folder] = mark
        for path, maybe in plan.files.items():
            self._set(path, maybe)
            self.touched[path] = mark
        self.commits.append(PlannedCommit(mark, plan))
        self.event_marks[event_id] = mark
        return mark

    def last_change(self, path: str) -> int | str | None:
        """The mark or sha of the last commit that touched ``path`` (None: never)."""
        if path in self.touched:
            return self.touched[path]
        return self.repo.last_commit_touching(self.base, path)
