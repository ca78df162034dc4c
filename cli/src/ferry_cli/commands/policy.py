"""policy list | apply | delete: a service's policies/<service>.yaml, through the API.

``apply`` reads the YAML file, checks that it parses (a syntax error is exit 2
with the line), and PUTs the document as JSON, which is what the API takes
(docs/api.md: "body: the policy document"); the server validates it and answers
422 naming each field that is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ferry_cli.common import OutputOpt, ServerOpt, TokenOpt, command, session
from ferry_cli.errors import CliError, ExitCode
from ferry_cli.output import console, print_json

policy_app = typer.Typer(
    name="policy",
    help="List, apply or delete service policies (policies/<service>.yaml in the config repo).",
    no_args_is_help=True,
)


def _load_policy_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"policy file {path} does not exist", ExitCode.USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read policy file {path}: {exc.strerror}", ExitCode.USAGE) from exc
    import yaml

    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise CliError(f"policy file {path} is not valid YAML: {exc}", ExitCode.USAGE) from exc
    if not isinstance(document, dict):
        raise CliError(
            f"policy file {path} must hold a YAML mapping, not {type(document).__name__}",
            ExitCode.USAGE,
        )
    return document


@command(policy_app, "list")
def list_policies(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Argument(help="Only this service [default: every service].")
    ] = None,
    *,
    output: OutputOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show the policies of one service, or of every service the API knows."""
    s = session(ctx, output, server, token)
    client = s.client()
    if service is not None:
        names = [service]
    else:
        names = [str(e.get("service")) for e in client.services().get("services") or []]
    policies = {name: client.policy(name) for name in names}
    if s.json:
        print_json({"policies": policies})
        return
    import yaml
    from rich.markup import escape
    from rich.syntax import Syntax

    if not policies:
        console().print("no services yet")
    for name, document in policies.items():
        console().rule(f"[bold]{escape(name)}[/]", align="left")
        if document is None:
            console().print("[dim]no policy: defaults apply[/]")
        else:
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
            console().print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))


@command(policy_app, "apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The policy YAML file.")],
    *,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            "-s",
            help="Whose policy [default: the file's 'service' key, else the file name].",
        ),
    ] = None,
    output: OutputOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Replace a service's policy with FILE (committed to the config repo by git-writer)."""
    s = session(ctx, output, server, token)
    document = _load_policy_file(file)
    name = service or (str(document["service"]) if document.get("service") else file.stem)
    answer = s.client().put_policy(name, json.dumps(document).encode(), "application/json")
    if s.json:
        print_json(answer)
        return
    console().print(
        f"policy change for {name} is {answer.get('status', 'requested')} "
        f"(request {answer.get('requestId', '?')}); git-writer commits it to policies/{name}.yaml",
        markup=False,
    )


@command(policy_app, "delete")
def delete(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Whose policy to delete.")],
    *,
    output: OutputOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete a service's policy (defaults apply again)."""
    s = session(ctx, output, server, token)
    answer = s.client().delete_policy(service)
    if s.json:
        print_json(answer)
        return
    console().print(
        f"policy deletion for {service} is {answer.get('status', 'requested')}", markup=False
    )
