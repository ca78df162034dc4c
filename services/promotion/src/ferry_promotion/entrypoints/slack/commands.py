"""The ``/ferry`` slash command's grammar: text in, a typed command (or the usage) out.

Pure: no I/O, no Slack, no FastAPI. Every parse error carries the usage of the
command that was meant, so the person sees how to write it right.

Grammar (words are separated by spaces; ``[...]`` is optional)::

    /ferry release <service> <artifact|branch> to <env> [at <time>]
    /ferry promote <service> [to] <env> [at <time>]
    /ferry rollback <service> in <env> [to <artifact>] [at <time>]
    /ferry cancel <release> [reason...]
    /ferry status <service>
    /ferry history <service> [env]
    /ferry approve <release>
    /ferry reject <release> <reason...>
    /ferry halt <env|*> <reason...>
    /ferry resume <env|*>
    /ferry help [command]

``<time>`` is a 24-hour ``HH:MM`` (the next such time in the requester's Slack time zone) or
an RFC 3339 time with an offset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from ferry_events import DNS_LABEL, is_safe_segment
from ferry_promotion.domain.schedule import parse_at, wall_clock
from ferry_promotion.errors import Invalid

__all__ = [
    "USAGE",
    "ApproveCommand",
    "CancelCommand",
    "Command",
    "CommandError",
    "HaltCommand",
    "HelpCommand",
    "HistoryCommand",
    "PromoteCommand",
    "RejectCommand",
    "ReleaseCommand",
    "RollbackCommand",
    "StatusCommand",
    "command_name",
    "form_fields",
    "help_text",
    "parse",
]

USAGE: Final[dict[str, str]] = {
    "release": "/ferry release <service> <artifact|branch> to <env> [at HH:MM]",
    "promote": "/ferry promote <service> [to] <env> [at HH:MM]",
    "rollback": "/ferry rollback <service> in <env> [to <artifact>] [at HH:MM]",
    "cancel": "/ferry cancel <release> [reason]",
    "status": "/ferry status <service>",
    "history": "/ferry history <service> [env]",
    "approve": "/ferry approve <release>",
    "reject": "/ferry reject <release> <reason>",
    "halt": "/ferry halt <env|*> <reason>",
    "resume": "/ferry resume <env|*>",
    "help": "/ferry help [command]",
}

_EXPLAIN: Final[dict[str, str]] = {
    "release": "release an artifact by id, or the latest artifact of a branch",
    "promote": "promote what runs in the environment before <env> to <env>",
    "rollback": "roll back to the previous release in <env>, or to a named artifact",
    "cancel": "cancel a scheduled release (one asked for `at` a time) before its time",
    "status": "what runs where: artifact, commit and rollout per environment",
    "history": "the latest releases of a service, optionally of one environment",
    "approve": "approve a release that waits for approval",
    "reject": "reject a release that waits for approval, with a reason",
    "halt": "stop the line: refuse every request to <env> (* for all) but rollbacks (admin)",
    "resume": "lift the halt of <env> (admin)",
    "help": "this help, or the usage of one command",
}

#: Release ids are UUIDs in Ferry, but any safe token is accepted here; the
#: application layer answers "no such release" for the rest.
_RELEASE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

#: A git branch name as CI reports it (``feature/login``); stricter than git itself.
_BRANCH: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")

#: Typographic quotes and dashes that Slack clients substitute for plain ones.
_TYPOGRAPHY: Final = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


@dataclass(frozen=True)
class ReleaseCommand:
    """Release ``target`` to ``environment``: an artifact id or a branch (the caller decides).

    ``at`` (on release, promote and rollback): when, as written (``02:00`` or RFC 3339);
    None for now.
    """

    service: str
    target: str
    environment: str
    at: str | None = None


@dataclass(frozen=True)
class PromoteCommand:
    service: str
    environment: str
    at: str | None = None


@dataclass(frozen=True)
class RollbackCommand:
    service: str
    environment: str
    artifact_id: str | None = None
    at: str | None = None


@dataclass(frozen=True)
class CancelCommand:
    release_id: str
    reason: str = ""


@dataclass(frozen=True)
class StatusCommand:
    service: str


@dataclass(frozen=True)
class HistoryCommand:
    service: str
    environment: str | None = None


@dataclass(frozen=True)
class ApproveCommand:
    release_id: str


@dataclass(frozen=True)
class RejectCommand:
    release_id: str
    reason: str


@dataclass(frozen=True)
class HaltCommand:
    """``halt`` (``halted``) or ``resume`` of an environment, ``*`` for every one."""

    environment: str
    halted: bool
    reason: str = ""


@dataclass(frozen=True)
class HelpCommand:
    topic: str | None = None


Command = (
    ReleaseCommand
    | PromoteCommand
    | RollbackCommand
    | CancelCommand
    | StatusCommand
    | HistoryCommand
    | ApproveCommand
    | RejectCommand
    | HaltCommand
    | HelpCommand
)


class CommandError(ValueError):
    """The text is not a valid ``/ferry`` command. ``usage`` shows how to write it."""

    def __init__(self, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.command = command

    @property
    def usage(self) -> str:
        if self.command in USAGE:
            return f"Usage: `{USAGE[self.command]}`"
        return help_text()

    def text(self) -> str:
        """What the person sees: what was wrong, then how to write it."""
        return f"{self.message}\n{self.usage}"


def help_text() -> str:
    lines = ["*Ferry* commands:"]
    lines += [f"• `{USAGE[name]}`: {_EXPLAIN[name]}" for name in USAGE]
    return "\n".join(lines)


def _service(value: str, command: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise CommandError(
            f"`{value}` is not a service name (lower-case letters, digits and dashes).", command
        )
    return value


def _environment(value: str, command: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise CommandError(
            f"`{value}` is not an environment name (lower-case letters, digits and dashes).",
            command,
        )
    return value


def _artifact(value: str, command: str) -> str:
    if not is_safe_segment(value):
        raise CommandError(f"`{value}` is not an artifact id or branch name.", command)
    return value


def _artifact_or_branch(value: str, command: str) -> str:
    if is_safe_segment(value) or (_BRANCH.fullmatch(value) and ".." not in value):
        return value
    raise CommandError(f"`{value}` is not an artifact id or branch name.", command)


def _release_id(value: str, command: str) -> str:
    if not _RELEASE_ID.fullmatch(value):
        raise CommandError(f"`{value}` is not a release id.", command)
    return value


def _expect(words: list[str], index: int, keyword: str, command: str) -> None:
    found = words[index] if index < len(words) else None
    if found is None or found.lower() != keyword:
        shown = f"`{found}`" if found is not None else "nothing"
        raise CommandError(f"Expected `{keyword}` here, found {shown}.", command)


def _count(words: list[str], allowed: tuple[int, ...], command: str) -> None:
    if len(words) not in allowed:
        need = " or ".join(str(n - 1) for n in allowed)
        raise CommandError(
            f"`{command}` takes {need} word(s) after it; got {len(words) - 1}.", command
        )


def _when(words: list[str], command: str, sizes: tuple[int, ...]) -> tuple[list[str], str | None]:
    """``words`` without a trailing ``at <time>``, and the time (checked, as written); a
    trailing ``at`` is a time only where the words before it make the whole command."""
    if len(words) < 3 or words[-2].lower() != "at" or len(words) - 2 not in sizes:
        return words, None
    at = words[-1]
    if wall_clock(at) is None:
        try:
            parse_at(at)
        except Invalid:
            raise CommandError(
                f"`{at}` is not a time: write a 24-hour HH:MM such as `02:00` (in your Slack "
                "time zone), or an RFC 3339 time with an offset such as `2026-12-24T02:00:00Z`.",
                command,
            ) from None
    return words[:-2], at


def _parse_release(words: list[str]) -> ReleaseCommand:
    words, at = _when(words, "release", (5,))
    _count(words, (5,), "release")
    _expect(words, 3, "to", "release")
    return ReleaseCommand(
        service=_service(words[1], "release"),
        target=_artifact_or_branch(words[2], "release"),
        environment=_environment(words[4], "release"),
        at=at,
    )


def _parse_promote(words: list[str]) -> PromoteCommand:
    words, at = _when(words, "promote", (3, 4))
    _count(words, (3, 4), "promote")
    if len(words) == 4:
        _expect(words, 2, "to", "promote")
    elif words[2].lower() == "to":
        raise CommandError("Expected an environment after `to`, found nothing.", "promote")
    return PromoteCommand(
        service=_service(words[1], "promote"), environment=_environment(words[-1], "promote"), at=at
    )


def _parse_rollback(words: list[str]) -> RollbackCommand:
    words, at = _when(words, "rollback", (4, 6))
    _count(words, (4, 6), "rollback")
    _expect(words, 2, "in", "rollback")
    artifact = None
    if len(words) == 6:
        _expect(words, 4, "to", "rollback")
        artifact = _artifact(words[5], "rollback")
    return RollbackCommand(
        service=_service(words[1], "rollback"),
        environment=_environment(words[3], "rollback"),
        artifact_id=artifact,
        at=at,
    )


def _parse_cancel(words: list[str]) -> CancelCommand:
    if len(words) < 2:
        raise CommandError("`cancel` needs the id of a scheduled release.", "cancel")
    reason = " ".join(words[2:]).strip().strip("\"'").strip()
    return CancelCommand(release_id=_release_id(words[1], "cancel"), reason=reason)


def _parse_status(words: list[str]) -> StatusCommand:
    _count(words, (2,), "status")
    return StatusCommand(service=_service(words[1], "status"))


def _parse_history(words: list[str]) -> HistoryCommand:
    _count(words, (2, 3), "history")
    env = _environment(words[2], "history") if len(words) == 3 else None
    return HistoryCommand(service=_service(words[1], "history"), environment=env)


def _parse_approve(words: list[str]) -> ApproveCommand:
    _count(words, (2,), "approve")
    return ApproveCommand(release_id=_release_id(words[1], "approve"))


def _parse_reject(words: list[str]) -> RejectCommand:
    if len(words) < 3:
        raise CommandError("`reject` needs a release id and a reason.", "reject")
    reason = " ".join(words[2:]).strip().strip("\"'").strip()
    if not reason:
        raise CommandError("`reject` needs a reason.", "reject")
    return RejectCommand(release_id=_release_id(words[1], "reject"), reason=reason)


def _halt_target(value: str, command: str) -> str:
    return value if value == "*" else _environment(value, command)


def _parse_halt(words: list[str]) -> HaltCommand:
    if len(words) < 3:
        raise CommandError("`halt` needs an environment (or *) and a reason.", "halt")
    reason = " ".join(words[2:]).strip().strip("\"'").strip()
    if not reason:
        raise CommandError("`halt` needs a reason.", "halt")
    return HaltCommand(environment=_halt_target(words[1], "halt"), halted=True, reason=reason)


def _parse_resume(words: list[str]) -> HaltCommand:
    _count(words, (2,), "resume")
    return HaltCommand(environment=_halt_target(words[1], "resume"), halted=False)


def _parse_help(words: list[str]) -> HelpCommand:
    topic = words[1].lower() if len(words) > 1 else None
    return HelpCommand(topic=topic if topic in USAGE else None)


_PARSERS: Final[dict[str, Callable[[list[str]], Command]]] = {
    "release": _parse_release,
    "promote": _parse_promote,
    "rollback": _parse_rollback,
    "cancel": _parse_cancel,
    "status": _parse_status,
    "history": _parse_history,
    "approve": _parse_approve,
    "reject": _parse_reject,
    "halt": _parse_halt,
    "resume": _parse_resume,
    "help": _parse_help,
}


def parse(text: str) -> Command:
    """Parse the text after ``/ferry``. Raises :class:`CommandError` with the usage."""
    words = text.translate(_TYPOGRAPHY).split()
    if not words:
        return HelpCommand()
    name = words[0].lower()
    parser = _PARSERS.get(name)
    if parser is None:
        raise CommandError(f"`{words[0]}` is not a Ferry command.")
    return parser([name, *words[1:]])


def command_name(command: Command) -> str:
    """``release``, ``promote``, ... for logs and metrics."""
    if isinstance(command, HaltCommand):
        return "halt" if command.halted else "resume"
    return type(command).__name__.removesuffix("Command").lower()


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of a form-encoded Slack request body (empty when it is not UTF-8)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items() if v}
