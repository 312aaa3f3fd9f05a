"""The OpenAPI 3 document of the exchange API, generated from its marshmallow schemas,
and a browsable page that needs no JavaScript."""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from broker.cases.schemas import CaseCloseSchema, CaseListSchema, CaseRequestSchema, CaseSchema
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
    _case_paths(spec)
    return spec.to_dict()


def _case_paths(spec: APISpec) -> None:
    spec.components.schema("CaseRequest", schema=CaseRequestSchema)
    spec.components.schema("Case", schema=CaseSchema)
    spec.components.schema("CaseList", schema=CaseListSchema)
    spec.components.schema("CaseClose", schema=CaseCloseSchema)
    case = {"application/json": {"schema": "Case"}}
    security = [{"bearer": ["cases"]}]
    reference = {"name": "reference", "in": "path", "required": True, "schema": {"type": "string"}}
    auth_errors = {
        "401": {"description": "Missing or invalid access token", "content": PROBLEM},
        "403": {"description": "Token lacks the cases scope", "content": PROBLEM},
    }
    spec.path(
        path="/exchange/v1/cases",
        operations={
            "post": {
                "summary": "Register an open case on a person",
                "description": (
                    "A lookup is lawful only where your agency has an open case on the person "
                    "for the purpose. Name the person by your own agency's identifier."
                ),
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "CaseRequest"}},
                },
                "responses": {
                    "201": {"description": "Registered", "content": case},
                    **auth_errors,
                    "409": {"description": "Reference already registered", "content": PROBLEM},
                    "422": {
                        "description": "Unknown person, capacity, purpose or officer; a "
                        "period that has ended",
                        "content": PROBLEM,
                    },
                },
            },
            "get": {
                "summary": "Your agency's cases, in reference order",
                "security": security,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": ["open", "closed"]}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "A page of cases",
                        "content": {"application/json": {"schema": "CaseList"}},
                    },
                    **auth_errors,
                },
            },
        },
    )
    spec.path(
        path="/exchange/v1/cases/{reference}",
        operations={
            "get": {
                "summary": "One of your agency's cases",
                "security": security,
                "parameters": [reference],
                "responses": {
                    "200": {"description": "The case", "content": case},
                    **auth_errors,
                    "404": {"description": "No such case at your agency", "content": PROBLEM},
                },
            }
        },
    )
    spec.path(
        path="/exchange/v1/cases/{reference}/close",
        operations={
            "post": {
                "summary": "Close a case now",
                "security": security,
                "parameters": [reference],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": "CaseClose"}},
                },
                "responses": {
                    "200": {"description": "The closed case", "content": case},
                    **auth_errors,
                    "404": {"description": "No such case at your agency", "content": PROBLEM},
                    "409": {"description": "Already closed", "content": PROBLEM},
                },
            }
        },
    )


def openapi_document() -> dict[str, Any]:
    return _document(current_app.config["ISSUER"])


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(openapi_document())


@bp.get("/docs")
def docs_page() -> ResponseReturnValue:
    return render_template("openapi.html", doc=openapi_document())
