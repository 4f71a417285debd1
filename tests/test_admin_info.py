"""Two admin routes of issue 18: `GET /admin/info` (what a Kestrel is and how it is set up,
without a secret) and `POST /admin/accounts/{id}/test` (one real request through one account)."""

from __future__ import annotations

from pathlib import Path

from support.process import KestrelProcess
from support.proxies import free_port
from support.stack import account_key, running_stack

ADMIN_KEY = "info-admin-key-0123456789"


def test_info_tells_the_setup_and_no_secret(tmp_path: Path) -> None:
    env = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": "7c" * 32, "INSTANCE_NAME": "eu-1",
           "HTTPS_PROXY": "http://egress:S3CRETPW@proxy.corp:3128", "NO_PROXY": "localhost",
           "OAUTH_CLIENT_ID": "client-123", "TIME_ZONE": "Europe/Paris",
           "METRICS_TOKEN": "metrics-token-SECRET"}
    with KestrelProcess(tmp_path, env=env) as kestrel:
        with kestrel.client() as anonymous:
            assert anonymous.get("/admin/info").status_code == 401
        with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as admin:
            answer = admin.get("/admin/info")
    assert answer.status_code == 200
    info = answer.json()
    assert (info["instance"], info["oauth"], info["workers"]) == ("eu-1", True, None)
    assert info["database"] == {"engine": "sqlite", "where": "kestrel.db"}  # DB_PATH's default
    assert info["egress"] == {"from_env": True, "https": "http://proxy.corp:3128",
                              "http": None, "all": None, "no_proxy": ["localhost"],
                              "ca_bundle": None}
    assert info["settings"]["time_zone"] == "Europe/Paris"
    assert info["settings"]["priced_models"] > 10
    text = answer.text
    for secret in (ADMIN_KEY, "7c" * 32, "S3CRETPW", "metrics-token-SECRET"):
        assert secret not in text


def test_an_account_test_is_one_real_request_and_judges_the_account(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=("good", "revoked")) as stack:
        stack.add_account("unreachable", proxy_url=f"http://u:PW@127.0.0.1:{free_port()}")
        stack.up.valid_credentials = {account_key("good"), account_key("unreachable")}
        with stack.admin() as admin:
            good = admin.post(f"/admin/accounts/{stack.accounts['good']}/test").json()
            revoked = admin.post(f"/admin/accounts/{stack.accounts['revoked']}/test").json()
            unreachable = admin.post(
                f"/admin/accounts/{stack.accounts['unreachable']}/test").json()
            missing = admin.post("/admin/accounts/999/test")
        assert (good["ok"], good["status"], good["account"]["status"]) == (True, 200, "active")
        assert good["latency_ms"] > 0
        assert (revoked["ok"], revoked["status"], revoked["error_type"]) == (
            False, 401, "authentication_error")
        assert revoked["account"]["status"] == "invalid"  # as a real request would leave it
        assert revoked["message"]
        assert (unreachable["status"], unreachable["error_type"], unreachable["proxy"]) == (
            None, "proxy_unreachable", unreachable["proxy"])
        assert unreachable["proxy"].startswith("http://127.0.0.1:")
        assert unreachable["account"]["status"] == "cooldown"
        assert missing.status_code == 404
        sent = [(r.method, r.path, r.credential) for r in stack.up.requests]
        assert sent == [("GET", "/v1/models?limit=1", account_key("good")),
                        ("GET", "/v1/models?limit=1", account_key("revoked"))]
        assert "PW@" not in str(unreachable)
