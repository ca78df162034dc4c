"""release, promote, rollback, get, approve, reject, cancel and watch."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from ferry_cli.common import OutputOpt, ServerOpt, Session, TokenOpt, command, session, show
from ferry_cli.errors import CliError, ExitCode
from ferry_cli.output import console, note, print_json

Json = dict[str, Any]

FAILED = frozenset({"rejected", "failed"})

Service = Annotated[str, typer.Argument(help="The service, as named in its artifact.json.")]
ReleaseId = Annotated[str, typer.Argument(help="The release id that release/promote printed.")]
Reason = Annotated[
    str, typer.Option("--reason", "-r", metavar="R", help="Why; kept in the audit trail.")
]
Watch = Annotated[
    bool, typer.Option("--watch", "-w", help="Follow the release until it is rolled out.")
]
NoWait = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Print the receipt and exit at once; do not wait for the decision.",
    ),
]
WaitFor = Annotated[
    float,
    typer.Option(
        "--wait-timeout",
        metavar="S",
        min=0.0,
        help="How long to wait for the decision before printing the receipt.",
    ),
]
WAIT_SECONDS = 10.0
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Change nothing: show the diff the release would commit and each policy's verdict "
        "now (exit 1 when it would be rejected).",
    ),
]
At = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Schedule it: an RFC 3339 time with an offset (2026-12-24T02:00:00Z), or HH:MM, "
        "the next such time on this machine's clock. Its policies are checked then; "
        "ferry cancel ID cancels it before.",
    ),
]
_WALL_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def when(value: str | None, now: datetime | None = None) -> str | None:
    """``--at`` as the API takes it: RFC 3339 is sent as given (the server checks it);
    ``HH:MM`` becomes the next such time in this machine's time zone, with its offset."""
    if value is None:
        return None
    found = _WALL_CLOCK.fullmatch(value.strip())
    if found is None:
        return value.strip()
    # naive local wall-clock arithmetic; astimezone() then applies that day's offset
    local = (now or datetime.now(UTC)).astimezone().replace(tzinfo=None)
    moment = local.replace(hour=int(found.group(1)), minute=int(found.group(2)), second=0)
    moment = moment.replace(microsecond=0)
    if moment <= local:
        moment += timedelta(days=1)
    return moment.astimezone().isoformat()


Override = Annotated[
    bool,
    typer.Option(
        "--override-freeze", help="Release during a freeze window (admins; needs --reason)."
    ),
]


def _dry_run(s: Session, unsupported: str = "", **query: str | None) -> None:
    """Print ``GET /v1/releases/preview``: coloured on a terminal (not with NO_COLOR set), plain
    when piped; exit 1 when the request would be rejected or git-writer would fail it.
    ``unsupported``: why the options given cannot be previewed (a usage error)."""
    if unsupported:
        raise CliError(
            unsupported,
            ExitCode.USAGE,
            hint="ferry release SERVICE --artifact ID --to ENV --dry-run previews one artifact",
        )
    preview = s.client().preview(**query)  # type: ignore[arg-type]
    if s.json:
        print_json(preview)
    else:
        from ferry_cli import render

        out = console()
        for line in render.preview_view(preview):
            out.print(line, soft_wrap=True)
    if preview.get("outcome") == "reject" or preview.get("commitFailure"):
        raise typer.Exit(int(ExitCode.REFUSED))


def _submitted(s: Session, created: Json, watch: bool, wait: float) -> None:
    """After a request was accepted: follow it (``--watch``), wait for its decision (the
    default, up to ``wait`` seconds), or print the receipt (``--no-wait``, ``wait == 0``)."""
    release_id = str(created.get("releaseId", ""))
    if created.get("status") == "scheduled":
        _show_scheduled(s, created, watch)
        return
    if watch:
        follow(s, release_id, until="rolled-out", timeout=600.0, interval=1.0)
        return
    if wait > 0:
        decided = await_decision(s, release_id, timeout=wait)
        if decided is not None:
            _show_decided(s, decided)
            return
    if s.json:
        print_json(created)
        return
    from rich.markup import escape

    pending = "" if wait <= 0 else f" (not decided within {wait:g} s)"
    console().print(
        f"release [bold]{escape(release_id)}[/] is {escape(str(created.get('status')))}"
        f"{escape(pending)}\n[dim]follow it with:[/] ferry watch {escape(release_id)}"
    )


