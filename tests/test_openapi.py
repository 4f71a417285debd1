"""`/openapi.json` lists exactly the routes the server answers, and real answers fit its schemas."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import jsonschema

from kestrel.api.endpoints import Endpoint
from kestrel.api.openapi import build_document, document_path
from kestrel.app import App
from kestrel.config import load_settings

from conftest import ADMIN_KEY
from support.process import KestrelProcess


def _schema(document: dict, path: str, method: str, status: int) -> dict:
    content = document["paths"][path][method]["responses"][str(status)]["content"]
    return content["application/json"]["schema"]


def test_document_matches_the_router(kestrel: KestrelProcess) -> None:
    with kestrel.client() as client:
        document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    # Ask the server itself: every documented route must be routed (never 404/405), and an
    # undocumented neighbour must not be.
    with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as client:
        for method, path in documented:
            concrete = re.sub(r"\{[a-z_]+\}", "1", path)
            status = client.request(method, concrete, json={}).status_code
            assert status not in (404, 405) or "{" in path, (method, path, status)
        assert client.post("/health").status_code == 405
        assert client.get("/admin/undocumented").status_code == 404


def test_document_is_built_from_every_endpoint(tmp_path: Path) -> None:
    async def endpoints_of_a_real_app() -> list[Endpoint]:
        settings = load_settings({"DB_PATH": str(tmp_path / "k.db"), "ADMIN_KEY": ADMIN_KEY,
                                  "ENCRYPTION_KEY": "33" * 32})
        app = await App.open(settings)
        try:
            return list(app.endpoints)
        finally:
            await app.close()

    endpoints = asyncio.run(endpoints_of_a_real_app())
    document = build_document(endpoints)
    assert {(e.method.lower(), document_path(e.path)) for e in endpoints} == {
        (m, p) for p, item in document["paths"].items() for m in item}
    for path, item in document["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([a-z_]+)\}", path))


def test_real_answers_fit_the_documented_schemas(kestrel: KestrelProcess) -> None:
    with kestrel.client() as client:
        document = client.get("/openapi.json").json()
    jsonschema.Draft202012Validator.check_schema(_schema(document, "/admin/accounts", "get", 200))
    with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as client:
        created = client.post("/admin/accounts",
                              json={"name": "a", "api_key": "sk-ant-api03-0123456789abcdef"})
        checks = [
            (created, "/admin/accounts", "post", 201),
            (client.get("/admin/accounts"), "/admin/accounts", "get", 200),
            (client.get("/admin/accounts/1"), "/admin/accounts/{id}", "get", 200),
            (client.get("/admin/accounts/2"), "/admin/accounts/{id}", "get", 404),
            (client.post("/admin/keys", json={"name": "k"}), "/admin/keys", "post", 201),
            (client.get("/admin/keys"), "/admin/keys", "get", 200),
            (client.post("/admin/keys", json={}), "/admin/keys", "post", 422),
            (client.get("/health"), "/health", "get", 200),
        ]
        for response, path, method, status in checks:
            assert response.status_code == status, (path, response.text)
            jsonschema.validate(response.json(), _schema(document, path, method, status))
