"""`GET /admin/info`: what this Kestrel is and how it is set up, without a secret.

The dashboard and the command line read it instead of probing (whether OAuth is on, which
database, which proxy); an operator reads it to check a deployment from afar. Proxies appear as
scheme, host and port; the database as its engine and where, never a password.
"""

from __future__ import annotations

from typing import Any

from kestrel import __version__
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import json_response
from kestrel.api.schema import Schema
from kestrel.config import Settings
from kestrel.egress import Proxy
from kestrel.http import Request, Response
from kestrel.proxy.key_limits import zone_name

_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}

INFO: Schema = {
    "type": "object",
    "properties": {
        "version": _TEXT,
        "instance": {**_TEXT, "description": "INSTANCE_NAME, as request log rows carry it."},
        "database": {"type": "object", "properties": {
            "engine": {"type": "string", "enum": ["sqlite", "postgresql"]},
            "where": {**_TEXT, "description": "The file, or host:port/database."}}},
        "workers": {"type": ["integer", "null"],
                    "description": "WORKERS; null is one process without a supervisor."},
        "oauth": {"type": "boolean", "description": "OAuth accounts can be connected."},
        "egress": {"type": "object", "description": "The environment's proxies (scheme, host "
                                                    "and port) and NO_PROXY.",
                   "properties": {"from_env": {"type": "boolean",
                                               "description": "PROXY_FROM_ENV is on."},
                                  "https": _MAYBE_TEXT,
                                  "http": _MAYBE_TEXT, "all": _MAYBE_TEXT,
                                  "no_proxy": {"type": "array", "items": _TEXT},
                                  "ca_bundle": _MAYBE_TEXT}},
        "settings": {"type": "object",
                     "description": "The settings that are not secrets, as they are in force."},
    },
    "required": ["version", "instance", "database", "workers", "oauth", "egress", "settings"],
}


def info(settings: Settings) -> dict[str, Any]:
    egress = settings.egress
    return {
        "version": __version__,
        "instance": settings.instance_name,
        "database": {"engine": "postgresql" if settings.database_url else "sqlite",
                     "where": settings.database_label},
        "workers": settings.workers,
        "oauth": settings.oauth_client_id is not None,
        "egress": {"from_env": settings.proxy_from_env, "https": _label(egress.https),
                   "http": _label(egress.http), "all": _label(egress.everything),
                   "no_proxy": list(egress.no_proxy), "ca_bundle": settings.ca_bundle},
        "settings": {
            "host": settings.host, "port": settings.port,
            "claude_base_url": settings.claude_base_url,
            "rotation": settings.rotation, "cooldown_max": settings.cooldown_max,
            "request_log": settings.request_log,
            "log_retention_days": settings.log_retention_days,
            "log_level": settings.log_level, "max_body_bytes": settings.max_body_bytes,
            "shutdown_grace": settings.shutdown_grace,
            "upstream_connect_timeout": settings.upstream_connect_timeout,
            "upstream_read_timeout": settings.upstream_read_timeout,
            "time_zone": zone_name(settings.time_zone),
            "trusted_proxies": [str(network) for network in settings.trusted_proxies],
            "model_aliases": dict(settings.model_aliases),
            "priced_models": len(settings.prices),
        },
    }


def _label(proxy: Proxy | None) -> str | None:
    return None if proxy is None else proxy.label


class InfoApi:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/admin/info", self.info,
                         "Version, instance, features and the settings that are not secrets",
                         "meta", Auth.ADMIN, responses={200: INFO})]

    async def info(self, request: Request) -> Response:
        return json_response(info(self._settings))
