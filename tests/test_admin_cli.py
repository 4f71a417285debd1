"""The operator's commands (`kestrel accounts|keys|logs|stats`) run as processes against a real
Kestrel, the way an operator runs them over SSH: exit statuses, what goes to which stream, and
no secret on a command line or in any output."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_upstream import steps
from support.process import KestrelProcess
from support.stack import ADMIN_KEY, Stack, account_key, message_body, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, accounts=("a", "b")) as stack:
        yield stack


def cli(stack: Stack | None, *args: str, stdin: str = "", env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`kestrel ARGS` as a separate process, pointed at the stack by KESTREL_URL and ADMIN_KEY
    unless `env` says otherwise."""
    process = KestrelProcess(cwd or Path.cwd())
    base = {"KESTREL_URL": stack.url, "ADMIN_KEY": ADMIN_KEY} if stack else {}
    return subprocess.run([*process.command, *args], env={**process.env, **base, **(env or {})},
                          cwd=cwd, input=stdin, capture_output=True, text=True, timeout=30)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def ask(stack: Stack, key: str | None = None) -> int:
    with stack.http({"x-api-key": key or stack.key}) as client:
        return client.post("/v1/messages", json=message_body()).status_code


# --- accounts ----------------------------------------------------------------------------------


def test_accounts_list_is_a_table_for_people_and_json_for_scripts(stack: Stack) -> None:
    stack.up.script(account_key("b"), [steps.rate_limited(retry_after=120)])
    stack.up.script(account_key("a"), [steps.rate_limited(retry_after=120)])
    assert ask(stack) == 429
    lines = ok(cli(stack, "accounts", "list")).splitlines()
    assert lines[0].split() == ["ID", "NAME", "TYPE", "STATUS", "PRIORITY", "CREDENTIAL",
                                "LAST", "USED", "LAST", "ERROR"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert set(rows) == {"a", "b"}
    assert "cooldown, in 1 min" in rows["a"] or "cooldown, in 2 min" in rows["a"], rows["a"]
    assert "rate_limit_error" in rows["a"]
    # aligned: every row's STATUS column starts where its header does
    column = lines[0].index("STATUS")
    assert all(line[column:].startswith("cooldown") for line in lines[1:])
    listed = as_json(cli(stack, "accounts", "list", "--json"))
    assert [(a["name"], a["status"]) for a in listed] == [("a", "cooldown"), ("b", "cooldown")]
    assert account_key("a") not in "".join(lines) and account_key("b") not in "".join(lines)


def test_an_account_added_from_standard_input_serves_at_once(stack: Stack) -> None:
    secret = account_key("c")
    added = cli(stack, "accounts", "add", "c", "--priority", "9", stdin=secret + "\n")
    assert ok(added) == "Added account 'c' (id 3); it is active.\n"
    assert secret not in added.stdout + added.stderr
    assert ask(stack) == 200
    assert stack.up.requests[-1].credential == secret  # highest priority serves first
    # the edit replaces the key the same way, and changes the rest by flags
    fresh = account_key("c2")
    edited = cli(stack, "accounts", "edit", "c", "--api-key", "--name", "c2", "--priority",
                 "-5", stdin=fresh + "\n")
    assert ok(edited) == "Changed account 'c2'; it is active.\n"
    account = as_json(cli(stack, "accounts", "list", "--json"))[2]
    assert (account["name"], account["priority"], account["credential_hint"]) == (
        "c2", -5, "sk-ant-…6789")
    # nothing on standard input: refused before anything is sent
    empty = cli(stack, "accounts", "add", "d")
    assert empty.returncode == 2 and "no Anthropic API key was given" in empty.stderr
    assert len(as_json(cli(stack, "accounts", "list", "--json"))) == 3


def test_disable_enable_reset_remove_by_name_or_id(stack: Stack) -> None:
    assert ok(cli(stack, "accounts", "disable", "a")) == "Disabled account 'a'; it is disabled.\n"
    assert ask(stack) == 200 and stack.served_by() == "b"
    assert ok(cli(stack, "accounts", "enable", str(stack.accounts["a"]))).startswith(
        "Enabled account 'a'")
    stack.up.script(account_key("a"), [steps.overloaded()])
    stack.up.script(account_key("b"), [steps.overloaded()])
    assert ask(stack) != 200
    assert stack.account("a")["status"] == "cooldown"
    assert ok(cli(stack, "accounts", "reset", "a")).endswith("; it is active.\n")
    assert stack.account("a")["status"] == "active"
    assert ok(cli(stack, "accounts", "remove", "b")) == f"Removed account 'b' (id " \
                                                           f"{stack.accounts['b']}).\n"
    names = [a["name"] for a in as_json(cli(stack, "accounts", "list", "--json"))]
    assert names == ["a"]


def test_account_test_says_what_upstream_answered_and_sets_the_exit_status(stack: Stack) -> None:
    passed = cli(stack, "accounts", "test", "a")
    assert passed.returncode == 0 and passed.stdout.startswith(
        "a: ok, upstream answered 200 in "), passed.stdout
    assert passed.stdout.endswith("; the account is active.\n")
    stack.up.script(account_key("b"), [steps.error(401, "authentication_error",
                                                   "invalid x-api-key")])
    failed = cli(stack, "accounts", "test", "b")
    assert failed.returncode == 1
    assert failed.stdout == ("b: failed, 401 authentication_error: invalid x-api-key; the "
                             "account is invalid.\n")
    stack.up.script(account_key("a"), [steps.overloaded()])
    result = cli(stack, "accounts", "test", "a", "--json")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert (answer["ok"], answer["status"], answer["error_type"]) == (False, 529,
                                                                      "overloaded_error")
    assert answer["account"]["status"] == "cooldown"
    with stack.admin() as admin:  # an upstream nobody answers on
        admin.put(f"/admin/accounts/{stack.accounts['a']}",
                  json={"base_url": "http://127.0.0.1:9"})
    ok(cli(stack, "accounts", "reset", "a"))
    unreachable = cli(stack, "accounts", "test", "a")
    assert unreachable.returncode == 1
    assert re.fullmatch(r"a: failed, no answer from upstream \(connect\); the account is in "
                        r"cooldown, in \d+ s\.\n", unreachable.stdout), unreachable.stdout


def test_a_proxy_password_never_goes_on_the_command_line(stack: Stack) -> None:
    refused = cli(stack, "accounts", "edit", "a", "--proxy-url", "http://u:hunter22@proxy:3128")
    assert refused.returncode == 2 and "--proxy-url -" in refused.stderr
    assert "hunter22" not in refused.stderr
    typed = cli(stack, "accounts", "edit", "a", "--proxy-url", "-",
                stdin="http://u:hunter22@proxy.internal:3128\n")
    assert "hunter22" not in ok(typed) + typed.stderr
    listed = ok(cli(stack, "accounts", "list", "--json"))
    assert "hunter22" not in listed
    assert as_json(cli(stack, "accounts", "list", "--json"))[0]["proxy_url"] == \
        "http://u:…@proxy.internal:3128"
    ok(cli(stack, "accounts", "edit", "a", "--proxy-url", ""))
    assert as_json(cli(stack, "accounts", "list", "--json"))[0]["proxy_url"] is None


# --- keys -----------------------------------------------------------------------------------------


def test_a_created_key_is_printed_once_works_and_is_revoked_by_name(stack: Stack) -> None:
    created = cli(stack, "keys", "create", "laptop", "--owner", "ana", "--rpm", "60",
                  "--daily-budget-usd", "5", "--models", "claude-sonnet-*, claude-haiku-*")
    key = ok(created).strip()
    assert key.startswith("kst_") and created.stdout == key + "\n"
    assert "shown this once" in created.stderr
    assert ask(stack, key) == 200
    listed = ok(cli(stack, "keys", "list"))
    assert key not in listed
    row = next(line for line in listed.splitlines() if " laptop " in line)
    assert key[:12] in row and " active " in row and " ana " in row
    assert "rpm 60 · $5.00/day · claude-sonnet-*, claude-haiku-*" in row
    assert ok(cli(stack, "keys", "revoke", "laptop")).startswith("Revoked key 'laptop'")
    assert ask(stack, key) == 401
    assert "laptop" not in ok(cli(stack, "keys", "list"))
    revoked = [k for k in as_json(cli(stack, "keys", "list", "--all", "--json"))
               if k["name"] == "laptop"]
    assert len(revoked) == 1 and revoked[0]["revoked_at"] and revoked[0]["rpm"] == 60
    again = cli(stack, "keys", "revoke", "laptop")
    assert again.returncode == 1 and "no key in use is named 'laptop'" in again.stderr
    bad = cli(stack, "keys", "create", "x", "--allowed-ips", "10.0.0.0/33")
    assert bad.returncode == 1 and "allowed_ips[0]" in bad.stderr and not bad.stdout


def test_a_key_is_found_by_its_prefix_or_id_and_names_are_not_shared(stack: Stack) -> None:
    first = as_json(cli(stack, "keys", "create", "twin", "--json"))
    taken = cli(stack, "keys", "create", "twin")
    assert taken.returncode == 1 and not taken.stdout
    assert "answered 409: a key in use is named 'twin'" in taken.stderr
    second = as_json(cli(stack, "keys", "create", "other", "--json"))
    ok(cli(stack, "keys", "revoke", second["prefix"]))
    ok(cli(stack, "keys", "revoke", str(first["id"])))
    assert ask(stack, first["key"]) == ask(stack, second["key"]) == 401
    # a revoked key's name is free again; two revoked keys of one name need their ids
    third = as_json(cli(stack, "keys", "create", "twin", "--json"))
    ok(cli(stack, "keys", "revoke", "twin"))
    ambiguous = cli(stack, "keys", "revoke", "--json", str(first["prefix"][:4]))
    assert ambiguous.returncode == 1
    assert ask(stack, third["key"]) == 401


# --- logs and stats --------------------------------------------------------------------------


def test_logs_show_names_and_filter_by_account_and_status(stack: Stack) -> None:
    ok(cli(stack, "accounts", "edit", "a", "--priority", "5"))
    stack.up.script(account_key("a"), [steps.rate_limited(retry_after=5)])
    assert [ask(stack) for _ in range(3)] == [200, 200, 200]
    stack.logs(expect=3)
    lines = ok(cli(stack, "logs")).splitlines()
    assert lines[0].split()[:4] == ["TIME", "STATUS", "ROUTE", "MODEL"]
    assert len(lines) == 4 and all(" /v1/messages " in line for line in lines[1:])
    assert "b (after a)" in lines[1]  # the first request: a answered 429, b served it
    tried_a = ok(cli(stack, "logs", "--account", "a", "--json")).splitlines()
    assert [json.loads(line)["account_name"] for line in tried_a] == ["b"]  # a failed, b served
    served_by_b = ok(cli(stack, "logs", "--account", "b", "--json")).splitlines()
    assert [json.loads(line)["account_id"] for line in served_by_b] == [stack.accounts["b"]] * 3
    assert ok(cli(stack, "logs", "--status", "500")) == ""
    assert ok(cli(stack, "logs", "-n", "1", "--json")).count("\n") == 1
    wrong = cli(stack, "logs", "-n", "0")
    assert wrong.returncode == 2 and "from 1 to 500" in wrong.stderr


def test_logs_follow_prints_new_requests_as_they_come(stack: Stack) -> None:
    process = KestrelProcess(Path.cwd())
    with subprocess.Popen([*process.command, "logs", "--follow", "--json"],
                          env={**process.env, "KESTREL_URL": stack.url, "ADMIN_KEY": ADMIN_KEY},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as follower:
        try:
            time.sleep(1.5)  # it has printed the (empty) history and is polling
            assert ask(stack) == 200
            assert ask(stack) == 200
            assert follower.stdout is not None
            seen = [json.loads(follower.stdout.readline()) for _ in range(2)]
            assert [row["status"] for row in seen] == [200, 200]
            assert seen[0]["ts"] <= seen[1]["ts"]  # oldest first, as tail prints them
        finally:
            follower.send_signal(signal.SIGINT)
            assert follower.wait(10) == 0


def test_stats_sum_up_the_window(stack: Stack) -> None:
    assert [ask(stack) for _ in range(2)] == [200, 200]
    stack.logs(expect=2)
    text = ok(cli(stack, "stats", "--window", "1h"))
    assert text.startswith("Last 1h: 2 requests, 0 errors (0.0%), $")
    assert "ACCOUNT" in text and "KEY" in text and "claude-sonnet-4-6" in text
    stats = as_json(cli(stack, "stats", "--json"))
    assert stats["window"] == "24h" and stats["totals"]["requests"] == 2


# --- how it fails, and how it finds the server ------------------------------------------------


def test_exit_statuses_and_one_line_messages(stack: Stack, tmp_path: Path) -> None:
    wrong_key = cli(stack, "accounts", "list", env={"ADMIN_KEY": "not-the-admin-key-0000"})
    assert wrong_key.returncode == 1 and wrong_key.stderr.startswith(
        "kestrel: GET /admin/accounts answered 401: ")
    assert wrong_key.stderr.count("\n") == 1
    no_key = cli(None, "keys", "list", cwd=tmp_path)
    assert no_key.returncode == 2 and "no admin key" in no_key.stderr
    down = cli(None, "stats", "--url", "http://127.0.0.1:9", env={"ADMIN_KEY": ADMIN_KEY})
    assert down.returncode == 1 and "cannot reach Kestrel at http://127.0.0.1:9" in down.stderr
    usage = cli(stack, "accounts", "frobnicate")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    for result in (wrong_key, no_key, down, usage):
        assert "Traceback" not in result.stderr


def test_the_admin_key_comes_from_the_secrets_file_beside_the_database(stack: Stack,
                                                                      tmp_path: Path) -> None:
    home = tmp_path / "box"
    home.mkdir()
    (home / "k.db.secrets").write_text(json.dumps({"admin_key": ADMIN_KEY}))
    result = cli(None, "accounts", "list", "--url", stack.url, env={"DB_PATH": "k.db"},
                 cwd=home)
    assert [row.split()[1] for row in ok(result).splitlines()[1:]] == ["a", "b"]
    assert sorted(p.name for p in home.iterdir()) == ["k.db.secrets"]  # nothing created


def _on_a_terminal(stack: Stack, args: list[str], typed: str = "",
                   env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its controlling terminal, standard input and
    output; type `typed` when it prompts. Returns the exit status and all the terminal showed."""
    process = KestrelProcess(Path.cwd())
    primary, secondary = pty.openpty()

    def take_terminal() -> None:
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    child = subprocess.Popen([*process.command, *args],
                             env={**process.env, "KESTREL_URL": stack.url, "ADMIN_KEY": ADMIN_KEY,
                                  "TERM": "xterm", **(env or {})},
                             stdin=secondary, stdout=secondary, stderr=secondary,
                             preexec_fn=take_terminal)
    os.close(secondary)
    shown = b""
    sent = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        if typed and not sent and b"API key:" in shown:
            time.sleep(0.2)  # the prompt is out; echo is off once getpass reads
            os.write(primary, typed.encode() + b"\n")
            sent = True
        if child.poll() is not None and not ready:
            break
    os.close(primary)
    return child.wait(10), shown.decode(errors="replace")


def test_on_a_terminal_secrets_are_typed_unseen_and_states_are_coloured(stack: Stack) -> None:
    secret = account_key("typed")
    status, shown = _on_a_terminal(stack, ["accounts", "add", "typed"], typed=secret)
    assert status == 0, shown
    assert "Anthropic API key:" in shown and "Added account 'typed'" in shown
    assert secret not in shown  # no echo
    status, shown = _on_a_terminal(stack, ["accounts", "list"])
    assert status == 0 and "\x1b[32mactive\x1b[0m" in shown, shown
    status, shown = _on_a_terminal(stack, ["accounts", "list"], env={"NO_COLOR": "1"})
    assert status == 0 and "active" in shown and "\x1b[" not in shown
