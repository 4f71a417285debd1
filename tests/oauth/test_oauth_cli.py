"""`kestrel accounts login NAME`: the paste flow from a terminal, against the running server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fake_oauth import EMAIL

from support.oauthkit import oauth_stack, secrets_of
from support.process import KestrelProcess
from support.stack import ADMIN_KEY, Stack


def login(workdir: Path, args: list[str], env: dict[str, str],
          paste: object = None) -> tuple[int, str, str]:
    """Run the command; `paste(url) -> str` plays the operator who opens the printed URL."""
    process = KestrelProcess(workdir, env=env)
    child = subprocess.Popen([*process.command, "accounts", "login", *args], cwd=workdir,
                             env=process.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    url = child.stdout.readline().strip()
    pasted = paste(url) if callable(paste) else ""
    out, err = child.communicate(f"{pasted}\n", timeout=20)
    return child.returncode, url + out, err


def test_login_prints_the_url_reads_the_code_and_connects(tmp_path: Path) -> None:
    with oauth_stack(tmp_path) as (stack, oauth):
        code, out, err = login(tmp_path, ["work", "--url", stack.url],
                               {"ADMIN_KEY": ADMIN_KEY}, paste=oauth.approve)
        assert code == 0, err
        assert out.startswith(f"{oauth.base_url}/oauth/authorize?") and "code=true" in out
        assert f"Connected account 'work' as {EMAIL}" in err
        account = _account(stack, "work")
        assert (account["type"], account["status"], account["email"]) == ("oauth", "active",
                                                                           EMAIL)
        assert not any(s in out + err for s in secrets_of(oauth))

        # without ADMIN_KEY, the key comes from the secrets file beside the database
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "k.db.secrets").write_text(json.dumps({"admin_key": ADMIN_KEY}))
        code, _, err = login(elsewhere, ["home", "--url", stack.url, "--db", "k.db"], {},
                             paste=oauth.approve)
        assert code == 0, err
        assert _account(stack, "home")["status"] == "active"
        assert not (elsewhere / "k.db").exists()  # a login never creates a database


def test_login_explains_what_went_wrong(tmp_path: Path) -> None:
    with oauth_stack(tmp_path) as (stack, _):
        code, _, err = login(tmp_path, ["work", "--url", stack.url], {"ADMIN_KEY": ADMIN_KEY},
                             paste=lambda url: "forged#" + url.rsplit("state=", 1)[1])
        assert code == 1 and "invalid_grant" in err and "Traceback" not in err
        code, _, err = login(tmp_path, ["work", "--url", stack.url],
                             {"ADMIN_KEY": "wrong-admin-key-0123456789"})
        assert code == 1 and "401" in err
        assert _accounts(stack) == []
    code, _, err = login(tmp_path, ["work", "--url", "http://127.0.0.1:9"],
                         {"ADMIN_KEY": ADMIN_KEY})
    assert code == 1 and "cannot reach Kestrel" in err


def _accounts(stack: Stack) -> list[dict[str, object]]:
    with stack.admin() as admin:
        data: list[dict[str, object]] = admin.get("/admin/accounts").json()["data"]
    return data


def _account(stack: Stack, name: str) -> dict[str, object]:
    return next(a for a in _accounts(stack) if a["name"] == name)
