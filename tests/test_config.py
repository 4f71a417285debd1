"""Settings: each bad value named in one line, secrets never echoed, first run self-sufficient."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from kestrel.config import Settings, load_settings
from kestrel.domain import ConfigError

KEY_HEX = "ab" * 32
ADMIN_KEY = "admin-key-0123456789"
KEY_FORMS = "must be 32 bytes written as 64 hex characters or as base64"


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A valid environment with both secrets given, so no secrets file is involved."""
    return {"DB_PATH": str(tmp_path / "k.db"), "ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": KEY_HEX,
            **values}


def problems_of(environ: dict[str, str], **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(environ, **overrides)  # type: ignore[arg-type]
    return info.value.problems


@pytest.mark.parametrize(("name", "value", "line"), [
    ("PORT", "abc", "PORT: 'abc' is not a port number (0-65535)"),
    ("PORT", "65536", "PORT: '65536' is not a port number (0-65535)"),
    ("PORT", "-1", "PORT: '-1' is not a port number (0-65535)"),
    ("LOG_LEVEL", "verbose", "LOG_LEVEL: 'verbose' is not one of debug, info, warning, error"),
    ("LOG_FORMAT", "xml", "LOG_FORMAT: 'xml' is not one of json, pretty, auto"),
    ("CLAUDE_BASE_URL", "ftp://example.com",
     "CLAUDE_BASE_URL: 'ftp://example.com' is not an http:// or https:// URL"),
    ("CLAUDE_BASE_URL", "api.anthropic.com",
     "CLAUDE_BASE_URL: 'api.anthropic.com' is not an http:// or https:// URL"),
    ("CLAUDE_BASE_URL", "https://example.com/v1?beta=1",
     "CLAUDE_BASE_URL: 'https://example.com/v1?beta=1' must not have a query or fragment"),
    ("CLAUDE_BASE_URL", "https://example.com#top",
     "CLAUDE_BASE_URL: 'https://example.com#top' must not have a query or fragment"),
    ("CLAUDE_BASE_URL", "http://example.com:99999",
     "CLAUDE_BASE_URL: 'http://example.com:99999' is not a valid URL"),
    ("CLAUDE_BASE_URL", "https://api..anthropic.com",
     "CLAUDE_BASE_URL: 'https://api..anthropic.com' has a host name that is not valid"),
    ("MAX_BODY_BYTES", "12MB", "MAX_BODY_BYTES: '12MB' is not a positive whole number of bytes"),
    ("MAX_BODY_BYTES", "0", "MAX_BODY_BYTES: '0' is not a positive whole number of bytes"),
    ("SHUTDOWN_GRACE_SECONDS", "-1",
     "SHUTDOWN_GRACE_SECONDS: '-1' is not a number >= 0 (seconds)"),
    ("SHUTDOWN_GRACE_SECONDS", "soon",
     "SHUTDOWN_GRACE_SECONDS: 'soon' is not a number >= 0 (seconds)"),
    ("ROTATION", "random", "ROTATION: 'random' is not one of balanced, fill-first"),
    ("COOLDOWN_MAX", "0", "COOLDOWN_MAX: '0' is not a number > 0 (seconds)"),
    ("LOG_RETENTION_DAYS", "a month", "LOG_RETENTION_DAYS: 'a month' is not a number >= 0 (days)"),
    ("UPSTREAM_CONNECT_TIMEOUT", "-3",
     "UPSTREAM_CONNECT_TIMEOUT: '-3' is not a number > 0 (seconds)"),
    ("UPSTREAM_READ_TIMEOUT", "inf", "UPSTREAM_READ_TIMEOUT: 'inf' is not a number > 0 (seconds)"),
    ("MODEL_ALIASES", "gpt-4o",
     "MODEL_ALIASES: 'gpt-4o' is not name=model (e.g. gpt-4o=claude-sonnet-4-6)"),
    ("MODEL_ALIASES", "gpt-4o=,",
     "MODEL_ALIASES: 'gpt-4o=' is not name=model (e.g. gpt-4o=claude-sonnet-4-6)"),
    ("MODEL_ALIASES", "gpt 4o=claude-sonnet-4-6",
     "MODEL_ALIASES: 'gpt 4o=claude-sonnet-4-6' is not name=model "
     "(e.g. gpt-4o=claude-sonnet-4-6)"),
    ("MODEL_ALIASES", "a=claude-sonnet-4-6,a=claude-opus-4-7",
     "MODEL_ALIASES: 'a' is given more than once"),
    ("TRUSTED_PROXIES", "10.0.0.1, 10.0.0.0/33",
     "TRUSTED_PROXIES: '10.0.0.0/33' is not an address or a network (CIDR)"),
    ("WORKERS", "0", "WORKERS: '0' is not a number of worker processes (1 or more, or auto)"),
    ("WORKERS", "two", "WORKERS: 'two' is not a number of worker processes (1 or more, or auto)"),
    ("WORKERS", "1.5", "WORKERS: '1.5' is not a number of worker processes (1 or more, or auto)"),
])
def test_a_bad_value_is_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, line: str
) -> None:
    assert problems_of(env(tmp_path, **{name: value})) == [line]


