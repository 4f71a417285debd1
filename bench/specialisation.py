"""Which instructions of a request Python leaves unspecialised, and where: a census.

    python3 bench/specialisation.py [--route messages|chat] [--requests N] [--top K]

CPython 3.11 rewrites an instruction it has run a few times into a form made for what it met
(`LOAD_ATTR_INSTANCE_VALUE`, `CALL_PY_EXACT_ARGS`...). One it cannot specialise keeps a generic
form, and some of those cost ten times their specialised kind: an enum member read through
its class goes through `EnumType.__getattr__` on 3.11, keywords to a class are packed into a
dict and matched one by one (`bench/RESULTS.md`, run 20). Neither shows in a profile, which
charges them to the line that does them, nor in an instruction count, which cannot say why.

This starts Kestrel as `run.py` does (request log, access log at `info`, three accounts, a
client key) under a tracer of its own (`--trace`, below), warms it up untraced, then counts
every instruction its event loop's thread executes over `--requests` requests, by code object
and offset (`sys.settrace` with `f_trace_opcodes`), and reads how the interpreter had rewritten
each of them by then (`dis.get_instructions(code, adaptive=True)`). It prints, per request,
the instructions executed and how many of them were generic, by kind, then the generic sites
executed most, then the footprint: how many distinct instructions a typical request runs, by
package and by function. Tracing makes Kestrel about fifty times slower; a run takes under a minute.

What counts as generic is named the way CPython 3.11 names it (`LOAD_ATTR_ADAPTIVE`, and
`CALL_ADAPTIVE` after a Python call's `PRECALL_PYFUNC` or `PRECALL_BOUND_METHOD`, which is a
call with keywords); on other versions the kinds read differently.
"""

from __future__ import annotations

import argparse
import asyncio
import dis
import functools
import json
import os
import re
import runpy
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from instructions import CONNECTIONS, WARM_UP_PER_CONNECTION, _load
from load import ROUTE_BODIES, ROUTE_PATHS
from services import build_tools, start_kestrel, start_mock

# A call of a Python function that stayed generic after these: one made with keywords.
_PYTHON_CALLS = ("PRECALL_PYFUNC", "PRECALL_BOUND_METHOD")
# The tracer's file of counts, named in the environment of the process it runs in.
_OUT_ENV = "KESTREL_SPECIALISATION_OUT"
_CHECKOUT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=sorted(ROUTE_PATHS), default="messages")
    parser.add_argument("--requests", type=int, default=296,
                        help="requests counted (rounded down to a whole number per connection)")
    parser.add_argument("--top", type=int, default=40, help="generic sites listed")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kestrel-specialisation-"))
    out = work / "census.json"
    os.environ[_OUT_ENV] = str(out)  # the Kestrel process inherits it
    tools = build_tools(work / "build")
    mock = start_mock(tools, work, deltas=10, interval_ms=0, delay_ms=0, cpus=None)
    try:
        target = start_kestrel("kestrel", work, mock, request_log=True, access_log=True,
                               cpus=None, under=[sys.executable, __file__, "--trace"])
        port = int(target.base_url.rsplit(":", 1)[1])
        body = ROUTE_BODIES[args.route].encode()
        request = (f"POST {ROUTE_PATHS[args.route]} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                   f"content-type: application/json\r\nx-api-key: {target.api_key}\r\n"
                   f"anthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n\r\n"
                   ).encode() + body
        asyncio.run(_load(port, request, CONNECTIONS * WARM_UP_PER_CONNECTION))
        time.sleep(0.5)
        target.process.popen.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        served = asyncio.run(_load(port, request, args.requests))
        time.sleep(1.0)
        target.process.popen.send_signal(signal.SIGUSR2)
        for _ in range(100):  # the tracer writes its file from a signal handler
            if out.exists():
                break
            time.sleep(0.1)
        target.process.stop()
    finally:
        mock.process.stop()
    _report(json.loads(out.read_text()), served, args.route, args.top)
    return 0


