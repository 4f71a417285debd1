"""The dashboard end to end, in real headless Chromium: a real Kestrel in front of the fake
Anthropic upstream, driven the way an operator would use it.

Driven by the Python `playwright` package (its own Node driver ships inside the wheel) with
Debian's `chromium` (`executable_path`); Playwright's browser download is never used. Without
`/usr/bin/chromium` the test is skipped, except under CI, where `.ci/run` installs it and a
missing browser is a failure. Screenshots of every page land in `test-artifacts/dashboard/`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anthropic
import pytest

from fake_upstream import rate_limited, success
from support.proxies import free_port
from support.stack import ADMIN_KEY, MODEL, Stack, account_key, running_stack

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import (  # noqa: E402
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Response,
    Route,
    expect,
    sync_playwright,
)

CHROMIUM = os.environ.get("KESTREL_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
# Flags for a quiet, self-contained browser: no GPU, no QUIC, nothing phoned home.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
DESKTOP = {"width": 1280, "height": 860}
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PHONE_OPTIONS = {"viewport": PHONE, "is_mobile": True, "has_touch": True}

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run should have installed chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, accounts=()) as stack:
        yield stack


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Kestrel with one account (`main`) for the tests below that need no fresh pool: each
    uses keys and accounts of its own, so they pass in any order and on any worker."""
    with running_stack(tmp_path_factory.mktemp("pool"), accounts=("main",)) as stack:
        yield stack


class Console:
    """Every console error and CSP violation the page reports; the test ends with none."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        # The browser also logs every API call answered 4xx (the wrong key and the invalid
        # forms, on purpose): the page handles those; anything else is a problem.
        expected = re.search(r"the server responded with a status of 4\d\d", text)
        if (message.type == "error" or "Content Security Policy" in text) and not expected:
            self.problems.append(text)

    def _on_response(self, response: Response) -> None:
        # The console line of a 4xx names no URL, so the one 4xx that must not happen any
        # more is caught here: the page used to probe OAuth with an empty `start`.
        if "/admin/oauth/start" in response.url and response.status >= 400:
            self.problems.append(f"failed OAuth probe: {response.status} {response.url}")


def shoot(page: Page, name: str) -> None:
    page.wait_for_timeout(150)  # let a transition settle
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def go(page: Page, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()
    expect(page.get_by_role("heading", level=1, name=label)).to_be_visible()


def add_account(page: Page, stack: Stack, name: str, priority: int) -> None:
    page.get_by_role("button", name="Add API-key account").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("API key").fill(account_key(name))
    dialog.get_by_label("Priority").fill(str(priority))
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_test_id(f"account-row-{name}")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("sk-ant-")
    stack.accounts[name] = next(a["id"] for a in _admin_accounts(stack) if a["name"] == name)


def fill_and_save(dialog: Locator, values: dict[str, str]) -> None:
    """Fill the form's inputs, by label, and save it: the dialog closes."""
    for label, value in values.items():
        dialog.get_by_label(label).fill(value)
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()


def _admin_accounts(stack: Stack) -> list[dict[str, object]]:
    with stack.admin() as client:
        data: list[dict[str, object]] = client.get("/admin/accounts").json()["data"]
        return data


def _admin_keys(stack: Stack) -> list[dict[str, object]]:
    with stack.admin() as client:
        data: list[dict[str, object]] = client.get("/admin/keys").json()["data"]
        return data


def set_theme(page: Page, theme: str) -> None:
    is_dark = page.evaluate("document.documentElement.classList.contains('dark')")
    if is_dark != (theme == "dark"):
        page.get_by_role("button", name=f"Switch to {theme} theme").locator("visible=true").first \
            .click()
    expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b") if theme == "dark"
                                               else re.compile(r"^(?!.*\bdark\b).*$"))


@contextmanager
def signed_in(browser: Browser, stack: Stack, path: str = "/app/",
              **options: object) -> Iterator[tuple[Page, Console]]:
    """A page of a new browser context, signed in at `path` (the deep link is kept)."""
    context: BrowserContext = browser.new_context(**{"viewport": DESKTOP,
                                                     "color_scheme": "light", **options})
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        console = Console(page)
        page.goto(stack.url + path)
        page.get_by_label("Admin key").fill(stack.admin_key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_label("Admin key")).to_be_hidden()
        yield page, console
    finally:
        context.close()


def asked_once(stack: Stack, name: str) -> int:
    """A new client key that has made one request, logged: its id."""
    key_id, sdk = client_key(stack, name)
    ask(sdk)
    stack.logs(expect=1, key_id=key_id)
    return key_id


def client_key(stack: Stack, name: str) -> tuple[int, anthropic.Anthropic]:
    """A new client key's id, and an SDK client that uses it."""
    with stack.admin() as client:
        created = client.post("/admin/keys", json={"name": name}).json()
    sdk = anthropic.Anthropic(base_url=stack.url, api_key=created["key"], max_retries=0)
    return created["id"], stack.closed_with_stack(sdk)


def logged_where(stack: Stack, match: Callable[[dict[str, Any]], bool],
                 timeout: float = 5.0) -> dict[str, Any]:
    """The newest request log that `match`es, once it is written (they are batched)."""
    deadline = time.monotonic() + timeout
    while not (found := [row for row in stack.logs(expect=0) if match(row)]):
        assert time.monotonic() < deadline, "no such request log"
        time.sleep(0.1)
    return found[0]


def ask(sdk: anthropic.Anthropic, model: str = MODEL) -> None:
    sdk.messages.create(model=model, max_tokens=32,
                        messages=[{"role": "user", "content": "hello"}])


@contextmanager
def first_in_line(stack: Stack, name: str) -> Iterator[int]:
    """A new account `name`, tried before `main`, for the length of a test: its id. Disabled
    afterwards, so that it serves no later test. (Not deleted: the server gives a deleted
    account's id to the next account added, with its logs and figures.)"""
    account_id = stack.add_account(name, priority=500)
    try:
        yield account_id
    finally:
        with stack.admin() as client:
            client.put(f"/admin/accounts/{account_id}", json={"enabled": False})


