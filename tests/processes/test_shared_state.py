"""Several Kestrel processes on one database agree: changes made through one are in force in
the others within a second, OAuth tokens are refreshed once between them, conversations keep
their account whichever process they reach, and the admin lock-out counts every process.

What a process holds in memory is read from the process itself: its pool from `/metrics`
(the gauges render the pool the proxy chooses from), its key cache from the proxy's answer.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
from fake_oauth import FakeOAuth

from fake_upstream import rate_limited
from support.cluster import (
    pool_statuses,
    running_cluster,
    seconds_until,
    serves,
    spread,
    status_is,
)
from support.figures import report
from support.oauthkit import connect
from support.process import loopback_addresses
from support.stack import Stack, account_key, message_body

LIMIT_SECONDS = 1.0  # the bar for a change to reach every process


def test_changes_made_through_one_process_reach_the_others_within_a_second(
        tmp_path: Path, shared_database: dict[str, str]) -> None:
    with running_cluster(tmp_path, 3, env=shared_database) as cluster:
        first, *others = cluster.nodes
        delays: dict[str, list[float]] = {}

        def measure(kind: str, change: Callable[[], None], seen: Callable[[Stack], bool]) -> None:
            delays.setdefault(kind, []).extend(spread(change, seen, others))

        with first.admin() as admin:
            for n in range(4):
                name = f"acct{n}"
                measure("account added", lambda name=name: cluster.add_account(name),
                        status_is(name, "active"))
                account_id = first.accounts[name]
                measure("account disabled", lambda account_id=account_id: admin.put(
                    f"/admin/accounts/{account_id}", json={"enabled": False}),
                    status_is(name, "disabled"))
                measure("account deleted", lambda account_id=account_id: admin.delete(
                    f"/admin/accounts/{account_id}"), status_is(name, None))
            cluster.add_account("a", priority=10)
            cluster.add_account("b")
            for node in others:
                seconds_until(lambda node=node: pool_statuses(node).get("b") == "active")
            for n in range(4):
                # a cooldown learnt by the first process from an upstream 429
                cluster.up.script(account_key("a"), [rate_limited(retry_after=60)])

                def hit_429(n: int = n) -> None:
                    with first.http() as client:
                        response = client.post("/v1/messages", json=message_body(f"r{n}"))
                        assert response.status_code == 200  # served by b
                measure("cooldown (429)", hit_429, status_is("a", "cooldown"))
                # ... is honoured there: the others send to b without trying a
                for node in others:
                    sent = len(cluster.up.requests)
                    with node.http() as client:
                        assert client.post("/v1/messages",
                                           json=message_body(f"then {n}")).status_code == 200
                    assert [r.credential for r in cluster.up.requests[sent:]] == [
                        account_key("b")]
                measure("reset", lambda: admin.post(
                    f"/admin/accounts/{first.accounts['a']}/reset"), status_is("a", "active"))
            for n in range(4):
                # a new credential: the others send it from their next request on
                new_key = account_key(f"a-rotated-{n}")

                def sends_new_key(node: Stack, new_key: str = new_key) -> bool:
                    with node.http() as client:
                        client.post("/v1/messages", json=message_body())
                    return cluster.up.requests[-1].credential == new_key
                measure("credential changed", lambda new_key=new_key: admin.put(
                    f"/admin/accounts/{first.accounts['a']}", json={"api_key": new_key}),
                    sends_new_key)
            for n in range(4):
                key = admin.post("/admin/keys", json={"name": f"k{n}"}).json()
                for node in others:  # each process has checked the key and cached it
                    seconds_until(lambda node=node, key=key: serves(node, key["key"]))
                measure("key revoked", lambda key_id=key["id"]: admin.delete(
                    f"/admin/keys/{key_id}"), lambda node, key=key: not serves(node, key["key"]))
    for kind, times in delays.items():
        report("Changes reaching 2 other processes (s)", ("change", "n", "median", "max"),
               (kind, len(times), f"{statistics.median(times):.3f}", f"{max(times):.3f}"))
    # Every change arrived (`spread` waits at most a few seconds for each). The typical one must
    # take well under the bound; a single outlier past it on a loaded machine is a figure for
    # the report above, not a failure: timing bounds are the benchmarks' to hold.
    slow = {kind: statistics.median(times) for kind, times in delays.items()
            if statistics.median(times) >= LIMIT_SECONDS}
    assert not slow, slow


def test_an_expired_token_is_refreshed_once_across_three_processes(
        tmp_path: Path, shared_database: dict[str, str]) -> None:
    # The first token lives 5 s: inside the 10 s safety margin, expired from the start, so
    # every request must wait for new tokens; the provider takes its time answering.
    with FakeOAuth(lifetimes=(5,), refresh_delay=0.3) as oauth, \
            running_cluster(tmp_path, 3, env={**oauth.env(), **shared_database}) as cluster:
        connect(cluster.nodes[0], oauth)
        for node in cluster.nodes:
            seconds_until(lambda node=node: pool_statuses(node).get("sub") == "active")
        clients = [node.http(limits=httpx.Limits(max_connections=10)) for node in cluster.nodes]
        try:
            with ThreadPoolExecutor(30) as pool:
                codes = list(pool.map(lambda n: clients[n % 3].post(
                    "/v1/messages", json=message_body(f"request {n}")).status_code, range(30)))
        finally:
            for client in clients:
                client.close()
        assert codes == [200] * 30
        assert len(oauth.refreshes()) == 1
        # nobody sent the expired token; every process used the one new token
        assert {r.credential for r in cluster.up.requests} == {oauth.access_tokens[1]}
        assert cluster.nodes[2].account("sub")["status"] == "active"


def test_conversations_keep_their_account_across_processes_and_spread_evenly(
        tmp_path: Path, shared_database: dict[str, str]) -> None:
    """300 Claude Code sessions over 3 equal accounts, each session's requests alternating
    between two processes: every request of a session reaches the same account, and each
    account gets 100 sessions give or take 20 %."""
    with running_cluster(tmp_path, 2, env=shared_database) as cluster:
        for name in ("a", "b", "c"):
            cluster.add_account(name)
        second = cluster.nodes[1]
        seconds_until(lambda: len(pool_statuses(second)) == 3)
        sessions = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(300)]
        with cluster.nodes[0].http() as one, second.http() as two:
            for session in sessions:
                for client in (one, two, one):
                    response = client.post("/v1/messages", json=message_body(),
                                           headers={"x-claude-code-session-id": session})
                    assert response.status_code == 200
        served = [r.credential for r in cluster.up.requests]
    per_session = [served[i:i + 3] for i in range(0, len(served), 3)]
    assert all(len(set(three)) == 1 for three in per_session)
    counts = Counter(three[0] for three in per_session)
    for name in "abc":
        report("Sessions per account, 2 processes", ("account", "sessions"),
               (name, counts[account_key(name)]))
    assert all(80 <= counts[account_key(name)] <= 120 for name in "abc"), counts


def test_the_admin_lock_out_counts_wrong_keys_from_every_process(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        address = next(loopback_addresses())
        clients = [node.kestrel.client_from(address) for node in cluster.nodes]
        try:
            statuses = [clients[n % 3].get("/admin/accounts", headers={
                "X-Admin-Key": f"wrong-admin-key-{n:04}"}).status_code for n in range(15)]
            right = [client.get("/admin/accounts", headers={
                "X-Admin-Key": cluster.nodes[0].admin_key}).status_code for client in clients]
        finally:
            for client in clients:
                client.close()
        assert statuses == [401] * 10 + [429] * 5
        assert right == [429] * 3  # locked out on every process, even with the right key
        with cluster.nodes[1].admin() as admin:  # another address is not affected
            assert admin.get("/admin/accounts").status_code == 200


def test_a_login_goes_from_one_process_to_another(tmp_path: Path) -> None:
    """The signed link made by one process opens on a second; the provider's redirect back
    lands on a third, which finishes the login; all of them serve with the account."""
    with FakeOAuth() as oauth, running_cluster(tmp_path, 3, env=oauth.env()) as cluster:
        maker, starter, finisher = cluster.nodes
        with maker.admin() as admin:
            url = admin.post("/admin/oauth/link", json={"name": "sub"}).json()["url"]
        with starter.kestrel.client() as browser:
            started = browser.get(url)
        assert started.status_code == 302
        back = oauth.approve(started.headers["location"])
        with finisher.kestrel.client() as browser:
            page = browser.get("/api/oauth/callback", params=dict(parse_qsl(urlsplit(back).query)))
        assert page.status_code == 200, page.text
        for node in cluster.nodes:
            seconds_until(lambda node=node: pool_statuses(node).get("sub") == "active")
            with node.http() as client:
                assert client.post("/v1/messages", json=message_body()).status_code == 200
        assert {r.credential for r in cluster.up.requests} == {oauth.access_tokens[0]}