@pytest.mark.parametrize(("name", "value", "line"), [
    # 24 hex characters: not hex of the right length, and as base64 only 18 bytes.
    ("ENCRYPTION_KEY", "ab" * 12,
     f"ENCRYPTION_KEY: {KEY_FORMS}, but this value decodes to 18 bytes"),
    ("ENCRYPTION_KEY", "ab" * 31,
     f"ENCRYPTION_KEY: {KEY_FORMS}, but this value decodes to 46 bytes"),
    ("ENCRYPTION_KEY", "this is no key!",
     f"ENCRYPTION_KEY: {KEY_FORMS}, but this value is neither"),
    ("ADMIN_KEY", "shortsecret", "ADMIN_KEY: must be at least 16 characters (got 11)"),
    ("CLAUDE_BASE_URL", "https://user:hunter2@example.com",
     "CLAUDE_BASE_URL: must not contain user:password@ (the URL is not shown)"),
])
def test_a_bad_secret_is_reported_without_its_value(
    tmp_path: Path, name: str, value: str, line: str
) -> None:
    problems = problems_of(env(tmp_path, **{name: value}))
    assert problems == [line]
    assert value not in "\n".join(problems)


def test_a_missing_database_directory_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "k.db"
    assert problems_of(env(tmp_path, DB_PATH=str(missing))) == [
        f"DB_PATH: directory {str(missing.parent)!r} does not exist"
    ]
    assert problems_of(env(tmp_path), db_path=str(missing)) == [
        f"--db: directory {str(missing.parent)!r} does not exist"
    ]


def test_a_bad_port_flag_names_the_flag(tmp_path: Path) -> None:
    assert problems_of(env(tmp_path), port=70000) == [
        "--port: '70000' is not a port number (0-65535)"
    ]


def test_every_problem_is_reported_at_once_and_nothing_touches_the_disk(tmp_path: Path) -> None:
    environ = {"DB_PATH": str(tmp_path / "k.db"), "PORT": "http", "LOG_LEVEL": "loud",
               "MAX_BODY_BYTES": "lots", "ADMIN_KEY": "tiny", "CLAUDE_BASE_URL": "localhost",
               "REQUEST_LOG": "sometimes"}
    assert problems_of(environ) == [
        "PORT: 'http' is not a port number (0-65535)",
        "LOG_LEVEL: 'loud' is not one of debug, info, warning, error",
        "ADMIN_KEY: must be at least 16 characters (got 4)",
        "CLAUDE_BASE_URL: 'localhost' is not an http:// or https:// URL",
        "MAX_BODY_BYTES: 'lots' is not a positive whole number of bytes",
        "REQUEST_LOG: 'sometimes' is not one of on, off",
    ]
    # ENCRYPTION_KEY was missing, but with other problems no secrets file is generated.
    assert list(tmp_path.iterdir()) == []


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": KEY_HEX, "PORT": ""})
    assert settings == Settings(
        host="127.0.0.1", port=8080, log_level="info", log_format="auto",
        db_path=Path("kestrel.db"), database_url=None, encryption_key=bytes.fromhex(KEY_HEX),
        admin_key=ADMIN_KEY,
        claude_api_key=None, metrics_token=None, claude_base_url="https://api.anthropic.com",
        max_body_bytes=33554432, shutdown_grace=30.0, rotation="balanced", cooldown_max=3600.0,
        log_retention_days=30.0, request_log=True, upstream_connect_timeout=10.0,
        upstream_read_timeout=600.0,
        oauth_client_id=None,
        oauth_redirect_uri="http://localhost:8080/api/oauth/callback",
        oauth_auth_url="https://claude.com/cai/oauth/authorize",
        oauth_token_url="https://platform.claude.com/v1/oauth/token",
        oauth_scopes="user:profile user:inference",
        oauth_manual_redirect_uri="https://platform.claude.com/oauth/code/callback",
        secrets_path=Path("kestrel.db.secrets"), generated=(), model_aliases={},
        instance_name=f"{socket.gethostname()}:8080",
    )


