"""The ``git fast-import`` stream of a cycle's commits: each commit's author, committer,
message and the files it writes or deletes, on top of the fetched branch."""

from __future__ import annotations

import time
from typing import BinaryIO

from ferry_gitwriter.adapters.session import PlannedCommit
from ferry_gitwriter.domain.changes import Identity


def write_stream(
    stream: BinaryIO,
    base: str | None,
    commits: list[PlannedCommit],
    committer: Identity,
    *,
    ref: str,
) -> None:
    """Write ``commits`` (the first on top of ``base``) as a fast-import stream onto ``ref``."""
    write = stream.write
    when = int(time.time())
    for index, commit in enumerate(commits):
        plan = commit.plan
        write(f"commit {ref}\nmark :{commit.mark}\n".encode())
        write(b"author " + _who(plan.author or committer, when) + b"\n")
        write(b"committer " + _who(committer, when) + b"\n")
        _data(stream, plan.message().encode())
        if index == 0 and base is not None:
            write(f"from {base}\n".encode())
        for folder, files in plan.folders.items():
            write(f"D {folder}\n".encode())
            for relative, content in sorted(files.items()):
                _modify(stream, f"{folder}/{relative}", content)
        for path, maybe in plan.files.items():
            if maybe is None:
                write(f"D {path}\n".encode())
            else:
                _modify(stream, path, maybe)
        write(b"\n")
    write(b"done\n")


def _data(stream: BinaryIO, payload: bytes) -> None:
    stream.write(f"data {len(payload)}\n".encode())
    stream.write(payload)
    stream.write(b"\n")


def _who(identity: Identity, when: int) -> bytes:
    return f"{identity.name} <{identity.email}> {when} +0000".encode()


def _modify(stream: BinaryIO, path: str, content: bytes) -> None:
    stream.write(f"M 100644 inline {path}\n".encode())
    _data(stream, content)
