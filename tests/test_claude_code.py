"""The real Claude Code CLI (`claude -p`, print mode) through a real Kestrel, in front of the fake
Anthropic: what a person at the keyboard gets, and what reached the upstream for it.

The CLI hides a lot: it retries some upstream 400s with fewer features and answers anyway, and
its side requests fail silently. So an answer proves little on its own: every test also reads
the upstream's record (statuses, credentials, bodies) for the facts it is about, and checks
that the upstream refused nothing it was not scripted to.

The conversation's turns are told from anything else the CLI may send (a session title, token
counts...) by the tools they offer (`is_turn`), and scripted with `only_for(is_turn, ...)`, so
a side request gets the canned answer instead of taking a scripted step. Claude Code 2.1.197
in print mode, with the non-essential traffic `run_claude` turns off, sends nothing but its
turns; the scripts stay right if a later version sends more.

The CLI's own retries are off (NO_RETRIES) but where they are the subject: Kestrel's retries
are what is tested, and the CLI's would hide an error of Kestrel's own, or take minutes.

At the end, the fake's steps these tests brought (`tool_call`, `only_for`) are checked against
the official SDK, without the CLI.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from fake_upstream import (
    ANY,
    DEFAULT_TEXT,
    FakeAnthropic,
    RecordedRequest,
    only_for,
    overloaded,
    rate_limited,
    success,
    tool_call,
)
from support.claude_code import run_claude, started_claude
from support.stack import MODEL, Stack, account_key, running_stack

NOTE = "kestrel-note: the falcon lands at dawn"
"""What `notes.txt`, the file the model asks the CLI to read, holds."""
COMMAND = "echo kestrel-$((6*7)) > answer.txt && cat answer.txt"
"""Prints kestrel-42 only when a shell ran it, not an echo of the input; writing a file, it
needs the permission ALLOW_TOOLS gives (a bare echo the CLI would run unasked)."""
FINAL = "Done: the note is read and the command ran."
# Lets the CLI run these tools in print mode, where nobody is there to be asked (as root, the
# CLI refuses --dangerously-skip-permissions and the bypassPermissions mode).
ALLOW_TOOLS = ("--allowedTools", "Read,Bash")
NO_RETRIES = {"CLAUDE_CODE_MAX_RETRIES": "0"}
REVOKED = "invalid or revoked API key"
"""Kestrel's message for a key it does not know or that was revoked (checked below)."""


# --- the stacks -------------------------------------------------------------------------------


@contextmanager
def checked_stack(tmp_path: Path, accounts: tuple[str, ...]) -> Iterator[Stack]:
    """`running_stack` in a folder of its own (the CLI works in `project`), whose fake upstream
    must end without an error of its own."""
    folder = tmp_path / "kestrel"
    folder.mkdir()
    with running_stack(folder, accounts=accounts) as stack:
        yield stack
    assert stack.up.errors == []


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Fake Anthropic, Kestrel, and one account `a`."""
    with checked_stack(tmp_path, ("a",)) as stack:
        yield stack


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Stack]:
    """Fake Anthropic, Kestrel, and two equal accounts `a` and `b` (balanced rotation)."""
    with checked_stack(tmp_path, ("a", "b")) as stack:
        yield stack


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The folder the CLI works in: a project holding one file, `notes.txt`."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text(NOTE + "\n")
    return folder


def claude(executable: str, stack: Stack, prompt: str, *extra: str, key: str | None = None,
           **options: Any) -> subprocess.CompletedProcess[str]:
    """`run_claude` against the stack's Kestrel, with its key unless told another, and the
    CLI's own retries off."""
    return run_claude(executable, stack.url, key or stack.key, prompt, *extra,
                      env=NO_RETRIES, **options)


