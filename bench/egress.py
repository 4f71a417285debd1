"""What an egress proxy adds to a request, once the tunnel is open (issue 17).

    python3 bench/egress.py [--requests 2000] [--proxy tinyproxy|microsocks]

Two Kestrel processes in front of one TLS fake Anthropic (the tests' `FakeAnthropic`, with a
certificate from a throwaway CA given through CA_BUNDLE): one connects directly, the other
through a real proxy: tinyproxy (HTTPS_PROXY, so CONNECT and TLS to the upstream inside the
tunnel) or microsocks (SOCKS5).
Requests go one at a time (concurrency 1), alternating between the two so that both see the
same machine, each over a kept-alive client connection; the first 100 of each are warm-up
(TLS handshakes, the tunnel). Prints the latency percentiles of each and the difference, with
the load average before and after (these machines are shared: rerun above 0.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import load_before_and_after

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_upstream import FakeAnthropic  # noqa: E402
from support.ca import make_ca  # noqa: E402
from support.process import KestrelProcess  # noqa: E402
from support.proxies import MicroSocks, TinyProxy  # noqa: E402
from support.stack import ADMIN_KEY, ENCRYPTION_KEY, MODEL, account_key  # noqa: E402

WARM_UP = 100
PROXIES = {"tinyproxy": TinyProxy, "microsocks": MicroSocks}
BODY = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="measured requests through each Kestrel (default 2000)")
    parser.add_argument("--proxy", choices=sorted(PROXIES), default="tinyproxy",
                        help="the proxy software (default tinyproxy)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kestrel-egress-") as folder:
        work = Path(folder)
        ca = make_ca(work / "ca")
        with FakeAnthropic(tls=ca.server_context()) as upstream, \
                PROXIES[args.proxy](work / args.proxy) as proxy:
            common = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                      "CLAUDE_BASE_URL": upstream.base_url, "CA_BUNDLE": str(ca.ca_cert)}
            (work / "direct").mkdir()
            (work / "proxied").mkdir()
            with KestrelProcess(work / "direct", env=common) as direct, \
                    KestrelProcess(work / "proxied",
                                   env={**common, "HTTPS_PROXY": proxy.url}) as proxied:
                latencies = measure({"direct": direct, f"through {args.proxy}": proxied},
                                    args.requests)
            tunnels = len(proxy.destinations())
    print(f"# Egress proxy, concurrency 1, {args.requests} requests each "
          f"(after {WARM_UP} of warm-up), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"- {load_before_and_after(load_before)}")
    print(f"- Tunnels the proxy opened: {tunnels} (keep-alive through the tunnel)\n")
    print("| Kestrel | p50 ms | p90 ms | p99 ms | mean ms |")
    print("|---|--:|--:|--:|--:|")
    for name, values in latencies.items():
        ordered = sorted(values)
        print(f"| {name} | {pick(ordered, 50):.3f} | {pick(ordered, 90):.3f} | "
              f"{pick(ordered, 99):.3f} | {statistics.fmean(values):.3f} |")
    direct_p50 = pick(sorted(latencies["direct"]), 50)
    proxied_p50 = pick(sorted(latencies[f"through {args.proxy}"]), 50)
    print(f"\nAdded by the proxy at p50: {proxied_p50 - direct_p50:+.3f} ms")


def measure(targets: dict[str, KestrelProcess], count: int) -> dict[str, list[float]]:
    clients = {}
    for name, kestrel in targets.items():
        with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as admin:
            key = admin.post("/admin/keys", json={"name": "bench"}).json()["key"]
            admin.post("/admin/accounts", json={"name": "a", "api_key": account_key("a")})
        clients[name] = kestrel.client(headers={"x-api-key": key,
                                                "anthropic-version": "2023-06-01"})
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for n in range(WARM_UP + count):
            for name, client in clients.items():
                started = time.perf_counter()
                answer = client.post("/v1/messages", json=BODY)
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    raise SystemExit(f"{name}: {answer.status_code} {answer.text[:200]}")
                if n >= WARM_UP:
                    latencies[name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    return latencies


def pick(ordered: list[float], percent: int) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))]


if __name__ == "__main__":
    main()
