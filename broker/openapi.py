"""The OpenAPI 3 document of the exchange API, generated from its marshmallow schemas,
and a browsable page that needs no JavaScript."""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from broker.exchange.schemas import LookupRequestSchema, LookupResponseSchema, ProblemSchema

bp = Blueprint("openapi", __name__)

PROBLEM = {"application/problem+json": {"schema": "Problem"}}


@cache
def _document(issuer: str) -> dict[str, Any]:
    spec = APISpec(
        title="casebroker exchange API",
        version="1",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        servers=[{"url": issuer}],
        info={"description": "Federated, policy-checked and audited lookups of citizen records."},
    )
    spec.components.schema("LookupRequest", schema=LookupRequestSchema)
    spec.components.schema("LookupResponse", schema=LookupResponseSchema)
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RFC 9068)"}
    )
    spec.path(
        path="/exchange/v1/lookups",
        operations={
            "post": {
                "summary": "Look up a person across the other agencies",
                "description": (
                    "Name the person by your own agency's identifier. Each source that provides "
                    "a requested category answers ok (only the permitted fields), denied (with a "
                    "reason), not_found or unavailable. Every decision is in the audit log "
                    "before the answer is sent; each result carries its audit leaf index and hash."
                ),
                "security": [{"bearer": ["lookup"]}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "LookupRequest"}},
                },
                "responses": {
                    "200": {
                        "description": "Per-source results",
                        "content": {"application/json": {"schema": "LookupResponse"}},
                    },
                    "400": {"description": "Malformed JSON", "content": PROBLEM},
                    "401": {"description": "Missing or invalid access token", "content": PROBLEM},
                    "403": {"description": "Token lacks the lookup scope", "content": PROBLEM},
                    "404": {"description": "No person under this identifier", "content": PROBLEM},
                    "413": {"description": "Body too large", "content": PROBLEM},
                    "415": {"description": "Body is not JSON", "content": PROBLEM},
                    "422": {
                        "description": "Invalid request, unknown category or purpose, "
                        "missing justification",
                        "content": PROBLEM,
                    },
                    "503": {
                        "description": "Decisions could not be recorded; retry later",
                        "content": PROBLEM,
                    },
                },
            }
        },
    )
    return spec.to_dict()


def openapi_document() -> dict[str, Any]:
    return _document(current_app.config["ISSUER"])


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(openapi_document())


@bp.get("/docs")
def docs_page() -> ResponseReturnValue:
    return render_template("openapi.html", doc=openapi_document())