def _report(instructions: list[list[Any]], served: int, route: str, top: int) -> None:
    executed = 0.0
    kinds: Counter[str] = Counter()
    sites: Counter[tuple[str, int, str, str, str]] = Counter()
    # The footprint: instructions a typical request runs at least once (half the requests or
    # more), by where they are.
    footprint: Counter[tuple[str, str]] = Counter()
    previous_call = ""
    for filename, qualname, line, opname, argrepr, count in instructions:
        each = count / served
        executed += each
        short = _short(filename)
        if each >= 0.5:
            footprint[(short, qualname)] += 1
        if opname.startswith("PRECALL"):
            previous_call = opname
        generic = opname.endswith("_ADAPTIVE") and not (
            opname == "CALL_ADAPTIVE" and previous_call not in _PYTHON_CALLS)
        if opname == "CALL_FUNCTION_EX":
            generic = True
        if generic and each:
            kinds[opname] += each
            sites[(short, line or 0, qualname, opname, argrepr)] += each
    print(f"## Unspecialised instructions, {route}, a request ({served} requests counted)\n")
    print(f"{executed:,.0f} instructions executed on the event loop's thread; "
          f"{sum(kinds.values()):,.0f} of them generic.\n")
    print("| kind | a request |\n|---|--:|")
    for kind, each in kinds.most_common():
        print(f"| `{kind}` | {each:,.1f} |")
    print(f"\n| where (the {top} executed most) | function | instruction | a request |"
          "\n|---|---|---|--:|")
    for (short, line, qualname, opname, argrepr), each in sites.most_common(top):
        what = f"`{opname}` {argrepr}".rstrip()
        print(f"| {short}:{line} | `{qualname}` | {what} | {each:,.1f} |")
    _report_footprint(footprint, top)


@functools.cache
def _short(filename: str) -> str:
    """A code object's file as the report names it: from the package or the checkout down."""
    short = re.sub(r".*/(site-packages|python3\.\d+)/", "", filename)
    return re.sub(rf"^{re.escape(str(_CHECKOUT))}/", "", short)


def _report_footprint(footprint: Counter[tuple[str, str]], top: int) -> None:
    """How much distinct code a request runs, by package and by function. The interpreter
    reads a function's instructions as data, so a wide path misses the data cache where a
    narrow one run as often does not (`bench/RESULTS.md`, run 21)."""
    packages: Counter[str] = Counter()
    for (short, _), distinct in footprint.items():
        parts = short.split("/")
        packages["/".join(parts[:2]) if parts[0] == "kestrel" else parts[0]] += distinct
    print(f"\n## Footprint: {sum(footprint.values()):,} distinct instructions a typical "
          "request runs (each at least once in half the requests)\n")
    print("| package or module | distinct instructions |\n|---|--:|")
    for package, distinct in packages.most_common():
        print(f"| {package} | {distinct:,} |")
    print(f"\n| function (the {top} widest) | distinct instructions |\n|---|--:|")
    for (short, qualname), distinct in footprint.most_common(top):
        print(f"| {short}: `{qualname}` | {distinct:,} |")


# --- the tracer, run as `specialisation.py --trace PYTHON -m kestrel` ------------------------

def _trace(argv: list[str]) -> None:
    """Run `python -m MODULE ARGS` (the `PYTHON` is this interpreter) in this process, with
    SIGUSR1 to start counting the main thread's instructions and SIGUSR2 to stop and write
    them, each with its adaptive form, to the file the environment names."""
    counts: Counter[tuple[int, int]] = Counter()
    codes: dict[int, CodeType] = {}

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            code = frame.f_code
            codes[id(code)] = code
            counts[(id(code), frame.f_lasti)] += 1
        return tracer

    def start(*_: object) -> None:
        counts.clear()
        sys.settrace(tracer)

    def stop(*_: object) -> None:
        sys.settrace(None)
        rows = []
        for key, code in codes.items():
            for instruction in dis.get_instructions(code, adaptive=True):
                position = instruction.positions
                rows.append([code.co_filename, code.co_qualname,
                             position.lineno if position else None, instruction.opname,
                             instruction.argrepr, counts.get((key, instruction.offset), 0)])
        Path(os.environ[_OUT_ENV]).write_text(json.dumps(rows))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    if len(argv) < 3 or argv[1] != "-m":
        sys.exit("usage: specialisation.py --trace PYTHON -m MODULE [ARGS...]")
    sys.argv = [argv[2], *argv[3:]]
    runpy.run_module(argv[2], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--trace"]:
        _trace(sys.argv[2:])
    else:
        sys.exit(main())
