"""The /ferry grammar: every command parses, every mistake answers with that command's usage."""

from __future__ import annotations

import pytest

from ferry_promotion.entrypoints.slack.commands import (
    USAGE,
    ApproveCommand,
    CommandError,
    HelpCommand,
    HistoryCommand,
    PromoteCommand,
    RejectCommand,
    ReleaseCommand,
    RollbackCommand,
    StatusCommand,
    help_text,
    parse,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("release payments master to dev", ReleaseCommand("payments", "master", "dev")),
        (
            "release payments master-0017d995e3-67e9d69164 to staging",
            ReleaseCommand("payments", "master-0017d995e3-67e9d69164", "staging"),
        ),
        (
            "  RELEASE   payments  feature/login  TO  dev ",
            ReleaseCommand("payments", "feature/login", "dev"),
        ),
        ("promote payments to prod", PromoteCommand("payments", "prod")),
        ("rollback payments in prod", RollbackCommand("payments", "prod")),
        (
            "rollback payments in prod to master-1-2",
            RollbackCommand("payments", "prod", "master-1-2"),
        ),
        ("status payments", StatusCommand("payments")),
        ("history payments", HistoryCommand("payments")),
        ("history payments prod", HistoryCommand("payments", "prod")),
        ("approve 3f1c0d2e-1111-4222-8333-944455556666", None),
        (
            "reject r-1 \u201cbroken on staging\u201d",
            RejectCommand("r-1", "broken on staging"),
        ),
        ("help", HelpCommand()),
        ("help promote", HelpCommand("promote")),
        ("", HelpCommand()),
    ],
)
def test_each_command_parses(text, expected):
    parsed = parse(text)
    if expected is not None:
        assert parsed == expected
    else:
        assert type(parsed).__name__.endswith("Command")


def test_a_target_that_is_neither_artifact_nor_branch_is_refused_with_the_release_usage():
    with pytest.raises(CommandError) as err:
        parse("release payments ../../etc to dev")
    assert err.value.command == "release"
    assert USAGE["release"] in err.value.text()


def test_approve_keeps_the_release_id_exactly():
    assert parse("approve 3f1c0d2e-1111-4222-8333-944455556666") == ApproveCommand(
        "3f1c0d2e-1111-4222-8333-944455556666"
    )


@pytest.mark.parametrize(
    ("text", "command", "says"),
    [
        ("release payments master at dev", "release", "Expected `to` here, found `at`"),
        ("release payments master", "release", "takes 4 word(s)"),
        ("release Payments master to dev", "release", "`Payments` is not a service name"),
        ("promote payments", "promote", "takes 2 or 3 word(s)"),
        ("promote payments to", "promote", "Expected an environment after `to`"),
        ("promote payments to prod at noon", "promote", "`noon` is not a time"),
        ("release payments m-1 to dev at 25:00", "release", "`25:00` is not a time"),
        ("promote payments into prod", "promote", "Expected `to` here, found `into`"),
        ("rollback payments prod", "rollback", "takes 3 or 5 word(s)"),
        ("rollback payments in prod onto x", "rollback", "Expected `to` here"),
        ("status", "status", "takes 1 word(s)"),
        ("history a b c", "history", "takes 1 or 2 word(s)"),
        ("approve", "approve", "takes 1 word(s)"),
        ("approve ../etc", "approve", "not a release id"),
        ("reject r-1", "reject", "needs a release id and a reason"),
    ],
)
def test_a_mistake_answers_with_the_usage_of_that_command(text, command, says):
    with pytest.raises(CommandError) as err:
        parse(text)
    assert err.value.command == command
    assert says in err.value.text()
    assert f"Usage: `{USAGE[command]}`" in err.value.text()


def test_an_unknown_command_answers_with_the_full_help():
    with pytest.raises(CommandError) as err:
        parse("deploy payments")
    assert "`deploy` is not a Ferry command" in err.value.text()
    for usage in USAGE.values():
        assert usage in err.value.text()
    assert err.value.text().endswith(help_text())