def failed_over(stack: Stack, name: str) -> int:
    """Account `name` (first in line) answers a new key's one request 429, and `main` serves it
    instead: the key's id."""
    stack.up.script(account_key(name), [rate_limited(retry_after=60)])
    key_id = asked_once(stack, f"{name}-client")
    (logged,) = stack.logs(expect=1, key_id=key_id)
    assert [(a["account_name"], a["status"]) for a in logged["attempts"]] == [(name, 429),
                                                                              ("main", 200)]
    return key_id


# Whether the last character of `model` is painted in the row's cell that holds the name: inside
# every box that clips it (an ellipsis, or a cell too narrow, hides the characters past its edge,
# though they are laid out there). Two names that differ only at the end must both show it.
LAST_CHAR_SHOWN = """(row, model) => {
    const cell = [...row.querySelectorAll("td")].find(
        (td) => td.textContent.includes(model) && td.getClientRects().length);
    if (!cell) return false;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let last = null;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.data.trim() && node.parentElement.getClientRects().length) last = node;
    }
    if (!last || !model.endsWith(last.data.trim().slice(-1))) return false;
    const range = document.createRange();
    const end = last.data.trimEnd().length;
    range.setStart(last, end - 1);
    range.setEnd(last, end);
    const glyph = range.getBoundingClientRect();
    if (glyph.width === 0) return false;
    for (let box = last.parentElement; box; box = box.parentElement) {
        const style = getComputedStyle(box);
        if (style.overflowX !== "visible") {
            // An ellipsis replaces what passes the content box; a plain clip, the padding box.
            const px = (name) => parseFloat(style[name]) || 0;
            const inset = (side) => px(`border${side}Width`) +
                (style.textOverflow === "ellipsis" ? px(`padding${side}`) : 0);
            const edge = box.getBoundingClientRect();
            if (glyph.right > edge.right - inset("Right") + 0.5 ||
                glyph.left < edge.left + inset("Left") - 0.5) return false;
        }
        if (box === cell) break;
    }
    return true;
}"""


