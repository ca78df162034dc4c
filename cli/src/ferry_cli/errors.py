"""Exit codes a script can rely on, and the one error type commands raise.

Exit codes::

    0  OK          the operation succeeded
    1  REFUSED     the operation was refused or failed (a rejected release, a 4xx problem,
                   an unroutable publish, a timeout while waiting for an outcome)
    2  USAGE       bad arguments or input (a missing file, invalid JSON or YAML)
    3  UNREACHABLE the server or the broker could not be reached
    4  AUTH        the credential was missing, wrong or not allowed (401/403, broker login)

Commands raise :class:`CliError`; ``app.main`` prints its message (never a
traceback) and exits with its code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    UNREACHABLE = 3
    AUTH = 4


class CliError(Exception):
    """An error a person reads: what was wrong and what to do next.

    ``details`` are extra lines (one per field error, policy violation, reason);
    ``payload`` is what ``--output json`` prints on stderr (a problem document).
    """

    def __init__(
        self,
        message: str,
        code: ExitCode = ExitCode.REFUSED,
        *,
        details: list[str] | None = None,
        hint: str | None = None,
        payload: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or []
        self.hint = hint
        self.payload = payload