def result_of(completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The CLI's `--output-format json` result, once it exited 0 without an error."""
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    assert result["is_error"] is False, result
    return result


# --- reading the upstream's record -------------------------------------------------------------


def is_turn(request: RecordedRequest) -> bool:
    """A turn of the conversation: a message offering the CLI's Read and Bash tools. What else
    the CLI may send (a session title, token counts) offers none, or is not a message."""
    if request.method != "POST" or request.route != "/v1/messages":
        return False
    tools = request.json().get("tools") or []
    return {"Read", "Bash"} <= {tool.get("name") for tool in tools if isinstance(tool, dict)}


def turns(up: FakeAnthropic) -> list[RecordedRequest]:
    return [request for request in up.requests if is_turn(request)]


def tool_results(request: RecordedRequest) -> dict[str, str]:
    """The tool results the request's last message sends back: tool_use id → its text."""
    content = request.json()["messages"][-1]["content"]
    results: dict[str, str] = {}
    for block in content if isinstance(content, list) else []:
        if block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = "".join(part.get("text", "") for part in inner)
            results[block["tool_use_id"]] = str(inner)
    return results


def events(request: RecordedRequest) -> list[dict[str, Any]]:
    """The SSE events the upstream sent for a streamed request, in order."""
    return [json.loads(line.removeprefix("data: "))
            for line in request.answer.decode().splitlines() if line.startswith("data: ")]


def tool_uses(request: RecordedRequest) -> list[tuple[str, str]]:
    """(id, name) of the tool_use blocks the upstream answered this streamed request with."""
    return [(event["content_block"]["id"], event["content_block"]["name"])
            for event in events(request) if event["type"] == "content_block_start"
            and event["content_block"]["type"] == "tool_use"]


def assert_nothing_refused(up: FakeAnthropic, *scripted: int) -> None:
    """The upstream answered everything with a 200 but the `scripted` statuses, in order."""
    refused = [request.status for request in up.requests if request.status != 200]
    assert refused == list(scripted), [(r.route, r.status, r.answer[:300]) for r in up.requests]


def assert_no_client_key(up: FakeAnthropic, key: str) -> None:
    """The client's Kestrel key never reaches Anthropic: only the account's credential does."""
    for request in up.requests:
        assert key not in str(request.headers) and key.encode() not in request.body


def script_round_trip(up: FakeAnthropic, credential: str, notes: Path) -> None:
    """The model asks to Read `notes`, then to run COMMAND with Bash, then answers FINAL."""
    up.script(credential, [
        only_for(is_turn, tool_call("Read", {"file_path": str(notes)})),
        only_for(is_turn, tool_call("Bash", {"command": COMMAND, "description": "Say 42"},
                                    text="")),
        only_for(is_turn, success(text=FINAL)),
    ])


def assert_round_trip(sent: list[RecordedRequest], project: Path) -> None:
    """Three turns, each sending back the result of the very tool call (by id) the previous
    answer made: the note's text, then what the shell printed; and the shell ran in `project`.
    """
    assert len(sent) == 3, [r.json()["messages"][-1] for r in sent]
    ((read_id, read),) = tool_uses(sent[0])
    ((bash_id, bash),) = tool_uses(sent[1])
    assert (read, bash) == ("Read", "Bash")
    assert tool_uses(sent[2]) == []
    assert tool_results(sent[0]) == {}
    read_results, bash_results = tool_results(sent[1]), tool_results(sent[2])
    assert list(read_results) == [read_id] and NOTE in read_results[read_id], read_results
    assert list(bash_results) == [bash_id], bash_results
    assert bash_results[bash_id].strip() == "kestrel-42", bash_results
    assert (project / "answer.txt").read_text().strip() == "kestrel-42"


# --- the tests --------------------------------------------------------------------------------


def test_a_text_answer(stack: Stack, claude_cli: str) -> None:
    """A prompt in, the upstream's text out: one turn, served by account a with the model the
    person chose, carrying what Claude Code relies on (its betas, its session id) and
    Anthropic's credential in place of the Kestrel key."""
    result = result_of(claude(claude_cli, stack, "say hi", "--output-format", "json",
                              "--model", MODEL))
    assert result["result"] == DEFAULT_TEXT
    assert result["num_turns"] == 1
    up = stack.up
    assert_nothing_refused(up)
    (turn,) = up.requests  # this version sends nothing but the turn
    assert is_turn(turn) and turn.streamed
    assert turn.credential == account_key("a")
    assert turn.json()["model"] == MODEL
    assert "claude-code-20250219" in (turn.header("anthropic-beta") or "").split(",")
    assert turn.header("x-claude-code-session-id") == result["session_id"]
    assert (turn.header("user-agent") or "").startswith("claude-cli/")
    assert_no_client_key(up, stack.key)
    (row,) = stack.logs(expect=1)
    assert (row["status"], row["account_id"], row["model"], row["stream"]) == (
        200, stack.accounts["a"], MODEL, True)


def test_a_tool_round_trip(stack: Stack, project: Path, claude_cli: str) -> None:
    """The model asks for Read, then Bash: the CLI runs both in its folder and sends each
    result back through Kestrel, then prints the final answer."""
    script_round_trip(stack.up, account_key("a"), project / "notes.txt")
    result = result_of(claude(claude_cli, stack, "read the notes, then say 42",
                              "--output-format", "json", *ALLOW_TOOLS, cwd=project))
    assert (result["result"], result["num_turns"]) == (FINAL, 3)
    assert result["permission_denials"] == []
    assert_nothing_refused(stack.up)
    assert_round_trip(turns(stack.up), project)
    assert {r.credential for r in stack.up.requests} == {account_key("a")}
    assert stack.up.pending(account_key("a")) == 0


def test_stream_json_arrives_while_the_upstream_streams(stack: Stack, claude_cli: str) -> None:
    """`--output-format stream-json`: the CLI prints the answer's deltas while the upstream is
    still sending the rest (Kestrel relays the stream, it does not gather it first), and its
    result is the upstream's very message, which Kestrel metered from the stream."""
    stack.up.script(account_key("a"), [only_for(is_turn, success(event_interval=0.08))])
    lines: list[dict[str, Any]] = []
    in_flight_at_first_delta: int | None = None
    with started_claude(claude_cli, stack.url, stack.key, "say hi", "--output-format",
                        "stream-json", "--verbose", "--include-partial-messages",
                        env=NO_RETRIES) as running:
        assert running.stdout is not None
        for line in running.stdout:
            lines.append(json.loads(line))
            event = lines[-1].get("event") or {}
            if event.get("type") == "content_block_delta" and in_flight_at_first_delta is None:
                in_flight_at_first_delta = stack.up.in_flight
        assert running.wait() == 0, lines[-1:]
    assert in_flight_at_first_delta == 1  # the upstream was still sending
    kinds = [line["type"] for line in lines]
    assert (kinds[0], kinds[-1]) == ("system", "result"), kinds
    result = lines[-1]
    assert (result["subtype"], result["is_error"], result["result"]) == (
        "success", False, DEFAULT_TEXT)
    deltas = "".join(line["event"]["delta"].get("text", "") for line in lines
                     if line["type"] == "stream_event"
                     and line["event"]["type"] == "content_block_delta")
    assert deltas == DEFAULT_TEXT  # every piece, in order
    assert_nothing_refused(stack.up)
    (turn,) = turns(stack.up)
    assert turn.streamed  # the CLI streams unless told otherwise
    (start,) = (event for event in events(turn) if event["type"] == "message_start")
    assert {line["message"]["id"] for line in lines if line["type"] == "assistant"} == {
        start["message"]["id"]}
    assert events(turn)[-1] == {"type": "message_stop"}
    (row,) = stack.logs(expect=1)
    assert turn.usage is not None and row["stream"] is True
    assert (row["input_tokens"], row["output_tokens"]) == (turn.usage["input_tokens"],
                                                            turn.usage["output_tokens"])


def test_a_key_in_anthropic_auth_token(stack: Stack, claude_cli: str) -> None:
    """ANTHROPIC_AUTH_TOKEN (and no ANTHROPIC_API_KEY) makes the CLI send `Authorization:
    Bearer <key>`: Kestrel takes the client key from there, and Anthropic gets the account's
    key instead, never the bearer."""
    result = result_of(claude(claude_cli, stack, "say hi", "--output-format", "json",
                              key_variable="ANTHROPIC_AUTH_TOKEN"))
    assert result["result"] == DEFAULT_TEXT
    assert_nothing_refused(stack.up)
    (turn,) = turns(stack.up)
    assert turn.header("authorization") is None
    assert turn.header("x-api-key") == account_key("a")
    assert_no_client_key(stack.up, stack.key)
    (row,) = stack.logs(expect=1)
    assert row["status"] == 200 and row["key_id"] is not None


def test_failover_in_the_middle_of_a_session(pair: Stack, project: Path,
                                             claude_cli: str) -> None:
    """The session's account answers its 2nd turn with a 429: Kestrel serves that turn from
    the other account, the CLI never sees the 429 (its retries are off), and the rest of the
    session stays on the other account.

    Which account the session starts on is Kestrel's choice (rendezvous hashing of the session
    id), so the steps are in the ANY queue: each goes to whichever account asks next."""
    up = pair.up
    up.script(ANY, [
        only_for(is_turn, tool_call("Read", {"file_path": str(project / "notes.txt")})),
        only_for(is_turn, rate_limited(retry_after=30)),
        only_for(is_turn, tool_call("Bash", {"command": COMMAND, "description": "Say 42"})),
        only_for(is_turn, success(text=FINAL)),
    ])
    result = result_of(claude(claude_cli, pair, "read the notes, then say 42",
                              "--output-format", "json", *ALLOW_TOOLS, cwd=project))
    assert (result["result"], result["num_turns"]) == (FINAL, 3)
    assert_nothing_refused(up, 429)
    sent = turns(up)
    assert [r.status for r in sent] == [200, 429, 200, 200]
    first, refused, retried, last = sent
    assert refused.body == retried.body  # the same turn, tried again elsewhere
    # Affinity: the 2nd turn went to the session's account again (balanced rotation would
    # otherwise take the one not used yet), and once it failed over, the rest followed.
    assert first.credential == refused.credential
    assert retried.credential == last.credential != first.credential
    assert {first.credential, retried.credential} == {account_key("a"), account_key("b")}
    assert_round_trip([first, retried, last], project)
    assert up.pending(ANY) == 0
    # Kestrel's log: three requests, the 2nd tried on both accounts.
    credential = {pair.accounts[name]: account_key(name) for name in pair.accounts}
    tries = sorted([(credential[t["account_id"]], t["status"]) for t in row["attempts"]]
                   for row in pair.logs(expect=3))
    assert tries == sorted([[(first.credential, 200)],
                            [(first.credential, 429), (retried.credential, 200)],
                            [(retried.credential, 200)]])


def test_a_revoked_key_is_refused_before_upstream_and_shown_at_once(stack: Stack,
                                                                     claude_cli: str) -> None:
    """A revoked client key, the CLI's own retries on as a person runs it: it fails with
    Kestrel's own message at once (`x-should-retry: false`; without it the CLI retries a 401
    ten times, for about three minutes), Anthropic never hears of it, and Kestrel's request log
    keeps one trace of it, naming the key by its prefix."""
    revoked = revoked_key(stack)
    with stack.kestrel.client() as http:
        answer = http.post("/v1/messages", headers={"x-api-key": revoked,
                                                    "anthropic-version": "2023-06-01"},
                           json={"model": MODEL, "max_tokens": 8,
                                 "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 401 and answer.headers["x-should-retry"] == "false"
    assert answer.json()["error"] == {"type": "authentication_error", "message": REVOKED}
    started = time.monotonic()
    completed = run_claude(claude_cli, stack.url, revoked, "say hi", timeout=60)
    assert time.monotonic() - started < 15
    assert completed.returncode != 0
    shown = completed.stdout + completed.stderr
    assert "401" in shown and REVOKED in shown, shown
    assert DEFAULT_TEXT not in shown
    assert stack.up.requests == []
    traces = stack.logs(expect=2)
    assert [(row["status"], row["error_type"]) for row in traces] == [(401, "revoked_key")] * 2
    assert all(row["error_message"] == f"{REVOKED}: {revoked[:12]}…" for row in traces)


def revoked_key(stack: Stack) -> str:
    """A client key made, then revoked, through the admin API."""
    with stack.admin() as admin:
        created = admin.post("/admin/keys", json={"name": "revoked"})
        assert created.status_code == 201, created.text
        revoked = admin.delete(f"/admin/keys/{created.json()['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
    secret: str = created.json()["key"]
    return secret


# --- the fake's steps these tests stand on, checked against the official SDK ------------------


def test_a_scripted_tool_call_is_a_message_the_sdk_reads() -> None:
    """`tool_call()`: the tool_use block asked for, whatever tools the request offers, JSON or
    streamed alike (the stream assembled by the SDK), with thinking first when it is on."""
    with FakeAnthropic() as up, anthropic.Anthropic(base_url=up.base_url, api_key="sk-ant-t",
                                                    max_retries=0) as sdk:
        up.script("sk-ant-t", [tool_call("Bash", {"command": COMMAND}),
                               tool_call("Read", {"file_path": "/x"}, text="")])
        plain = sdk.messages.create(model=MODEL, max_tokens=64,
                                    messages=[{"role": "user", "content": "hi"}])
        with sdk.messages.stream(model=MODEL, max_tokens=2048,
                                 thinking={"type": "enabled", "budget_tokens": 1024},
                                 messages=[{"role": "user", "content": "hi"}]) as stream:
            streamed = stream.get_final_message()
    assert plain.stop_reason == streamed.stop_reason == "tool_use"
    assert [block.type for block in plain.content] == ["text", "tool_use"]
    assert [block.type for block in streamed.content] == ["thinking", "tool_use"]
    bash, read = plain.content[1], streamed.content[1]
    assert bash.type == read.type == "tool_use"
    assert (bash.name, bash.input) == ("Bash", {"command": COMMAND})
    assert (read.name, read.input) == ("Read", {"file_path": "/x"})
    assert bash.id != read.id
    assert up.errors == []


def test_only_for_steps_wait_for_a_request_they_accept() -> None:
    """`only_for()`: a refused request passes the step by (it stays queued) and is answered as
    if it were not there, by the ANY queue, then the default; in a default too."""
    def has_tools(request: RecordedRequest) -> bool:
        return bool(request.json().get("tools"))

    tool = {"name": "t", "input_schema": {"type": "object"}}
    with FakeAnthropic() as up, httpx.Client(base_url=up.base_url,
                                             headers={"x-api-key": "k"}) as http:

        def status(**extra: Any) -> int:
            return http.post("/v1/messages", json={
                "model": MODEL, "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}], **extra}).status_code

        up.script("k", [only_for(has_tools, rate_limited())])
        up.script(ANY, [overloaded()])
        assert (status(), up.pending("k")) == (529, 1)  # passed by: the ANY queue served it
        assert (status(), up.pending("k")) == (200, 1)  # and then the default
        assert (status(tools=[tool]), up.pending("k")) == (429, 0)
        up.set_default("k", only_for(has_tools, rate_limited()))
        assert [status(), status(tools=[tool]), status()] == [200, 429, 200]
    assert up.errors == []