def test_operator_journey(browser: Browser, stack: Stack) -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    context.set_default_timeout(10_000)
    page = context.new_page()
    console = Console(page)
    origin = stack.url

    # Sign in: `/` redirects to the dashboard; a wrong key is refused, the right one kept.
    page.goto(origin + "/")
    assert page.url == origin + "/app/"
    expect(page.get_by_role("heading", name="Sign in to Kestrel")).to_be_visible()
    shoot(page, "signin-light")
    page.get_by_label("Admin key").fill("not-the-admin-key-0000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    expect(page.get_by_text("No accounts yet")).to_be_visible()
    # The sidebar's foot names the version and the instance (from `/admin/info`).
    expect(page.get_by_test_id("server-info")).to_contain_text(
        re.compile(rf"^v\S+ · {re.escape(socket.gethostname())}:0$"))

    # Accounts: add two through the form.
    go(page, "Accounts")
    connect = page.get_by_role("button", name="Connect Claude account")
    if connect.count():  # OAuth routes exist, but this server has no OAUTH_CLIENT_ID
        connect.click()
        expect(page.get_by_role("dialog")).to_contain_text("OAUTH_CLIENT_ID")
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_be_hidden()
    add_account(page, stack, "alpha", priority=10)
    add_account(page, stack, "beta", priority=0)
    # Edit: the stored key is never shown, only its hint; a blank field keeps it.
    page.get_by_role("button", name="Edit beta").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("New API key")).to_have_value("")
    fill_and_save(dialog, {"Priority": "5"})
    expect(page.get_by_test_id("account-row-beta")).to_contain_text("5")
    assert stack.account("beta")["priority"] == 5

    # Keys: create one with an owner and a model limit, shown once with snippets, then use it
    # through the SDK.
    go(page, "Keys")
    page.get_by_role("button", name="Create key").first.click()
    page.get_by_role("dialog").get_by_label("Name").fill("e2e-laptop")
    page.get_by_role("dialog").get_by_label("Owner").fill("ana@example.com")
    page.get_by_role("dialog").get_by_label("Allowed models").fill("claude-haiku-*")
    page.get_by_role("dialog").get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("kst_")
    snippet = page.get_by_test_id("snippet-claude-code").inner_text()
    assert f"ANTHROPIC_BASE_URL={origin}" in snippet and f"ANTHROPIC_API_KEY={key}" in snippet
    page.get_by_role("tab", name="OpenAI SDK").click()
    assert f'base_url="{origin}/v1"' in page.get_by_test_id("snippet-openai").inner_text()
    shoot(page, "keys-created-light")
    page.get_by_role("button", name="I have copied it, close").click()
    row = page.get_by_test_id("key-row-e2e-laptop")
    expect(row).to_contain_text(key[:8])
    expect(row).to_contain_text("never")
    expect(row).to_contain_text("ana@example.com")
    expect(row).to_contain_text("models: claude-haiku-*")
    # Edit: the form starts from the stored values and sends only what changed; a note added,
    # the model limit cleared (null), so the calls below with MODEL are let through.
    row.get_by_role("button", name="Edit e2e-laptop").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Owner")).to_have_value("ana@example.com")
    expect(dialog.get_by_label("Allowed models")).to_have_value("claude-haiku-*")
    fill_and_save(dialog, {"Note": "Ana's work laptop", "Allowed models": ""})
    expect(row).to_contain_text("Ana's work laptop")
    expect(row).to_contain_text("No limits")
    saved = next(k for k in _admin_keys(stack) if k["name"] == "e2e-laptop")
    assert (saved["note"], saved["owner"], saved["models"]) == (
        "Ana's work laptop", "ana@example.com", None)
    # Limits: the form checks what it can (a count of 0), shows the server's 422 under the
    # input it names (a budget over the maximum), and saves a rate and a daily budget.
    row.get_by_role("button", name="Edit e2e-laptop").click()
    expect(dialog.get_by_label("Requests per minute")).to_have_value("")
    dialog.get_by_label("Requests per minute").fill("0")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_contain_text("A whole number, 1 or more")
    dialog.get_by_label("Requests per minute").fill("60")
    dialog.get_by_label("Monthly budget ($)").fill("5000000000")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_contain_text("monthly_budget_usd must be at most")
    fill_and_save(dialog, {"Monthly budget ($)": "", "Daily budget ($)": "0.50"})
    expect(row).to_contain_text("60 rpm")
    expect(row).to_contain_text("$0.50/day")
    spend = page.get_by_test_id("key-spend-e2e-laptop").locator("visible=true")
    expect(spend).to_contain_text(re.compile(r"Today\s*\$0\.00\s*/\s*\$0\.50"))
    expect(spend.get_by_role("progressbar")).to_have_count(1)  # no monthly budget: no bar
    saved = next(k for k in _admin_keys(stack) if k["name"] == "e2e-laptop")
    assert (saved["rpm"], saved["daily_budget_usd"], saved["monthly_budget_usd"]) == (60, 0.5, None)
    row.get_by_role("button", name="Edit e2e-laptop").click()
    expect(dialog.get_by_label("Requests per minute")).to_have_value("60")
    expect(dialog.get_by_label("Daily budget ($)")).to_have_value("0.5")
    shoot(page, "key-limits-light")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The first choice (alpha, priority 10) is rate-limited: Kestrel cools it down and serves
    # the request from beta, invisibly to the client.
    stack.up.script(account_key("alpha"), [rate_limited(retry_after=60)])
    # beta's answer reports its subscription windows, as Anthropic's do for OAuth accounts.
    reset = int(time.time()) + 2 * 3600
    stack.up.script(account_key("beta"), [success(headers={
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-5h-status": "allowed",
        "anthropic-ratelimit-unified-5h-utilization": "0.42",
        "anthropic-ratelimit-unified-5h-reset": str(reset),
        "anthropic-ratelimit-unified-7d-status": "allowed",
        "anthropic-ratelimit-unified-7d-utilization": "0.93",
        "anthropic-ratelimit-unified-7d-reset": str(reset + 3 * 86400),
    })])
    sdk = stack.closed_with_stack(anthropic.Anthropic(base_url=origin, api_key=key, max_retries=0))
    reply = sdk.messages.create(model=MODEL, max_tokens=32,
                                messages=[{"role": "user", "content": "hello"}])
    assert reply.content and stack.served_by() == "beta"
    stack.logs(expect=1)
    expect(row).not_to_contain_text("never", timeout=8000)  # last use shows up on refresh
    # What it cost shows up too, against the daily budget.
    cost = stack.logs(expect=1)[0]["cost_usd"]
    assert cost > 0
    expect(spend).to_contain_text(re.compile(r"Today\s*\$0\.000\d+\s*/\s*\$0\.50"), timeout=8000)

    # Logs: the request, with both attempts.
    go(page, "Logs")
    log_row = page.get_by_test_id("log-row").first
    expect(log_row).to_contain_text("200")
    expect(log_row).to_contain_text(MODEL)
    expect(log_row).to_contain_text("beta")
    expect(page.get_by_role("columnheader", name="Cost")).to_be_visible()
    expect(log_row).to_contain_text(re.compile(r"\$0\.000\d+"))
    shoot(page, "logs-light")
    log_row.click()
    attempts = page.get_by_test_id("attempts").get_by_role("listitem")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("alpha")
    expect(attempts.nth(0)).to_contain_text("429")
    expect(attempts.nth(1)).to_contain_text("beta")
    expect(attempts.nth(1)).to_contain_text("200")
    expect(page.get_by_role("dialog")).to_contain_text(re.compile(r"Cost\$0\.000\d+"))
    expect(page.get_by_role("dialog")).to_contain_text("e2e-laptop · ana@example.com")  # owner
    # The instance that served it (INSTANCE_NAME's default: host name and the --port given).
    expect(page.get_by_role("dialog")).to_contain_text(f"Instance{socket.gethostname()}:0")
    shoot(page, "log-detail-light")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    page.get_by_label("Status").fill("429")
    expect(page.get_by_text("No requests match these filters")).to_be_visible()
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_test_id("log-row")).to_have_count(1)
    # Live tail: a new request appears on top without a reload.
    page.get_by_role("button", name="Live tail").click()
    stack.sdk().messages.create(model=MODEL, max_tokens=32,
                                messages=[{"role": "user", "content": "tail"}])
    expect(page.get_by_test_id("log-row")).to_have_count(2)
    expect(page.get_by_test_id("log-row").first).to_contain_text("tests")  # the stack's key
    page.get_by_role("button", name="Live").click()

    # Overview: charts count the request; alpha's card shows its cooldown counting down.
    go(page, "Overview")
    cards = page.get_by_test_id("account-cards")
    expect(cards).to_contain_text("Cooling down")
    countdown = re.compile(r"Cooling down\s*(0|1)m \d\ds|Cooling down\s*\d+s")
    expect(cards).to_contain_text(countdown)
    expect(page.get_by_role("img", name="Requests")).to_be_visible()
    expect(page.get_by_role("img", name="Cost by day, last 30 days")).to_be_visible()
    expect(page.get_by_text(re.compile(r"total \$0\.000\d+"))).to_be_visible()
    bars = cards.get_by_role("progressbar", name=re.compile(r"window used$"))
    expect(bars).to_have_count(2)
    expect(bars.nth(0)).to_have_attribute("aria-valuenow", "42")
    expect(cards).to_contain_text(re.compile(r"42%\s*used · resets in (1h 59m|2h 00m)"))
    expect(bars.nth(1)).to_have_attribute("aria-valuenow", "93")
    # alpha served nothing, but is not idle: its card says how its one try failed.
    expect(page.get_by_test_id("account-card-alpha")).to_contain_text("1 failed: 429 ×1")
    shoot(page, "overview-light")

    # Usage: this month by key, each key's requests and cost, and the total; then by model,
    # a request for a model the price table lacks counted as unpriced.
    go(page, "Usage")
    usage_rows = page.get_by_test_id("usage-row")
    laptop = usage_rows.filter(has_text="e2e-laptop")
    expect(laptop).to_have_count(1)
    expect(laptop.locator("td").nth(1)).to_have_text("1")
    expect(laptop).to_contain_text(re.compile(r"\$0\.000\d+"))
    expect(usage_rows.filter(has_text="tests")).to_have_count(1)
    expect(page.get_by_test_id("usage-totals").locator("td").first).to_have_text("2")
    shoot(page, "usage-light")
    stack.sdk().messages.create(model="kestrel-unpriced-model", max_tokens=32,
                                messages=[{"role": "user", "content": "unpriced"}])
    # The view reads the usage counts, which the request log's row may reach before.
    stack.usage(expect=3, group_by="model")
    page.get_by_role("radio", name="Model").click()
    page.get_by_role("button", name="Refresh").click()
    unpriced = usage_rows.filter(has_text="kestrel-unpriced-model")
    expect(unpriced).to_contain_text("$0.00")
    expect(unpriced.locator("td").last).to_have_text("1")
    expect(usage_rows.filter(has_text=MODEL).locator("td").last).to_have_text("0")
    expect(page.get_by_text("1 unpriced request not counted")).to_be_visible()
    # By month: the same rows under this month's heading ("December 2026").
    page.get_by_role("radio", name="Month").click()
    month = re.compile(r"^[A-Z][a-z]+ \d{4}\b")
    expect(page.get_by_role("columnheader", name=month)).to_have_count(1)
    expect(unpriced.locator("td").last).to_have_text("1")
    # The usage counts and the request log's row are written apart, in either order: the page
    # shows the rows there are when it opens.
    stack.logs(expect=1, model="kestrel-unpriced-model")
    go(page, "Logs")
    expect(page.get_by_test_id("log-row").first).to_contain_text("unpriced")

    # Accounts: the cooldown, then reset it.
    go(page, "Accounts")
    alpha = page.get_by_test_id("account-row-alpha")
    expect(alpha).to_contain_text("Cooling down")
    expect(alpha).to_contain_text("rate")
    shoot(page, "accounts-light")
    alpha.get_by_role("button", name="Reset alpha").click()
    expect(alpha).to_contain_text("Active")
    expect(alpha).not_to_contain_text("Cooling down")
    assert stack.account("alpha")["status"] == "active"
    # Test: one real request upstream through alpha alone, its result shown on the row.
    alpha.get_by_role("button", name="Test alpha").click()
    expect(alpha.get_by_test_id("account-test-alpha")).to_have_text(
        re.compile(r"^OK · 200 in \d"))
    expect(alpha).to_contain_text("Active")
    shoot(page, "accounts-tested-light")

    # Dark theme, every page.
    set_theme(page, "dark")
    for label in ("Overview", "Accounts", "Keys", "Logs", "Usage"):
        go(page, label)
        page.wait_for_load_state("networkidle")
        shoot(page, f"{label.lower()}-dark")
    set_theme(page, "light")

    # Keys: revoke with confirmation; the next request with it is refused.
    go(page, "Keys")
    page.get_by_role("button", name="Revoke e2e-laptop").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("e2e-laptop")
    dialog.get_by_role("button", name="Revoke key").click()
    expect(dialog).to_be_hidden()
    expect(row).to_contain_text("Revoked")
    with pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model=MODEL, max_tokens=32,
                            messages=[{"role": "user", "content": "again"}])

    # An account with its own proxy: gamma, first in line, leaves through a dead one (nothing
    # listens on the discard port). Added after every count above, so the one request it fails
    # costs them nothing: alpha (reset) serves it.
    proxy_url = "http://user:secret@127.0.0.1:9"
    masked = "http://user:…@127.0.0.1:9"
    go(page, "Accounts")
    page.get_by_role("button", name="Add API-key account").first.click()
    dialog = page.get_by_role("dialog")
    proxy_field = dialog.get_by_label("Proxy", exact=True)
    dialog.get_by_label("Name").fill("gamma")
    dialog.get_by_label("API key").fill(account_key("gamma"))
    dialog.get_by_label("Priority").fill("100")
    # The form checks the scheme itself; the server's 422 (a port out of range) shows under
    # the field too, and neither quotes the URL.
    proxy_field.fill("ftp://user:secret@127.0.0.1:21")
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog).to_contain_text("A URL starting with http://, https://, socks5://, socks5h://")
    proxy_field.fill("http://user:secret@127.0.0.1:99999")
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog).to_contain_text("proxy_url")
    expect(dialog).not_to_contain_text("secret")
    proxy_field.fill(proxy_url)
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog).to_be_hidden()
    gamma = page.get_by_test_id("account-row-gamma")
    expect(gamma).to_contain_text(f"via {masked}")
    stack.accounts["gamma"] = next(a["id"] for a in _admin_accounts(stack) if a["name"] == "gamma")
    assert stack.account("gamma")["proxy_url"] == masked
    assert "secret" not in page.content()
    shoot(page, "accounts-proxy-light")
    # The next request fails at gamma's proxy and alpha serves it; its detail names the proxy
    # (scheme, host and port only).
    stack.sdk().messages.create(model=MODEL, max_tokens=32,
                                messages=[{"role": "user", "content": "via gamma"}])
    served = logged_where(stack, lambda row: any(
        a["account_id"] == stack.accounts["gamma"] for a in row["attempts"]))
    assert served["account_id"] == stack.accounts["alpha"]
    assert [a["error_type"] for a in served["attempts"]] == ["proxy_unreachable", None]
    go(page, "Logs")
    page.get_by_test_id("log-row").filter(has_text="alpha").first.click()
    attempts = page.get_by_test_id("attempts").get_by_role("listitem")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("gamma")
    expect(attempts.nth(0)).to_contain_text("proxy http://127.0.0.1:9 could not be reached")
    expect(attempts.nth(1)).to_contain_text("alpha")
    shoot(page, "log-detail-proxy-light")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    go(page, "Overview")
    expect(page.get_by_test_id("account-cards")).to_contain_text(f"via {masked}")
    # Edit: the proxy is write-only, like the key; saving with the field empty keeps it.
    go(page, "Accounts")
    gamma.get_by_role("button", name="Edit gamma").click()
    expect(proxy_field).to_have_value("")
    expect(dialog).to_contain_text(f"Leave empty to keep {masked}")
    shoot(page, "account-edit-proxy-light")
    fill_and_save(dialog, {"Priority": "90"})
    expect(gamma).to_contain_text(f"via {masked}")
    assert stack.account("gamma")["proxy_url"] == masked
    # Remove it: gone from the page and from the account.
    gamma.get_by_role("button", name="Edit gamma").click()
    dialog.get_by_label("Remove proxy").check()
    expect(proxy_field).to_be_disabled()
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()
    expect(gamma).not_to_contain_text("via ")
    assert stack.account("gamma")["proxy_url"] is None
    assert "secret" not in page.content()

    # Phone width: every page still works and reads.
    phone = browser.new_context(viewport=PHONE, color_scheme="dark", is_mobile=True,
                                has_touch=True)
    phone.set_default_timeout(10_000)
    small = phone.new_page()
    phone_console = Console(small)
    small.goto(origin + "/app/logs")
    small.get_by_label("Admin key").fill(ADMIN_KEY)
    small.get_by_role("button", name="Sign in").click()
    expect(small.get_by_role("heading", level=1, name="Logs")).to_be_visible()
    assert small.url == origin + "/app/logs"  # the deep link survives signing in
    for label in ("Overview", "Accounts", "Keys", "Logs", "Usage"):
        go(small, label)
        small.wait_for_load_state("networkidle")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{label} scrolls sideways at phone width ({width}px)"
        shoot(small, f"{label.lower()}-phone")

    # Sign out forgets the key.
    page.get_by_role("button", name="Sign out").locator("visible=true").first.click()
    expect(page.get_by_role("heading", name="Sign in to Kestrel")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0

    assert console.problems == [] and phone_console.problems == [], \
        console.problems + phone_console.problems
    phone.close()
    context.close()


def test_connect_a_claude_account(browser: Browser, tmp_path: Path) -> None:
    """OAuth from the Accounts page: the paste flow end to end against a fake provider, and
    the redirect flow as far as the provider's sign-in page."""
    fake_oauth = pytest.importorskip("fake_oauth")
    with fake_oauth.FakeOAuth() as provider, \
            running_stack(tmp_path, accounts=(), env=provider.env()) as stack, \
            signed_in(browser, stack, "/app/accounts") as (page, console):
        # Paste flow: get the link, sign in "elsewhere", paste the code#state shown there.
        page.get_by_role("button", name="Connect Claude account").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("radio", name="Paste a code").click()
        dialog.get_by_label("Account name").fill("team-max")
        dialog.get_by_role("button", name="Get sign-in link").click()
        link = dialog.get_by_role("link").get_attribute("href")
        assert link is not None and link.startswith(provider.base_url)
        pasted = provider.approve(link)
        assert "#" in pasted
        dialog.get_by_label("2. Paste the code").fill(pasted)
        dialog.get_by_role("button", name="Connect account").click()
        expect(dialog).to_be_hidden()
        row = page.get_by_test_id("account-row-team-max")
        expect(row).to_contain_text("OAuth")
        expect(row).to_contain_text(fake_oauth.EMAIL)
        expect(row).to_contain_text("Active")
        shoot(page, "accounts-oauth-light")

        # Redirect flow: the dashboard asks Kestrel for a signed link and the browser follows
        # it; Kestrel answers 302 to the provider's sign-in page. (Stubbed there: the provider
        # would send the browser back to the default callback address, where no Kestrel runs.)
        redirects: list[str] = []

        def follow(route: Route) -> None:
            answer = route.fetch(max_redirects=0)
            redirects.append(answer.headers.get("location", f"status {answer.status}"))
            route.fulfill(status=200, content_type="text/html", body="<h1>Sign in</h1>")

        page.route("**/api/oauth/authorize?**", follow)
        page.get_by_role("button", name="Connect Claude account").click()
        dialog.get_by_role("radio", name="In this browser").click()  # it kept the last choice
        dialog.get_by_label("Account name").fill("second")
        dialog.get_by_role("button", name="Continue to Anthropic").click()
        page.wait_for_url("**/api/oauth/authorize?**")
        assert redirects and redirects[0].startswith(provider.base_url + "/oauth/authorize?")
        query = parse_qs(urlsplit(redirects[0]).query)
        assert query["client_id"] == [fake_oauth.CLIENT_ID]
        assert query["code_challenge_method"] == ["S256"] and query["state"]
        assert console.problems == [], console.problems


def test_the_redirect_flow_ends_back_on_the_dashboard_signed_in(browser: Browser,
                                                                 tmp_path: Path) -> None:
    """The whole redirect flow in the browser: the dashboard at 127.0.0.1 (as Kestrel prints
    it), the provider's callback at `localhost` (OAUTH_REDIRECT_URI's default), another origin
    with a sign-in of its own; the callback page links back to the dashboard the flow started
    from, still signed in, the account there."""
    fake_oauth = pytest.importorskip("fake_oauth")
    port = free_port()
    callback = f"http://localhost:{port}/api/oauth/callback"
    with fake_oauth.FakeOAuth(redirect_uris=(callback, fake_oauth.MANUAL_CALLBACK)) as provider, \
            running_stack(tmp_path, accounts=(), env={**provider.env(), "PORT": str(port)},
                          args=[]) as stack, \
            signed_in(browser, stack, "/app/accounts") as (page, console):
        assert stack.url == f"http://127.0.0.1:{port}"
        page.get_by_role("button", name="Connect Claude account").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("radio", name="In this browser").click()
        dialog.get_by_label("Account name").fill("via-redirect")
        dialog.get_by_role("button", name="Continue to Anthropic").click()
        page.wait_for_url(f"{callback}?**")  # the provider sent the browser back to Kestrel
        expect(page.get_by_role("heading", name="Account connected")).to_be_visible()
        page.get_by_role("link", name="Back to the Kestrel dashboard").click()
        page.wait_for_url(f"{stack.url}/app/accounts")
        expect(page.get_by_test_id("account-row-via-redirect")).to_contain_text(
            fake_oauth.EMAIL)
        expect(page.get_by_label("Admin key")).to_have_count(0)  # still signed in
        assert console.problems == [], console.problems


def test_a_new_key_is_closed_only_on_purpose(browser: Browser, pool: Stack) -> None:
    """The dialog that shows a new key, once, stays through Escape and a click beside it."""
    with signed_in(browser, pool, "/app/keys") as (page, console):
        page.get_by_role("button", name="Create key").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name").fill("shown-once")
        dialog.get_by_role("button", name="Create key").click()
        shown = page.get_by_test_id("new-key")
        expect(shown).to_contain_text("kst_")
        # Twice: Chromium lets a second Escape close a dialog whose cancel event was refused,
        # unless the page keeps the key from it.
        page.keyboard.press("Escape")
        page.keyboard.press("Escape")
        page.mouse.click(4, 4)  # the backdrop, outside the dialog's box
        page.wait_for_timeout(300)
        expect(shown).to_be_visible()
        expect(dialog.get_by_role("button", name="Close", exact=True)).to_have_count(0)
        dialog.get_by_role("button", name="I have copied it, close").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_test_id("key-row-shown-once")).to_be_visible()
        assert console.problems == [], console.problems