def test_values_are_normalised_and_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    settings = load_settings(env(
        tmp_path, LOG_LEVEL="WARNING", LOG_FORMAT="Pretty", CLAUDE_BASE_URL="http://127.0.0.1:9/",
        CLAUDE_API_KEY="sk-ant-api03-secretvalue", SHUTDOWN_GRACE_SECONDS="2.5",
        MAX_BODY_BYTES="1024", OAUTH_CLIENT_ID="client-1", OAUTH_SCOPES="user:inference",
        ROTATION="Fill-First", COOLDOWN_MAX="90", LOG_RETENTION_DAYS="0.5", REQUEST_LOG="OFF",
    ))
    assert (settings.rotation, settings.cooldown_max, settings.log_retention_days) == (
        "fill-first", 90.0, 0.5)
    assert settings.request_log is False
    assert (settings.log_level, settings.log_format) == ("warning", "pretty")
    assert settings.claude_base_url == "http://127.0.0.1:9"
    assert (settings.shutdown_grace, settings.max_body_bytes) == (2.5, 1024)
    assert (settings.oauth_client_id, settings.oauth_scopes) == ("client-1", "user:inference")
    assert settings.claude_api_key == "sk-ant-api03-secretvalue"
    aliased = load_settings(env(tmp_path, MODEL_ALIASES=(
        " gpt-4o = claude-sonnet-4-6 ,gpt-4o-mini=claude-haiku-4-5-20251001,")))
    assert aliased.model_aliases == {"gpt-4o": "claude-sonnet-4-6",
                                     "gpt-4o-mini": "claude-haiku-4-5-20251001"}
    shown = repr(settings)
    for secret in ("sk-ant-api03-secretvalue", ADMIN_KEY, KEY_HEX, repr(bytes.fromhex(KEY_HEX))):
        assert secret not in shown


def test_a_database_url_chooses_postgresql_and_needs_both_keys_from_the_environment(
        tmp_path: Path) -> None:
    url = "postgresql://kestrel:pg-secret-1@db.internal:5433/state?sslmode=require"
    settings = load_settings(env(tmp_path, DATABASE_URL=url, DB_PATH=str(tmp_path / "no" / "x")))
    assert (settings.database_url, settings.database) == (url, url)
    assert settings.database_label == "postgresql://kestrel@db.internal:5433/state"
    assert "pg-secret-1" not in repr(settings)
    assert list(tmp_path.iterdir()) == []  # no secrets file: the keys come from the environment
    flag = load_settings(env(tmp_path), database_url=url)
    assert flag.database_url == url
    sqlite = load_settings(env(tmp_path))
    assert (sqlite.database_url, sqlite.database) == (None, str(tmp_path / "k.db"))
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": "mysql://db/state", "ADMIN_KEY": ADMIN_KEY})
    assert caught.value.problems == [
        "DATABASE_URL: only PostgreSQL is supported (postgresql://USER:PASSWORD@HOST:PORT/"
        "DATABASE); leave it unset for SQLite at DB_PATH",
        "DATABASE_URL: set ENCRYPTION_KEY as well, the same on every instance that shares the "
        "database"]


def test_workers_unset_means_no_supervisor_and_auto_means_one_per_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert load_settings(env(tmp_path)).workers is None
    assert load_settings(env(tmp_path, WORKERS="1")).workers == 1
    assert load_settings(env(tmp_path, WORKERS="Auto")).workers == 6
    assert load_settings(env(tmp_path, WORKERS="3"), workers="auto").workers == 6
    assert problems_of(env(tmp_path), workers="none") == [
        "--workers: 'none' is not a number of worker processes (1 or more, or auto)"]


