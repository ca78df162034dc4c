"""How results and errors reach the terminal: Rich tables for people, JSON for scripts.

``--output json`` prints exactly one JSON document on stdout (the API's own
document where there is one, so its keys are the contract's camelCase keys);
errors then go to stderr as a JSON problem document too. Rich is imported
only when something is printed as a table.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ferry_cli.errors import CliError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


_PIPED_WIDTH = 160
_UNBOUNDED = 10_000
_consoles: dict[bool, Console] = {}


def console(*, stderr: bool = False) -> Console:
    """The Rich console for stdout (or stderr), built on first use."""
    found = _consoles.get(stderr)
    stream = sys.stderr if stderr else sys.stdout
    if found is None or found.file is not stream:
        from rich.console import Console

        # Piped output (CI logs, scripts) is not cut at 80 columns mid-artifact-id.
        width = None if stream.isatty() or os.environ.get("COLUMNS") else _PIPED_WIDTH
        found = Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False, width=width)
        _consoles[stderr] = found
    return found


def print_table(renderable: RenderableType) -> None:
    """Print a table on stdout; when stdout is not a terminal, as wide as it needs to be.

    Piped output (CI logs, ``grep``, scripts) is never cut or folded: a release id or an
    artifact id stays whole on its line, however many columns the table has.
    """
    out = console()
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.measure import Measurement

    unbounded = out.options.update(max_width=_UNBOUNDED)
    needed = Measurement.get(out, unbounded, renderable).maximum
    width = out.width
    out.width = max(width, min(needed, _UNBOUNDED))  # print() itself never goes wider
    try:
        out.print(renderable, crop=False)
    finally:
        out.width = width


def print_json(document: Any) -> None:
    """One JSON document on stdout, keys sorted so that output is stable."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A line for people on stderr (progress, warnings); never part of JSON output."""
    console(stderr=True).print(text)


def print_error(error: CliError, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        document: dict[str, object] = {
            "error": error.message,
            "exitCode": int(error.code),
        }
        if error.details:
            document["details"] = error.details
        if error.hint:
            document["hint"] = error.hint
        if error.payload is not None:
            document["problem"] = error.payload
        sys.stderr.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        return
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(error.message)}")
    for line in error.details:
        err.print(f"  - {escape(line)}")
    if error.hint:
        err.print(f"[dim]hint:[/] {escape(error.hint)}")