def test_a_failed_load_is_not_an_empty_pool(browser: Browser, pool: Stack) -> None:
    """With the admin API unreachable, each page shows the error, never its empty state."""
    with signed_in(browser, pool, "/app/accounts") as (page, _console):
        expect(page.get_by_test_id("account-row-main")).to_be_visible()
        page.route(re.compile(r"/admin/"), lambda route: route.abort())  # the pages still load
        empty = {"Accounts": ["No accounts yet"], "Keys": ["No client keys yet"],
                 "Logs": ["No requests yet", "No requests match"],
                 "Overview": ["No accounts yet", "No requests in this window", "0 / 0"]}
        for label, texts in empty.items():
            go(page, label)
            page.reload()
            expect(page.get_by_role("alert").first).to_contain_text("Could not load")
            page.wait_for_timeout(200)  # anything drawn with the error has been drawn
            for text in texts:
                expect(page.get_by_text(text)).to_have_count(0)
            # The header's button stays; the empty state's second one must not be there.
            adds = page.get_by_role("button", name=re.compile("^(Add API-key account|Create key)$"))
            expect(adds).to_have_count(1 if label in ("Accounts", "Keys") else 0)


def test_log_filters_live_in_the_url(browser: Browser, pool: Stack) -> None:
    key_id = asked_once(pool, "filtered")
    with signed_in(browser, pool, f"/app/logs?key={key_id}") as (page, console):
        rows = page.get_by_test_id("log-row")
        status, model = page.get_by_label("Status"), page.get_by_label("Model")
        expect(page.get_by_label("Key")).to_have_value(str(key_id))
        expect(rows).to_have_count(1)
        # The model box offers the names seen so far (the server matches the name as typed).
        assert MODEL in page.locator("datalist option").evaluate_all(
            "options => options.map((o) => o.value)")
        model.fill(MODEL)
        status.fill("200")
        expect(page).to_have_url(re.compile(r"[?&]status=200(&|$)"))
        expect(page).to_have_url(re.compile(rf"[?&]model={MODEL}(&|$)"))
        expect(rows).to_have_count(1)
        # Kept through a reload, and through leaving the page and coming back to it.
        page.reload()
        expect(status).to_have_value("200")
        expect(model).to_have_value(MODEL)
        expect(page.get_by_label("Key")).to_have_value(str(key_id))
        expect(rows).to_have_count(1)
        go(page, "Overview")
        go(page, "Logs")
        expect(status).to_have_value("200")
        expect(rows).to_have_count(1)
        # An invalid status: said so, no rows left over, nothing asked of the server.
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/admin/logs" in r.url else None)
        for bad in ("abc", "99", "999"):
            status.fill(bad)
            expect(page.get_by_text("A status is a number from 100 to 599")).to_be_visible()
            expect(rows).to_have_count(0)
            expect(page.get_by_text("No requests yet")).to_have_count(0)
        page.wait_for_timeout(500)
        assert not [url for url in asked if "status=" in url], asked
        status.fill("200")
        expect(rows).to_have_count(1)
        page.get_by_role("button", name="Clear").click()
        expect(page).to_have_url(pool.url + "/app/logs")
        expect(status).to_have_value("")
        assert console.problems == [], console.problems