def _show_scheduled(s: Session, created: Json, watch: bool) -> None:
    """A scheduled release: nothing is decided before its time; ``--watch`` waits for it."""
    release_id = str(created.get("releaseId", ""))
    at = str(created.get("scheduledAt") or "")
    if watch:
        due = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
        left = max((due - datetime.now(UTC)).total_seconds(), 0.0)
        if not s.json:
            from rich.markup import escape

            console().print(f"release [bold]{escape(release_id)}[/] is scheduled for {at}")
        follow(s, release_id, until="rolled-out", timeout=left + 600.0, interval=1.0)
        return
    if s.json:
        print_json(created)
        return
    from rich.markup import escape

    console().print(
        f"release [bold]{escape(release_id)}[/] is scheduled for {escape(at)}; its policies "
        f"are checked then\n[dim]cancel it before with:[/] ferry cancel {escape(release_id)}"
    )


def decided(release: Json) -> bool:
    """Whether promotion has decided ``release``: any status past ``requested``, or a
    request that waits for a rollout result (its promotion chain), which is a decision too."""
    return str(release.get("status")) != "requested" or release.get("waitingSince") is not None


def await_decision(s: Session, release_id: str, *, timeout: float) -> Json | None:
    """Poll the release until it is decided; None when it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    interval = 0.1
    while True:
        release = _fetch(s, release_id, deadline)
        if release is not None and decided(release):
            return release
        if time.monotonic() + interval > deadline:
            return None
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def _show_decided(s: Session, release: Json) -> None:
    """Print the decision with its reasons; a rejected or failed request exits 1."""
    release_id = str(release.get("releaseId", ""))
    status = str(release.get("status"))
    if status in FAILED:
        if s.json:
            print_json(release)
        raise _failure(release_id, release)
    if s.json:
        print_json(release)
        return
    from rich.markup import escape

    what = f"{release.get('artifactId') or '?'} to {release.get('environment')}"
    line = f"release [bold]{escape(release_id)}[/] ({escape(what)}) is [bold]{escape(status)}[/]"
    hint = f"ferry watch {release_id}"
    if status == "awaiting-approval":
        approvals = release.get("approvals") or {}
        granted = len(approvals.get("granted") or [])
        line += f": {granted} of {approvals.get('required', 1)} approvals"
        if approvals.get("expiresAt"):
            line += f", until {approvals['expiresAt']}"
        hint = f"another person approves with: ferry approve {release_id}"
    elif status == "requested":
        detail = next(
            (t.get("detail") for t in reversed(release.get("timeline") or []) if t.get("detail")),
            "",
        )
        line += f": waiting ({escape(str(detail))})" if detail else ": waiting"
    console().print(f"{line}\n[dim]follow it with:[/] {escape(hint)}")


def _register_cancel(app: typer.Typer) -> None:
    @command(app, "cancel")
    def cancel(
        ctx: typer.Context,
        release_id: ReleaseId,
        *,
        reason: Reason = "",
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Cancel a scheduled release (one asked for --at a time) before its time."""
        s = session(ctx, output, server, token)
        _show_decision(s, s.client().cancel(release_id, reason), "cancelled")