def test_cli_flags_beat_the_environment(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    environ = env(tmp_path, HOST="0.0.0.0", PORT="9000", DB_PATH=str(tmp_path / "env" / "k.db"))
    settings = load_settings(environ, host="::1", port=0, db_path=str(tmp_path / "cli.db"))
    assert (settings.host, settings.port) == ("::1", 0)
    assert settings.db_path == tmp_path / "cli.db"
    assert settings.secrets_path == tmp_path / "cli.db.secrets"


def test_first_run_generates_both_secrets_into_a_private_file(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    first = load_settings({"DB_PATH": str(db)})
    assert first.generated == ("ADMIN_KEY", "ENCRYPTION_KEY")
    assert first.secrets_path == tmp_path / "k.db.secrets"
    assert stat.S_IMODE(first.secrets_path.stat().st_mode) == 0o600
    assert json.loads(first.secrets_path.read_text()) == {
        "admin_key": first.admin_key, "encryption_key": first.encryption_key.hex()
    }
    assert first.admin_key.startswith("kadm_") and len(first.admin_key) >= 40
    assert len(first.encryption_key) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.db.secrets"]  # no temp file left

    second = load_settings({"DB_PATH": str(db)})
    assert second.generated == ()
    assert (second.admin_key, second.encryption_key) == (first.admin_key, first.encryption_key)


def test_only_the_missing_secret_is_generated_and_the_file_keeps_the_rest(tmp_path: Path) -> None:
    secrets_file = tmp_path / "k.db.secrets"
    secrets_file.write_text(json.dumps({"admin_key": ADMIN_KEY}))
    settings = load_settings({"DB_PATH": str(tmp_path / "k.db")})
    assert settings.generated == ("ENCRYPTION_KEY",)
    assert settings.admin_key == ADMIN_KEY
    assert json.loads(secrets_file.read_text()) == {
        "admin_key": ADMIN_KEY, "encryption_key": settings.encryption_key.hex()
    }


def test_a_secret_from_the_environment_is_used_and_never_written(tmp_path: Path) -> None:
    settings = load_settings({"DB_PATH": str(tmp_path / "k.db"), "ENCRYPTION_KEY": KEY_HEX})
    assert settings.encryption_key == bytes.fromhex(KEY_HEX)
    assert settings.generated == ("ADMIN_KEY",)
    stored = json.loads(settings.secrets_path.read_text())
    assert stored == {"admin_key": settings.admin_key}

    # The environment wins over the file, and a full environment leaves the file alone.
    before = settings.secrets_path.read_bytes()
    again = load_settings({"DB_PATH": str(tmp_path / "k.db"), "ENCRYPTION_KEY": KEY_HEX,
                           "ADMIN_KEY": ADMIN_KEY})
    assert (again.admin_key, again.generated) == (ADMIN_KEY, ())
    assert settings.secrets_path.read_bytes() == before


def test_both_secrets_in_the_environment_need_no_file(tmp_path: Path) -> None:
    load_settings(env(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"admin_key": 12}'])
def test_a_corrupt_secrets_file_is_a_problem_and_stays_untouched(
    tmp_path: Path, content: str
) -> None:
    secrets_file = tmp_path / "k.db.secrets"
    secrets_file.write_text(content)
    assert problems_of({"DB_PATH": str(tmp_path / "k.db")}) == [
        f"{secrets_file}: not a valid secrets file (expected a JSON object of strings); "
        "repair it, or set ADMIN_KEY and ENCRYPTION_KEY"
    ]
    assert secrets_file.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.db.secrets"]


def test_a_bad_key_in_the_secrets_file_names_the_file_not_the_value(tmp_path: Path) -> None:
    secrets_file = tmp_path / "k.db.secrets"
    secrets_file.write_text(json.dumps({"admin_key": "short-admin", "encryption_key": "ab" * 12}))
    problems = problems_of({"DB_PATH": str(tmp_path / "k.db")})
    assert problems == [
        f"{secrets_file}: admin_key: must be at least 16 characters (got 11)",
        f"{secrets_file}: encryption_key: {KEY_FORMS}, but this value decodes to 18 bytes",
    ]
    assert "short-admin" not in "\n".join(problems)
    assert "ab" * 12 not in "\n".join(problems)


def test_oauth_urls_default_to_anthropic_and_every_one_can_be_overridden(tmp_path: Path) -> None:
    moved = load_settings(env(tmp_path, PORT="9090"))
    assert moved.oauth_client_id is None  # OAuth stays off until a client id is given
    assert moved.oauth_redirect_uri == "http://localhost:9090/api/oauth/callback"
    overrides = {"OAUTH_CLIENT_ID": "client-1",
                 "OAUTH_AUTH_URL": "http://127.0.0.1:1/authorize",
                 "OAUTH_TOKEN_URL": "http://127.0.0.1:1/token",
                 "OAUTH_REDIRECT_URI": "https://kestrel.example.test/api/oauth/callback",
                 "OAUTH_MANUAL_REDIRECT_URI": "http://127.0.0.1:1/code",
                 "OAUTH_SCOPES": "user:inference"}
    settings = load_settings(env(tmp_path, **overrides))
    assert (settings.oauth_client_id, settings.oauth_auth_url, settings.oauth_token_url,
            settings.oauth_redirect_uri, settings.oauth_manual_redirect_uri,
            settings.oauth_scopes) == tuple(overrides.values())
