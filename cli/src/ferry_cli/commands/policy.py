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


def _json_value(value: object, where: str) -> Any:
    """``value`` as JSON can carry it: YAML's unquoted timestamps become ISO-8601 strings
    (a date-time without an offset stays without one); anything else JSON has no type for
    is an input error that names where it is."""
    import datetime as dt
    import math

    if isinstance(value, dict):
        return {
            _json_key(key, where): _json_value(item, f"{where}.{_json_key(key, where)}")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_json_value(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise CliError(f"{where} is {value}, which JSON cannot carry", ExitCode.USAGE)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise CliError(
        f"{where} is a YAML {type(value).__name__}, which a policy cannot hold",
        ExitCode.USAGE,
        hint="write it as a string, number, list or mapping (see docs/policies.md)",
    )


def _json_key(key: object, where: str) -> str:
    import datetime as dt

    if isinstance(key, str):
        return key
    if isinstance(key, dt.date):
        return key.isoformat()
    if key is None or isinstance(key, int | float | bool):
        return json.dumps(key)
    raise CliError(f"{where} has a key that is a YAML {type(key).__name__}", ExitCode.USAGE)


def _load_policy_file(path: Path) -> dict[str, Any]:
    """The policy document in ``path``, ready to send as JSON; any problem is a CliError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"policy file {path} does not exist", ExitCode.USAGE) from None
    except IsADirectoryError:
        raise CliError(f"{path} is a directory, not a policy file", ExitCode.USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read policy file {path}: {exc.strerror}", ExitCode.USAGE) from exc
    import io

    import yaml

    stream = io.BytesIO(raw)
    setattr(stream, "name", str(path))  # noqa: B010 - PyYAML names the stream in its errors
    try:
        document = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise CliError(f"policy file {path} is not valid YAML: {exc}", ExitCode.USAGE) from exc
    except (RecursionError, ValueError, OverflowError) as exc:
        raise CliError(f"policy file {path} cannot be read as YAML: {exc}", ExitCode.USAGE) from exc
    if document is None:
        raise CliError(
            f"{path} is empty; a policy is a YAML mapping, see docs/policies.md", ExitCode.USAGE
        )
    if not isinstance(document, dict):
        raise CliError(
            f"policy file {path} holds a YAML {type(document).__name__}; a policy is a YAML "
            "mapping, see docs/policies.md",
            ExitCode.USAGE,
        )
    try:
        converted: dict[str, Any] = _json_value(document, "policy")
    except RecursionError:
        raise CliError(f"policy file {path} is nested too deeply", ExitCode.USAGE) from None
    return converted


def _policy_body(path: Path, document: dict[str, Any]) -> bytes:
    try:
        return json.dumps(document, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # _json_value leaves nothing JSON cannot hold
        raise CliError(f"policy file {path} cannot be sent as JSON: {exc}", ExitCode.USAGE) from exc


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
        if service is not None:
            # one service: the API's own document (GET /v1/policies/{service}); null if none
            print_json(policies[service])
        else:
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
            metavar="S",
            help="Whose policy [default: the file's 'service' key, else the file name].",
        ),
    ] = None,
    output: OutputOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Replace a service's policy with FILE (committed to the config repo by git-writer)."""
    s = session(ctx, output, server, token)
    try:
        document = _load_policy_file(file)
    except CliError:
        raise
    except Exception as exc:  # whatever a file holds: a message, never a traceback
        raise CliError(
            f"policy file {file} could not be read: {type(exc).__name__}: {exc}",
            ExitCode.USAGE,
            hint="a policy is a YAML mapping, see docs/policies.md",
        ) from exc
    name = service or (str(document["service"]) if document.get("service") else file.stem)
    answer = s.client().put_policy(name, _policy_body(file, document), "application/json")
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