def register(app: typer.Typer) -> None:
    @command(app, "release")
    def release(
        ctx: typer.Context,
        service: Service,
        *,
        to: Annotated[
            str, typer.Option("--to", metavar="ENV", help="The environment to release to.")
        ],
        artifact: Annotated[
            str | None,
            typer.Option("--artifact", "-a", metavar="ID", help="The artifact id to release."),
        ] = None,
        branch: Annotated[
            str | None,
            typer.Option(
                "--branch", "-b", metavar="B", help="Release the latest artifact of this branch."
            ),
        ] = None,
        reason: Reason = "",
        override_freeze: Override = False,
        at: At = None,
        watch: Watch = False,
        no_wait: NoWait = False,
        wait_timeout: WaitFor = WAIT_SECONDS,
        dry_run: DryRun = False,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Release an artifact (by id, or the latest of a branch) to an environment."""
        s = session(ctx, output, server, token)
        if (artifact is None) == (branch is None):
            raise CliError(
                "give exactly one of --artifact ID or --branch BRANCH",
                ExitCode.USAGE,
                hint="ferry artifacts SERVICE lists the artifacts there are",
            )
        if dry_run:
            _dry_run(s, service=service, environment=to, artifact_id=artifact, branch=branch)
            return
        created = s.client().create_release(
            service=service,
            environment=to,
            intent="release",
            artifact_id=artifact,
            branch=branch,
            reason=reason,
            override_freeze=override_freeze,
            at=when(at),
        )
        _submitted(s, created, watch, 0.0 if no_wait else wait_timeout)

    @command(app, "promote")
    def promote(
        ctx: typer.Context,
        service: Service,
        *,
        to: Annotated[
            str, typer.Option("--to", metavar="ENV", help="The environment to promote to.")
        ],
        from_env: Annotated[
            str | None,
            typer.Option(
                "--from",
                metavar="ENV",
                help="Promote what runs there [default: the environment before --to].",
            ),
        ] = None,
        artifact: Annotated[
            str | None,
            typer.Option(
                "--artifact",
                "-a",
                metavar="ID",
                help="Promote this artifact (it must run in --from).",
            ),
        ] = None,
        reason: Reason = "",
        override_freeze: Override = False,
        at: At = None,
        watch: Watch = False,
        no_wait: NoWait = False,
        wait_timeout: WaitFor = WAIT_SECONDS,
        dry_run: DryRun = False,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Promote to an environment what runs in the environment before it."""
        s = session(ctx, output, server, token)
        if dry_run:
            _dry_run(
                s,
                "--dry-run previews the promotion of what runs in --from; it does not take "
                "--artifact"
                if artifact is not None
                else "",
                service=service,
                environment=to,
                intent="promote",
                from_environment=from_env,
            )
            return
        created = s.client().create_release(
            service=service,
            environment=to,
            intent="promote",
            artifact_id=artifact,
            from_environment=from_env,
            reason=reason,
            override_freeze=override_freeze,
            at=when(at),
        )
        _submitted(s, created, watch, 0.0 if no_wait else wait_timeout)

    @command(app, "rollback")
    def rollback(
        ctx: typer.Context,
        service: Service,
        *,
        env: Annotated[
            str, typer.Option("--in", metavar="ENV", help="The environment to roll back.")
        ],
        to: Annotated[
            str | None,
            typer.Option(
                "--to",
                metavar="ARTIFACT",
                help="The earlier artifact to go back to [default: pick one when interactive, "
                "else the previous release].",
            ),
        ] = None,
        pick: Annotated[
            bool | None,
            typer.Option(
                "--pick/--no-pick",
                help="Choose from the earlier releases [default: when stdin and stdout are a "
                "terminal and --to is not given].",
                show_default=False,
            ),
        ] = None,
        reason: Reason = "",
        override_freeze: Override = False,
        at: At = None,
        watch: Watch = False,
        no_wait: NoWait = False,
        wait_timeout: WaitFor = WAIT_SECONDS,
        dry_run: DryRun = False,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Roll an environment back to its previous release, or to a named earlier one."""
        s = session(ctx, output, server, token)
        if dry_run:
            _dry_run(
                s,
                "--dry-run previews the rollback to the previous release; it does not take --to"
                if to is not None
                else "",
                service=service,
                environment=env,
                intent="rollback",
            )
            return
        artifact = to
        if pick is None:
            pick = not s.json and sys.stdin.isatty() and sys.stdout.isatty()
        if artifact is None and pick:
            artifact = _pick_earlier_release(s, service, env)
        created = s.client().create_release(
            service=service,
            environment=env,
            intent="rollback",
            artifact_id=artifact,
            reason=reason,
            override_freeze=override_freeze,
            at=when(at),
        )
        _submitted(s, created, watch, 0.0 if no_wait else wait_timeout)

    @command(app, "get")
    def get(
        ctx: typer.Context,
        release_id: ReleaseId,
        *,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Show one release: its status, policy violations, approvals and timeline."""
        s = session(ctx, output, server, token)
        show(s, s.client().release(release_id), "release_view")

    @command(app, "approve")
    def approve(
        ctx: typer.Context,
        release_id: ReleaseId,
        *,
        comment: Annotated[
            str, typer.Option("--comment", "-m", metavar="C", help="Kept with the approval.")
        ] = "",
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Approve a release that waits for approval (not your own)."""
        s = session(ctx, output, server, token)
        decided = s.client().approve(release_id, comment)
        _show_decision(s, decided, "approved")

    @command(app, "reject")
    def reject(
        ctx: typer.Context,
        release_id: ReleaseId,
        *,
        reason: Annotated[
            str, typer.Option("--reason", "-r", metavar="R", help="Why; the requester is told.")
        ],
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Reject a release that waits for approval."""
        s = session(ctx, output, server, token)
        decided = s.client().reject(release_id, reason)
        _show_decision(s, decided, "rejected")

    _register_cancel(app)

    @command(app, "watch")
    def watch(
        ctx: typer.Context,
        release_id: ReleaseId,
        *,
        until: Annotated[
            str,
            typer.Option(
                "--until",
                metavar="rolled-out|committed",
                help="Stop at rolled-out (default) or already at committed.",
            ),
        ] = "rolled-out",
        timeout: Annotated[
            float,
            typer.Option(
                "--timeout", metavar="S", help="Give up after this many seconds (exit 1)."
            ),
        ] = 600.0,
        interval: Annotated[
            float, typer.Option("--interval", metavar="S", help="Seconds between polls.", min=0.1)
        ] = 1.0,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Follow a release live until it is rolled out, rejected or failed."""
        s = session(ctx, output, server, token)
        if until not in ("rolled-out", "committed"):
            raise CliError("--until takes rolled-out or committed", ExitCode.USAGE)
        follow(s, release_id, until=until, timeout=timeout, interval=interval)


def _show_decision(s: Session, decided: Json, verb: str) -> None:
    if s.json:
        print_json(decided)
        return
    from rich.markup import escape

    console().print(
        f"{verb} release [bold]{escape(str(decided.get('releaseId')))}[/]; "
        f"it is now {escape(str(decided.get('status')))}"
    )


def _pick_earlier_release(s: Session, service: str, env: str) -> str | None:
    """Ask which earlier release to go back to; None means the previous one."""
    from rich.markup import escape
    from rich.prompt import IntPrompt
    from rich.table import Table

    history = s.client().history(service, environment=env, limit=20).get("history") or []
    current = history[0].get("artifactId") if history else None
    seen = {current}
    choices: list[Json] = []
    for entry in history[1:]:
        if entry.get("artifactId") not in seen:
            seen.add(entry.get("artifactId"))
            choices.append(entry)
    if not choices:
        raise CliError(
            f"{service} has no earlier release in {env} to roll back to",
            hint=f"ferry history {service} --env {env} shows what ran there",
        )
    table = Table(title=f"{escape(service)} in {escape(env)}: now {escape(str(current))}")
    for column in ("#", "artifact", "released at", "by", "intent"):
        table.add_column(column)
    for number, entry in enumerate(choices, 1):
        table.add_row(
            str(number),
            escape(str(entry.get("artifactId"))),
            escape(str(entry.get("at") or "")),
            escape(str(entry.get("actor") or "")),
            escape(str(entry.get("intent") or "")),
        )
    console().print(table)
    picked = IntPrompt.ask(
        "roll back to #",
        choices=[str(n) for n in range(1, len(choices) + 1)],
        default=1,
        console=console(),
    )
    return str(choices[picked - 1].get("artifactId"))


class _Progress:
    """Shows a release as it changes: live with Rich on a terminal, new timeline lines otherwise,
    nothing in JSON mode (the final document is printed at the end)."""

    def __init__(self, s: Session) -> None:
        self._s = s
        self._printed = 0
        self._live: Any = None

    def __enter__(self) -> _Progress:
        if not self._s.json and console().is_terminal:
            from rich.live import Live

            self._live = Live(console=console(), refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.stop()

    def show(self, release: Json) -> None:
        timeline = release.get("timeline") or []
        if self._live is not None:
            from ferry_cli.render import release_view

            self._live.update(release_view(release))
        elif not self._s.json:
            for entry in timeline[self._printed :]:
                console().print(
                    f"{entry.get('at', '')}  {entry.get('status', '')}  "
                    f"{entry.get('eventType', '')}  {entry.get('detail') or ''}",
                    markup=False,
                )
        self._printed = len(timeline)

    def done(self, release_id: str, status: str) -> None:
        if self._s.json:
            return
        if self._live is None:
            console().print(f"release {release_id} is {status}", markup=False)


def _fetch(s: Session, release_id: str, deadline: float) -> Json | None:
    """The release, or None when the server did not answer this time (it is asked again)."""
    try:
        return s.client().release(release_id)
    except CliError as error:
        if error.code is not ExitCode.UNREACHABLE or time.monotonic() > deadline:
            raise
        note(f"[yellow]{error.message}; retrying[/]")
        return None


def _failure(release_id: str, release: Json) -> CliError:
    status = release.get("status")
    reasons = [f"{v.get('policy')}: {v.get('message')}" for v in release.get("violations") or []]
    last = (release.get("timeline") or [{}])[-1]
    if not reasons and last.get("detail"):
        reasons.append(str(last["detail"]))
    return CliError(f"release {release_id} {status}", details=reasons, payload=release)


def follow(s: Session, release_id: str, *, until: str, timeout: float, interval: float) -> None:
    """Poll ``GET /v1/releases/{id}`` until a terminal status; raise CliError when it failed."""
    stop_at = {"rolled-out"} | ({"committed"} if until == "committed" else set()) | FAILED
    deadline = time.monotonic() + timeout
    release: Json = {}
    from ferry_cli.config import dashboard_url, release_page

    dashboard = dashboard_url()
    page = release_page(dashboard, release_id) if dashboard else None
    if page and not s.json:
        console().print(f"dashboard: {page}", markup=False, soft_wrap=True)
    with _Progress(s) as progress:
        while True:
            fetched = _fetch(s, release_id, deadline)
            if fetched is not None:
                release = fetched
                progress.show(release)
                if str(release.get("status")) in stop_at or release.get("supersededBy"):
                    break
            if time.monotonic() + interval > deadline:
                raise CliError(
                    f"release {release_id} is still {release.get('status', 'unknown')} "
                    f"after {timeout:g} s",
                    hint=f"ferry watch {release_id} again, or ferry get {release_id}",
                    payload=release or None,
                )
            time.sleep(interval)
    if page:
        release = {**release, "dashboardUrl": page}
    if s.json:
        print_json(release)
    status = str(release.get("status"))
    if status in FAILED:
        raise _failure(release_id, release)
    if status not in stop_at:
        # a later release to the same service and environment replaced it (supersededBy,
        # when the server sends it): it will never roll out, so there is nothing to wait for
        newer = release.get("supersededBy")
        raise CliError(
            f"release {release_id} was superseded by release {newer} before it rolled out",
            hint=f"ferry watch {newer}",
            payload=release,
        )
    progress.done(release_id, status)