def test_a_deleted_account_keeps_its_name_in_logs(browser: Browser, pool: Stack) -> None:
    pool.add_account("retired", priority=1000)  # first in line: it serves the request below
    key_id = asked_once(pool, "retiree")
    (logged,) = pool.logs(expect=1, key_id=key_id)
    assert logged["account_id"] == pool.accounts["retired"]
    with signed_in(browser, pool, "/app/accounts") as (page, console):
        retired = page.get_by_test_id("account-row-retired")
        retired.get_by_role("button", name="Delete retired").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete account").click()
        expect(retired).to_have_count(0)
        del pool.accounts["retired"]
        go(page, "Logs")
        for _ in range(2):  # and again after a reload
            row = page.get_by_test_id("log-row").filter(has_text="retiree")
            expect(row).to_contain_text("retired")
            expect(row).not_to_contain_text("#")
            row.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("Accountretired (deleted)")
            expect(page.get_by_test_id("attempts")).to_contain_text("retired")
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            page.reload()
        assert console.problems == [], console.problems


def test_the_overview_fits_its_window_to_fresh_traffic(browser: Browser, pool: Stack) -> None:
    """Traffic of the last minutes fills the chart, in minutes; not one sliver of a day."""
    asked_once(pool, "fresh")
    with signed_in(browser, pool) as (page, console):
        hour = page.get_by_role("radio", name="1 h")
        expect(hour).to_have_attribute("aria-checked", "true")
        bars = page.get_by_role("img", name="Requests").locator("rect.fill-teal-500")
        expect(bars.first).to_be_visible()
        widths = [float(bar.get_attribute("width") or 0) for bar in bars.all()]
        assert max(widths) >= 4, widths
        # The operator's choice wins.
        with page.expect_response(lambda r: "/admin/stats?window=24h" in r.url):
            page.get_by_role("radio", name="24 h").click()
        expect(page.get_by_role("radio", name="24 h")).to_have_attribute("aria-checked", "true")
        expect(hour).to_have_attribute("aria-checked", "false")
        assert console.problems == [], console.problems


