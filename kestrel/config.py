"""Settings from the environment, validated once at start.

Every problem is collected before anything is reported, so an operator fixes a broken
configuration in one pass. A first start needs no configuration at all: a missing ADMIN_KEY or
ENCRYPTION_KEY is read from (or generated into) a 0600 secrets file beside the database.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import secrets
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kestrel.crypto import encode_key, generate_key, parse_key
from kestrel.database_url import PostgresUrl, is_postgres_url
from kestrel.domain import ConfigError
from kestrel.egress import EnvProxies, env_proxies
from kestrel.prices import PRICES, Price, parse_prices

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DB_PATH = "kestrel.db"
# INSTANCE_NAME is shown in every request log row and filtered on: a name, not a document.
MAX_INSTANCE_NAME = 200
DEFAULT_CLAUDE_BASE_URL = "https://api.anthropic.com"
# Anthropic's own request limit for the Messages API is 32 MB; a larger body could never succeed.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Long enough for most streamed answers to finish; systemd's default stop timeout is 90 s.
DEFAULT_SHUTDOWN_GRACE = 30.0
# 16 characters of a random alphabet are out of reach of online guessing; shorter keys are typos.
MIN_ADMIN_KEY_LENGTH = 16

# A stale or skewed rate-limit window must not park an account for days; an hour re-probes it.
DEFAULT_COOLDOWN_MAX = 3600.0
DEFAULT_LOG_RETENTION_DAYS = 30.0
# Connecting to Anthropic takes well under a second; ten covers a slow DNS or TLS handshake.
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 10.0
# Between two bytes of an answer. Streams send pings every few seconds, but a non-streaming
# answer of a long generation arrives whole after minutes: ten of them bound a hung upstream.
DEFAULT_UPSTREAM_READ_TIMEOUT = 600.0

# OAuth (Claude subscription accounts): the endpoints Anthropic serves today, as Claude Code uses
# them; the README says where each was found. OAuth stays off until OAUTH_CLIENT_ID is set:
# Kestrel ships no client id of its own, and borrowing Claude Code's is the operator's call.
DEFAULT_OAUTH_AUTH_URL = "https://claude.com/cai/oauth/authorize"
DEFAULT_OAUTH_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
# Anthropic's page that shows the code to paste, for boxes no browser redirect can reach.
DEFAULT_OAUTH_MANUAL_REDIRECT_URI = "https://platform.claude.com/oauth/code/callback"
# Inference is all the proxy does; the profile scope adds who signed in to the token answer.
DEFAULT_OAUTH_SCOPES = "user:profile user:inference"
OAUTH_CALLBACK_PATH = "/api/oauth/callback"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "pretty", "auto")
ROTATIONS = ("balanced", "fill-first")
SWITCHES = ("on", "off")

_DIGITS = re.compile(r"[0-9]+")
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    log_level: str
    log_format: str
    db_path: Path
    # DATABASE_URL: PostgreSQL instead of the SQLite file at db_path (None: SQLite).
    database_url: str | None = field(repr=False)
    encryption_key: bytes = field(repr=False)
    admin_key: str = field(repr=False)
    claude_api_key: str | None = field(repr=False)
    metrics_token: str | None = field(repr=False)
    claude_base_url: str
    max_body_bytes: int
    shutdown_grace: float
    rotation: str
    cooldown_max: float
    log_retention_days: float
    # Whether proxied requests are written to the request log (metrics count them either way).
    request_log: bool
    upstream_connect_timeout: float
    upstream_read_timeout: float
    oauth_client_id: str | None
    oauth_redirect_uri: str
    oauth_auth_url: str
    oauth_token_url: str
    oauth_scopes: str
    oauth_manual_redirect_uri: str
    secrets_path: Path
    generated: tuple[str, ...]
    # Model names an OpenAI client may send, mapped to the Claude model that serves them.
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    # Serving processes behind a supervisor; None (WORKERS unset) is one process and no
    # supervisor at all.
    workers: int | None = None
    # What this instance's request log rows say served them: INSTANCE_NAME, else host:port.
    instance_name: str = ""
    # Reverse proxies whose X-Forwarded-For tells a client's address.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Where the calendar day and month of budgets and /admin/usage begin (TIME_ZONE).
    time_zone: tzinfo = UTC
    # The price table: the shipped one, with a PRICES file's models over it.
    prices: Mapping[str, Price] = field(default_factory=lambda: dict(PRICES))
    # The environment's egress proxies (none with PROXY_FROM_ENV=off); repr=False: they may
    # hold passwords.
    egress: EnvProxies = field(default_factory=EnvProxies, repr=False)
    # PROXY_FROM_ENV: whether the proxy variables are read at all.
    proxy_from_env: bool = True
    # CA_BUNDLE: certificates trusted besides the default ones (a company CA that re-signs TLS).
    ca_bundle: str | None = None

    @property
    def database(self) -> str:
        """What the store opens: the PostgreSQL URL, else the SQLite file's path."""
        return self.database_url or str(self.db_path)

    @property
    def database_label(self) -> str:
        """The database as logs may show it: the URL without its password, as the store's
        messages name it, or the path."""
        if self.database_url is None:
            return str(self.db_path)
        return PostgresUrl.parse(self.database_url).where


