"""CPU per request for requests shaped like Claude Code's, beside the bench's own.

    python3 bench/claude_code_request.py [--rounds N] [--seconds S] [--body-kb KB]

The bench's `/v1/messages` request has four header fields and a body of a hundred bytes.
Claude Code sends two dozen fields and, a few turns into a session, a body of tens or hundreds
of kilobytes (its system prompt, its tools' schemas, the conversation so far). One Kestrel
process (as `run.py` starts it: request log, access log at `info`, three accounts, a client
key), pinned to the first CPU with the mock and wrk on the others, serves three kinds of
request at 16 connections in alternating rounds:

- the bench's request;
- the bench's body with the header fields Claude Code sends (its session id included);
- those fields with a body of about `--body-kb` kilobytes shaped like Claude Code's.

It prints the median CPU per request of each, and what parsing the large body as JSON takes
alone in this process (Kestrel parses every body: it must know the model and whether to
stream, and it refuses invalid JSON before anything goes upstream). The load average is
printed before and after: compare figures of one run only (docs/bench.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

from load import MESSAGES_BODY, run_wrk
from machine import load_before_and_after
from procs import cpu_seconds, raise_fd_limit
from services import REPO_DIR, build_tools, start_kestrel, start_mock

sys.path.insert(0, str(REPO_DIR))
from kestrel.api.proxy import parse_body  # noqa: E402

# What Claude Code 2.x sends besides content-type, anthropic-version and its key.
CLAUDE_CODE_FIELDS = [
    ("accept", "application/json"),
    ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14,"
                       "fine-grained-tool-streaming-2025-05-14"),
    ("anthropic-dangerous-direct-browser-access", "true"),
    ("user-agent", "claude-cli/2.0.0 (external, cli)"),
    ("x-app", "cli"),
    ("x-claude-code-session-id", "0b9e3f0e-6c1d-4f57-9a53-2f3c4d5e6f70"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-lang", "js"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-package-version", "0.60.0"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v22.12.0"),
    ("x-stainless-timeout", "600"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "*"),
    ("sec-fetch-mode", "cors"),
]
CONCURRENCY = 16


def claude_code_body(kilobytes: int) -> str:
    """A Messages request shaped like Claude Code's a few turns in: a long system prompt,
    eighteen tools with their schemas (together about 42 KB), and tool calls with their
    results, grown by turns to about `kilobytes`."""
    tools = [{"name": f"Tool{i}", "description": "What the tool does and when to use it. " * 20,
              "input_schema": {"type": "object", "required": ["p0"], "properties": {
                  f"p{j}": {"type": "string", "description": "What the parameter means. " * 3}
                  for j in range(6)}}}
             for i in range(18)]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Look at the failing test."}]
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64,
            "system": [{"type": "text", "text": "You are Claude Code. " * 600}],
            "tools": tools, "metadata": {"user_id": "user_0"}, "messages": messages}
    turn = 0
    while len(json.dumps(body)) < kilobytes * 1024:
        turn += 1
        messages += [
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me read the file first."},
                {"type": "tool_use", "id": f"toolu_{turn:04d}", "name": "Tool1",
                 "input": {"p0": f"src/module_{turn}.py"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{turn:04d}",
                 "content": "    return value  # a line of the file\n" * 40}]},
        ]
    messages.append({"role": "user", "content": "Go on."})
    return json.dumps(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=4, help="per kind of request per round")
    parser.add_argument("--body-kb", type=int, default=90,
                        help="the large body's size; at least its fixed part, about 42 KB")
    args = parser.parse_args()
    raise_fd_limit()
    load_before = os.getloadavg()
    large = claude_code_body(args.body_kb)
    kinds = {
        "the bench's request": (MESSAGES_BODY, []),
        "the bench's body, Claude Code's fields": (MESSAGES_BODY, CLAUDE_CODE_FIELDS),
        f"Claude Code's fields and a {len(large) // 1024} KB body": (large, CLAUDE_CODE_FIELDS),
    }
    work = Path(tempfile.mkdtemp(prefix="kestrel-claude-code-request-"))
    tools = build_tools(work / "build")
    mock = start_mock(tools, work, deltas=10, interval_ms=0, delay_ms=0, cpus={1})
    cpu: dict[str, list[float]] = {name: [] for name in kinds}
    rate: dict[str, list[float]] = {name: [] for name in kinds}
    try:
        kestrel = start_kestrel("kestrel", work, mock, request_log=True, access_log=True,
                                cpus={0})
        pids = [kestrel.process.popen.pid]
        for round_ in range(args.rounds + 1):  # the first round warms up, unmeasured
            for name, (body, fields) in kinds.items():
                before = cpu_seconds(pids)
                result = run_wrk(kestrel.base_url, "messages", concurrency=CONCURRENCY,
                                 seconds=args.seconds, api_key=kestrel.api_key, cpus={1},
                                 body=body, headers=fields)
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors} requests failed")
                if round_:
                    cpu[name].append((cpu_seconds(pids) - before) / result.requests * 1e6)
                    rate[name].append(result.rps)
        kestrel.process.stop()
    finally:
        mock.process.stop()
    raw = large.encode()
    parse_us = min(timeit.repeat(lambda: parse_body(raw), number=20, repeat=5)) / 20 * 1e6
    print(load_before_and_after(load_before))
    print(f"\n| `/v1/messages`, c={CONCURRENCY}, pinned, median of {args.rounds} rounds "
          "| CPU per request | requests/s |\n|---|--:|--:|")
    for name in kinds:
        print(f"| {name} | {statistics.median(cpu[name]):,.0f} µs "
              f"| {statistics.median(rate[name]):,.0f} |")
    print(f"\nParsing the {len(raw) // 1024} KB body alone (`parse_body`, best of 5): "
          f"{parse_us:,.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