def test_time_to_first_byte_is_charted(browser: Browser, pool: Stack) -> None:
    asked_once(pool, "first-byte")
    with signed_in(browser, pool) as (page, console):
        chart = page.get_by_test_id("ttfb-chart")
        expect(chart.get_by_role("heading", name="Time to first byte")).to_be_visible()
        expect(chart.get_by_role("img", name="Time to first byte")).to_be_visible()
        duration = r"\d+(\.\d+)? (ms|s)"
        expect(chart).to_contain_text(re.compile(rf"p50 {duration} · p95 {duration}"))
        assert console.problems == [], console.problems


def test_a_long_error_has_room_in_the_logs(browser: Browser, stack: Stack) -> None:
    """At 1440 px the error has room in the table, on two lines at most; the detail has it whole."""
    stack.add_account("walled", proxy_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(anthropic.APIStatusError):
        ask(stack.sdk())
    (logged,) = stack.logs(expect=1)
    assert logged["attempts"][0]["error_type"] == "proxy_unreachable"
    text = f"{logged['error_type']}: {logged['error_message']}"
    with signed_in(browser, stack, "/app/logs", viewport=WIDE) as (page, console):
        cell = page.get_by_role("cell", name=text)
        expect(cell).to_be_visible()
        layout = cell.evaluate("""cell => {
            const text = cell.firstElementChild ?? cell;
            const range = document.createRange();
            range.selectNodeContents(text);
            const box = text.getBoundingClientRect();
            const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
            return {width: cell.getBoundingClientRect().width, lines: lines.size,
                    shown: [...lines].filter((top) => top < box.bottom - 1).length,
                    sideways: text.scrollWidth > text.clientWidth};
        }""")
        assert layout["width"] >= 240, layout  # room: not a 20-character sliver
        assert layout["shown"] == min(layout["lines"], 2), layout  # wrapped, two lines at most
        assert not layout["sideways"], layout
        if len(text) <= 64:  # two lines of the column hold this much whole
            assert layout["lines"] <= 2, layout
        page.get_by_test_id("log-row").first.click()
        expect(page.get_by_role("dialog").get_by_test_id("log-error")).to_have_text(text)
        assert console.problems == [], console.problems


def test_model_names_stay_distinct_on_a_phone(browser: Browser, pool: Stack) -> None:
    key_id, sdk = client_key(pool, "two-models")
    models = ("claude-sonnet-4-5", "claude-sonnet-4-6")
    for model in models:
        ask(sdk, model)
    pool.logs(expect=2, key_id=key_id)
    with signed_in(browser, pool, f"/app/logs?key={key_id}", **PHONE_OPTIONS) as (page, console):
        page.get_by_label("Key").select_option(str(key_id))
        rows = page.get_by_test_id("log-row")
        expect(rows).to_have_count(2)
        for row, model in zip(rows.all(), reversed(models), strict=True):  # newest first
            assert row.evaluate(LAST_CHAR_SHOWN, model), f"the end of {model} is cut off"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        assert console.problems == [], console.problems


def test_a_new_dialog_focuses_its_first_field(browser: Browser, pool: Stack) -> None:
    with signed_in(browser, pool, "/app/accounts") as (page, console):
        dialog = page.get_by_role("dialog")
        page.get_by_role("button", name="Add API-key account").first.click()
        expect(dialog.get_by_label("Name")).to_be_focused()
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Edit main").click()
        expect(dialog.get_by_label("Name")).to_be_focused()
        page.keyboard.press("Escape")
        go(page, "Keys")
        page.get_by_role("button", name="Create key").first.click()
        expect(dialog.get_by_label("Name")).to_be_focused()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert console.problems == [], console.problems


def test_the_overview_of_a_pool_without_accounts(browser: Browser, stack: Stack) -> None:
    """A new pool: no accounts said as such, with the way to add one; the window is an hour."""
    with signed_in(browser, stack) as (page, console):
        serving = page.get_by_test_id("accounts-stat")
        expect(serving).to_contain_text(re.compile(r"^Accounts\s*None"))
        expect(serving).not_to_contain_text("0 / 0")
        expect(serving).not_to_contain_text("healthy")
        expect(page.get_by_role("radio", name="1 h")).to_have_attribute("aria-checked", "true")
        serving.get_by_role("link", name="Add an account").click()
        expect(page.get_by_role("heading", level=1, name="Accounts")).to_be_visible()
        assert page.url == stack.url + "/app/accounts"
        assert console.problems == [], console.problems


def test_an_account_that_only_failed_says_how(browser: Browser, pool: Stack) -> None:
    """Its 429 answered nothing, but the account does not look idle: its failed tries by kind,
    and when the last one was."""
    with first_in_line(pool, "flaky"):
        failed_over(pool, "flaky")
        with signed_in(browser, pool, "/app/accounts") as (page, console):
            row = page.get_by_test_id("account-row-flaky")
            expect(row.get_by_test_id("account-failures")).to_have_text(
                re.compile(r"^1 failed: 429 ×1 · last failure (just now|\d+s ago)$"))
            shoot(page, "accounts-failures-light")
            go(page, "Overview")
            card = page.get_by_test_id("account-card-flaky")
            expect(card).to_contain_text(re.compile(r"Failed tries\s*1"))
            expect(card.get_by_test_id("account-failures")).to_contain_text("429 ×1")
            assert console.problems == [], console.problems


def test_the_account_filter_finds_the_requests_an_account_failed(browser: Browser,
                                                                 pool: Stack) -> None:
    with first_in_line(pool, "stumbler") as account_id:
        key_id = failed_over(pool, "stumbler")
        with signed_in(browser, pool, f"/app/logs?account={account_id}&key={key_id}") as (
                page, console):
            expect(page.get_by_label("Account")).to_have_value(str(account_id))
            rows = page.get_by_test_id("log-row")
            expect(rows).to_have_count(1)  # served by main: listed for what stumbler tried
            expect(rows.first).to_contain_text(re.compile(r"main\s*after stumbler 429"))
            assert console.problems == [], console.problems


def test_kestrel_says_why_it_answered_429_itself(browser: Browser, stack: Stack) -> None:
    """Every account cooling down: the log says so in words, and which account is back first."""
    for name, priority, wait in (("late", 10, 90), ("early", 0, 30)):
        stack.add_account(name, priority=priority)
        stack.up.script(account_key(name), [rate_limited(retry_after=wait)])
    with pytest.raises(anthropic.RateLimitError):
        ask(stack.sdk())
    (logged,) = stack.logs(expect=1)
    assert logged["error_type"] == "all_cooling_down"
    with signed_in(browser, stack, "/app/logs") as (page, console):
        row = page.get_by_test_id("log-row").first
        expect(row).to_contain_text("all_cooling_down: every Anthropic account is rate-limited")
        expect(row).to_contain_text("tried late 429, early 429")
        row.click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Kestrel answered: no account could serve it")
        expect(dialog.get_by_test_id("log-error")).to_have_text(
            f"all_cooling_down: {logged['error_message']}")
        expect(dialog.get_by_test_id("first-back")).to_have_text(
            re.compile(r"^First back: early, at \d\d:\d\d:\d\d \(in (2\d|30)s\)$"))
        shoot(page, "log-detail-cooling-light")
        assert console.problems == [], console.problems


def test_client_errors_leave_the_pool_healthy(browser: Browser, stack: Stack) -> None:
    """Requests for a model the key may not use are the client's mistake: the pool's error
    rate stays at 0, not red; they are counted apart."""
    stack.add_account("steady")
    ask(stack.sdk())
    with stack.admin() as client:
        created = client.post("/admin/keys", json={"name": "haiku-only",
                                                   "models": ["claude-haiku-*"]}).json()
    sdk = stack.closed_with_stack(anthropic.Anthropic(base_url=stack.url,
                                                      api_key=created["key"], max_retries=0))
    for _ in range(3):
        with pytest.raises(anthropic.PermissionDeniedError):
            ask(sdk)  # MODEL is no haiku: 403 model_not_allowed
    stack.logs(expect=4)
    with signed_in(browser, stack) as (page, console):
        rate = page.get_by_test_id("error-rate-stat")
        expect(rate.get_by_test_id("client-errors")).to_have_text("3 client errors")
        expect(rate.locator("[data-tone]")).to_have_text("0%")
        expect(rate.locator("[data-tone]")).to_have_attribute("data-tone", "neutral")
        expect(page.get_by_role("img", name="Requests")).to_be_visible()
        shoot(page, "overview-client-errors-light")
        assert console.problems == [], console.problems


def test_an_api_key_account_shows_its_rate_limit_headroom(browser: Browser,
                                                          pool: Stack) -> None:
    """What the latest answer's anthropic-ratelimit-* headers left (the fake upstream reports
    49 of 50 requests, and tokens), with when each resets."""
    with first_in_line(pool, "metered"):
        assert pool.account("metered")["rate_limits"] is None
        asked_once(pool, "metered-client")
        assert pool.account("metered")["rate_limits"]["requests"]["remaining"] == 49
        with signed_in(browser, pool, "/app/accounts") as (page, console):
            row = page.get_by_test_id("account-row-metered")
            expect(row).to_contain_text(re.compile(r"Requests\s*49 / 50"))
            expect(row.get_by_role("progressbar", name="Requests used")).to_have_attribute(
                "aria-valuenow", "2")
            go(page, "Overview")
            card = page.get_by_test_id("account-card-metered")
            expect(card).to_contain_text(
                re.compile(r"Requests\s*49 / 50\s*left · resets in \d+s"))
            expect(card).to_contain_text(re.compile(r"Input tokens\s*39,999 / 40,000\s*left"))
            expect(card).to_contain_text("As of the last answer")
            shoot(page, "overview-headroom-light")
            assert console.problems == [], console.problems