def secrets_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".secrets")


def load_settings(
    environ: Mapping[str, str],
    *,
    host: str | None = None,
    port: int | None = None,
    db_path: str | None = None,
    database_url: str | None = None,
    workers: str | None = None,
) -> Settings:
    """Read and check every setting; CLI overrides (`host`, `port`, `db_path`, `database_url`,
    `workers`) beat the env.

    Raises `ConfigError` with one line per problem. Secrets are only read from or written to
    disk once everything else is valid, so a typo never leaves a stray secrets file behind.
    """
    problems: list[str] = []

    def get(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None  # an empty variable counts as unset

    host_value = host or get("HOST") or DEFAULT_HOST

    if port is not None:
        port_value = _check_port("--port", str(port), problems)
    else:
        port_value = _check_port("PORT", get("PORT") or str(DEFAULT_PORT), problems)

    log_level = _one_of("LOG_LEVEL", get("LOG_LEVEL") or "info", LOG_LEVELS, problems)
    log_format = _one_of("LOG_FORMAT", get("LOG_FORMAT") or "auto", LOG_FORMATS, problems)

    db_source = "--db" if db_path else "DB_PATH"
    db = Path(db_path or get("DB_PATH") or DEFAULT_DB_PATH).expanduser()
    url_source = "--database-url" if database_url else "DATABASE_URL"
    url = (database_url or "").strip() or get("DATABASE_URL")
    if url is not None:
        if not is_postgres_url(url):
            problems.append(f"{url_source}: only PostgreSQL is supported (postgresql://USER:"
                            f"PASSWORD@HOST:PORT/DATABASE); leave it unset for SQLite at DB_PATH")
        # Every instance on one database must seal and unseal with the same key and accept the
        # same admin key: a pair generated here would be this instance's alone.
        missing = [name for name in ("ENCRYPTION_KEY", "ADMIN_KEY") if get(name) is None]
        if missing:
            problems.append(f"{url_source}: set {' and '.join(missing)} as well, the same on "
                            f"every instance that shares the database")
    elif not db.parent.is_dir():
        problems.append(f"{db_source}: directory {str(db.parent)!r} does not exist")
    elif db.is_dir():
        problems.append(f"{db_source}: {str(db)!r} is a directory, not a database file")

    env_encryption_key: bytes | None = None
    if (raw_key := get("ENCRYPTION_KEY")) is not None:
        env_encryption_key = _parse_encryption_key("ENCRYPTION_KEY", raw_key, problems)

    env_admin_key = get("ADMIN_KEY")
    if env_admin_key is not None:
        _check_admin_key("ADMIN_KEY", env_admin_key, problems)

    base_url = _check_base_url(get("CLAUDE_BASE_URL") or DEFAULT_CLAUDE_BASE_URL, problems)

    max_body = get("MAX_BODY_BYTES") or str(DEFAULT_MAX_BODY_BYTES)
    max_body_bytes = 0
    if _DIGITS.fullmatch(max_body) and int(max_body) > 0:
        max_body_bytes = int(max_body)
    else:
        problems.append(f"MAX_BODY_BYTES: {max_body!r} is not a positive whole number of bytes")

    def seconds(name: str, default: float, *, positive: bool = False) -> float:
        raw = get(name) or str(default)
        try:
            value = float(raw)
            if math.isfinite(value) and (value > 0 if positive else value >= 0):
                return value
        except ValueError:
            pass
        problems.append(f"{name}: {raw!r} is not a number {'> 0' if positive else '>= 0'}"
                        f" ({'days' if name.endswith('_DAYS') else 'seconds'})")
        return default

    shutdown_grace = seconds("SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE)
    rotation = _one_of("ROTATION", get("ROTATION") or "balanced", ROTATIONS, problems)
    cooldown_max = seconds("COOLDOWN_MAX", DEFAULT_COOLDOWN_MAX, positive=True)
    retention = seconds("LOG_RETENTION_DAYS", DEFAULT_LOG_RETENTION_DAYS)
    request_log = _one_of("REQUEST_LOG", get("REQUEST_LOG") or "on", SWITCHES, problems)
    connect_timeout = seconds("UPSTREAM_CONNECT_TIMEOUT", DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
                              positive=True)
    read_timeout = seconds("UPSTREAM_READ_TIMEOUT", DEFAULT_UPSTREAM_READ_TIMEOUT, positive=True)
    model_aliases = _parse_model_aliases(get("MODEL_ALIASES") or "", problems)
    trusted_proxies = _parse_networks("TRUSTED_PROXIES", get("TRUSTED_PROXIES") or "", problems)
    if workers is not None:
        workers_value = _check_workers("--workers", workers, problems)
    else:
        workers_value = _check_workers("WORKERS", get("WORKERS"), problems)

    time_zone = _parse_time_zone(get("TIME_ZONE") or "UTC", problems)
    egress = EnvProxies()
    proxy_from_env = _one_of("PROXY_FROM_ENV", get("PROXY_FROM_ENV") or "on", SWITCHES,
                             problems) == "on"
    if proxy_from_env:
        egress, proxy_problems = env_proxies(environ)
        problems.extend(proxy_problems)
    ca_bundle = get("CA_BUNDLE")
    if ca_bundle is not None:
        ca_bundle = str(Path(ca_bundle).expanduser())
        if not _readable_certificates(ca_bundle):
            problems.append(f"CA_BUNDLE: {ca_bundle!r} is not a readable PEM file of "
                            "certificates")
    prices = _load_prices(get("PRICES"), problems)

    instance_name = get("INSTANCE_NAME") or f"{socket.gethostname()}:{port_value}"
    if len(instance_name) > MAX_INSTANCE_NAME or not instance_name.isprintable():
        problems.append(f"INSTANCE_NAME: must be printable and at most {MAX_INSTANCE_NAME} "
                        "characters")

    if problems:
        raise ConfigError(problems)

    secrets_file = secrets_path_for(db)
    admin_key, encryption_key, generated = _first_run_secrets(
        secrets_file, env_admin_key, env_encryption_key
    )
    return Settings(
        host=host_value,
        port=port_value,
        log_level=log_level,
        log_format=log_format,
        db_path=db,
        database_url=url,
        encryption_key=encryption_key,
        admin_key=admin_key,
        claude_api_key=get("CLAUDE_API_KEY"),
        metrics_token=get("METRICS_TOKEN"),
        claude_base_url=base_url,
        max_body_bytes=max_body_bytes,
        shutdown_grace=shutdown_grace,
        rotation=rotation,
        cooldown_max=cooldown_max,
        log_retention_days=retention,
        request_log=request_log == "on",
        upstream_connect_timeout=connect_timeout,
        upstream_read_timeout=read_timeout,
        oauth_client_id=get("OAUTH_CLIENT_ID"),
        # Follows PORT, so a server moved off 8080 still names its own callback.
        oauth_redirect_uri=get("OAUTH_REDIRECT_URI")
        or f"http://localhost:{port_value or DEFAULT_PORT}{OAUTH_CALLBACK_PATH}",
        oauth_auth_url=get("OAUTH_AUTH_URL") or DEFAULT_OAUTH_AUTH_URL,
        oauth_token_url=get("OAUTH_TOKEN_URL") or DEFAULT_OAUTH_TOKEN_URL,
        oauth_scopes=get("OAUTH_SCOPES") or DEFAULT_OAUTH_SCOPES,
        oauth_manual_redirect_uri=get("OAUTH_MANUAL_REDIRECT_URI")
        or DEFAULT_OAUTH_MANUAL_REDIRECT_URI,
        secrets_path=secrets_file,
        generated=generated,
        model_aliases=model_aliases,
        workers=workers_value,
        instance_name=instance_name,
        trusted_proxies=trusted_proxies,
        time_zone=time_zone,
        prices=prices,
        egress=egress,
        proxy_from_env=proxy_from_env,
        ca_bundle=ca_bundle,
    )


# --- single settings ----------------------------------------------------------------------------


def _check_port(name: str, value: str, problems: list[str]) -> int:
    if _DIGITS.fullmatch(value) and int(value) <= 65535:
        return int(value)
    problems.append(f"{name}: {value!r} is not a port number (0-65535)")
    return 0


def _check_workers(name: str, value: str | None, problems: list[str]) -> int | None:
    """None stays None (one process, no supervisor); `auto` is one worker per CPU."""
    if value is None:
        return None
    if value.lower() == "auto":
        return os.cpu_count() or 1
    if _DIGITS.fullmatch(value) and int(value) >= 1:
        return int(value)
    problems.append(f"{name}: {value!r} is not a number of worker processes (1 or more, or auto)")
    return None


def _one_of(name: str, value: str, allowed: tuple[str, ...], problems: list[str]) -> str:
    if value.lower() in allowed:
        return value.lower()
    problems.append(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return allowed[0]


def _parse_networks(name: str, value: str, problems: list[str]
                    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or networks (CIDR): `10.0.0.1, fd00::/8`."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            problems.append(f"{name}: {item!r} is not an address or a network (CIDR)")
    return tuple(networks)


def _readable_certificates(path: str) -> bool:
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError):
        return False
    return True


def _parse_time_zone(name: str, problems: list[str]) -> tzinfo:
    """An IANA zone name (`Europe/Paris`), read from the system's time zone database."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"TIME_ZONE: {name!r} is not a time zone this system knows (an IANA "
                        "name such as Europe/Paris, or UTC)")
        return UTC


def _load_prices(path: str | None, problems: list[str]) -> dict[str, Price]:
    """The shipped table with the PRICES file's models added or replaced."""
    prices = dict(PRICES)
    if path is None:
        return prices
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(f"PRICES: cannot read {path!r}: {reason}")
        return prices
    try:
        prices.update(parse_prices(text))
    except ValueError as exc:
        problems.append(f"PRICES: {path!r}: {exc}")
    return prices


def _parse_model_aliases(value: str, problems: list[str]) -> dict[str, str]:
    """`gpt-4o=claude-sonnet-4-6,gpt-4o-mini=claude-haiku-4-5`: client name → Claude model.

    Empty entries (a trailing comma) are allowed; a name given twice is a mistake worth
    reporting rather than silently taking the last one.
    """
    aliases: dict[str, str] = {}
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not name or not target or _SPACE.search(name + target) or "=" in target:
            problems.append(f"MODEL_ALIASES: {entry!r} is not name=model "
                            "(e.g. gpt-4o=claude-sonnet-4-6)")
        elif name in aliases:
            problems.append(f"MODEL_ALIASES: {name!r} is given more than once")
        else:
            aliases[name] = target
    return aliases


def _parse_encryption_key(source: str, value: str, problems: list[str]) -> bytes | None:
    try:
        return parse_key(value)
    except ValueError as exc:
        reason = str(exc)
        if value in reason:  # parse_key promises not to echo the key; make sure of it
            reason = "must be 32 bytes given as 64 hex characters or base64"
        problems.append(f"{source}: {reason}")
        return None


def _check_admin_key(source: str, value: str, problems: list[str]) -> bool:
    if len(value) >= MIN_ADMIN_KEY_LENGTH:
        return True
    problems.append(
        f"{source}: must be at least {MIN_ADMIN_KEY_LENGTH} characters (got {len(value)})"
    )
    return False


def _check_base_url(value: str, problems: list[str]) -> str:
    problem = base_url_problem(value)
    if problem is not None:
        # user:password@ is a credential: say so without echoing it
        shown = "CLAUDE_BASE_URL:" if "@" in value else f"CLAUDE_BASE_URL: {value!r}"
        problems.append(f"{shown} {problem}")
    return value.rstrip("/")


def base_url_problem(value: str) -> str | None:
    """What makes `value` unusable as an upstream base URL (CLAUDE_BASE_URL, an account's
    `base_url`), or None. Everything the transport would only find out when it connects (a
    host name the resolver refuses, a port out of range) is refused here, when it is typed."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        return "must not contain user:password@ (the URL is not shown)"
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        return "is not an http:// or https:// URL"
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return "must not have a query or fragment"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "must not hold control characters"
    if ":" not in parts.hostname:  # a name or IPv4 address: as the resolver will take it
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            return "has a host name that is not valid"
    return None


# --- first-run secrets --------------------------------------------------------------------------


def _first_run_secrets(
    path: Path, env_admin_key: str | None, env_encryption_key: bytes | None
) -> tuple[str, bytes, tuple[str, ...]]:
    """Fill in what the environment left out from the secrets file, generating what's missing.

    A value from the environment is used as is and never written. A value in the file is never
    replaced. The file is rewritten (atomically) only when something was generated.
    """
    if env_admin_key is not None and env_encryption_key is not None:
        return env_admin_key, env_encryption_key, ()

    stored = _read_secrets(path)
    problems: list[str] = []
    generated: list[str] = []

    admin_key = env_admin_key
    if admin_key is None:
        if "admin_key" in stored:
            admin_key = stored["admin_key"]
            _check_admin_key(f"{path}: admin_key", admin_key, problems)
        else:
            admin_key = stored["admin_key"] = "kadm_" + secrets.token_urlsafe(32)
            generated.append("ADMIN_KEY")

    encryption_key = env_encryption_key
    if encryption_key is None:
        if "encryption_key" in stored:
            source = f"{path}: encryption_key"
            encryption_key = _parse_encryption_key(source, stored["encryption_key"], problems)
        else:
            encryption_key = generate_key()
            stored["encryption_key"] = encode_key(encryption_key)
            generated.append("ENCRYPTION_KEY")

    if problems or encryption_key is None:
        raise ConfigError(problems)
    if generated:
        try:
            _write_atomically(path, json.dumps(stored, indent=2) + "\n")
        except OSError as exc:
            raise ConfigError([f"{path}: cannot write the secrets file: {exc.strerror}"]) from None
    return admin_key, encryption_key, tuple(generated)


def _read_secrets(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{path}: cannot read the secrets file: {reason}"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        # Never rewrite it: it may hold the only copy of the key that opens the database.
        raise ConfigError([
            f"{path}: not a valid secrets file (expected a JSON object of strings); repair it, "
            "or set ADMIN_KEY and ENCRYPTION_KEY"
        ])
    return data


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` so that `path` holds either the old or the new content, never a torn one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # 0600 from the start: a chmod after the write would leave a window where others can read.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
