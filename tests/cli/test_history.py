"""``hookwire history list`` and ``hookwire history show``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hookwire.callbacks.chat_history import ChatHistoryCallbackHandler
from hookwire.cli import app

runner = CliRunner()


@pytest.fixture
def recorded(db_url: str) -> tuple[str, str, str]:
    user = f"alice-{uuid.uuid4().hex[:6]}"
    chat = ChatHistoryCallbackHandler(
        user_data={"user_id": user, "org_id": "acme"},
        realm="main",
        agent_title="Support Agent",
        database_url=db_url,
    )
    cid = chat.create_conversation_sync(name="Password [help]")
    first = chat.send_message_sync(cid, "How can I reset my password?", "end_user")
    chat.send_message_sync(
        cid,
        "Use [bold]Account Settings[/bold].",
        "assistant",
        parent_message_id=first,
        model="gpt-4o-mini",
        total_tokens=42,
    )
    other = ChatHistoryCallbackHandler(
        user_data={"user_id": f"bob-{uuid.uuid4().hex[:6]}"}, database_url=db_url
    )
    other.create_conversation_sync(name="Bob's")
    return db_url, user, cid


def test_history_list_table_and_user_filter(recorded: tuple[str, str, str]) -> None:
    url, user, cid = recorded
    result = runner.invoke(app, ["history", "list", "--user", user, "--db", url])
    assert result.exit_code == 0, result.output
    assert cid in result.output
    assert "Password [help]" in result.output
    assert "Bob's" not in result.output
    everyone = runner.invoke(app, ["history", "list", "--db", url, "--limit", "1000"])
    assert "Bob's" in everyone.output


def test_history_list_json(recorded: tuple[str, str, str]) -> None:
    url, user, cid = recorded
    result = runner.invoke(app, ["history", "list", "--user", user, "--json", "--db", url])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [conv] = data["conversations"]
    assert conv["id"] == cid
    assert conv["message_count"] == 2
    assert conv["user_id"] == user
    assert data["next_cursor"] is None


def test_history_show(recorded: tuple[str, str, str]) -> None:
    url, _user, cid = recorded
    result = runner.invoke(app, ["history", "show", cid, "--db", url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("How can I reset my password?") < out.index("Account Settings")
    assert "[bold]Account Settings[/bold]" in out  # text is shown as is, not as markup
    assert "gpt-4o-mini" in out
    assert "42 tokens" in out
    as_json = json.loads(runner.invoke(app, ["history", "show", cid, "--json", "--db", url]).output)
    question, answer = as_json["messages"]
    assert answer["parent_message_id"] == question["id"]
    assert as_json["agent_title"] == "Support Agent"


def test_history_show_unknown_id(recorded: tuple[str, str, str]) -> None:
    url, _user, _cid = recorded
    result = runner.invoke(app, ["history", "show", "no-such-id", "--db", url])
    assert result.exit_code == 1
    assert result.stderr.startswith("hookwire history show: error: ")
    assert "not found" in result.stderr
    assert result.stdout == ""


def test_history_shows_control_characters_escaped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/h.db"
    chat = ChatHistoryCallbackHandler(
        user_data={"user_id": "u\x1b]0;title\x07"}, realm="main", database_url=url
    )
    cid = chat.create_conversation_sync(name="clear\x1b[2J")
    chat.send_message_sync(cid, "line one\n\tindented\rforged\x08", "end_user")
    shown = runner.invoke(app, ["history", "show", cid, "--db", url])
    listed = runner.invoke(app, ["history", "list", "--db", url])
    for result in (shown, listed):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "\r" not in result.output
        assert "\x08" not in result.output
    assert "clear\\x1b[2J" in shown.output
    assert "line one\n" in shown.output  # lines and tabs (expanded) stay
    assert "indented\\rforged\\x08" in shown.output


def test_default_database_is_the_file_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = runner.invoke(app, ["history", "list"])
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"hookwire history list: error: there is no database at {tmp_path / 'hookwire.db'} "
        "(nothing has been recorded there yet); pass --db URL or set HOOKWIRE_DATABASE_URL\n"
    )
    chat = ChatHistoryCallbackHandler(user_data={"user_id": "carol"})
    cid = chat.create_conversation_sync(name="Local")
    listed = runner.invoke(app, ["history", "list"])
    assert listed.exit_code == 0, listed.output
    assert cid in listed.output
    assert (tmp_path / "hookwire.db").exists()


@pytest.mark.parametrize("command", [["history", "list"], ["history", "show", "c-1"]])
def test_history_on_a_mistyped_sqlite_path_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    mistyped = tmp_path / "no-such-dir" / "hookwire.db"
    result = runner.invoke(app, [*command, "--db", f"sqlite:///{mistyped}"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"hookwire {' '.join(command[:2])}: error: there is no database at {mistyped}"
    )
    result = runner.invoke(app, [*command, "--db", f"sqlite:///{tmp_path}/typo.db", "--json"])
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_bad_url_is_a_clear_error() -> None:
    result = runner.invoke(app, ["history", "list", "--db", "mysql://x/y"])
    assert result.exit_code == 1
    assert result.stderr.startswith("hookwire history list: error: unsupported database 'mysql'")
    assert "accepted" in result.stderr


@pytest.mark.parametrize(
    "args", [["history", "show"], ["history", "list", "--limit", "0"], ["history", "list", "-x"]]
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"hookwire {' '.join(args[:2])}: error: ")
